"""Schema migrations of the registry database: the registry's tables and the delivery ledger (Alembic).

`upgrade(engine)` brings a database to the newest revision. It runs in one transaction that holds
the migration lock, so processes starting at once take turns and the later ones find nothing to
do: on PostgreSQL a transaction-level advisory lock, on SQLite the write lock of
`BEGIN IMMEDIATE`. A database made by a release from before migrations (its tables, no
`alembic_version`) is first stamped with the revision its tables match, then upgraded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from report_platform.database import make_engine

log = logging.getLogger(__name__)

MIGRATIONS_FOLDER = Path(__file__).parent
BASELINE = "0001"  # the registry's tables, as every release before migrations created them
DELIVERY_LEDGER = "0002"  # the delivery ledger table, created before migrations by DeliveryLedger

# What a database without `alembic_version` holds, and the revision that describes it.
REGISTRY_TABLES = frozenset(
    {
        "organizations",
        "workspaces",
        "users",
        "memberships",
        "membership_workspaces",
        "folders",
        "reports",
        "report_changes",
        "report_runs",
    }
)
LEDGER_TABLES = frozenset({"delivery_ledger"})
UNVERSIONED_SCHEMAS = {REGISTRY_TABLES: BASELINE, REGISTRY_TABLES | LEDGER_TABLES: DELIVERY_LEDGER}

# pg_advisory_xact_lock key: any constant that nothing else in the database uses ("rpmigrat").
ADVISORY_LOCK_KEY = 0x72706D6967726174


class SchemaError(RuntimeError):
    """The database's schema is not one these migrations know how to bring up to date."""


def alembic_config(connection: Connection | None = None, *, url: str | None = None) -> Config:
    """Alembic's configuration, in code: the online commands use `connection`, `--sql` uses `url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_FOLDER))
    config.attributes["connection"] = connection
    config.attributes["url"] = url
    return config


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision."""
    head = _scripts().get_current_head()
    assert head is not None, "the migrations folder holds no revisions"
    return head


def current_revisions(connection: Connection) -> set[str]:
    """The revisions `alembic_version` holds (one, as history is linear); none without the table."""
    if not inspect(connection).has_table("alembic_version"):
        return set()
    return {row[0] for row in connection.exec_driver_sql("SELECT version_num FROM alembic_version")}


@contextmanager
def locked(engine: Engine) -> Iterator[Connection]:
    """A transaction on `engine` holding the migration lock until it commits (or rolls back)."""
    if engine.dialect.name == "sqlite":
        with _sqlite_locked(engine) as connection:
            yield connection
        return
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        yield connection


@contextmanager
def _sqlite_locked(engine: Engine) -> Iterator[Connection]:
    # SQLite changes a table by copying it (batch mode), and dropping the original would fail (or
    # cascade) while foreign keys are enforced. The pragma is ignored inside a transaction, so it is
    # switched off before BEGIN and the references are checked before COMMIT instead.
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        enforced = raw.execute("PRAGMA foreign_keys").fetchone()[0]
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                if not raw.in_transaction:
                    # make_engine's engines begin with BEGIN IMMEDIATE already; pysqlite's default
                    # does not begin before DDL, so another process could create the same table.
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                yield connection
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    pairs = sorted({f"{row[0]} -> {row[2]}" for row in broken})
                    raise SchemaError(
                        f"the migration would leave {len(broken)} rows referring to rows that do not exist "
                        f"({', '.join(pairs)}); nothing was changed"
                    )
        finally:
            raw.execute(f"PRAGMA foreign_keys={'ON' if enforced else 'OFF'}")


def upgrade(engine: Engine) -> None:
    """Bring the database behind `engine` to the newest revision (a no-op when it is there)."""
    if _is_at_head(engine):
        return
    with locked(engine) as connection:
        config = alembic_config(connection)
        prepare_upgrade(connection, config)
        command.upgrade(config, "head")


def prepare_upgrade(connection: Connection, config: Config) -> None:
    """Stamp a database made before migrations; refuse one that a newer release has migrated."""
    current = current_revisions(connection)
    if not current:
        stamp_unversioned(connection, config)
    elif unknown := current - _known_revisions():
        raise SchemaError(
            f"the registry database is at schema revision {', '.join(sorted(unknown))}, which this release "
            "does not know: a newer release has migrated it (run that release), or another application keeps "
            "its Alembic revision in this database (Dagster does: give the registry a database of its own)"
        )


def stamp_unversioned(connection: Connection, config: Config) -> str | None:
    """Stamp a database (without `alembic_version`) that a release from before migrations made.

    Returns the revision stamped. An empty database is left alone (the upgrade creates
    everything). The tables and their columns must be those the revision creates; anything else
    (a development build's schema, a half-restored backup) is refused rather than stamped.
    """
    inspector = inspect(connection)
    ours = set(inspector.get_table_names()) & (REGISTRY_TABLES | LEDGER_TABLES)
    if not ours:
        return None
    how_to_stamp = "stamp the revision it matches by hand (python -m report_platform.migrations stamp REVISION)"
    revision = UNVERSIONED_SCHEMAS.get(frozenset(ours))
    if revision is None:
        missing = sorted((REGISTRY_TABLES | LEDGER_TABLES) - ours)
        raise SchemaError(
            f"the registry database has some of the registry's tables ({', '.join(sorted(ours))}) but not "
            f"{', '.join(missing)}, and no alembic_version: no release created it like this. Restore it from a "
            f"backup, or {how_to_stamp} after checking its schema"
        )
    expected = _columns_after(revision)
    differ = []
    for table in sorted(ours):
        actual = {column["name"] for column in inspector.get_columns(table)}
        if actual != expected[table]:
            differ.append(f"{table} ({', '.join(sorted(actual ^ expected[table]))})")
    if differ:
        raise SchemaError(
            f"the registry database has no alembic_version and columns that revision {revision} does not "
            f"describe: {'; '.join(differ)}. Bring them in line with that revision, then {how_to_stamp}"
        )
    log.info("registry database created before migrations: stamping schema revision %s", revision)
    command.stamp(config, revision)
    return revision


def _columns_after(revision: str) -> dict[str, set[str]]:
    """Each table's column names once the revisions up to `revision` ran (in a scratch SQLite)."""
    scratch = make_engine("sqlite://")
    try:
        with locked(scratch) as connection:
            command.upgrade(alembic_config(connection), revision)
            inspector = inspect(connection)
            return {
                table: {column["name"] for column in inspector.get_columns(table)}
                for table in inspector.get_table_names()
            }
    finally:
        scratch.dispose()


def _is_at_head(engine: Engine) -> bool:
    with engine.connect() as connection:
        return current_revisions(connection) == set(_scripts().get_heads())


def _known_revisions() -> set[str]:
    return {script.revision for script in _scripts().walk_revisions()}
