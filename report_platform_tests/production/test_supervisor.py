"""The supervisor's handling of processes (`report_platform.deployment`), with small shell services
in place of Dagster's: process groups, SIGKILL after the grace period, failed starts, a service
that ends on its own, and a supervisor that is itself killed."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from report_platform.deployment import Deployment, DeploymentError, Layout, Service, group_members
from report_platform_tests.production.harness import wait_until


def deployment(tmp_path: Path, *services: Service) -> Deployment:
    layout = Layout(
        dagster_home=tmp_path,
        logs=tmp_path / "logs",
        environment={"PATH": os.environ["PATH"]},
        code_server_port=1,
        webserver_host="127.0.0.1",
        webserver_port=2,
        console_port=3,
    )
    made = Deployment(layout)
    made.services = list(services)
    return made


def shell(name: str, script: str, probe: str | None = None, start_timeout: float = 30, grace: float = 10) -> Service:
    return Service(name, ["sh", "-c", script], lambda _started: probe, start_timeout=start_timeout, stop_grace=grace)


def test_sigterm_reaches_every_process_of_a_services_group(tmp_path: Path) -> None:
    supervised = deployment(tmp_path, shell("parent", "sleep 300 & sleep 300 & wait"))
    supervised.start()
    pgid = supervised.pid("parent")
    wait_until(lambda: len(group_members(pgid)) == 3, 30, "the service and its two children", lambda: "")

    (stopped,) = supervised.stop()

    assert stopped.clean and not stopped.killed
    assert group_members(pgid) == []


@pytest.mark.parametrize("inherited", ["blocked", "ignored"])
def test_services_stop_on_sigterm_whatever_signal_state_the_supervisor_inherited(
    tmp_path: Path, inherited: str
) -> None:
    """A supervisor started with SIGTERM blocked or ignored (a thread some library started, a
    shell or container runtime that set it up so) must not pass that on: blocked and ignored
    signals survive exec, and its services could then not be stopped but by SIGKILL."""
    supervised = deployment(tmp_path, shell("parent", "sleep 300 & sleep 300 & wait"))
    if inherited == "blocked":
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        previous = None
    else:
        previous_mask = None
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        supervised.start()
    finally:
        if previous_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    pgid = supervised.pid("parent")
    wait_until(lambda: len(group_members(pgid)) == 3, 30, "the service and its two children", lambda: "")

    (stopped,) = supervised.stop()

    assert stopped.clean and not stopped.killed, stopped
    assert group_members(pgid) == []


def test_a_service_that_ignores_sigterm_is_killed_after_its_grace_period(tmp_path: Path) -> None:
    # An ignored signal stays ignored in the children too, so the whole group ignores SIGTERM.
    supervised = deployment(tmp_path, shell("stubborn", "trap '' TERM; sleep 300 & wait", grace=1))
    supervised.start()
    pgid = supervised.pid("stubborn")
    wait_until(lambda: len(group_members(pgid)) == 2, 30, "the trap set and the child started", lambda: "")

    (stopped,) = supervised.stop()

    assert stopped.killed and not stopped.clean
    assert stopped.status == -signal.SIGKILL
    assert group_members(pgid) == []


def test_a_service_that_exits_while_starting_fails_the_start_with_its_log(tmp_path: Path) -> None:
    supervised = deployment(tmp_path, shell("broken", "echo 'cannot load the code location'; exit 3", "not yet"))

    with pytest.raises(DeploymentError, match="exited with status 3") as failure:
        supervised.start()

    assert "cannot load the code location" in str(failure.value)


def test_a_service_not_healthy_in_time_fails_the_start_saying_why(tmp_path: Path) -> None:
    supervised = deployment(tmp_path, shell("slow", "echo loading; sleep 300", "still loading", start_timeout=1))
    try:
        with pytest.raises(DeploymentError, match=r"was not healthy within 1 s \(still loading\)") as failure:
            supervised.start()
        assert "loading" in str(failure.value).split("last lines of", 1)[1]
    finally:
        supervised.stop()


def test_the_supervisor_stops_everything_when_a_service_ends_on_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    supervised = deployment(tmp_path, shell("steady", "sleep 300"), shell("fragile", "sleep 1; exit 3"))
    supervised.migrate = lambda: None  # type: ignore[method-assign]  # no Dagster here
    caplog.set_level(logging.INFO, logger="report_platform.deployment")

    assert supervised.run(threading.Event()) == 1

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "fragile exited with status 3; stopping the others" in logged
    (steady,) = [int(pid) for pid in re.findall(r"steady: started \(pid (\d+)\)", logged)]
    assert group_members(steady) == []


def test_the_supervisor_exits_0_when_asked_to_stop(tmp_path: Path) -> None:
    supervised = deployment(tmp_path, shell("steady", "sleep 300"))
    supervised.migrate = lambda: None  # type: ignore[method-assign]
    stopping = threading.Event()
    timer = threading.Timer(1.0, stopping.set)  # as the SIGTERM handler does
    timer.start()
    try:
        assert supervised.run(stopping) == 0
    finally:
        timer.cancel()


SUPERVISOR = """
import os, sys, time
from pathlib import Path
from report_platform.deployment import Deployment, Layout, Service

home = Path(sys.argv[1])
layout = Layout(home, home / "logs", {"PATH": os.environ["PATH"]}, 1, "127.0.0.1", 2, 3)
supervised = Deployment(layout)
supervised.services = [Service("sleeper", ["sleep", "300"], lambda _s: None, start_timeout=30, stop_grace=5)]
supervised.start()
print(supervised.pid("sleeper"), flush=True)
time.sleep(300)
"""


def test_the_services_get_sigterm_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    supervisor = subprocess.Popen(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", SUPERVISOR, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    sleeper = None
    try:
        assert supervisor.stdout is not None
        sleeper = int(supervisor.stdout.readline())
        assert group_members(sleeper) == [sleeper]
        supervisor.kill()
        supervisor.wait(timeout=30)
        wait_until(lambda: not group_members(sleeper), 30, "the service ended with its supervisor", lambda: "")
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        if sleeper is not None and group_members(sleeper):
            os.killpg(sleeper, signal.SIGKILL)
