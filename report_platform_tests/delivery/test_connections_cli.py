"""`report-platform connections test NAME`: each real server passes; each fault fails with its reason
and no secret in the output."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from report_platform.cli.main import cli
from report_platform_devservers.standins.net import free_port
from report_platform_devservers.standins.s3 import STANDIN_ACCESS_KEY, STANDIN_SECRET_KEY
from report_platform_tests.delivery.conftest import SMTP_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
OTHER_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFnAphZQG3Eea3rxL9sdpoLCgxC+anAWuVhdYXrKQYhF"
WRONG_PASSWORD = "Wr0ng-but-secret-Pa55word"


@dataclass(frozen=True)
class Answer:
    returncode: int
    stdout: str
    stderr: str


def _rp(home: Any, connections: dict[str, Any], *args: str, env: dict[str, str]) -> Answer:
    """The command in this process (click's runner: the same code and exit status, no interpreter start)."""
    home.connections.write_text(yaml.safe_dump(connections))
    result = CliRunner(env=env).invoke(cli, ["connections", "test", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Answer(result.exit_code, result.stdout, result.stderr)


def _rp_process(home: Any, connections: dict[str, Any], *args: str, env: dict[str, str]) -> Any:
    """`report-platform connections test ...` as a real process."""
    home.connections.write_text(yaml.safe_dump(connections))
    return subprocess.run(
        [sys.executable, "-m", "report_platform.cli.main", "connections", "test", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _smtp(server: Any, **extra: Any) -> dict[str, Any]:
    return {
        "host": server.host,
        "port": server.port,
        "security": server.security,
        "username": "reports",
        "password_env": "TEST_SMTP_PASSWORD",
        "from_address": "reports@acme.example",
        "ca_file": str(server.cert_file),
        "timeout": 10,
        "organizations": ["*"],
    } | extra


def test_smtp_passes_every_step_and_sends_a_test_message(home, smtp_factory):
    server = smtp_factory(security="starttls", users={"reports": SMTP_PASSWORD})
    result = _rp(
        home,
        {"smtp": {"default": _smtp(server)}},
        "default",
        "--send-to",
        "ops@example.com",
        env={"TEST_SMTP_PASSWORD": SMTP_PASSWORD},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "✓ secrets",
        "✓ connect",
        "✓ EHLO",
        "✓ STARTTLS",
        "✓ AUTH",
        "✓ send",
    ]
    assert [m.rcpt_tos for m in server.received] == [["ops@example.com"]]
    assert SMTP_PASSWORD not in result.stdout + result.stderr


def test_smtp_wrong_password_is_named_without_the_password(home, smtp_factory):
    server = smtp_factory(security="starttls", users={"reports": SMTP_PASSWORD})
    result = _rp_process(
        home, {"smtp": {"default": _smtp(server)}}, "default", "--json", env={"TEST_SMTP_PASSWORD": WRONG_PASSWORD}
    )
    assert result.returncode == 1
    steps = json.loads(result.stdout)["steps"]
    assert steps[-1]["step"] == "AUTH" and not steps[-1]["ok"]
    assert steps[-1]["detail"].startswith("wrong user name or password for 'reports' (535)")
    assert "failed at AUTH" in result.stderr
    assert WRONG_PASSWORD not in result.stdout + result.stderr


@pytest.fixture
def echoing_smtp() -> Iterator[int]:
    """A mail server that quotes the decoded AUTH credentials back in its refusal."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), conn, conn.makefile("rwb") as stream:
                stream.write(b"220 echo ESMTP\r\n")
                stream.flush()
                for raw in stream:
                    line = raw.decode().strip()
                    if line.upper().startswith("EHLO"):
                        stream.write(b"250-echo\r\n250 AUTH PLAIN\r\n")
                    elif line.upper().startswith("AUTH PLAIN"):
                        said = base64.b64decode(line.split()[-1]).replace(b"\0", b" ")
                        stream.write(b"535 5.7.8 refused credentials:" + said + b"\r\n")
                    elif line.upper().startswith("QUIT"):
                        stream.write(b"221 bye\r\n")
                        stream.flush()
                        break
                    else:
                        stream.write(b"250 ok\r\n")
                    stream.flush()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    listener.close()


def test_a_server_that_echoes_the_credentials_does_not_get_them_printed(home, echoing_smtp):
    conn = {
        "host": "127.0.0.1",
        "port": echoing_smtp,
        "security": "none",
        "username": "reports",
        "password_env": "TEST_SMTP_PASSWORD",
        "from_address": "reports@acme.example",
        "timeout": 10,
        "organizations": ["*"],
    }
    result = _rp(home, {"smtp": {"echo": conn}}, "echo", env={"TEST_SMTP_PASSWORD": WRONG_PASSWORD})
    assert result.returncode == 1
    assert "✗ AUTH: wrong user name or password for 'reports' (535)" in result.stdout
    assert WRONG_PASSWORD not in result.stdout + result.stderr


def test_a_refused_port_is_named(home):
    port = free_port()
    conn = {"host": "127.0.0.1", "port": port, "security": "none", "from_address": "r@acme.example"}
    result = _rp(home, {"smtp": {"default": conn | {"organizations": ["*"]}}}, "default", env={})
    assert result.returncode == 1
    assert f"✗ connect: connection refused by 127.0.0.1:{port}" in result.stdout


def _sftp(server: Any, **extra: Any) -> dict[str, Any]:
    return {
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "private_key_env": "TEST_SFTP_KEY",
        "host_key": server.host_key,
        "timeout": 10,
        "organizations": ["acme"],
    } | extra


def test_sftp_writes_renames_and_removes_a_probe_file(home, sshd_shared):
    folder = sshd_shared.root_dir / "probe-here"
    folder.mkdir()
    result = _rp(
        home,
        {"sftp": {"partner-sftp": _sftp(sshd_shared)}},
        "partner-sftp",
        "--remote-dir",
        str(folder),
        env={"TEST_SFTP_KEY": sshd_shared.client_key_text},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [
        "✓ secrets",
        "✓ connect",
        "✓ host key",
        "✓ login",
        "✓ write",
        "✓ rename",
        "✓ remove",
    ]
    assert list(folder.iterdir()) == []
    assert "PRIVATE KEY" not in result.stdout + result.stderr


def test_sftp_changed_host_key_fails_before_login(home, sshd_shared):
    result = _rp(
        home,
        {"sftp": {"partner-sftp": _sftp(sshd_shared, host_key=OTHER_HOST_KEY)}},
        "partner-sftp",
        env={"TEST_SFTP_KEY": sshd_shared.client_key_text},
    )
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1].startswith("✗ host key: HOST KEY CHANGED for ")
    assert "login" not in result.stdout


def _s3(endpoint: str) -> dict[str, Any]:
    return {
        "region": "us-east-1",
        "endpoint_url": endpoint,
        "access_key_id_env": "TEST_AWS_KEY_ID",
        "secret_access_key_env": "TEST_AWS_SECRET",
        "sdk_max_attempts": 1,
        "organizations": ["acme"],
    }


S3_ENV = {"TEST_AWS_KEY_ID": STANDIN_ACCESS_KEY, "TEST_AWS_SECRET": STANDIN_SECRET_KEY}


def test_s3_puts_heads_and_deletes_a_probe_object(home, moto_server, s3_bucket):
    result = _rp(
        home,
        {"s3": {"reports-aws": _s3(moto_server.endpoint_url)}},
        "reports-aws",
        "--bucket",
        s3_bucket,
        "--prefix",
        "in/",
        env=S3_ENV,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [
        "✓ secrets",
        "✓ bucket",
        "✓ put",
        "✓ head",
        "✓ delete",
    ]
    assert "Contents" not in moto_server.client().list_objects_v2(Bucket=s3_bucket)
    assert STANDIN_SECRET_KEY not in result.stdout + result.stderr


def test_s3_missing_bucket_is_named(home, moto_server):
    result = _rp(
        home,
        {"s3": {"reports-aws": _s3(moto_server.endpoint_url)}},
        "reports-aws",
        "--bucket",
        "no-such-bkt",
        env=S3_ENV,
    )
    assert result.returncode == 1
    assert "✗ bucket: bucket 'no-such-bkt' does not exist at http://127.0.0.1:" in result.stdout


def test_an_unknown_connection_lists_the_known_ones(home):
    result = _rp(home, {"s3": {"reports-aws": _s3("http://127.0.0.1:9")}}, "nope", env={})
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no connection named 'nope' in connections.yaml (known: s3:reports-aws)"
