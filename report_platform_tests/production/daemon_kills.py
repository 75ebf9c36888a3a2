"""The daemon killed with SIGKILL around schedule ticks, and what each tick must show afterwards.

One round: three reports tick a minute apart, and the daemon (with its fork server) is killed at a
different point of each tick: a few seconds before the tick's minute, within a second after it,
and as soon as the tick's run exists (queued or being launched). A fourth report's tick passes
while the daemon is stopped: Dagster runs it late, once, when it is back. A fifth report, created
while the daemon is stopped and due at that same moment under a timing no report had (another
name of the same timezone, so a schedule Dagster has not seen), is never evaluated by Dagster: the
audit log records the time MISSED and the owner is mailed once, and nothing is delivered.

`test_daemon_kill.py` runs one round; `benchmarks/daemon_kills.py` repeats it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from report_platform_tests.production.harness import RUN_TIMEOUT, Production, definition, mail_to, wait_until

LEAD_SECONDS = 40
# handle -> when the daemon is killed, relative to the report's tick
KILL_POINTS = ("before_the_minute", "just_after_the_minute", "run_queued")
# The fourth report's tick passes while the daemon is stopped; it runs late, once, when it is back.
DOWN = "down_across_the_tick"
HANDLES = (*KILL_POINTS, DOWN)
# A fifth report, due at the same time, is created while the daemon is stopped.
UNSEEN = "created_while_down"


@dataclass
class Kills:
    ids: dict[str, str]
    names: dict[str, str]
    ticks: dict[str, datetime]
    killed_at: dict[str, datetime]


def _sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def kill_around_ticks(production: Production, label: str = "", settle: float | None = RUN_TIMEOUT * 2) -> Kills:
    """One round, returned once every tick has an outcome in the audit log (waiting at most
    `settle` seconds each; None returns at once). `label` keeps the names and addresses of
    repeated rounds apart."""
    first = (datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS + 59)).replace(second=0, microsecond=0)
    ticks = {handle: first + timedelta(minutes=i) for i, handle in enumerate(HANDLES)}
    ticks[UNSEEN] = ticks[DOWN]
    names = {h: f"Killed {h}{label}" for h in HANDLES}
    names[UNSEEN] = f"Created while the daemon was down{label}"

    tag = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")

    def body(handle: str) -> dict:
        address = f"{handle.replace('_', '-')}{'-' + tag if tag else ''}@acme.example"
        made = definition(names[handle], f"{ticks[handle]:%H:%M:%S}", mail_to(address))
        if handle == UNSEEN:
            # Due at the same moment as DOWN, but not in DOWN's timing: a report that joins a
            # timing the daemon knows is ticked with it (late, once), like DOWN itself.
            made["schedule"]["timezone"] = "Etc/UTC"
        return made

    ids, _ = production.create_reports({h: body(h) for h in HANDLES})
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
    deadline = time.monotonic() + 120
    # Polled without a pause: the kill should hit the launch.
    while not production.tick_runs(ids["run_queued"], ticks["run_queued"]):
        assert time.monotonic() < deadline, f"no run of the third tick\n{production.tails('daemon')}"
    kill_and_restart("run_queued")

    assert datetime.now(UTC) < ticks[DOWN] - timedelta(seconds=5), "the daemon was back too late for the fourth tick"
    production.deployment.stop_service("daemon")
    # Created while the daemon is stopped: Dagster starts its schedule when it first sees it,
    # after this tick, and never evaluates the tick; the platform records it MISSED.
    ids[UNSEEN] = production.console.call("POST", "/api/v1/reports", body(UNSEEN), expect=201)["id"]
    _sleep_until(ticks[DOWN] + timedelta(seconds=10))
    assert not production.tick_runs(ids[DOWN], ticks[DOWN]), "a run was made with the daemon stopped"
    killed_at[DOWN] = datetime.now(UTC)
    production.deployment.start_service("daemon")

    kills = Kills(ids, names, ticks, killed_at)
    if settle is not None:
        settle_kills(production, kills, settle)
    return kills


def settle_kills(production: Production, kills: Kills, timeout: float) -> None:
    """Wait until every tick of the round has its outcome in the audit log (AssertionError after
    `timeout` seconds for one of them)."""
    for handle in HANDLES:
        wait_until(
            lambda h=handle: production.finished(kills.ids[h], 1, "schedule"),
            timeout,
            f"the tick of {handle} in the audit log",
            production.tails,
        )
    wait_until(
        lambda: (
            [r for r in production.audit_runs(kills.ids[UNSEEN]) if r["status"] == "MISSED"]
            and production.mails(f"missed 1 run: {kills.names[UNSEEN]}")
        ),
        timeout,
        "the tick of the report created while the daemon was stopped, MISSED in the audit log and mailed",
        production.tails,
    )


def state_of(production: Production, kills: Kills, handle: str) -> str:
    """What a tick has so far, for a round that did not settle: its Dagster runs and audit rows."""
    runs = production.tick_runs(kills.ids[handle], kills.ticks[handle])
    rows = production.audit_runs(kills.ids[handle])
    return f"Dagster runs {[r['status'] for r in runs]}, audit rows {[(r['trigger'], r['status']) for r in rows]}"


def tick_problems(production: Production, kills: Kills, handle: str) -> list[str]:
    """What is wrong with the handle's tick: [] when it ran, was delivered and audited once."""
    production.settled_tick_runs(kills.ids[handle], kills.ticks[handle])
    problems = []
    runs = production.tick_runs(kills.ids[handle], kills.ticks[handle])
    if [r["status"] for r in runs] != ["SUCCESS"]:
        problems.append(f"Dagster runs {[r['status'] for r in runs]}, not one SUCCESS")
    rows = [r for r in production.audit_runs(kills.ids[handle]) if r["trigger"] == "schedule"]
    if [r["status"] for r in rows] != ["SUCCESS"]:
        problems.append(f"audit rows {[r['status'] for r in rows]}, not one SUCCESS")
    elif datetime.fromisoformat(rows[0]["scheduled_at"]) != kills.ticks[handle]:
        problems.append(f"audit row for {rows[0]['scheduled_at']}, not {kills.ticks[handle].isoformat()}")
    if (mails := len(production.mails(kills.names[handle]))) != 1:
        problems.append(f"{mails} mails delivered, not 1")
    ticks = [
        t for t in production.schedule_ticks(kills.ids[handle]) if t["timestamp"] == kills.ticks[handle].timestamp()
    ]
    if [t["status"] for t in ticks] != ["SUCCESS"]:
        problems.append(f"Dagster ticks {[t['status'] for t in ticks]}, not one SUCCESS")
    return problems


def unseen_problems(production: Production, kills: Kills) -> list[str]:
    """What is wrong with the report created while the daemon was down: [] when its tick is one
    MISSED row, no run, one notice naming the re-delivery, and no delivery."""
    report_id = kills.ids[UNSEEN]
    problems = []
    rows = production.audit_runs(report_id)
    if [(r["trigger"], r["status"]) for r in rows] != [("schedule", "MISSED")]:
        problems.append(f"audit rows {[(r['trigger'], r['status']) for r in rows]}, not one MISSED")
    elif datetime.fromisoformat(rows[0]["scheduled_at"]) != kills.ticks[UNSEEN]:
        problems.append(f"MISSED for {rows[0]['scheduled_at']}, not {kills.ticks[UNSEEN].isoformat()}")
    if production.tick_runs(report_id, kills.ticks[UNSEEN]):
        problems.append("Dagster ran the tick it never saw")
    notices = production.mails(f"missed 1 run: {kills.names[UNSEEN]}")
    if len(notices) != 1:
        problems.append(f"{len(notices)} notices, not 1")
    elif f"report-platform reports backfill {report_id}" not in notices[0].get_content():
        problems.append("the notice does not name the re-delivery")
    # The only mail naming the report is the notice: nothing was delivered.
    if (named := len(production.mails(kills.names[UNSEEN]))) != len(notices):
        problems.append(f"{named - len(notices)} mails besides the notice")
    return problems
