"""Report runs on Dagster's PostgreSQL storage as the production instance configures it.

`PooledPostgresStorage` (report_platform/scheduling/pg_storage.py) keeps one connection per process
where dagster-postgres opens one per statement. The runs here are real: launched through
`ForkRunLauncher` as the run queue launches them, on a real PostgreSQL server, delivering by e-mail
to a real SMTP server. Connections are counted by the server (`pg_stat_database.sessions`).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import sqlalchemy
import yaml

from report_platform.app import registry_service
from report_platform.scheduling.fork_launcher import ForkRunLauncher
from report_platform.scheduling.pg_storage import PooledRunStorage, driver_url
from report_platform.settings import Home
from report_platform_tests.registry_setup import fresh_registry
from report_platform_tests.scheduling.conftest import OWNER, USER, sms_definition
from report_platform_tests.scheduling.test_fork_launcher import LAUNCHER, _assert_delivered, _finished, _launch
from report_platform_tests.servers.postgres import PostgresServer, postgres_server, running_postgres  # noqa: F401

# dagster-postgres opened 96 connections a run here (one per statement, creating and launching
# included), and 9 with a pool per storage in each process. With one pool per database, kept, and
# the fork server handing on what earlier workers learned of the schema, a run worker opens one
# (two if its cancellation thread reads while the main thread writes).
MAX_SESSIONS_PER_RUN = 2


def _storage_config(server: PostgresServer, database: str) -> dict:
    # Named by parts, as deploy/dagster.production.yaml names it, with no driver in the scheme.
    return {
        "custom": {
            "module": "report_platform.scheduling.pg_storage",
            "class": "PooledPostgresStorage",
            "config": {
                "postgres_db": {
                    "hostname": server.host,
                    "port": server.port,
                    "username": server.user,
                    "password": "",
                    "db_name": database,
                }
            },
        }
    }


def _sessions(server: PostgresServer, database: str) -> int:
    """Connections the server has accepted to `database` so far, once none is left open but ours."""
    with psycopg.connect(host=server.host, port=server.port, user=server.user, dbname="postgres") as conn:
        deadline = time.monotonic() + 10
        while True:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            (open_now,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)
            ).fetchone()
            (sessions,) = conn.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,)
            ).fetchone()
            if open_now <= 3 or time.monotonic() > deadline:  # this test process's own kept connections
                return sessions


@contextlib.contextmanager
def _instance_on(server: PostgresServer) -> Iterator[tuple[dg.DagsterInstance, str]]:
    database = f"dagster_{uuid.uuid4().hex[:12]}"
    server.create_database(database)
    config = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "telemetry": {"enabled": False},
                "storage": _storage_config(server, database),
                "run_launcher": LAUNCHER,
            }
        )
    )
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_launcher, ForkRunLauncher)
        assert isinstance(instance._run_storage, PooledRunStorage)  # noqa: SLF001
        yield instance, database


@pytest.fixture
def pg_instance(platform: Home, postgres_server: PostgresServer, smtp) -> Iterator[tuple[dg.DagsterInstance, str]]:  # noqa: F811, ANN001
    with _instance_on(postgres_server) as pair:
        yield pair


def test_driver_url_names_psycopg2_only_when_no_driver_is_named():
    assert driver_url("postgresql://rp:s%40cret@db:5432/dagster") == "postgresql+psycopg2://rp:s%40cret@db:5432/dagster"
    assert driver_url("postgresql+psycopg2://rp@db/dagster") == "postgresql+psycopg2://rp@db/dagster"


def test_report_runs_on_pooled_storage_open_a_few_connections_each(pg_instance, postgres_server):  # noqa: F811
    instance, database = pg_instance
    service = registry_service(Home.from_env())
    reports = [service.create_report(OWNER, sms_definition(name=f"Pooled {i}")) for i in range(3)]
    # The first run also starts the fork server; count the two after it.
    first = _launch(instance, reports[0])
    assert _finished(instance, first).status == dg.DagsterRunStatus.SUCCESS
    before = _sessions(postgres_server, database)
    runs = {report_id: _launch(instance, report_id) for report_id in reports[1:]}
    for report_id, run_id in runs.items():
        assert _finished(instance, run_id).status == dg.DagsterRunStatus.SUCCESS
        _assert_delivered(instance, run_id, report_id)
    opened = _sessions(postgres_server, database) - before
    assert opened <= MAX_SESSIONS_PER_RUN * len(runs), f"{opened} connections for {len(runs)} runs"


def test_instances_built_from_the_ref_share_the_process_connections_and_reflect_no_table(
    pg_instance,
    postgres_server,  # noqa: F811
):
    """The code server builds a DagsterInstance from its ref for every schedule evaluation, and a
    run worker one per run. Each used to connect anew for every storage and reflect the catalog
    (the tables at start, the schema checks Dagster makes before reads): in a burst that was most of
    the code server's CPU. Built again in the same process, an instance costs neither."""
    instance, database = pg_instance
    run = instance.add_run(dg.DagsterRun(job_name="a_job", run_id=uuid.uuid4().hex, status=dg.DagsterRunStatus.SUCCESS))
    instance.add_dynamic_partitions("sms_usage_reports", ["r1"])
    assert instance.get_run_records(dg.RunsFilter(run_ids=[run.run_id]))  # the checks seen once
    before = _sessions(postgres_server, database)
    catalog: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        if "pg_catalog" in statement or "information_schema" in statement:
            catalog.append(statement)

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", seen)
    try:
        for _ in range(10):
            with dg.DagsterInstance.from_ref(instance.get_ref()) as evaluated:
                assert evaluated.has_dynamic_partition("sms_usage_reports", "r1")
                assert evaluated.get_run_records(dg.RunsFilter(run_ids=[run.run_id]))
                assert evaluated.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
    finally:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", seen)
    assert catalog == []
    assert _sessions(postgres_server, database) - before <= 1


def test_a_run_read_whose_connection_the_server_ends_after_the_pool_checked_it_is_answered(
    pg_instance,
    postgres_server,  # noqa: F811
):
    """The pool checks a kept connection before handing it out, but the server can still end it
    between that check and the statement (a restart that begins just then). A process polling a
    run's status (the CLI's `--wait`, the daemon, a test) must get its answer, not the error."""
    instance, database = pg_instance
    run = instance.add_run(dg.DagsterRun(job_name="a_job", run_id=uuid.uuid4().hex, status=dg.DagsterRunStatus.SUCCESS))
    engine = instance._run_storage._engine  # noqa: SLF001
    ended: list[int] = []

    def end_its_backend(connection) -> None:  # noqa: ANN001
        if ended:
            return
        pid = connection.connection.dbapi_connection.get_backend_pid()
        with psycopg.connect(
            host=postgres_server.host, port=postgres_server.port, user=postgres_server.user, dbname=database
        ) as admin:
            (done,) = admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone()
        assert done
        ended.append(pid)

    sqlalchemy.event.listen(engine, "engine_connect", end_its_backend)
    try:
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
    finally:
        sqlalchemy.event.remove(engine, "engine_connect", end_its_backend)
    assert ended, "no connection was ended: the test did not test anything"


def test_a_restarted_postgresql_is_reconnected_to_and_runs_go_on(platform, smtp):  # noqa: ANN001
    # A server of its own: restarting the session's would cut other tests' connections.
    with running_postgres() as server, _instance_on(server) as (instance, _):
        _runs_go_on_across_a_restart(server, instance)


def _runs_go_on_across_a_restart(server: PostgresServer, instance: dg.DagsterInstance) -> None:
    service = registry_service(Home.from_env())
    before, after = (service.create_report(OWNER, sms_definition(name=f"Restart {i}")) for i in range(2))
    assert _finished(instance, _launch(instance, before)).status == dg.DagsterRunStatus.SUCCESS
    # The instance's kept connections all die with the server; the next statements must not fail.
    server.restart()
    run_id = _launch(instance, after)
    assert _finished(instance, run_id).status == dg.DagsterRunStatus.SUCCESS
    _assert_delivered(instance, run_id, after)


def test_postgresql_restarted_while_a_run_delivers_ends_in_one_delivery(platform, smtp, monkeypatch):  # noqa: ANN001
    """The registry, the delivery ledger and Dagster's storage all on one PostgreSQL, restarted while
    the relay holds the run's message: every connection the run holds dies mid-run. The run still
    ends SUCCESS (or is retried to it) with exactly one message at the relay and its audit row."""
    with running_postgres() as server, _instance_on(server) as (instance, _):
        registry_url = server.create_database(f"registry_{uuid.uuid4().hex[:12]}")
        monkeypatch.setenv("REPORT_PLATFORM_REGISTRY_URL", registry_url)
        home = Home.from_env()
        assert home.registry_url == registry_url
        with fresh_registry(home, [(OWNER, "acme", "owner"), (USER, "acme", "user")]) as service:
            warm, report_id = (service.create_report(OWNER, sms_definition(name=f"Restart {i}")) for i in range(2))
            # The first run starts the fork server and fills the worker's pools; then the real one.
            assert _finished(instance, _launch(instance, warm)).status == dg.DagsterRunStatus.SUCCESS
            restarts: list[float] = []

            def restart_once() -> None:
                if not restarts:
                    restarts.append(time.monotonic())
                    server.restart()

            smtp.before_accepting(restart_once)
            run_id = _launch(instance, report_id)
            run = _finished(instance, run_id)
            assert restarts, "the relay never saw the run's message"
            assert run.status == dg.DagsterRunStatus.SUCCESS, _failure_text(instance, run_id)
            _assert_delivered(instance, run_id, report_id)
            subjects = [mail.message["Subject"] for mail in smtp.received]
            assert subjects.count("Restart 1 - 2026-03-09") == 1, subjects


def _failure_text(instance: dg.DagsterInstance, run_id: str) -> str:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    records += instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    return "\n".join(str(r.event_log_entry.dagster_event.event_specific_data)[:2000] for r in records)


def test_run_workers_after_the_first_ask_the_catalog_nothing(platform, smtp):  # noqa: ANN001
    """Every run worker is a new process: it built the storages by reflecting the catalog for their
    tables and asked Dagster's schema checks again, about a tenth of its CPU in a burst. The first
    worker hands what it learned to the fork server, and the workers forked after it ask nothing."""
    settings = {"shared_preload_libraries": "pg_stat_statements"}
    with running_postgres(settings=settings) as server, _instance_on(server) as (instance, database):
        service = registry_service(Home.from_env())
        first, second = (service.create_report(OWNER, sms_definition(name=f"Catalog {i}")) for i in range(2))
        assert _finished(instance, _launch(instance, first)).status == dg.DagsterRunStatus.SUCCESS
        (fork_server,) = instance.run_launcher._servers.values()  # noqa: SLF001
        facts = Path(fork_server.folder) / "schema-facts.json"
        deadline = time.monotonic() + 30
        while not facts.exists() and time.monotonic() < deadline:  # written as the worker exits
            time.sleep(0.1)
        assert facts.exists(), "the first run worker wrote no schema facts"
        with psycopg.connect(host=server.host, port=server.port, user=server.user, dbname=database) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute("SELECT pg_stat_statements_reset()")
            conn.commit()
            run_id = _launch(instance, second)
            assert _finished(instance, run_id).status == dg.DagsterRunStatus.SUCCESS
            _assert_delivered(instance, run_id, second)
            asked = [
                query
                for (query,) in conn.execute("SELECT query FROM pg_stat_statements").fetchall()
                if any(table in query for table in ("pg_class", "pg_attribute", "information_schema"))
            ]
    assert asked == []


def test_schema_facts_name_databases_by_a_digest_and_malformed_ones_are_ignored(monkeypatch):
    import json

    from report_platform.scheduling import pg_storage

    monkeypatch.setattr(pg_storage, "_facts", set())
    monkeypatch.setattr(pg_storage, "_tables_checked", set())
    url = "postgresql+psycopg2://rp:s3cret@db.internal:5432/dagster"
    pg_storage._facts.add((pg_storage._database(url), "SqlRunStorage.has_built_index", ("run_partitions",)))  # noqa: SLF001
    pg_storage._tables_checked.add(("PooledRunStorage", pg_storage._database(url)))  # noqa: SLF001
    known = pg_storage.learned()
    written = json.dumps(known)
    assert "s3cret" not in written and "db.internal" not in written

    pg_storage._facts.clear()  # noqa: SLF001
    pg_storage._tables_checked.clear()  # noqa: SLF001
    assert pg_storage.learn(json.loads(written)) == 2
    assert pg_storage.learned() == known
    assert pg_storage.learn(known) == 0  # nothing new
    malformed = {"facts": [["only two", "x"], 5, ["db", "check", [1]], ["db", None, []]], "tables": [[1, 2], "x"]}
    assert pg_storage.learn(malformed) == 0
    assert pg_storage.learn({"facts": "not a list"}) == 0
