"""The daemon killed with SIGKILL around a schedule tick, and started again: each tick still makes
exactly one Dagster run, one mail at the SMTP server, and one row in the audit log.

Three reports tick a minute apart, and the daemon (with its fork server) is killed at a different
point of each tick: a few seconds before the tick's minute, within a second after it, and as soon
as the tick's run exists (queued or being launched). SIGKILL gives the daemon no chance to finish
its iteration, unlike the SIGTERM of test_production.py. A fourth report's tick passes while the
daemon is stopped: Dagster runs it late, once, when the daemon is back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from report_platform.scheduling.schedules import run_key
from report_platform_tests.production.harness import (
    RUN_TIMEOUT,
    Production,
    definition,
    mail_to,
    wait_until,
)

# The module fixture waits for ticks minutes apart: longer than the suite's 300 s per test.
pytestmark = pytest.mark.timeout(900)

LEAD_SECONDS = 40
# handle -> when the daemon is killed, relative to the report's tick
KILL_POINTS = ("before_the_minute", "just_after_the_minute", "run_queued")
# The fourth report's tick passes while the daemon is stopped; it runs late, once, when it is back.
DOWN = "down_across_the_tick"
HANDLES = (*KILL_POINTS, DOWN)


@dataclass
class Kills:
    ids: dict[str, str]
    names: dict[str, str]
    ticks: dict[str, datetime]
    killed_at: dict[str, datetime]


def _sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


@pytest.fixture(scope="module")
def kills(production: Production) -> Kills:
    first = (datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS + 59)).replace(second=0, microsecond=0)
    ticks = {handle: first + timedelta(minutes=i) for i, handle in enumerate(HANDLES)}
    definitions = {
        h: definition(f"Killed {h}", f"{at:%H:%M:%S}", mail_to(f"{h.replace('_', '-')}@acme.example"))
        for h, at in ticks.items()
    }
    ids = production.create_reports(definitions)
    killed_at: dict[str, datetime] = {}

    def kill_and_restart(handle: str) -> None:
        killed_at[handle] = datetime.now(UTC)
        production.kill_service("daemon")
        production.deployment.start_service("daemon")

    _sleep_until(ticks["before_the_minute"] - timedelta(seconds=3))
    kill_and_restart("before_the_minute")

    assert datetime.now(UTC) < ticks["just_after_the_minute"], "the daemon was back too late for the second tick"
    _sleep_until(ticks["just_after_the_minute"] + timedelta(seconds=0.5))
    kill_and_restart("just_after_the_minute")

    assert datetime.now(UTC) < ticks["run_queued"], "the daemon was back too late for the third tick"
    _sleep_until(ticks["run_queued"])
    key = run_key(ids["run_queued"], ticks["run_queued"])
    deadline = time.monotonic() + 120
    while not production.runs(run_key=key):  # polled without a pause: the kill should hit the launch
        assert time.monotonic() < deadline, f"no run of the third tick\n{production.tails('daemon')}"
    kill_and_restart("run_queued")

    assert datetime.now(UTC) < ticks[DOWN] - timedelta(seconds=5), "the daemon was back too late for the fourth tick"
    production.deployment.stop_service("daemon")
    _sleep_until(ticks[DOWN] + timedelta(seconds=10))
    assert not production.runs(run_key=run_key(ids[DOWN], ticks[DOWN])), "a run was made with the daemon stopped"
    killed_at[DOWN] = datetime.now(UTC)
    production.deployment.start_service("daemon")

    for handle in HANDLES:
        wait_until(
            lambda h=handle: production.finished(ids[h], 1, "schedule"),
            RUN_TIMEOUT * 2,
            f"the tick of {handle} in the audit log",
            production.tails,
        )
    return Kills(ids, {h: d["name"] for h, d in definitions.items()}, ticks, killed_at)


@pytest.mark.parametrize("handle", HANDLES)
def test_a_tick_around_a_daemon_kill_runs_and_is_delivered_once(
    production: Production, kills: Kills, handle: str
) -> None:
    key = run_key(kills.ids[handle], kills.ticks[handle])
    production.settled_runs(1, run_key=key)
    runs = production.runs(run_key=key)
    assert [r["status"] for r in runs] == ["SUCCESS"], f"{handle}: {runs}\n{production.tails('daemon')}"
    rows = [r for r in production.audit_runs(kills.ids[handle]) if r["trigger"] == "schedule"]
    assert [r["status"] for r in rows] == ["SUCCESS"], rows
    assert datetime.fromisoformat(rows[0]["scheduled_at"]) == kills.ticks[handle]
    assert len(production.mails(kills.names[handle])) == 1, f"{handle} was not delivered exactly once"
    ticks = [
        t for t in production.schedule_ticks(kills.ids[handle]) if t["timestamp"] == kills.ticks[handle].timestamp()
    ]
    assert len(ticks) == 1 and ticks[0]["status"] == "SUCCESS", ticks
