"""pytest fixtures around the real servers. Import the ones you need into a conftest.py."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from report_platform_devservers.standins import MotoStandin, SmtpStandin, SshdStandin
from report_platform_devservers.standins.sftp import password_user
from report_platform_tests.servers.http_faults import FaultyHttpProxy


@pytest.fixture
def smtp_factory() -> Iterator[Callable[..., SmtpStandin]]:
    """Start SMTP stand-ins with any options; all are stopped after the test."""
    started: list[SmtpStandin] = []

    def start(**kwargs: Any) -> SmtpStandin:
        server = SmtpStandin(**kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def sshd_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdStandin]:
    """One sshd for tests that do not disturb it (no kills, no re-keying)."""
    work = tmp_path_factory.mktemp("sshd-shared")
    # pytest's temp folders are private to root; a password user must be able to reach its
    # upload folder, so the served root lives in a world-traversable folder of its own.
    root = Path(tempfile.mkdtemp(prefix="sftp-root-"))
    root.chmod(0o755)
    try:
        with SshdStandin(root_dir=root, workdir=work / "etc", password_auth=True) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def sshd_factory(tmp_path: Path) -> Iterator[Callable[..., SshdStandin]]:
    """Start private sshd instances (for tests that kill sessions or replace the host key)."""
    started: list[SshdStandin] = []

    def start(**kwargs: Any) -> SshdStandin:
        index = len(started)
        kwargs.setdefault("root_dir", tmp_path / f"sftp-root-{index}")
        kwargs.setdefault("workdir", tmp_path / f"sshd-{index}")
        server = SshdStandin(**kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def sftp_password_user() -> Iterator[tuple[str, str]]:
    """A local login with a password, for password authentication (the CI runs as root); one of
    its own per test process, removed at the end."""
    if os.geteuid() != 0:
        pytest.skip("password authentication needs a local user; creating one needs root")
    password = secrets.token_urlsafe(16)
    with password_user(password, prefix="rp-sftp-test-") as name:
        yield name, password


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoStandin]:
    with MotoStandin() as server:
        yield server


@pytest.fixture
def s3_bucket(moto_server: MotoStandin) -> str:
    """A fresh bucket (moto's backend is shared by the whole process)."""
    name = f"test-{secrets.token_hex(6)}"
    moto_server.create_bucket(name)
    return name


@pytest.fixture
def s3_fault_proxy(moto_server: MotoStandin) -> Iterator[FaultyHttpProxy]:
    with FaultyHttpProxy(moto_server.endpoint_url) as proxy:
        yield proxy
