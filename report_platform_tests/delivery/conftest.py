from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from report_platform.delivery import Artifact, S3Connection, SftpConnection
from report_platform_devservers.standins import SshdStandin
from report_platform_devservers.standins.s3 import STANDIN_ACCESS_KEY, STANDIN_SECRET_KEY
from report_platform_tests.delivery.pgp_keys import GpgKey, make_key, remove
from report_platform_tests.servers.fixtures import (  # noqa: F401
    moto_server,
    s3_bucket,
    s3_fault_proxy,
    sftp_password_user,
    smtp_factory,
    sshd_factory,
    sshd_shared,
)

logging.getLogger("werkzeug").setLevel(logging.ERROR)

SMTP_PASSWORD = "smtp-pass-Zq9!never-print"
STANDIN_SFTP_KEY_ENV = "STANDIN_SFTP_KEY"
STANDIN_AWS_KEY_ID_ENV, STANDIN_AWS_SECRET_ENV = "STANDIN_AWS_KEY_ID", "STANDIN_AWS_SECRET"


def standin_sftp(sshd: SshdStandin, monkeypatch: pytest.MonkeyPatch, **extra: object) -> SftpConnection:
    """A connection of acme to the OpenSSH stand-in, its key in the environment as deliveries read it."""
    monkeypatch.setenv(STANDIN_SFTP_KEY_ENV, sshd.client_key_text)
    fields = {
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.username,
        "private_key_env": STANDIN_SFTP_KEY_ENV,
        "host_key": sshd.host_key,
        "organizations": ("acme",),
    }
    return SftpConnection(**(fields | extra))


def standin_s3(endpoint_url: str, monkeypatch: pytest.MonkeyPatch, **extra: object) -> S3Connection:
    """A connection of acme to moto's S3 stand-in, its credentials in the environment."""
    monkeypatch.setenv(STANDIN_AWS_KEY_ID_ENV, STANDIN_ACCESS_KEY)
    monkeypatch.setenv(STANDIN_AWS_SECRET_ENV, STANDIN_SECRET_KEY)
    fields = {
        "region": "us-east-1",
        "endpoint_url": endpoint_url,
        "access_key_id_env": STANDIN_AWS_KEY_ID_ENV,
        "secret_access_key_env": STANDIN_AWS_SECRET_ENV,
        "organizations": ("acme",),
    }
    return S3Connection(**(fields | extra))


@pytest.fixture
def make_artifact(tmp_path: Path) -> Callable[..., Artifact]:
    """Write a file (random bytes unless `data` is given) and describe it as an Artifact."""

    def make(name: str = "report.csv", size: int = 10_000, data: bytes | None = None) -> Artifact:
        folder = tmp_path / "archive"
        folder.mkdir(exist_ok=True)
        path = folder / name
        path.write_bytes(data if data is not None else os.urandom(size))
        return Artifact.from_path(path)

    return make


@pytest.fixture(scope="session")
def pgp_keys() -> Iterator[dict[str, GpgKey]]:
    """Recipients `alice` and `bob`, a key that `expired` in 2020, and a `signing_only` one."""
    keys = {
        "alice": make_key("Alice <alice@partner.example>"),
        "bob": make_key("Bob <bob@partner.example>"),
        "expired": make_key("Old <old@partner.example>", expire="1d", faked_time="20200101T000000"),
        "signing_only": make_key("Signer <signer@partner.example>", usage="sign"),
    }
    yield keys
    for key in keys.values():
        remove(key)
