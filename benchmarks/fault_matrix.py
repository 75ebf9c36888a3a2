"""Delivery under faults: each fault N times against real servers, copies counted at the server.

    .venv/bin/python benchmarks/fault_matrix.py [--repetitions 20] [--ledger-url URL] [--out FILE] [--only 1,5]

Every repetition delivers a fresh file of random bytes under a fresh scope (the report run) with
a fresh ledger (SQLite in a temporary folder, or the database at --ledger-url, e.g. PostgreSQL).
Dagster's run retries are simulated by calling `deliver()` again with the same scope and ledger,
up to three calls, stopping at the first success. The servers are real and listen on 127.0.0.1:
an SMTP relay (aiosmtpd, STARTTLS), S3 (moto, behind a proxy that answers 503 SlowDown) and
OpenSSH's sshd. Afterwards the copies are counted where they landed (messages per recipient at
the relay, object versions in a versioned bucket, final files with the right bytes and leftover
`.part-` files on the SFTP server), next to the ledger's final rows and what the caller saw
(success, or an exception and its message).

Prints a Markdown table (and writes it to --out); exits 1 if any repetition misses its target.
Concurrent and killed workers are real processes, forked from a process that has already
imported the delivery code (importing it takes seconds on a loaded machine).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report_platform.database import make_engine  # noqa: E402
from report_platform.delivery import (  # noqa: E402
    Artifact,
    Connections,
    DeliveryLedger,
    Receipt,
    S3Connection,
    SftpConnection,
    SmtpConnection,
    deliver,
)
from report_platform.durable import sha256_file  # noqa: E402
from report_platform_devservers.standins import MotoStandin, SmtpStandin, SshdStandin  # noqa: E402
from report_platform_devservers.standins.s3 import STANDIN_ACCESS_KEY, STANDIN_SECRET_KEY  # noqa: E402
from report_platform_tests.servers.disks import fill, small_tmpfs  # noqa: E402
from report_platform_tests.servers.http_faults import SLOW_DOWN, FaultyHttpProxy, SeenRequest  # noqa: E402
from report_platform_tests.servers.variables import environment  # noqa: E402

TO = ("ops@example.com", "second@example.com")
FROM = "reports@acme.example"
FILENAME = "report.csv"
CALLS = 3  # the run and two run retries
MAIL_BYTES = 10_000
S3_BYTES = 100_000
MULTIPART_BYTES = 11 * 1024 * 1024
SFTP_BYTES = 100_000
SFTP_KILLED_BYTES = 24 * 1024 * 1024
KILL_AT_BYTES = 1024 * 1024
SHORT_LEASE = 0.5
WORKER_LEASE = 1.0
KILLED_DATA_SECONDS = 3.0
ENV_AWS_KEY = "FAULT_MATRIX_AWS_KEY_ID"
ENV_AWS_SECRET = "FAULT_MATRIX_AWS_SECRET"
ENV_SFTP_KEY = "FAULT_MATRIX_SFTP_KEY"
CONFIRMED, FAILED, UNKNOWN = "confirmed", "failed", "unknown"


def _no_sleep(_seconds: float) -> None:
    """Backoff between attempts is not what is measured here."""


@dataclass(frozen=True)
class Target:
    """What every repetition of one fault must show."""

    copies: dict[str, tuple[int, int]]  # where -> fewest and most copies allowed
    outcome: str  # "success" or "loud"
    states: frozenset[str]  # allowed final ledger states
    verdict: str
    mentions: tuple[str, ...] = ()  # the final error message names these
    leftovers: str | None = None  # what a leftover is at this destination, if it can have any


@dataclass
class Repetition:
    copies: dict[str, int] = field(default_factory=dict)
    leftovers: int = 0
    states: list[str] = field(default_factory=list)
    outcome: str = "none"  # "success" or "loud"
    messages: list[str] = field(default_factory=list)  # one per failed call, in order
    calls: int = 0
    evidence: dict[str, bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        return self.messages[-1] if self.outcome == "loud" and self.messages else ""

    def missed(self, target: Target) -> list[str]:
        """Every way this repetition misses `target`; empty when it meets it."""
        missed = list(self.problems)
        for where, (fewest, most) in target.copies.items():
            count = self.copies.get(where, 0)
            if not fewest <= count <= most:
                allowed = str(fewest) if fewest == most else f"{fewest}-{most}"
                missed.append(f"{count} copies to {where} (allowed {allowed})")
        if self.outcome == "success" and self.copies and not any(self.copies.values()):
            missed.append("silent loss: success reported, nothing at the server")
        if self.outcome != target.outcome:
            missed.append(f"the caller saw {self.outcome}, expected {target.outcome}: {self.message[:200]}")
        if self.outcome == "loud" and CONFIRMED in self.states:
            missed.append("a failure the ledger recorded as confirmed")
        if not self.states:
            missed.append("no ledger row")
        elif not set(self.states) <= target.states:
            missed.append(f"ledger {'/'.join(self.states)}, expected {'/'.join(sorted(target.states))}")
        missed += [f"the message does not name {word!r}" for word in target.mentions if word not in self.message]
        if self.leftovers:
            missed.append(f"{self.leftovers} {target.leftovers or 'leftovers'}")
        return missed


@dataclass
class Row:
    number: int
    title: str
    target: Target
    repetitions: list[Repetition]
    seconds: float
    skipped: str | None = None
    note: str = ""

    def violations(self) -> list[tuple[int, str]]:
        return [
            (index + 1, problem) for index, rep in enumerate(self.repetitions) for problem in rep.missed(self.target)
        ]


class Skip(Exception):
    """This machine cannot set the fault up (e.g. mounting needs root); nothing was measured."""


def _run_calls(rep: Repetition, call: Callable[[int], Receipt], first: int = 1) -> Receipt | None:
    """Call deliver() as a run and its retries would: until one succeeds, CALLS calls at most."""
    for number in range(first, CALLS + 1):
        rep.calls = number
        try:
            receipt = call(number)
        except Exception as exc:  # noqa: BLE001 - every failure is an outcome to record
            rep.outcome = "loud"
            rep.messages.append(f"{type(exc).__name__}: {exc}")
            continue
        rep.outcome = "success"
        return receipt
    return None


def _caller(
    artifact: Artifact,
    destination: dict[str, Any],
    conns: Connections,
    scope: str,
    *,
    ledger: DeliveryLedger | None = None,
    url: str | None = None,
    lease_seconds: float | None = None,
    before: Callable[[int], None] | None = None,
) -> Callable[[int], Receipt]:
    """One call of deliver() as a run makes it: on `ledger`, or on a ledger opened at `url` per call."""

    def call(number: int) -> Receipt:
        if before is not None:
            before(number)
        with contextlib.ExitStack() as stack:
            used = ledger if ledger is not None else stack.enter_context(_open_ledger(str(url), lease_seconds))
            return deliver(artifact, destination, conns, subject="Daily", ledger=used, scope=scope, sleep=_no_sleep)

    return call


@contextlib.contextmanager
def _open_ledger(url: str, lease_seconds: float | None = None) -> Iterator[DeliveryLedger]:
    """A ledger on its own engine, as a new run process would open it; closed afterwards."""
    engine = make_engine(url)
    try:
        yield DeliveryLedger(engine, **({"lease_seconds": lease_seconds} if lease_seconds else {}))
    finally:
        engine.dispose()


def _states(url: str, scope: str) -> list[str]:
    with _open_ledger(url) as ledger:
        return [row.state for row in ledger.rows(scope=scope)]


class ForkServer:
    """A process that has imported the delivery code and forks one worker process per job.

    A job is a dict (see `_worker`); the worker writes its outcome as JSON to `job["result"]`.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._ready = False

    def launch(self) -> None:
        """Start importing in the background; `start` waits for it."""
        if self._proc is None:
            self._proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--fork-server"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )

    def _line(self, timeout: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        readable, _, _ = select.select([self._proc.stdout], [], [], timeout)
        if not readable:
            raise TimeoutError(f"the fork server said nothing within {timeout:.0f} s")
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server exited ({self._proc.poll()})")
        return line.strip()

    def start(self, jobs: list[dict[str, Any]]) -> list[int]:
        """Fork one worker per job, all at once; return their process ids."""
        self.launch()
        assert self._proc is not None and self._proc.stdin is not None
        if not self._ready:
            if self._line(180) != "ready":
                raise RuntimeError("the fork server did not start")
            self._ready = True
        self._proc.stdin.write(json.dumps(jobs) + "\n")
        self._proc.stdin.flush()
        return [int(pid) for pid in json.loads(self._line(30))]

    def close(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(OSError):
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None


def serve_forks() -> None:
    """The fork server's loop: a JSON list of jobs per line in, their worker pids per line out."""
    if not os.environ.get("FAULT_MATRIX_VERBOSE"):
        logging.disable(logging.CRITICAL)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel
    print("ready", flush=True)
    while line := sys.stdin.readline():
        pids = []
        for job in json.loads(line):
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                try:
                    _worker(job)
                finally:
                    os._exit(0)
            pids.append(pid)
        print(json.dumps(pids), flush=True)


def _worker(job: dict[str, Any]) -> None:
    """One worker process: deliver the file by e-mail, as a run would, and report the outcome."""
    try:
        conns = _smtp_connections(job["host"], job["port"], job["ca_file"])
        with _open_ledger(job["ledger_url"], job.get("lease_seconds")) as ledger:
            receipt = deliver(
                Artifact.from_path(job["path"]),
                _mail_destination(),
                conns,
                subject="Daily",
                ledger=ledger,
                scope=job["scope"],
                sleep=_no_sleep,
            )
        outcome: dict[str, Any] = {"ok": True, "reused": bool(receipt.extra.get("reused"))}
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        outcome = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    result = Path(job["result"])
    result.with_suffix(".tmp").write_text(json.dumps(outcome))
    result.with_suffix(".tmp").replace(result)


def _wait_for(path: Path, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        time.sleep(0.02)
    return None


class _PartFaultProxy(FaultyHttpProxy):
    """The fault proxy, answering the next UploadPart requests (only those) with 503 SlowDown."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self._part_faults: list[str | None] = []
        self._part_lock = threading.Lock()

    def fail_next_parts(self, count: int, part_number: int | None = None) -> None:
        """Refuse the next `count` UploadPart requests (of part `part_number` only, if given)."""
        with self._part_lock:
            self._part_faults += [None if part_number is None else str(part_number)] * count

    def _take_part_fault(self, path: str) -> bool:
        numbers = parse_qs(urlsplit(path).query).get("partNumber")
        if not numbers:
            return False
        with self._part_lock:
            for index, wanted in enumerate(self._part_faults):
                if wanted is None or wanted == numbers[0]:
                    del self._part_faults[index]
                    return True
            return False

    def _handler(self) -> type[Any]:
        base: Any = super()._handler()
        proxy = self

        class PartHandler(base):  # type: ignore[misc, valid-type]
            def _handle(self) -> None:
                if self.command == "PUT" and proxy._take_part_fault(self.path):
                    self._body()
                    proxy.requests.append(SeenRequest(self.command, self.path, SLOW_DOWN[0]))
                    self._reply(SLOW_DOWN[0], [("Content-Type", "application/xml")], SLOW_DOWN[1])
                    return
                super()._handle()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815

        return PartHandler


class Matrix:
    """Folders, ledgers and the servers shared by several faults, for one run of the matrix."""

    def __init__(self, workdir: Path, ledger_url: str | None, stack: contextlib.ExitStack) -> None:
        self.workdir = workdir
        self.ledger_url = ledger_url
        self.forks = ForkServer()
        self._stack = stack
        self._moto: MotoStandin | None = None
        self._sshd: SshdStandin | None = None
        stack.callback(self.forks.close)

    def folder(self, tag: str, index: int) -> Path:
        path = self.workdir / tag / f"rep-{index + 1}"
        path.mkdir(parents=True)
        return path

    @staticmethod
    def artifact(folder: Path, size: int) -> Artifact:
        path = folder / "built" / FILENAME
        path.parent.mkdir()
        path.write_bytes(os.urandom(size))
        return Artifact.from_path(path)

    def fresh_ledger(self, folder: Path) -> str:
        return self.ledger_url or f"sqlite:///{folder / 'registry.db'}"

    @staticmethod
    def scope(tag: str, index: int) -> str:
        return f"rpt_{tag}/run-{index + 1}-{secrets.token_hex(4)}"

    @property
    def moto(self) -> MotoStandin:
        if self._moto is None:
            self._moto = self._stack.enter_context(MotoStandin())
            self._stack.enter_context(
                environment({ENV_AWS_KEY: STANDIN_ACCESS_KEY, ENV_AWS_SECRET: STANDIN_SECRET_KEY})
            )
        return self._moto

    @property
    def sshd(self) -> SshdStandin:
        if self._sshd is None:
            if not Path("/usr/sbin/sshd").exists():
                raise Skip("needs OpenSSH's sshd (openssh-server)")
            self._sshd = self._stack.enter_context(SshdStandin(workdir=self.workdir / "sshd"))
            self._stack.enter_context(environment({ENV_SFTP_KEY: self._sshd.client_key_text}))
        return self._sshd


def _smtp_connections(host: str, port: int, ca_file: str | None) -> Connections:
    conn = SmtpConnection(
        host=host,
        port=port,
        security="starttls",
        ca_file=ca_file,
        from_address=FROM,
        timeout=20,
        organizations=["*"],
    )
    return Connections(smtp={"default": conn})


def _mail_destination() -> dict[str, Any]:
    return {"type": "email", "to": list(TO)}


def _server_connections(server: SmtpStandin) -> Connections:
    return _smtp_connections(server.host, server.port, str(server.cert_file))


def _count_mail(server: SmtpStandin, delivered: list[tuple[Repetition, Artifact]]) -> dict[str, list[list[str]]]:
    """Messages the relay accepted, per recipient, recognised by the attachment's bytes.

    Returns each file's envelopes (the recipients of each accepted message), by SHA-256.
    """
    envelopes: dict[str, list[list[str]]] = {}
    for mail in server.received:
        for part in mail.message.iter_attachments():
            digest = hashlib.sha256(part.get_payload(decode=True) or b"").hexdigest()
            envelopes.setdefault(digest, []).append(sorted(address.lower() for address in mail.rcpt_tos))
    for rep, artifact in delivered:
        counts = Counter(address for envelope in envelopes.get(artifact.sha256, []) for address in envelope)
        rep.copies = {address: counts[address] for address in TO}
    return envelopes


def _mail_fault(
    m: Matrix,
    tag: str,
    n: int,
    *,
    prepare: Callable[[SmtpStandin], None] = lambda server: None,
    before_call: Callable[[SmtpStandin, int], None] = lambda server, number: None,
    evidence: Callable[[list[list[str]]], dict[str, bool]] | None = None,
) -> list[Repetition]:
    """An SMTP fault set up on the relay; each repetition delivered in this process."""
    reps: list[tuple[Repetition, Artifact]] = []
    with SmtpStandin(security="starttls") as server:
        prepare(server)
        conns = _server_connections(server)
        for index in range(n):
            folder = m.folder(tag, index)
            artifact, url, scope = m.artifact(folder, MAIL_BYTES), m.fresh_ledger(folder), m.scope(tag, index)
            rep = Repetition()
            with _open_ledger(url) as ledger:
                before = functools.partial(before_call, server)
                _run_calls(rep, _caller(artifact, _mail_destination(), conns, scope, ledger=ledger, before=before))
                rep.states = [row.state for row in ledger.rows(scope=scope)]
            reps.append((rep, artifact))
        envelopes = _count_mail(server, reps)
    if evidence is not None:
        for rep, artifact in reps:
            rep.evidence = evidence(envelopes.get(artifact.sha256, []))
    return [rep for rep, _ in reps]


def fault_quit_421(m: Matrix, n: int) -> list[Repetition]:
    return _mail_fault(m, "f1", n, prepare=lambda server: server.fail_quit("421 4.3.2 shutting down"))


def fault_quit_drop(m: Matrix, n: int) -> list[Repetition]:
    return _mail_fault(m, "f2", n, prepare=lambda server: server.fail_quit("drop"))


def fault_recipient_450(m: Matrix, n: int) -> list[Repetition]:
    def refuse_once(server: SmtpStandin, number: int) -> None:
        if number == 1:
            server.refuse_recipient(TO[1], "450 4.2.1 mailbox busy, try later")

    def retried_alone(envelopes: list[list[str]]) -> dict[str, bool]:
        return {"the refused recipient got it in a message of its own": envelopes == [[TO[0]], [TO[1]]]}

    return _mail_fault(m, "f3", n, before_call=refuse_once, evidence=retried_alone)


def fault_data_451(m: Matrix, n: int) -> list[Repetition]:
    def fail_once(server: SmtpStandin, number: int) -> None:
        if number == 1:
            server.fail_next("451 4.3.0 temporary failure, try again later")

    return _mail_fault(m, "f4", n, before_call=fail_once)


def fault_recipient_550(m: Matrix, n: int) -> list[Repetition]:
    def refuse_always(server: SmtpStandin, number: int) -> None:
        # A permanent refusal: the mailbox does not exist on any call.
        server.refuse_recipient(TO[1], "550 5.1.1 no such user here")

    return _mail_fault(m, "f5", n, before_call=refuse_always)


def fault_unwritable_confirmation(m: Matrix, n: int) -> list[Repetition]:
    if os.geteuid() != 0:
        raise Skip("mounting a tmpfs needs root")
    reps: list[tuple[Repetition, Artifact]] = []
    with small_tmpfs(m.workdir / "small-disk") as disk, SmtpStandin(security="starttls") as server:
        conns = _server_connections(server)
        for index in range(n):
            folder = m.folder("f6", index)
            artifact, scope = m.artifact(folder, MAIL_BYTES), m.scope("f6", index)
            home = disk / f"rep-{index + 1}"
            home.mkdir()
            url = f"sqlite:///{home / 'registry.db'}"
            with _open_ledger(url):
                pass  # the table exists before the disk fills
            rep = Repetition()

            def disk_state(number: int) -> None:
                # Call 1: the disk fills while the relay accepts. Call 2: still full. Call 3: freed.
                server.before_accepting((lambda: fill(disk)) if number == 1 else None)
                if number == 3:
                    (disk / "filler").unlink(missing_ok=True)

            call = _caller(
                artifact, _mail_destination(), conns, scope, url=url, lease_seconds=SHORT_LEASE, before=disk_state
            )
            _run_calls(rep, call)
            server.before_accepting(None)
            (disk / "filler").unlink(missing_ok=True)
            rep.states = _states(url, scope)
            first = rep.messages[0] if rep.messages else ""
            rep.evidence["call 1 failed saying it was delivered but could not be recorded"] = (
                "was delivered" in first and "could not record" in first
            )
            for number, disk_state in ((2, "disk still full"), (3, "disk freed")):
                said = rep.messages[number - 1] if len(rep.messages) >= number else ""
                rep.evidence[f"call {number} ({disk_state}) failed with the outcome unknown"] = "unknown" in said
            shutil.rmtree(home)
            reps.append((rep, artifact))
        _count_mail(server, reps)
    return [rep for rep, _ in reps]


def _worker_job(server: SmtpStandin, artifact: Artifact, url: str, scope: str, result: Path) -> dict[str, Any]:
    return {
        "host": server.host,
        "port": server.port,
        "ca_file": str(server.cert_file),
        "path": str(artifact.path),
        "ledger_url": url,
        "scope": scope,
        "result": str(result),
    }


def fault_two_processes(m: Matrix, n: int) -> list[Repetition]:
    reps: list[tuple[Repetition, Artifact]] = []
    with SmtpStandin(security="starttls") as server:
        server.slow_data(1.0)
        for index in range(n):
            folder = m.folder("f7", index)
            artifact, url, scope = m.artifact(folder, MAIL_BYTES), m.fresh_ledger(folder), m.scope("f7", index)
            with _open_ledger(url):
                pass  # the table exists before two processes race for the row
            jobs = [_worker_job(server, artifact, url, scope, folder / f"worker-{k}.json") for k in (1, 2)]
            m.forks.start(jobs)
            outcomes = [_wait_for(Path(job["result"]), 60) or {"ok": False, "error": "no answer"} for job in jobs]
            rep = Repetition(calls=2)
            rep.messages = [o["error"] for o in outcomes if not o["ok"]]
            rep.outcome = "success" if all(o["ok"] for o in outcomes) else "loud"
            rep.evidence["one process sent it, the other reused its receipt"] = sorted(
                bool(o.get("reused")) for o in outcomes if o["ok"]
            ) == [False, True]
            rep.states = _states(url, scope)
            reps.append((rep, artifact))
        _count_mail(server, reps)
    return [rep for rep, _ in reps]


def fault_killed_worker(m: Matrix, n: int) -> list[Repetition]:
    reps: list[tuple[Repetition, Artifact]] = []
    with SmtpStandin(security="starttls") as server:
        server.slow_data(KILLED_DATA_SECONDS)
        conns = _server_connections(server)
        last_kill = time.monotonic()
        for index in range(n):
            folder = m.folder("f8", index)
            artifact, url, scope = m.artifact(folder, MAIL_BYTES), m.fresh_ledger(folder), m.scope("f8", index)
            with _open_ledger(url):
                pass
            job = _worker_job(server, artifact, url, scope, folder / "worker.json") | {"lease_seconds": WORKER_LEASE}
            (pid,) = m.forks.start([job])
            deadline = time.monotonic() + 30
            while not _states(url, scope) and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(1.0)  # the relay holds DATA for KILLED_DATA_SECONDS
            os.kill(pid, signal.SIGKILL)
            last_kill = time.monotonic()
            rep = Repetition(calls=1, outcome="loud", messages=["the worker was killed"])
            rep.evidence["the worker was killed while the relay held DATA (row 'claimed', no result)"] = (
                _states(url, scope) == ["claimed"] and not Path(job["result"]).exists()
            )
            # The run's retries, in this process; the dead worker's lease runs out within a second.
            call = _caller(artifact, _mail_destination(), conns, scope, url=url, lease_seconds=SHORT_LEASE)
            _run_calls(rep, call, first=2)
            rep.evidence["both retries failed with the outcome unknown"] = len(rep.messages) == 3 and all(
                "unknown" in said for said in rep.messages[1:]
            )
            rep.states = _states(url, scope)
            reps.append((rep, artifact))
        # Whatever the relay still held when the worker died has been answered by now.
        time.sleep(max(0.0, last_kill + KILLED_DATA_SECONDS + 0.5 - time.monotonic()))
        _count_mail(server, reps)
    return [rep for rep, _ in reps]


def _s3_connections(endpoint_url: str) -> Connections:
    conn = S3Connection(
        region="us-east-1",
        endpoint_url=endpoint_url,
        access_key_id_env=ENV_AWS_KEY,
        secret_access_key_env=ENV_AWS_SECRET,
        # Two attempts per request in botocore (one retry), then deliver()'s own retries: a single
        # 503 is botocore's to absorb, two in a row reach deliver().
        sdk_max_attempts=2,
        organizations=["*"],
    )
    return Connections(s3={"reports-s3": conn})


def _s3_destination(bucket: str, prefix: str) -> dict[str, Any]:
    return {"type": "s3", "connection": "reports-s3", "bucket": bucket, "prefix": prefix}


def _versioned_bucket(moto: MotoStandin, tag: str) -> str:
    name = f"fault-{tag}-{secrets.token_hex(4)}"
    client = moto.client()
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def _count_s3(rep: Repetition, moto: MotoStandin, bucket: str, key: str, artifact: Artifact) -> None:
    """Object versions at the key, unfinished multipart uploads of it, and the stored bytes."""
    client = moto.client()
    versions = [
        v for v in client.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", []) if v["Key"] == key
    ]
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    rep.copies = {"object versions": len(versions)}
    rep.leftovers = len([u for u in uploads if u["Key"] == key])
    if versions:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        if hashlib.sha256(body).hexdigest() != artifact.sha256:
            rep.problems.append("the stored object holds other bytes")


@dataclass
class _S3Attempt:
    rep: Repetition
    requests: list[SeenRequest]
    receipt: Receipt | None


def _s3_retry_fault(
    m: Matrix, tag: str, n: int, size: int, proxy: FaultyHttpProxy, inject: Callable[[], None]
) -> list[_S3Attempt]:
    """Deliver to a versioned bucket through `proxy`, with `inject()` arming a fault before call 1."""
    bucket = _versioned_bucket(m.moto, tag)
    conns = _s3_connections(proxy.url)
    attempts = []
    for index in range(n):
        folder = m.folder(tag, index)
        artifact, url, scope = m.artifact(folder, size), m.fresh_ledger(folder), m.scope(tag, index)
        prefix = f"{tag}/rep-{index + 1}/"
        rep = Repetition()
        seen = len(proxy.requests)
        with _open_ledger(url) as ledger:
            arm = functools.partial(_first_call_only, inject)
            destination = _s3_destination(bucket, prefix)
            receipt = _run_calls(rep, _caller(artifact, destination, conns, scope, ledger=ledger, before=arm))
            rep.states = [row.state for row in ledger.rows(scope=scope)]
        _count_s3(rep, m.moto, bucket, prefix + FILENAME, artifact)
        rep.evidence["retried within the first deliver() call"] = receipt is not None and rep.calls == 1
        attempts.append(_S3Attempt(rep, proxy.requests[seen:], receipt))
    return attempts


def _first_call_only(inject: Callable[[], None], number: int) -> None:
    if number == 1:
        inject()


def _deliver_attempts(attempt: _S3Attempt) -> int:
    return int(attempt.receipt.extra.get("attempts", 0)) if attempt.receipt is not None else 0


def _part_requests(requests: list[SeenRequest]) -> list[SeenRequest]:
    return [r for r in requests if r.method == "PUT" and "partNumber" in parse_qs(urlsplit(r.path).query)]


def fault_s3_slow_down(m: Matrix, n: int) -> list[Repetition]:
    with FaultyHttpProxy(m.moto.endpoint_url) as proxy:
        attempts = _s3_retry_fault(m, "f9", n, S3_BYTES, proxy, lambda: proxy.fail_next(1))
    for a in attempts:
        puts = [r for r in a.requests if r.method == "PUT"]
        a.rep.evidence["the first PUT was answered 503 SlowDown, the next one 200"] = [r.answered for r in puts] == [
            503,
            200,
        ]
        a.rep.evidence["botocore's own retry took it (1 deliver() attempt)"] = _deliver_attempts(a) == 1
    return [a.rep for a in attempts]


def fault_s3_slow_down_twice(m: Matrix, n: int) -> list[Repetition]:
    with FaultyHttpProxy(m.moto.endpoint_url) as proxy:
        attempts = _s3_retry_fault(m, "f14", n, S3_BYTES, proxy, lambda: proxy.fail_next(2))
    for a in attempts:
        puts = [r for r in a.requests if r.method == "PUT"]
        a.rep.evidence["PUTs answered 503, 503, 200"] = [r.answered for r in puts] == [503, 503, 200]
        a.rep.evidence["deliver() retried it itself (2 attempts)"] = _deliver_attempts(a) == 2
    return [a.rep for a in attempts]


def fault_s3_multipart_part(m: Matrix, n: int) -> list[Repetition]:
    with _PartFaultProxy(m.moto.endpoint_url) as proxy:
        attempts = _s3_retry_fault(m, "f11", n, MULTIPART_BYTES, proxy, lambda: proxy.fail_next_parts(1))
    for a in attempts:
        parts = _part_requests(a.requests)
        # Parts go up in parallel: whichever reaches the proxy first is refused.
        a.rep.evidence["exactly one UploadPart was answered 503"] = [r.answered for r in parts].count(503) == 1
        a.rep.evidence["botocore's own retry took it (1 deliver() attempt)"] = _deliver_attempts(a) == 1
    return [a.rep for a in attempts]


def fault_s3_multipart_part_twice(m: Matrix, n: int) -> list[Repetition]:
    with _PartFaultProxy(m.moto.endpoint_url) as proxy:
        attempts = _s3_retry_fault(m, "f15", n, MULTIPART_BYTES, proxy, lambda: proxy.fail_next_parts(2, part_number=1))
    for a in attempts:
        aborted = [r for r in a.requests if r.method == "DELETE" and "uploadId" in r.path]
        a.rep.evidence["part 1 answered 503 twice, the upload aborted"] = (
            sum(r.answered == 503 for r in _part_requests(a.requests)) == 2 and len(aborted) == 1
        )
        a.rep.evidence["deliver() restarted it itself (2 attempts)"] = _deliver_attempts(a) == 2
    return [a.rep for a in attempts]


def fault_s3_confirmation_lost(m: Matrix, n: int) -> list[Repetition]:
    bucket = _versioned_bucket(m.moto, "f10")
    conns = _s3_connections(m.moto.endpoint_url)
    reps = []
    for index in range(n):
        folder = m.folder("f10", index)
        artifact, scope, prefix = m.artifact(folder, S3_BYTES), m.scope("f10", index), f"f10/rep-{index + 1}/"
        # The second run finds no trace of the first in its ledger, as if the confirmation was lost.
        urls = [m.fresh_ledger(folder), f"sqlite:///{folder / 'second-registry.db'}"]
        rep = Repetition(outcome="success")
        receipts = []
        for url in urls:
            rep.calls += 1
            with _open_ledger(url) as ledger:
                try:
                    receipts.append(
                        deliver(
                            artifact,
                            _s3_destination(bucket, prefix),
                            conns,
                            ledger=ledger,
                            scope=scope,
                            sleep=_no_sleep,
                        )
                    )
                except Exception as exc:  # noqa: BLE001 - an outcome to record
                    rep.outcome = "loud"
                    rep.messages.append(f"{type(exc).__name__}: {exc}")
                rep.states += [row.state for row in ledger.rows(scope=scope)]
        _count_s3(rep, m.moto, bucket, prefix + FILENAME, artifact)
        rep.evidence["the second delivery found the same object in place (If-None-Match: 412)"] = bool(
            len(receipts) == 2 and receipts[1].extra.get("already_present")
        )
        reps.append(rep)
    return reps


def _sftp_connections(server: SshdStandin) -> Connections:
    conn = SftpConnection(
        host=server.host,
        port=server.port,
        username=server.username,
        private_key_env=ENV_SFTP_KEY,
        host_key=server.host_key,
        timeout=10,
        organizations=["*"],
    )
    return Connections(sftp={"partner-sftp": conn})


def _count_sftp(rep: Repetition, remote: Path, artifact: Artifact) -> None:
    final = remote / artifact.filename
    rep.copies = {"final files": 0}
    if final.exists():
        if sha256_file(final) == artifact.sha256:
            rep.copies["final files"] = 1
        else:
            rep.problems.append("the final file holds other bytes")
    rep.leftovers = sum(1 for p in remote.iterdir() if p.name.startswith(f".{artifact.filename}.part-"))


def _sftp_fault(m: Matrix, tag: str, n: int, size: int, around: Callable[[Path, Repetition], Any]):
    server = m.sshd
    conns = _sftp_connections(server)
    reps = []
    for index in range(n):
        folder = m.folder(tag, index)
        artifact, url, scope = m.artifact(folder, size), m.fresh_ledger(folder), m.scope(tag, index)
        remote = server.root_dir / f"{tag}-rep-{index + 1}"
        remote.mkdir(parents=True)
        rep = Repetition()
        destination = {"type": "sftp", "connection": "partner-sftp", "remote_dir": str(remote)}
        with _open_ledger(url) as ledger, around(remote, rep):
            receipt = _run_calls(rep, _caller(artifact, destination, conns, scope, ledger=ledger))
            rep.states = [row.state for row in ledger.rows(scope=scope)]
        _count_sftp(rep, remote, artifact)
        reps.append((rep, receipt, remote))
    return reps


def fault_sftp_stale_part(m: Matrix, n: int) -> list[Repetition]:
    @contextlib.contextmanager
    def stale_parts(remote: Path, rep: Repetition) -> Iterator[None]:
        # Left by a worker killed mid-upload, on another machine: only the listing knows about it.
        (remote / f".{FILENAME}.part-{secrets.token_hex(6)}").write_bytes(b"half a file")
        (remote / f".other.csv.part-{secrets.token_hex(6)}").write_bytes(b"another report's upload")
        yield

    reps = _sftp_fault(m, "f12", n, SFTP_BYTES, stale_parts)
    for rep, _, remote in reps:
        rep.evidence["another file's .part upload was left alone"] = any(
            p.name.startswith(".other.csv.part-") for p in remote.iterdir()
        )
    return [rep for rep, _, _ in reps]


def fault_sftp_session_killed(m: Matrix, n: int) -> list[Repetition]:
    server = m.sshd

    @contextlib.contextmanager
    def kill_mid_upload(remote: Path, rep: Repetition) -> Iterator[None]:
        stop = threading.Event()
        killed = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                for part in remote.glob(f".{FILENAME}.part-*"):
                    with contextlib.suppress(FileNotFoundError):
                        if part.stat().st_size > KILL_AT_BYTES:
                            server.kill_sessions()
                            killed.set()
                            return
                time.sleep(0.002)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join(timeout=10)
            rep.evidence["the sshd session was killed mid-upload"] = killed.is_set()

    reps = _sftp_fault(m, "f13", n, SFTP_KILLED_BYTES, kill_mid_upload)
    for rep, receipt, _ in reps:
        rep.evidence["deliver() retried it itself: 2 attempts in its first call"] = bool(
            receipt is not None and receipt.extra.get("attempts") == 2 and rep.calls == 1
        )
    return [rep for rep, _, _ in reps]


def _per_recipient(**allowed: tuple[int, int]) -> dict[str, tuple[int, int]]:
    return {TO[0]: allowed["ops"], TO[1]: allowed["second"]}


ONE_EACH = _per_recipient(ops=(1, 1), second=(1, 1))
ONE_VERSION = {"object versions": (1, 1)}
ONE_FILE = {"final files": (1, 1)}
DELIVERED = frozenset({CONFIRMED})


@dataclass(frozen=True)
class Fault:
    number: int
    title: str
    target: Target
    run: Callable[[Matrix, int], list[Repetition]]
    note: str = ""


FAULTS = [
    Fault(1, "SMTP: 421 at QUIT after 250 to DATA", Target(ONE_EACH, "success", DELIVERED, "exactly one copy each"),
          fault_quit_421),
    Fault(2, "SMTP: connection dropped at QUIT after 250", Target(ONE_EACH, "success", DELIVERED,
          "exactly one copy each"), fault_quit_drop),
    Fault(3, "SMTP: one of two recipients refused 450 once", Target(ONE_EACH, "success", DELIVERED,
          "exactly one copy each; the refused one retried alone"), fault_recipient_450),
    Fault(4, "SMTP: DATA refused 451 once", Target(ONE_EACH, "success", DELIVERED, "exactly one copy each"),
          fault_data_451),
    Fault(5, "SMTP: one recipient refused 550 (on every call)",
          Target(_per_recipient(ops=(1, 1), second=(0, 0)), "loud", frozenset({FAILED}),
                 "one copy to the other, none to the refused one; loud, names it", mentions=(TO[1], "550")),
          fault_recipient_550),
    Fault(6, "SMTP: ledger disk full while the relay accepts; 2 retries (still full, then freed)",
          Target(ONE_EACH, "loud", frozenset({UNKNOWN}), "one copy, never two; outcome unknown, loud",
                 mentions=("unknown", "deliveries release")),
          fault_unwritable_confirmation, note="ledger: SQLite on a 4 MiB tmpfs, whatever --ledger-url says"),
    Fault(7, "SMTP: two processes deliver the same file at once (relay holds DATA 1 s)",
          Target(ONE_EACH, "success", DELIVERED, "exactly one copy; the other process reused it"),
          fault_two_processes),
    Fault(8, "SMTP: worker SIGKILLed while the relay holds DATA; 2 retries",
          Target(_per_recipient(ops=(0, 1), second=(0, 1)), "loud", frozenset({UNKNOWN}),
                 "never two; outcome unknown, loud", mentions=("unknown", "deliveries release")),
          fault_killed_worker),
    Fault(9, "S3: first PUT answered 503 SlowDown",
          Target(ONE_VERSION, "success", DELIVERED, "exactly one version", leftovers="unfinished multipart uploads"),
          fault_s3_slow_down),
    Fault(10, "S3: confirmation lost (2nd delivery with a fresh ledger)",
          Target(ONE_VERSION, "success", DELIVERED, "exactly one version", leftovers="unfinished multipart uploads"),
          fault_s3_confirmation_lost),
    Fault(11, "S3: multipart (11 MiB), first UploadPart answered 503",
          Target(ONE_VERSION, "success", DELIVERED, "exactly one version, no unfinished upload",
                 leftovers="unfinished multipart uploads"),
          fault_s3_multipart_part),
    Fault(12, "SFTP: stale .part- file of a killed worker in the folder",
          Target(ONE_FILE, "success", DELIVERED, "one final file, right bytes, no leftovers",
                 leftovers=".part- files"),
          fault_sftp_stale_part),
    Fault(13, "SFTP: sshd session killed mid-upload (24 MiB)",
          Target(ONE_FILE, "success", DELIVERED, "one final file, right bytes, no leftovers",
                 leftovers=".part- files"),
          fault_sftp_session_killed),
    Fault(14, "S3: PUT answered 503 twice (botocore's one retry used up)",
          Target(ONE_VERSION, "success", DELIVERED, "exactly one version", leftovers="unfinished multipart uploads"),
          fault_s3_slow_down_twice),
    Fault(15, "S3: multipart, part 1 answered 503 twice (upload aborted, restarted)",
          Target(ONE_VERSION, "success", DELIVERED, "exactly one version, no unfinished upload",
                 leftovers="unfinished multipart uploads"),
          fault_s3_multipart_part_twice),
]  # fmt: skip


def run_matrix(
    repetitions: int,
    *,
    ledger_url: str | None = None,
    only: set[int] | None = None,
    workdir: Path | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> list[Row]:
    """Run every fault (or those in `only`) `repetitions` times; one Row per fault."""
    faults = [f for f in FAULTS if only is None or f.number in only]
    rows = []
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fault-matrix-")))
        m = Matrix(workdir, ledger_url, stack)
        if any(f.run in (fault_two_processes, fault_killed_worker) for f in faults):
            m.forks.launch()  # imports while the first faults run
        for fault in faults:
            started = time.monotonic()
            try:
                reps = fault.run(m, repetitions)
                row = Row(fault.number, fault.title, fault.target, reps, time.monotonic() - started, note=fault.note)
            except Skip as skip:
                row = Row(fault.number, fault.title, fault.target, [], time.monotonic() - started, skipped=str(skip))
            rows.append(row)
            progress(f"{fault.number:>2}. {fault.title}: {time.monotonic() - started:.1f} s, "
                     f"{len(row.violations())} violation(s)")  # fmt: skip
    return rows


def _range(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}–{high}"


def _copies_cell(row: Row) -> str:
    cells = []
    for where in row.target.copies:
        values = [rep.copies.get(where, 0) for rep in row.repetitions]
        cells.append(f"{where}: {_range(values)} (Σ {sum(values)})")
    if row.target.leftovers:
        values = [rep.leftovers for rep in row.repetitions]
        cells.append(f"{row.target.leftovers}: {_range(values)}")
    return "; ".join(cells)


def _states_cell(row: Row) -> str:
    counts = Counter(state for rep in row.repetitions for state in rep.states or ["no row"])
    return ", ".join(f"{state} ×{count}" for state, count in counts.most_common())


def _verdict_cell(row: Row) -> str:
    violations = row.violations()
    if not violations:
        return row.target.verdict
    failing = len({index for index, _ in violations})
    return f"**VIOLATED** in {failing}/{len(row.repetitions)}: {violations[0][1]}"


def render(rows: list[Row], *, repetitions: int, ledger: str, seconds: float | None = None) -> str:
    """The matrix as Markdown: the table, then what each fault's repetitions showed on the way."""
    lines = [
        "| # | fault | N | server copies per repetition: min–max (Σ) | ledger final states | loud / success "
        "| verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row.skipped:
            lines.append(f"| {row.number} | {row.title} | 0 | – | – | – | skipped: {row.skipped} |")
            continue
        loud = sum(rep.outcome == "loud" for rep in row.repetitions)
        success = sum(rep.outcome == "success" for rep in row.repetitions)
        lines.append(
            f"| {row.number} | {row.title} | {len(row.repetitions)} | {_copies_cell(row)} | {_states_cell(row)} "
            f"| {loud} / {success} | {_verdict_cell(row)} |"
        )
    lines += ["", "Along the way (repetitions showing it / N), and the last message a failing caller saw:", ""]
    for row in rows:
        if row.skipped:
            continue
        n = len(row.repetitions)
        shown = Counter(key for rep in row.repetitions for key, seen in rep.evidence.items() if seen)
        keys = list(dict.fromkeys(key for rep in row.repetitions for key in rep.evidence))
        facts = [f"{key}: {shown[key]}/{n}" for key in keys]
        if row.note:
            facts.append(row.note)
        facts.append(f"{row.seconds:.1f} s")
        lines.append(f"- {row.number}. " + "; ".join(facts))
        example = next((rep.message for rep in row.repetitions if rep.message), "")
        if example:
            lines.append(f"  - “{example[:400]}”")
        for index, problem in row.violations()[:5]:
            lines.append(f"  - repetition {index}: {problem}")
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")),
        platform.processor() or "?",
    )
    lines += [
        "",
        f"{repetitions} repetition(s) per fault; ledger: {ledger}; "
        + (f"{seconds:.0f} s in all; " if seconds is not None else "")
        + f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, {cpu}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}.",
    ]
    return "\n".join(lines) + "\n"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=20, help="repetitions per fault (default 20)")
    parser.add_argument("--ledger-url", help="a shared ledger database (e.g. postgresql://...) instead of SQLite files")
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    parser.add_argument("--only", help="comma-separated fault numbers, e.g. 1,6,13")
    parser.add_argument("--verbose", action="store_true", help="show the delivery code's log")
    parser.add_argument("--fork-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repetitions < 1:
        parser.error("--repetitions must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fork_server:
        serve_forks()
        return 0
    if not args.verbose:
        # Retries, lease warnings and "outcome unknown" are expected here; the table says what happened.
        for name in ("report_platform", "paramiko", "werkzeug", "botocore"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    only = {int(part) for part in args.only.split(",")} if args.only else None
    started = time.monotonic()
    rows = run_matrix(
        args.repetitions,
        ledger_url=args.ledger_url,
        only=only,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    ledger = "the database at --ledger-url" if args.ledger_url else "a new SQLite file per repetition"
    text = render(rows, repetitions=args.repetitions, ledger=ledger, seconds=time.monotonic() - started)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 1 if any(row.violations() for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
