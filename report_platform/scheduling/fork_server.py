"""The fork server: one long-lived process that has imported Dagster and loaded the code location
once, and forks a detached run worker for each run the launcher hands it.

    python -m report_platform.scheduling.fork_server SOCKET_PATH   (started by ForkRunLauncher)

The launcher writes the code location's origin (a serialised `RepositoryPythonOrigin`) as the
first line of this process's stdin and keeps stdin open: end of file means the launcher is gone,
and the server exits. The server loads the location as a run worker does (a RECONSTRUCTION load,
which reads no registry), binds SOCKET_PATH, answers "ready" on stdout and then serves requests,
one at a time.

A request and its answer are each one frame: a 4-byte big-endian length, then that many bytes
of JSON. `{"op": "launch", "args": <serialised ExecuteRunArgs>}` forks a worker and answers
`{"pid": ..., "start": ...}`; `{"op": "status"}` answers what the server holds (threads, open file
descriptors, database and socket objects), so the fork-safety rules can be checked from outside.

Fork safety: the server forks only while it is single-threaded and holds no descriptor besides
its standard streams, its listening socket and the current connection (checked before every
fork; a request is refused otherwise, and the launcher falls back to a fresh process). The worker
is a grandchild (double fork): the intermediate child starts a new session and exits at once, so
the server reaps only its own children and the worker is reparented to init. The worker takes a
process group of its own (the launcher's `terminate` signals the group), closes every inherited
descriptor, reseeds the random generators, and then runs the body of `dagster api execute_run`
itself, which opens its own Dagster instance and connections.

What a worker learns of the Dagster storage's schema (`pg_storage.learned`: its tables exist, the
columns and indexes Dagster checks for before reads) it writes to `schema-facts.json` in the
server's private folder as it exits; the server reads that file before each fork, so the workers
after the first reflect no catalog. The file names databases by a digest, never by their URL.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import threading
import traceback
from typing import Any

from report_platform.processes import START_TICKS, default_signal_state, stat_fields

MAX_REQUEST_BYTES = 1 << 20
MAX_ANSWER_BYTES = 64 << 10
IO_TIMEOUT_SECONDS = 10.0
HEADER = struct.Struct(">I")


def read_frame(conn: socket.socket, limit: int) -> dict[str, Any]:
    """One length-prefixed JSON frame; refuses frames over `limit` bytes before reading them."""
    (size,) = HEADER.unpack(_read_exactly(conn, HEADER.size))
    if size > limit:
        raise ValueError(f"frame of {size} bytes is over the limit of {limit}")
    value = json.loads(_read_exactly(conn, size))
    if not isinstance(value, dict):
        raise ValueError("frame is not a JSON object")
    return value


def write_frame(conn: socket.socket, value: dict[str, Any]) -> None:
    data = json.dumps(value).encode()
    conn.sendall(HEADER.pack(len(data)) + data)


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = conn.recv(min(left, 65536))
        if not chunk:
            raise ConnectionError("connection closed mid-frame")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# Modules a run imports only when it needs them, kept out of a fresh worker's start-up, are
# imported here once: S3 delivery (boto3, dagster-aws) cost every S3 run 0.3-0.45 s of CPU
# (benchmarks/bench_burst.py). Importing opens nothing and starts no thread.
# The PostgreSQL storage of the production instance and its driver (psycopg2) are in that list too:
# every run on it imported them.
PRELOADED = (
    "report_platform.delivery.s3",
    "report_platform.scheduling.pg_storage",
    "sqlalchemy.dialects.postgresql.psycopg2",
    "psycopg2.extras",
)
# In the server's private folder: what run workers learned of the Dagster storage's schema
# (pg_storage.learned), taken over before each fork so the next worker need not ask again.
FACTS_FILE = "schema-facts.json"
MAX_FACTS_BYTES = 256 * 1024


def registry_driver() -> str:
    """The DB-API module the registry's database is opened with (`psycopg` for PostgreSQL).

    Every run opens the registry, and the driver is imported only then: psycopg cost each run
    about 0.13 s of CPU in a burst on PostgreSQL (py-spy over the run workers, docs/throughput.md)."""
    from sqlalchemy.engine import make_url

    from report_platform.settings import Home

    return make_url(Home.from_env().registry_url).get_dialect().import_dbapi().__name__


_preloaded: list[str] = []


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell it from a reused pid."""
    fields = stat_fields(pid)
    return None if fields is None else int(fields[START_TICKS])


def _open_descriptors() -> dict[int, str]:
    found: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else []:
        try:
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the descriptor listdir itself used, already closed
    return found


class Server:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.conn: socket.socket | None = None
        self.facts_path = os.path.join(os.path.dirname(socket_path), FACTS_FILE)
        self._facts_version: tuple[int, int] | None = None

    def take_facts(self) -> None:
        """Learn what run workers wrote to the facts file since we last looked (best effort: a
        missing, partial or malformed file only means a worker asks the database again)."""
        try:
            info = os.stat(self.facts_path)
            if (info.st_mtime_ns, info.st_size) == self._facts_version or info.st_size > MAX_FACTS_BYTES:
                return
            with open(self.facts_path, "rb") as handle:
                known = json.loads(handle.read(MAX_FACTS_BYTES))
            self._facts_version = (info.st_mtime_ns, info.st_size)
        except (OSError, ValueError):
            return
        if isinstance(known, dict):
            from report_platform.scheduling import pg_storage

            pg_storage.learn(known)

    def fork_safety_problems(self) -> list[str]:
        """Why forking now would hand a worker something it must not share (empty: safe)."""
        problems = [f"thread {t.name!r} is running" for t in threading.enumerate() if t is not threading.main_thread()]
        allowed = {0, 1, 2, self.listener.fileno()} | ({self.conn.fileno()} if self.conn else set())
        problems += [
            f"descriptor {fd} ({target}) is open" for fd, target in _open_descriptors().items() if fd not in allowed
        ]
        return problems

    def status(self) -> dict[str, Any]:
        ours = {id(self.listener), id(self.conn)}
        held: dict[str, int] = {}
        kinds = [("socket", socket.socket)]
        import sqlite3

        kinds.append(("sqlite3 connection", sqlite3.Connection))
        if "duckdb" in sys.modules:
            kinds.append(("duckdb connection", sys.modules["duckdb"].DuckDBPyConnection))
        for obj in gc.get_objects():
            for name, kind in kinds:
                if isinstance(obj, kind) and id(obj) not in ours:
                    # A closed socket object holds nothing; an open one is a descriptor we would share.
                    if name == "socket" and obj.fileno() == -1:
                        continue
                    held[name] = held.get(name, 0) + 1
        return {
            "pid": os.getpid(),
            "threads": [t.name for t in threading.enumerate()],
            "descriptors": {str(fd): target for fd, target in _open_descriptors().items()},
            "objects": held,
            "problems": self.fork_safety_problems(),
            "preloaded": [module for module in _preloaded if module in sys.modules],
        }

    def serve(self) -> None:
        self.listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o600)
        self.listener.listen(16)
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        # From here on our stdout is the launcher's stderr, as a run worker's output would be.
        os.dup2(2, 1)
        while True:
            readable, _, _ = select.select([self.listener, sys.stdin], [], [])
            if sys.stdin in readable and not os.read(0, 4096):
                return  # the launcher closed our stdin: it exited
            if self.listener in readable:
                conn, _ = self.listener.accept()
                self.conn = conn
                try:
                    self._answer(conn)
                except Exception as exc:  # noqa: BLE001 - one bad request must not stop the server
                    print(f"fork server: request failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                finally:
                    conn.close()
                    self.conn = None

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(IO_TIMEOUT_SECONDS)
        if hasattr(socket, "SO_PEERCRED"):
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
            if uid != os.getuid():
                write_frame(conn, {"error": "refused: the client runs as another user"})
                return
        request = read_frame(conn, MAX_REQUEST_BYTES)
        op = request.get("op")
        if op == "status":
            write_frame(conn, self.status())
        elif op == "launch" and isinstance(request.get("args"), str):
            self.take_facts()
            problems = self.fork_safety_problems()
            if problems:
                write_frame(conn, {"error": "not safe to fork: " + "; ".join(problems)})
                return
            pid = self._fork_worker(request["args"])
            write_frame(conn, {"pid": pid, "start": process_start_ticks(pid)})
        else:
            write_frame(conn, {"error": f"unknown request {op!r}"})

    def _fork_worker(self, args_json: str) -> int:
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:
            try:
                os.close(read_end)
                os.setsid()  # out of the daemon's session: its Ctrl-C or hangup is not the run's
                worker = os.fork()
                if worker == 0:
                    os.close(write_end)
                    self._become_worker(args_json)
                os.write(write_end, str(worker).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        os.waitpid(child, 0)  # the intermediate child is the only one this server reaps
        with os.fdopen(read_end, "rb") as pipe:
            answer = pipe.read(64)
        if not answer:
            raise RuntimeError("the run worker could not be forked")
        return int(answer)

    def _become_worker(self, args_json: str) -> None:
        code = 1
        try:
            os.setpgid(0, 0)  # its own process group: terminate() stops it and its children together
            self.listener.close()
            if self.conn is not None:
                self.conn.close()
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 4096)
            random.seed()
            if "numpy" in sys.modules:
                sys.modules["numpy"].random.seed()
            # As `dagster api execute_run` starts: SIGINT interrupts the run, SIGTERM does the same
            # (neither is blocked: the worker has the server's mask, which `main` cleared).
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            from dagster._cli.api import execute_run_command

            known = _schema_known()
            execute_run_command.callback(input_json=args_json, compressed_input_json=None)
            code = 0
            _hand_back_facts(self.facts_path, known)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # noqa: BLE001 - a worker reports and exits, it never returns into the server
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def _schema_known() -> dict[str, list]:
    from report_platform.scheduling import pg_storage

    return pg_storage.learned()


def _hand_back_facts(path: str, known_at_fork: dict[str, list]) -> None:
    """Write what this worker knows of the storage's schema for the server, if it learned anything
    (written whole and renamed into place, so the server never reads half a file)."""
    known = _schema_known()
    if known == known_at_fork:
        return
    partial = f"{path}.{os.getpid()}"
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(known, handle)
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(partial)


def preload(origin_json: str) -> None:
    """Imports Dagster and loads the code location as a run worker does, so forks start warm."""
    from dagster._cli.api import execute_run_command  # noqa: F401 - the worker's entry point, imported once
    from dagster._core.origin import RepositoryPythonOrigin
    from dagster._utils.hosted_user_process import recon_repository_from_origin
    from dagster_shared.serdes import deserialize_value

    origin = deserialize_value(origin_json, RepositoryPythonOrigin)
    recon_repository_from_origin(origin).get_definition()
    for module in PRELOADED:
        importlib.import_module(module)
    from report_platform import migrations

    migrations.head()  # every run checks the registry's revision: its scripts are read once, here
    _preloaded[:] = [*PRELOADED, registry_driver()]
    gc.collect()  # objects the load left behind are freed here, not once in every worker
    gc.freeze()  # and what stays is not touched by the workers' collections (fewer copied pages)


def main(argv: list[str]) -> None:
    (socket_path,) = argv
    # Blocked and ignored signals survive exec and fork: whatever the thread that started us
    # blocked, our workers must obey `terminate`'s SIGTERM.
    default_signal_state()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher stops us by closing our stdin
    origin_json = sys.stdin.readline()
    preload(origin_json)
    Server(socket_path).serve()
    # Nothing to clean up, and finalising the preloaded extension modules only prints noise.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
