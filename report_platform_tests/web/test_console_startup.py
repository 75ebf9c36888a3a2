"""The console imports Dagster at start-up, in one thread, before it answers a request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from report_platform_tests.web.conftest import NO_WEBSERVER

# A fresh interpreter: in the test process Dagster is imported already.
PROBE = """
import sys
from fastapi.testclient import TestClient
from report_platform.web.app import create_app

app = create_app()
assert "dagster" not in sys.modules, "creating the app alone should not import Dagster"
with TestClient(app) as client:  # runs the app's start-up, as uvicorn does before it serves
    loaded = [name for name in ("dagster", "dagster._utils.schedules", "report_platform.launch") if name in sys.modules]
    print("loaded:" + ",".join(loaded))
    print(f"health:{client.get('/healthz').status_code}")
"""


def test_the_console_loads_dagster_before_its_first_request(tmp_path: Path) -> None:
    """A "run now" (background thread) and a next-run computation (request thread) used to import
    Dagster lazily; two threads importing it at once left it half-initialised for good."""
    env = {**os.environ, "REPORT_PLATFORM_HOME": str(tmp_path / "home"), "REPORT_PLATFORM_DAGSTER_URL": NO_WEBSERVER}
    env.pop("DAGSTER_HOME", None)
    env.pop("REPORT_PLATFORM_REGISTRY_URL", None)
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers = dict(line.split(":", 1) for line in done.stdout.split())
    assert answers["loaded"].split(",") == ["dagster", "dagster._utils.schedules", "report_platform.launch"]
    assert answers["health"] == "200"
