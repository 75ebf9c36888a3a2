from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from report_platform.delivery import Artifact, Connections, deliver


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_demo_servers_receive_into_browsable_folders_and_stop_on_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    home = tmp_path / "home"
    env = os.environ | {"REPORT_PLATFORM_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "report_platform_devservers.serve",
         "--smtp-port", "0", "--sftp-port", "0", "--s3-port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        env_file = home / "devservers" / "demo.env"
        _wait_for(lambda: env_file.exists() and (home / "connections.yaml").exists())
        for line in env_file.read_text().splitlines():
            name, _, value = line.partition("=")
            monkeypatch.setenv(name, value)
        connections = Connections.load(home / "connections.yaml")
        report = tmp_path / "daily.csv"
        report.write_text("Timestamp,Status\r\n2026-11-28T06:00:00-05:00,delivered\r\n")
        artifact = Artifact.from_path(report)

        deliver(artifact, {"type": "email", "to": ["ops@example.com"]}, connections, subject="s")
        deliver(
            artifact,
            {"type": "sftp", "connection": "demo-sftp", "remote_dir": "/inbound/reports",
             "create_dirs": True},
            connections,
        )  # fmt: skip
        deliver(
            artifact,
            {"type": "s3", "connection": "demo-s3", "bucket": "demo-reports", "prefix": "sms/"},
            connections,
        )

        root = home / "devservers"
        assert len(list((root / "mail").glob("*.eml"))) == 1
        landed = root / "sftp" / "inbound" / "reports" / "daily.csv"
        assert landed.read_bytes() == report.read_bytes()
        mirrored = root / "s3" / "demo-reports" / "sms" / "daily.csv"
        _wait_for(mirrored.exists, timeout=15)
        assert mirrored.read_bytes() == report.read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "stand-in servers stopped" in output
