"""The daemon killed with SIGKILL around a schedule tick, and started again: each tick still makes
exactly one Dagster run, one mail at the SMTP server, and one row in the audit log; a tick Dagster
never evaluates is MISSED in the audit log and its owner told (daemon_kills.py has the round).

SIGKILL gives the daemon no chance to finish its iteration, unlike the SIGTERM of
test_production.py. `benchmarks/daemon_kills.py` repeats the round.
"""

from __future__ import annotations

import pytest

from report_platform_tests.production.daemon_kills import (
    HANDLES,
    Kills,
    kill_around_ticks,
    tick_problems,
    unseen_problems,
)
from report_platform_tests.production.harness import Production

# The module fixture waits for ticks minutes apart: longer than the suite's 300 s per test.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def kills(production: Production) -> Kills:
    return kill_around_ticks(production)


@pytest.mark.parametrize("handle", HANDLES)
def test_a_tick_around_a_daemon_kill_runs_and_is_delivered_once(
    production: Production, kills: Kills, handle: str
) -> None:
    assert tick_problems(production, kills, handle) == [], production.tails("daemon")


def test_a_report_created_while_the_daemon_was_down_records_its_first_time_missed(
    production: Production, kills: Kills
) -> None:
    assert unseen_problems(production, kills) == [], production.tails("daemon")
