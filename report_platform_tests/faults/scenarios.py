"""Each process fault once: a real run worker SIGKILLed at a known point, then run monitoring,
the failure sensor and Dagster's run retries take over (harness.Platform.settle), and what is left
is counted at the server, in the delivery ledger and in the audit log.

The worker is held at the point of the kill by the server or the file system, never by a hook in
the platform's code: sshd's session is frozen (SIGSTOP) while the `.part-` file grows; the S3 proxy
holds an UploadPart request; the registry's write lock is held from this process, so a worker that
has sent stops at its confirmation; the worker itself is frozen (SIGSTOP) while its build's
temporary file grows. `Outcome.evidence` records that the kill landed where it was meant to.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions

from report_platform_devservers.standins import MotoStandin, SmtpStandin, SshdStandin
from report_platform_devservers.standins.s3 import STANDIN_ACCESS_KEY, STANDIN_SECRET_KEY
from report_platform_tests.faults.harness import (
    BIG_AT,
    S3,
    SFTP,
    SMALL_AT,
    Outcome,
    Platform,
    RegistryLock,
    Servers,
    Store,
    open_platform,
    poll,
    record,
    sha256_of,
)
from report_platform_tests.servers.http_faults import FaultyHttpProxy

SETUP_TIMEOUT = 120.0
BURST_SECONDS = 0.01  # how long a frozen sshd session may run between looks at the `.part-` file
TO = ("ops@example.com", "audit@example.com")  # the sample definition's To and BCC


class S3Gate(FaultyHttpProxy):
    """The fault proxy in front of moto, with a gate: a request that matches `hold` waits until the
    gate opens (then it is forwarded, or dropped if its client is gone), and `before_forward` runs
    once on the first request it matches, just before that request reaches moto."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self._hold: Callable[[str, str], bool] | None = None
        self._before: tuple[Callable[[str, str], bool], Callable[[], None]] | None = None
        self._opened = threading.Event()
        self._drop = False
        self.held = threading.Event()

    def hold(self, matches: Callable[[str, str], bool]) -> None:
        self._opened.clear()
        self.held.clear()
        self._drop = False
        self._hold = matches

    def open(self, *, drop: bool) -> None:
        self._drop = drop
        self._hold = None
        self._opened.set()

    def before_forward(self, matches: Callable[[str, str], bool], action: Callable[[], None]) -> None:
        self._before = (matches, action)

    def _handler(self) -> type[Any]:
        base: Any = super()._handler()
        gate = self

        class GatedHandler(base):  # type: ignore[misc, valid-type]
            def _handle(self) -> None:
                matches = gate._hold
                if matches is not None and matches(self.command, self.path):
                    gate.held.set()
                    gate._opened.wait(SETUP_TIMEOUT)
                    if gate._drop:
                        self.close_connection = True
                        return
                before = gate._before
                if before is not None and before[0](self.command, self.path):
                    gate._before = None
                    before[1]()
                super()._handle()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815

        return GatedHandler


@dataclass
class Rig:
    """The platform and the servers its connections reach."""

    platform: Platform
    relay: SmtpStandin
    sshd: SshdStandin
    moto: MotoStandin
    gate: S3Gate
    counter: int = 0

    def name(self, fault: str) -> str:
        self.counter += 1
        return f"{fault}-{self.counter}-{os.getpid()}"

    def sftp_folder(self, name: str) -> Path:
        folder = self.sshd.root_dir / name
        folder.mkdir(parents=True)
        return folder

    def bucket(self, name: str) -> str:
        bucket = name.lower().replace("_", "-")
        client = self.moto.client()
        client.create_bucket(Bucket=bucket)
        # Versioned: a second PUT of the key would show as a second version, not hide the first.
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        return bucket


@contextlib.contextmanager
def open_rig(workdir: Path, store: Store | None = None) -> Iterator[Rig]:
    """A relay, sshd and moto behind a gate on 127.0.0.1, and a platform whose connections reach them."""
    with (
        SmtpStandin(security="none") as relay,
        SshdStandin(root_dir=workdir / "sftp-root", workdir=workdir / "sshd") as sshd,
        MotoStandin() as moto,
        S3Gate(moto.endpoint_url) as gate,
    ):
        servers = Servers(
            smtp_port=relay.port,
            sftp_host=sshd.host,
            sftp_port=sshd.port,
            sftp_user=sshd.username,
            sftp_host_key=sshd.host_key,
            sftp_client_key=sshd.client_key_text,
            s3_endpoint=gate.url,
            s3_key_id=STANDIN_ACCESS_KEY,
            s3_secret=STANDIN_SECRET_KEY,
        )
        with open_platform(workdir, servers, store) as platform:
            yield Rig(platform, relay, sshd, moto, gate)


# --- counting at the servers -----------------------------------------------------------------


def sftp_state(folder: Path, filename: str, sha256: str | None) -> tuple[int, int, int]:
    """(final files with the right bytes, final files with other bytes, `.part-` files)."""
    final = folder / filename
    right = wrong = 0
    if final.exists():
        if sha256 is not None and sha256_of(final) == sha256:
            right = 1
        else:
            wrong = 1
    parts = len(list(folder.glob(f".{filename}.part-*")))
    return right, wrong, parts


def s3_state(moto: MotoStandin, bucket: str, key: str, sha256: str | None) -> tuple[int, int, int]:
    """(versions of the key with the right bytes, versions with other bytes, unfinished uploads)."""
    client = moto.client()
    versions = client.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    right = wrong = 0
    for version in versions:
        if version["Key"] != key:
            continue
        body = client.get_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])["Body"].read()
        if sha256 is not None and _sha(body) == sha256:
            right += 1
        else:
            wrong += 1
    uploads = [
        u for u in client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", []) if u["Key"] == key
    ]
    return right, wrong, len(uploads)


def s3_object_exists(moto: MotoStandin, bucket: str, key: str) -> bool:
    try:
        moto.client().head_object(Bucket=bucket, Key=key)
        return True
    except botocore.exceptions.ClientError:
        return False


def mail_copies(relay: SmtpStandin, filename: str, sha256: str) -> dict[str, int]:
    """Messages the relay accepted that carry the file, per recipient: an attachment named like it
    (or zipped, `.zip`) with its bytes. Reports of the same period hold the same rows, so the name
    tells one report's mail from another's."""
    counts = dict.fromkeys(TO, 0)
    for mail in relay.received:
        attached = [
            part
            for part in mail.message.iter_attachments()
            if part.get_filename() in (filename, filename + ".zip") and _attachment_sha(part) == sha256
        ]
        if attached:
            for address in mail.rcpt_tos:
                counts[address.lower()] = counts.get(address.lower(), 0) + 1
    return counts


def _attachment_sha(part: Any) -> str:
    """The SHA-256 of the attached file; of the file inside, when it went zipped (over the limit)."""
    data = part.get_payload(decode=True) or b""
    if (part.get_filename() or "").endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            (name,) = archive.namelist()
            data = archive.read(name)
    return _sha(data)


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


# --- the faults ------------------------------------------------------------------------------


# Where each report's period starts (its files are `<name>_<period start>.csv`).
PERIOD_STARTS = {"small": "2026-03-01", "previous_day": "2026-03-08", "previous_week": "2026-03-02"}


def _filename(name: str, period: str = "previous_day") -> str:
    return f"{name}_{PERIOD_STARTS[period]}.csv"


def _archived_sha(p: Platform, report_id: str) -> str | None:
    files = p.archived(report_id)
    return sha256_of(files[0]) if len(files) == 1 else None


@contextlib.contextmanager
def _timed(outcome: Outcome) -> Iterator[Outcome]:
    started = time.monotonic()
    try:
        yield outcome
    finally:
        outcome.seconds = time.monotonic() - started


def killed_while_building(rig: Rig) -> Outcome:
    """The worker is frozen while its export's temporary file grows, then killed; SFTP destination."""
    p = rig.platform
    name = rig.name("build")
    folder = rig.sftp_folder(name)
    report_id = p.create_report(name, {"type": "sftp", "connection": SFTP, "remote_dir": str(folder)})
    before = set(p.temporary_builds())
    with _timed(Outcome("killed while building")) as outcome:
        run_id = p.launch(report_id, BIG_AT)
        handle = p.wait_started(run_id)

        def growing() -> list[Path]:
            return [f for f in p.temporary_builds() if f not in before and f.stat().st_size > 0]

        (partial,) = poll(growing, SETUP_TIMEOUT, "the build's temporary file")
        os.kill(handle.pid, signal.SIGSTOP)
        outcome.evidence["the build's temporary file had bytes when the worker was stopped"] = (
            partial.exists() and partial.stat().st_size > 0
        )
        outcome.evidence["nothing archived or delivered yet"] = not p.archived(report_id) and not any(folder.iterdir())
        p.kill(run_id)
        outcome.notes["partial bytes"] = partial.stat().st_size if partial.exists() else 0
        runs = p.settle(run_id)
        sha = _archived_sha(p, report_id)
        right, wrong, parts = sftp_state(folder, _filename(name), sha)
        outcome.copies = {"sftp": right, "sftp wrong bytes": wrong}
        outcome.leftovers = {".part- files": parts, "archived files beyond one": max(0, len(p.archived(report_id)) - 1)}
        outcome.notes["leftover build files"] = [str(f) for f in p.temporary_builds() if f not in before]
        outcome.evidence["the killed build's partial file is under a temporary name"] = all(
            f.name.startswith(".") and f.name.endswith(".tmp") for f in p.temporary_builds() if f not in before
        )
    return record(p, report_id, runs, outcome)


def killed_mid_sftp_upload(rig: Rig, *, period: str = "previous_day") -> Outcome:
    """The worker is killed once half the file is in its `.part-` file at the server. sshd's
    session is frozen as soon as the `.part-` file appears, then let run in short bursts, so the
    upload cannot finish between a look at the file and the kill."""
    p, sshd = rig.platform, rig.sshd
    name = rig.name("sftp-upload")
    folder = rig.sftp_folder(name)
    report_id = p.create_report(name, {"type": "sftp", "connection": SFTP, "remote_dir": str(folder)}, period)
    filename = _filename(name, period)
    final = folder / filename
    with _timed(Outcome("killed mid SFTP upload")) as outcome:
        run_id = p.launch(report_id, BIG_AT)

        def part_size() -> int:
            parts = list(folder.glob(f".{filename}.part-*"))
            return parts[0].stat().st_size if parts else 0

        poll(lambda: list(folder.glob(f".{filename}.part-*")), SETUP_TIMEOUT, "the .part- file at the server")
        sshd.pause_sessions()
        try:
            total = _archive_size(p, report_id)  # archived before anything is sent
            sizes = [part_size()]
            deadline = time.monotonic() + SETUP_TIMEOUT
            while sizes[-1] < total // 2 and not final.exists() and time.monotonic() < deadline:
                sshd.resume_sessions()
                time.sleep(BURST_SECONDS)
                sshd.pause_sessions()
                sizes.append(part_size())
            at_kill = sizes[-1]
            grew = [size for size in sizes if size > 0]
            outcome.evidence["the .part- file grew at the server before the kill"] = len(set(grew)) > 1
            outcome.evidence["the kill landed mid-upload"] = total // 2 <= at_kill < total and not final.exists()
            outcome.notes["part bytes at kill"] = at_kill
            outcome.notes["file bytes"] = total
            p.kill(run_id)
        finally:
            sshd.resume_sessions()
        outcome.evidence["nothing under the final name after the kill"] = not final.exists()
        runs = p.settle(run_id)
        right, wrong, parts = sftp_state(folder, filename, _archived_sha(p, report_id))
        outcome.copies = {"sftp": right, "sftp wrong bytes": wrong}
        outcome.leftovers = {".part- files": parts}
    return record(p, report_id, runs, outcome)


def _archive_size(p: Platform, report_id: str) -> int:
    files = p.archived(report_id)
    return files[0].stat().st_size if files else 0


def killed_mid_s3_multipart(rig: Rig) -> Outcome:
    """The worker is killed while the proxy holds its second UploadPart; the first part is at moto."""
    p, moto, gate = rig.platform, rig.moto, rig.gate
    name = rig.name("s3-multipart")
    bucket = rig.bucket(name)
    filename = _filename(name)
    key = f"sms/{filename}"
    report_id = p.create_report(name, {"type": "s3", "connection": S3, "bucket": bucket, "prefix": "sms/"})
    gate.hold(lambda method, path: method == "PUT" and "partNumber=2" in path and bucket in path)
    with _timed(Outcome("killed mid S3 multipart upload")) as outcome:
        try:
            run_id = p.launch(report_id, BIG_AT)

            def first_part_stored() -> bool:
                client = moto.client()
                uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
                if not uploads or not gate.held.is_set():
                    return False
                parts = client.list_parts(Bucket=bucket, Key=key, UploadId=uploads[0]["UploadId"]).get("Parts", [])
                return bool(parts)

            poll(first_part_stored, SETUP_TIMEOUT, "the multipart upload at moto with its first part", 0.02)
            p.kill(run_id)
        finally:
            gate.open(drop=True)  # the held part's client is dead: moto never gets it
        _, _, unfinished = s3_state(moto, bucket, key, None)
        outcome.evidence["an unfinished multipart upload at moto when the worker died"] = unfinished == 1
        outcome.evidence["no object under the final key after the kill"] = not s3_object_exists(moto, bucket, key)
        runs = p.settle(run_id)
        right, wrong, unfinished = s3_state(moto, bucket, key, _archived_sha(p, report_id))
        outcome.copies = {"s3 versions": right, "s3 versions with other bytes": wrong}
        outcome.leftovers = {"unfinished multipart uploads": unfinished}
    return record(p, report_id, runs, outcome)


def killed_after_smtp_send(rig: Rig) -> Outcome:
    """The relay accepts the message while the registry is locked; the worker dies before it can
    record anything. The outcome is unknown to the platform, so it must never resend."""
    p, relay = rig.platform, rig.relay
    name = rig.name("smtp-sent")
    report_id = p.create_report(
        name, {"type": "email", "to": [TO[0]], "bcc": [TO[1]], "subject_template": f"{name} {{{{Date}}}}"}
    )
    with RegistryLock(p.home) as lock, _timed(Outcome("killed between SMTP send and confirmation")) as outcome:

        def lock_then_accept() -> None:
            relay.before_accepting(None)  # once: the failure notices later must pass
            lock.acquire()

        relay.before_accepting(lock_then_accept)
        received = len(relay.received)
        run_id = p.launch(report_id, SMALL_AT)
        poll(lambda: len(relay.received) > received, SETUP_TIMEOUT, "the relay accepting the message")
        outcome.evidence["the relay has the message and the ledger has not confirmed it"] = lock.ledger_states(
            report_id
        ) == ["claimed"]
        p.kill(run_id)
        lock.release()
        runs = p.settle(run_id)
    sha = _archived_sha(p, report_id) or ""
    copies = mail_copies(relay, _filename(name, "small"), sha)
    outcome.copies = {f"mail to {address}": copies.get(address, 0) for address in TO}
    notices = [
        m
        for m in relay.received
        if (m.message["Subject"] or "").startswith("Scheduled report") and name in (m.message["Subject"] or "")
    ]
    outcome.notes["failure notices"] = len(notices)
    return record(p, report_id, runs, outcome)


def killed_after_sftp_send(rig: Rig) -> Outcome:
    """The file is renamed onto its final name while the registry is locked; the worker dies
    before it confirms. The retry takes the claim over and confirms, with one file at the server."""
    p, sshd = rig.platform, rig.sshd
    name = rig.name("sftp-sent")
    folder = rig.sftp_folder(name)
    filename = _filename(name)
    report_id = p.create_report(name, {"type": "sftp", "connection": SFTP, "remote_dir": str(folder)})
    with RegistryLock(p.home) as lock, _timed(Outcome("killed between SFTP send and confirmation")) as outcome:
        run_id = p.launch(report_id, BIG_AT)
        poll(lambda: list(folder.glob(f".{filename}.part-*")), SETUP_TIMEOUT, "the .part- file at the server")
        sshd.pause_sessions()
        try:
            lock.acquire()
        finally:
            sshd.resume_sessions()
        total = poll(lambda: _archive_size(p, report_id), SETUP_TIMEOUT, "the archived file")
        final = folder / filename
        poll(lambda: final.exists() and final.stat().st_size == total, SETUP_TIMEOUT, "the file under its final name")
        outcome.evidence["the file is complete at the server and the ledger has not confirmed it"] = lock.ledger_states(
            report_id
        ) == ["claimed"]
        p.kill(run_id)
        lock.release()
        logins = sshd.log_text().count("Accepted publickey")
        runs = p.settle(run_id)
        outcome.notes["logins by the retries"] = sshd.log_text().count("Accepted publickey") - logins
    right, wrong, parts = sftp_state(folder, filename, _archived_sha(p, report_id))
    outcome.copies = {"sftp": right, "sftp wrong bytes": wrong}
    outcome.leftovers = {".part- files": parts}
    return record(p, report_id, runs, outcome)


def killed_after_s3_send(rig: Rig) -> Outcome:
    """moto stores the object while the registry is locked; the worker dies before it confirms.
    The retry's conditional PUT finds the same bytes in place: one version."""
    p, moto, gate = rig.platform, rig.moto, rig.gate
    name = rig.name("s3-sent")
    bucket = rig.bucket(name)
    filename = _filename(name, "small")
    key = f"sms/{filename}"
    report_id = p.create_report(name, {"type": "s3", "connection": S3, "bucket": bucket, "prefix": "sms/"})
    with RegistryLock(p.home) as lock, _timed(Outcome("killed between S3 send and confirmation")) as outcome:
        gate.before_forward(lambda method, path: method == "PUT" and bucket in path, lock.acquire)
        run_id = p.launch(report_id, SMALL_AT)
        poll(lambda: s3_object_exists(moto, bucket, key), SETUP_TIMEOUT, "the object at moto", 0.02)
        outcome.evidence["the object is at moto and the ledger has not confirmed it"] = lock.taken.is_set() and (
            lock.ledger_states(report_id) == ["claimed"]
        )
        p.kill(run_id)
        lock.release()
        runs = p.settle(run_id)
    right, wrong, unfinished = s3_state(moto, bucket, key, _archived_sha(p, report_id))
    outcome.copies = {"s3 versions": right, "s3 versions with other bytes": wrong}
    outcome.leftovers = {"unfinished multipart uploads": unfinished}
    return record(p, report_id, runs, outcome)
