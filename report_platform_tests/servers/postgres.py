"""A real, throw-away PostgreSQL server for tests.

`running_postgres()` runs `initdb` into a temporary folder, starts the server on a free port on
127.0.0.1 (its socket in the same folder), and stops and removes everything afterwards. As root
(CI containers), the server runs as the `postgres` system user, because PostgreSQL refuses root.
`postgres_server` is a session-scoped pytest fixture around it; `PostgresServer.create_database`
gives each test its own database cheaply (optionally as a copy of a template database).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL_HINT = "apt-get install postgresql"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are missing or the server would not start."""


def find_bindir() -> Path:
    """The folder holding `initdb`, `pg_ctl` and `postgres` (newest installed version)."""
    override = os.environ.get("REPORT_PLATFORM_PG_BINDIR")
    candidates = [override] if override else []
    # Debian/Ubuntu keep server binaries out of PATH, under a versioned folder.
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    if found := shutil.which("pg_ctl"):
        candidates.append(str(Path(found).parent))
    for folder in candidates:
        if folder and all((Path(folder) / tool).exists() for tool in ("initdb", "pg_ctl")):
            return Path(folder)
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or "
        f"PATH: install them with `{INSTALL_HINT}` (or set REPORT_PLATFORM_PG_BINDIR)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """A running server; `url` is a SQLAlchemy URL to its default test database."""

    host: str
    port: int
    user: str
    database: str
    # How to restart it (`restart()`); set by `running_postgres`.
    control: list[str] | None = None
    run_as: dict | None = None

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """Create a fresh database (a copy of `template` if given) and return its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)
        return self.url_for(name)

    def restart(self) -> None:
        """Stop the server (`-m fast`: every connection is closed) and start it again, same port."""
        assert self.control is not None, "not started by running_postgres()"
        for action in ("stop", "start"):
            result = subprocess.run(
                [*self.control, "-w", "-t", "60", action],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=Path(self.control[2]).parent,
                **(self.run_as or {}),
            )
            if result.returncode != 0:
                raise PostgresUnavailable(f"pg_ctl {action} failed: {result.stderr.strip() or result.stdout}")

    def cpu_seconds(self) -> float:
        """CPU seconds of this server so far: the postmaster with the backends it has reaped, and
        the live ones. Only this server's processes: others of the same user come and go."""
        from report_platform.processes import PARENT, cpu_seconds, pids, stat_fields

        assert self.control is not None, "not started by running_postgres()"
        postmaster = int((Path(self.control[2]) / "postmaster.pid").read_text().split()[0])
        total = 0.0
        for pid in pids():
            # None: ended between listing and reading; the postmaster has its CPU once it is reaped.
            fields = stat_fields(pid)
            if fields and postmaster in (pid, int(fields[PARENT])):
                total += cpu_seconds(fields)
        return total

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def dump(self, database: str, path: Path) -> None:
        """`pg_dump` of one database in the custom format (what `restore` reads), with the
        server's own client (same major version)."""
        self._client(
            "pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={path}", f"--dbname={database}"
        )

    def restore(self, database: str, path: Path) -> None:
        """`pg_restore` of a `dump` into an existing, empty database, in one transaction."""
        self._client(
            "pg_restore", "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error",
            f"--dbname={database}", str(path),
        )  # fmt: skip

    def _client(self, tool: str, *args: str) -> None:
        done = subprocess.run(  # noqa: S603 - PostgreSQL's own client from its bindir
            [str(find_bindir() / tool), f"--host={self.host}", f"--port={self.port}", f"--username={self.user}", *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed (exit status {done.returncode}): {done.stderr[-2000:]}")


def _runner() -> dict:
    """subprocess keyword arguments that drop root to the `postgres` user when needed."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            f"running as root needs the `postgres` system user: `{INSTALL_HINT}` creates it"
        ) from None
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


@contextlib.contextmanager
def running_postgres(
    database: str = "registry_test", settings: dict[str, str] | None = None
) -> Iterator[PostgresServer]:
    """Start a private PostgreSQL server, yield it, then stop it and delete its files.

    `settings` are more server settings (`-c name=value`), e.g. a benchmark's
    `shared_preload_libraries`."""
    bindir = find_bindir()
    as_user = _runner()
    root = Path(tempfile.mkdtemp(prefix="rp-postgres-"))
    data, log = root / "data", root / "server.log"
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, capture_output=True, text=True, cwd=root, timeout=120, **as_user)

    started = False
    try:
        # Trust auth is fine: the server listens on loopback only and lives for one test session.
        result = run(
            str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        if result.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {result.stderr.strip() or result.stdout}")
        for _attempt in range(3):  # a free port can be taken between probing and binding
            port = _free_port()
            options = (
                f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
                # Durability is pointless for a throw-away server; speed is not.
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            ) + "".join(f" -c {name}={value}" for name, value in (settings or {}).items())
            result = run(
                str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                "-w", "-t", "60", "start",
            )  # fmt: skip
            if result.returncode == 0:
                started = True
                break
        if not started:
            text = log.read_text(errors="replace")[-2000:] if log.exists() else result.stderr
            raise PostgresUnavailable(f"PostgreSQL did not start: {text.strip()}")
        control = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-m", "fast"]
        server = PostgresServer(
            host="127.0.0.1", port=port, user="postgres", database=database, control=control, run_as=as_user
        )
        server.create_database(database)
        yield server
    finally:
        if started:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole test session (fails, never skips, if missing)."""
    try:
        with running_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
