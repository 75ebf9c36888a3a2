"""Backup and restore drill: the production deployment's two databases dumped with `pg_dump`,
the deployment stopped, both restored with `pg_restore` into a fresh PostgreSQL server, and the
platform started on them with a fresh data folder holding only the parts docs/deployment.md
("Backup and restore") says to back up.

Before the backup a schedule tick and a "run now" have been delivered (audit rows, delivery-ledger
rows, Dagster runs with their event logs and tick history). After the restore all of it is there,
row for row; the tick that ran before the backup does not run again, and a report whose tick
falls after the backup runs once.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import inspect, text

from report_platform.database import make_engine
from report_platform.deployment import Deployment, DeploymentError
from report_platform.settings import Home
from report_platform_tests.production.harness import (
    IN_PROGRESS,
    RUN_TIMEOUT,
    Production,
    definition,
    mail_to,
    new_layout,
    quiet_time_of_day,
    wait_until,
)
from report_platform_tests.servers.postgres import PostgresServer, running_postgres

# The module fixture waits for ticks minutes apart: longer than the suite's 300 s per test.
pytestmark = pytest.mark.timeout(900)

# The first report's tick comes at the first minute boundary this far ahead (the code location
# reloads and the daemon restarts first); the second's comes AFTER_MINUTES later, once the
# restored deployment runs.
LEAD_SECONDS = 60
AFTER_MINUTES = 3
SFTP_FOLDER = "/inbound/drill"
# The parts of the data folder a restore needs (docs/deployment.md, "Backup and restore").
DATA_FOLDER_PARTS = ("store", "archive", "connections.yaml", "rate_card.yaml")


@dataclass
class Drill:
    before: Production  # the deployment that was backed up (stopped by now)
    after: Production  # the one started on the restored databases
    ids: dict[str, str]
    names: dict[str, str]
    ticks: dict[str, datetime]  # handle -> its tick
    registry_before: dict[str, tuple[int, str]]  # table -> (rows, digest), at the stop
    registry_restored: dict[str, tuple[int, str]]  # the same, restored, before anything started
    dagster_before: dict[str, Any]  # runs, event counts and tick histories over GraphQL
    figures: dict[str, float]


def table_digests(url: str) -> dict[str, tuple[int, str]]:
    """Every table of the database: its row count and an md5 over its rows in a fixed order."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            found = {}
            for table in sorted(inspect(connection).get_table_names()):
                rows = "md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                query = f'SELECT count(*), {rows} FROM "{table}" t'
                found[table] = tuple(connection.execute(text(query)).one())  # noqa: S608 - names from the catalogue
            return found
    finally:
        engine.dispose()


def dagster_view(production: Production, ids: dict[str, str]) -> dict[str, Any]:
    runs = sorted(production.runs(), key=lambda r: r["id"])
    return {
        "runs": [(r["id"], r["status"], r["tags"].get("dagster/run_key")) for r in runs],
        "events": {r["id"]: production.event_count(r["id"]) for r in runs},
        "ticks": {h: production.schedule_ticks(i) for h, i in ids.items()},
    }


@pytest.fixture(scope="module")
def drill(
    production: Production, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Drill]:
    work = tmp_path_factory.mktemp("drill")
    first = (datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS + 59)).replace(second=0, microsecond=0)
    ticks = {"before": first, "after": first + timedelta(minutes=AFTER_MINUTES)}
    definitions = {
        "before": definition("Drill before", f"{first:%H:%M:%S}", mail_to("before@acme.example")),
        "after": definition("Drill after", f"{ticks['after']:%H:%M:%S}", mail_to("after@acme.example")),
        "run_now": definition(
            "Drill run now",
            quiet_time_of_day(),
            {"type": "sftp", "connection": "demo-sftp", "remote_dir": SFTP_FOLDER, "create_dirs": True},
        ),
    }
    ids, _ = production.create_reports(definitions)
    assert datetime.now(UTC) < first - timedelta(seconds=2), "the daemon was back too close to the tick"
    production.console.call("POST", f"/api/v1/reports/{ids['run_now']}/run-now", {}, expect=202)
    for handle, trigger in (("before", "schedule"), ("run_now", "run_now")):
        wait_until(
            lambda h=handle, t=trigger: production.finished(ids[h], 1, t),
            RUN_TIMEOUT + 60,
            f"the {trigger} run of {handle} in the audit log",
            production.tails,
        )
    wait_until(
        lambda: not [r for r in production.runs() if r["status"] in IN_PROGRESS],
        RUN_TIMEOUT,
        "every run finished before the backup",
        production.tails,
    )
    assert datetime.now(UTC) < ticks["after"] - timedelta(seconds=30), "the backup came too close to the second tick"
    dagster_before = dagster_view(production, ids)

    # The backup, online: each pg_dump reads one consistent snapshot while the services run.
    env = production.environment
    registry_db = env["REPORT_PLATFORM_REGISTRY_URL"].rsplit("/", 1)[1]
    dumps = {"dagster": work / "dagster.dump", "registry": work / "registry.dump"}
    started = time.monotonic()
    postgres.dump(env["DAGSTER_PG_DB"], dumps["dagster"])
    postgres.dump(registry_db, dumps["registry"])
    figures = {"dump_seconds": time.monotonic() - started}
    figures |= {f"{name}_dump_bytes": float(path.stat().st_size) for name, path in dumps.items()}
    backup = work / "data-folder"
    for part in DATA_FOLDER_PARTS:
        source = production.home.root / part
        if source.is_dir():
            shutil.copytree(source, backup / part)
        elif source.is_file():
            backup.mkdir(exist_ok=True)
            shutil.copy2(source, backup / part)
    figures["data_folder_bytes"] = float(sum(p.stat().st_size for p in backup.rglob("*") if p.is_file()))

    production.deployment.stop()
    registry_before = table_digests(env["REPORT_PLATFORM_REGISTRY_URL"])

    with running_postgres("unused") as fresh:
        started = time.monotonic()
        for name, database in (("dagster", "dagster"), ("registry", "registry")):
            fresh.create_database(database)
            fresh.restore(database, dumps[name])
        figures["restore_seconds"] = time.monotonic() - started
        registry_url = fresh.url_for("registry").replace(
            f"{fresh.user}@", f"{fresh.user}:{production.secrets['registry']}@", 1
        )
        registry_restored = table_digests(registry_url)

        home = Home(work / "home")
        shutil.copytree(backup, home.root)
        home.ensure()
        environment = {
            **env,
            "REPORT_PLATFORM_HOME": str(home.root),
            "REPORT_PLATFORM_REGISTRY_URL": registry_url,
            "DAGSTER_PG_HOST": fresh.host,
            "DAGSTER_PG_PORT": str(fresh.port),
            "DAGSTER_PG_DB": "dagster",
        }
        deployment = Deployment(new_layout(work / "dagster_home", home, environment))
        started = time.monotonic()
        try:
            deployment.migrate()
            deployment.start()
        except DeploymentError as exc:
            deployment.stop()
            pytest.fail(f"the restored deployment did not start: {exc}", pytrace=False)
        figures["start_seconds"] = time.monotonic() - started
        figures["up_before_second_tick_seconds"] = (ticks["after"] - datetime.now(UTC)).total_seconds()
        after = Production(
            deployment, home, environment, production.servers, production.secrets, production.data_days, {}
        )
        try:
            yield Drill(
                production,
                after,
                ids,
                {h: d["name"] for h, d in definitions.items()},
                ticks,
                registry_before,
                registry_restored,
                dagster_before,
                figures,
            )
        finally:
            deployment.stop()


def test_the_registry_is_restored_row_for_row(drill: Drill) -> None:
    """Reports, users, memberships, connection references (in the definitions), the audit log
    and the delivery ledger: every table, every row."""
    assert {"reports", "users", "report_runs", "delivery_ledger"} <= drill.registry_before.keys()
    assert drill.registry_restored == drill.registry_before
    assert drill.registry_before["delivery_ledger"][0] >= 2  # the tick's mail and the run now's upload
    report = drill.after.console.call("GET", f"/api/v1/reports/{drill.ids['run_now']}")
    assert report["definition"]["destination"]["connection"] == "demo-sftp"


def test_dagster_runs_events_and_tick_history_are_restored(drill: Drill) -> None:
    after = dagster_view(drill.after, drill.ids)
    before = drill.dagster_before
    assert len(before["runs"]) >= 2 and set(before["runs"]) <= set(after["runs"])
    assert {run_id: after["events"][run_id] for run_id in before["events"]} == before["events"]
    for handle, ticks in before["ticks"].items():
        assert after["ticks"][handle][: len(ticks)] == ticks, handle
    (tick,) = [t for t in before["ticks"]["before"] if t["status"] == "SUCCESS"]
    assert tick["timestamp"] == drill.ticks["before"].timestamp() and len(tick["runIds"]) == 1


def test_no_tick_is_skipped_or_sent_twice_after_the_restore(drill: Drill) -> None:
    after = drill.after
    wait_until(
        lambda: after.finished(drill.ids["after"], 1, "schedule"),
        (drill.ticks["after"] - datetime.now(UTC)).total_seconds() + RUN_TIMEOUT,
        "the tick due after the restore, in the restored audit log",
        after.tails,
    )
    for handle in ("before", "after"):
        runs = after.settled_tick_runs(drill.ids[handle], drill.ticks[handle])
        assert [r["status"] for r in runs] == ["SUCCESS"], f"{handle}: {runs}"
        rows = [r for r in after.audit_runs(drill.ids[handle]) if r["trigger"] == "schedule"]
        assert [r["status"] for r in rows] == ["SUCCESS"], f"{handle}: {rows}"
        assert len(after.mails(drill.names[handle])) == 1, f"{handle} was not delivered exactly once"
    print(f"backup and restore drill: {drill.figures}")  # noqa: T201 - the figures docs/deployment.md quotes
