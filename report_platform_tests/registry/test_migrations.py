"""Schema migrations of the registry database, on SQLite and on a real PostgreSQL.

The schema a migrated database ends with is compared with what `create_all` of the models gives,
as the database itself describes it: `sqlite_master` on SQLite, `pg_dump --schema-only` on
PostgreSQL. `schema_4d514ef/` holds the DDL the release before migrations ran.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url

from report_platform import migrations
from report_platform.database import make_engine
from report_platform.delivery.ledger import DeliveryLedger
from report_platform.delivery.ledger import metadata as ledger_metadata
from report_platform.registry.db import init_registry
from report_platform.registry.models import Base
from report_platform.registry.service import ReportService
from report_platform_tests.registry.conftest import OWNER, USER, FixedClock, definition, seed, snapshot
from report_platform_tests.servers.postgres import PostgresServer, find_bindir

PREVIOUS_RELEASE_SCHEMA = Path(__file__).parent / "schema_4d514ef"
REGISTRY_TABLES = {table.name for table in Base.metadata.sorted_tables}


@pytest.fixture(params=["sqlite", "postgres"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes empty databases on the backend: call it for each one a test needs."""
    if request.param == "sqlite":
        numbers = itertools.count()
        yield lambda: f"sqlite:///{tmp_path / f'registry{next(numbers)}.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    created: list[str] = []

    def create() -> str:
        url = server.create_database()
        created.append(make_url(url).database)
        return url

    yield create
    for name in created:
        server.drop_database(name)


def database_schema(url: str) -> list[str]:
    """The schema as the database describes it, without Alembic's own table."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master "
                    "WHERE tbl_name != 'alembic_version' ORDER BY type, name"
                )
                # Whitespace aside: SQLite keeps each CREATE statement as it was written.
                return [" | ".join(" ".join(str(value).split()) for value in row) for row in rows]
        finally:
            engine.dispose()
    dump = subprocess.run(
        [
            str(find_bindir() / "pg_dump"),
            "--schema-only",
            "--no-owner",
            "--exclude-table=alembic_version",
            "-h",
            parsed.host,
            "-p",
            str(parsed.port),
            "-U",
            parsed.username,
            parsed.database,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    # Comments name the server version; \restrict lines carry a random key per dump.
    return [
        line for line in dump.stdout.splitlines() if line and not line.startswith(("--", "\\restrict", "\\unrestrict"))
    ]


def create_all_schema(url: str) -> list[str]:
    """What the platform's schema is: `create_all` of the registry's models and of the ledger table."""
    engine = make_engine(url)
    try:
        Base.metadata.create_all(engine)
        ledger_metadata.create_all(engine)
    finally:
        engine.dispose()
    return database_schema(url)


def revision_of(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [row[0] for row in conn.exec_driver_sql("SELECT version_num FROM alembic_version")]


def create_previous_release_schema(url: str) -> None:
    """The tables exactly as the release at 4d514ef created them (no ledger, no alembic_version)."""
    engine = make_engine(url)
    backend = "sqlite" if engine.dialect.name == "sqlite" else "postgresql"
    script = (PREVIOUS_RELEASE_SCHEMA / f"{backend}.sql").read_text()
    sql = "\n".join(line for line in script.splitlines() if not line.startswith("--"))
    try:
        with engine.begin() as conn:
            for statement in filter(None, (part.strip() for part in sql.split(";"))):
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def test_upgrade_on_an_empty_database_gives_exactly_the_schema_create_all_gives(new_database) -> None:
    migrated, created = new_database(), new_database()
    init_registry(migrated).kw["bind"].dispose()

    schema = database_schema(migrated)
    assert schema == create_all_schema(created)
    created_tables = {match[1] for line in schema for match in re.finditer(r"CREATE TABLE (?:public\.)?(\w+) \(", line)}
    assert created_tables == REGISTRY_TABLES | {"delivery_ledger"}
    engine = make_engine(migrated)
    assert revision_of(engine) == [migrations.head()]
    engine.dispose()


def copy_rows(source: Engine, target: Engine) -> None:
    """Every registry row of `source` into `target`, in the columns `target` has (an older schema).

    The models are today's, so rows are made with today's service on a current database and
    copied into the previous release's tables, as that release would have written them."""
    with source.connect() as src, target.begin() as dst:
        present = set(inspect(dst).get_table_names())
        for table in Base.metadata.sorted_tables:
            if table.name not in present:
                continue
            columns = [c["name"] for c in inspect(dst).get_columns(table.name)]
            rows = [dict(r) for r in src.execute(sa.select(*(table.c[c] for c in columns))).mappings()]
            if rows:
                dst.execute(sa.table(table.name, *(sa.column(c, table.c[c].type) for c in columns)).insert(), rows)
            serial = [c for c in table.primary_key.columns if c.autoincrement is True or c.name in ("id", "seq")]
            if dst.dialect.name == "postgresql" and rows and len(serial) == 1 and table.name != "reports":
                name = serial[0].name
                if isinstance(rows[0][name], int):
                    dst.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', '{name}'), "
                        f"(SELECT max({name}) FROM {table.name}))"
                    )


def test_upgrades_a_registry_made_by_the_previous_release(new_database, clock: FixedClock) -> None:
    source = ReportService(init_registry(new_database()), clock=clock)
    seed(source)
    daily = source.create_report(OWNER, definition(folder="SMS"))
    paused = source.create_report(OWNER, definition(name="Paused one"))
    source.pause(OWNER, paused)
    run_id = source.system.record_run_start(daily, trigger="schedule", dagster_run_id="d-1")
    source.system.record_run_finish(run_id, status="SUCCESS", rows=12, delivered_to=[{"to": "ops"}])
    url = new_database()
    create_previous_release_schema(url)
    old_engine = make_engine(url)
    copy_rows(source.engine, old_engine)
    source.engine.dispose()
    rows_before = snapshot(old_engine)
    assert rows_before["reports"] and rows_before["report_runs"]
    assert "alembic_version" not in inspect(old_engine).get_table_names()
    old_engine.dispose()

    service = ReportService(init_registry(url), clock=clock)
    try:
        after = snapshot(service.engine)
        # Newer columns come after the old ones, with their defaults; the old values are untouched.
        assert {
            table: [row[: len(old[0])] for row in rows] if (old := rows_before[table]) else rows
            for table, rows in after.items()
            if table in rows_before
        } == rows_before
        # consecutive_failures; ticks_expected_from and last_tick_at: unknown for reports from before
        assert {tuple(row[-3:]) for row in after["reports"]} == {(0, None, None)}
        assert all(after[table] == [] for table in after.keys() - rows_before.keys())  # the newer tables
        assert revision_of(service.engine) == [migrations.head()]
        assert "delivery_ledger" in inspect(service.engine).get_table_names()
        assert database_schema(url) == create_all_schema(new_database())
        # The old rows read and write as before, ids and sequences included.
        assert [(r.id, r.status) for r in service.list_reports(USER)] == [(daily, "enabled"), (paused, "disabled")]
        assert service.audit_log(OWNER, daily).runs[0].rows == 12
        assert service.create_report(OWNER, definition(name="After the upgrade"))
        service.add_user("new@acme.example", "acme", "user")
    finally:
        service.engine.dispose()


def test_a_database_made_after_the_ledger_moved_into_it_is_stamped_at_the_ledger_revision(new_database) -> None:
    url = new_database()
    # What opening the registry and the ledger did before migrations: the tables of revision 0002.
    create_previous_release_schema(url)
    engine = make_engine(url)
    ledger_metadata.create_all(engine)
    engine.dispose()

    engine = init_registry(url).kw["bind"]
    try:
        assert revision_of(engine) == [migrations.head()]
    finally:
        engine.dispose()


def test_opening_the_registry_again_changes_nothing(new_database) -> None:
    url = new_database()
    init_registry(url).kw["bind"].dispose()
    schema = database_schema(url)

    engine = init_registry(url).kw["bind"]
    try:
        assert revision_of(engine) == [migrations.head()]
        assert database_schema(url) == schema
    finally:
        engine.dispose()


# A fresh interpreter per process, as the CLI, the API and each Dagster run open the registry.
OPEN_REGISTRY_WHEN_TOLD = """
import sys, time
from pathlib import Path
from report_platform.registry.db import init_registry

url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.002)
init_registry(url).kw["bind"].dispose()
"""


def test_processes_opening_an_empty_registry_at_once_take_turns(new_database, tmp_path: Path) -> None:
    url = new_database()
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(3)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_REGISTRY_WHEN_TOLD, url, str(flag), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()  # all three start migrating within a few milliseconds of each other
        outcomes = [(process.communicate(timeout=120)[1], process.returncode) for process in processes]
    finally:
        for process in processes:
            process.kill()

    assert outcomes == [("", 0)] * 3
    engine = make_engine(url)
    try:
        assert revision_of(engine) == [migrations.head()]
        assert set(inspect(engine).get_table_names()) >= REGISTRY_TABLES | {"delivery_ledger"}
    finally:
        engine.dispose()


def test_downgrade_to_nothing_and_upgrade_again(new_database) -> None:
    url = new_database()
    engine = init_registry(url).kw["bind"]
    schema = database_schema(url)
    try:
        with migrations.locked(engine) as conn:
            command.downgrade(migrations.alembic_config(conn), "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        migrations.upgrade(engine)
        assert database_schema(url) == schema
    finally:
        engine.dispose()


def test_the_ledger_opened_first_migrates_the_whole_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    engine = make_engine(url)
    try:
        DeliveryLedger(engine)
        assert revision_of(engine) == [migrations.head()]
        assert set(inspect(engine).get_table_names()) >= REGISTRY_TABLES
    finally:
        engine.dispose()
    init_registry(url).kw["bind"].dispose()


def test_some_registry_tables_but_no_alembic_version_is_refused_by_name(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    engine = make_engine(url)
    Base.metadata.tables["organizations"].create(engine)
    engine.dispose()

    with pytest.raises(migrations.SchemaError, match=r"\(organizations\) but not delivery_ledger, folders, "):
        init_registry(url)
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) == {"organizations"}
    engine.dispose()


def test_a_database_migrated_by_a_newer_release_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    init_registry(url).kw["bind"].dispose()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    engine.dispose()

    with pytest.raises(migrations.SchemaError, match="revision 0099, which this release does not know"):
        init_registry(url)


def test_operator_upgrades_a_previous_release_database_by_hand(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    create_previous_release_schema(url)

    def run(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "report_platform.migrations", "--url", url, *args],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout + result.stderr

    run("upgrade", "head")
    engine = make_engine(url)
    assert revision_of(engine) == [migrations.head()]
    engine.dispose()
    assert database_schema(url) == create_all_schema(f"sqlite:///{tmp_path / 'created.db'}")


def test_a_revision_may_rebuild_a_referenced_sqlite_table_that_holds_rows(tmp_path: Path, clock: FixedClock) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    service = ReportService(init_registry(url), clock=clock)
    seed(service)
    report_id = service.create_report(OWNER, definition())
    rows_before = snapshot(service.engine)

    # What `batch_alter_table` in a future revision does: copy reports, drop it, rename the copy.
    with migrations.locked(service.engine) as conn:
        operations = Operations(MigrationContext.configure(conn))
        with operations.batch_alter_table("reports", recreate="always") as batch:
            batch.alter_column("name", existing_type=sa.String(200), type_=sa.String(300))

    try:
        assert snapshot(service.engine) == rows_before
        assert service.get_report(OWNER, report_id).name == definition()["name"]
        with service.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        service.engine.dispose()


def test_a_migration_that_breaks_references_is_rolled_back(tmp_path: Path, clock: FixedClock) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    service = ReportService(init_registry(url), clock=clock)
    seed(service)
    rows_before = snapshot(service.engine)

    with (
        pytest.raises(migrations.SchemaError, match=r"referring to rows that do not exist \(memberships -> users"),
        migrations.locked(service.engine) as conn,
    ):
        conn.exec_driver_sql("DELETE FROM users")
    try:
        assert snapshot(service.engine) == rows_before
    finally:
        service.engine.dispose()


def test_registry_tables_with_other_columns_and_no_alembic_version_are_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    create_previous_release_schema(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE report_runs DROP COLUMN note")
        conn.exec_driver_sql("ALTER TABLE users ADD COLUMN nickname TEXT")
    engine.dispose()

    with pytest.raises(migrations.SchemaError, match=r"does not describe: report_runs \(note\); users \(nickname\)\."):
        init_registry(url)
    engine = make_engine(url)
    assert "alembic_version" not in inspect(engine).get_table_names()
    engine.dispose()


def test_connections_opening_a_new_sqlite_registry_at_the_same_moment_all_get_in(tmp_path: Path) -> None:
    """Switching a new SQLite database to WAL takes its exclusive lock, and SQLite answers
    "database is locked" at once, without waiting out the busy timeout, to a connection that
    asks while another is doing the same. Seen in the suite: one of three processes opening an
    empty registry together failed. Here three threads open each of many new databases at once."""
    import threading

    from sqlalchemy import text

    failures: list[str] = []

    def open_and_write(url: str, barrier: threading.Barrier) -> None:
        barrier.wait()
        engine = make_engine(url)
        try:
            with engine.begin() as connection:
                connection.execute(text("CREATE TABLE IF NOT EXISTS seen (x INTEGER)"))
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            failures.append(str(exc).splitlines()[0])
        finally:
            engine.dispose()

    for i in range(300):
        url = f"sqlite:///{tmp_path / f'registry-{i}.db'}"
        barrier = threading.Barrier(3)
        threads = [threading.Thread(target=open_and_write, args=(url, barrier)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads), f"an open of {url} hung"
    assert failures == []
