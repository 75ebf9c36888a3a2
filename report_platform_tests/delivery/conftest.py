from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from report_platform.delivery import Artifact
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
