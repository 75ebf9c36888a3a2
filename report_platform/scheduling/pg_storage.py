"""Dagster's PostgreSQL storage, keeping one connection open per process instead of one per query.

`dagster-postgres` builds its run, event log and schedule storages on SQLAlchemy's `NullPool`: every
statement opens a new PostgreSQL connection and closes it. A report run (about 16 events, its run
record read and updated) opened 89 connections, and PostgreSQL starts a backend process for each.
Measured on PostgreSQL 15 on the 2-core machine (`benchmarks/bench_pg_storage.py`, figures in
BENCHMARKS.md), the server spent as much CPU on them (0.56 s a run) as the run worker spent on the
whole run (0.55 s). In a burst of reports due at the same minute the two cores
are the bound, so that CPU is makespan.

`PooledPostgresStorage` is `DagsterPostgresStorage` with the storages' engines replaced by one
pool per database and process, which keeps the connections it opened (up to `POOL_SIZE`, and up to
`MAX_OVERFLOW` more while threads need them). Every DagsterInstance a process builds shares that
pool: Dagster builds one per schedule evaluation in the code server, and each used to connect anew
and reflect the catalog for its tables. Schema checks Dagster repeats before its reads
(`has_run_stats_index_cols`, `has_instigators_table`, ...) are remembered once true, also across
the fork server's forks (`learned` / `learn`). A report run now opens one connection, where it
opened 89 as shipped and 9 with a pool per storage. Configured in the instance YAML in place of
`storage: postgres:`:

    storage:
      custom:
        module: report_platform.scheduling.pg_storage
        class: PooledPostgresStorage
        config:
          postgres_db: {...}          # exactly what `storage: postgres:` takes

What stays as before: autocommit on every connection (Dagster's storages rely on it), the tables
and migrations (`dagster instance migrate` upgrades through the same classes), and the webserver's
own tuning (`optimize_for_webserver` still replaces the engine with its pool and statement
timeout). What it changes: a connection can be stale after PostgreSQL restarts, so the pool checks
each connection before handing it out (`pool_pre_ping`) and replaces dead ones; and connections are
recycled after `pool_recycle` seconds. The check cannot close every gap: a restart that begins
between it and the statement ends the connection under the statement. The run storage's reads (what
the CLI's `--wait`, the daemon and the webserver poll) are therefore asked once more on a fresh
connection when SQLAlchemy reports the connection lost; writes are not repeated (a run's own
writes fail its step, and run retries take it from there). Each process of the platform (daemon,
webserver, code server, every running run worker) holds at most `POOL_SIZE` connections while it
lives (a run worker one or two): with the production instance's run limit that stays far below
PostgreSQL's default `max_connections`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from dagster._config.config_schema import UserConfigSchema
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.config import PostgresStorageConfig, pg_config
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

_Check = TypeVar("_Check", bound=Callable[..., bool])

# The run, event log and schedule storages of a database share one engine per process. It keeps
# up to POOL_SIZE connections, opened as they are first needed: a run worker, which uses the
# storages one statement at a time from its main thread (and now and then from its cancellation
# thread), opens one or two; the daemon's threads keep three, as when each storage had its own
# engine. Connections beyond those are closed when given back.
POOL_SIZE = 3
MAX_OVERFLOW = 8
POOL_RECYCLE_SECONDS = 3600


def driver_url(url: str) -> str:
    """`url` with the psycopg2 driver named when it names none.

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3, which binds parameters on the server;
    dagster-postgres sends `NOTIFY run_events, <run id>` with a bound parameter, which PostgreSQL
    refuses there ("syntax error at or near $1"), so every event write would fail. psycopg2
    (a dependency of dagster-postgres) interpolates on the client, as dagster-postgres expects.
    """
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return url


# The engine the storages keep for a database in this process, shared by every DagsterInstance the
# process builds. Dagster builds an instance per schedule evaluation in the code server (and per
# run in a worker): with an engine per instance, each one connected anew and reflected the tables
# again, about 0.15 s of CPU per report in a burst (docs/throughput.md). One engine for the three
# storages, not one each: a run worker opened a connection (a PostgreSQL backend, about 8 ms of
# the server's CPU) per storage. Keyed by process id too: a forked child makes its own and never
# touches (or, by dropping them, closes) connections its parent opened.
_engines: dict[tuple[int, str], Any] = {}
_engines_lock = threading.Lock()


class _KeptConnection:
    """For a dagster-postgres storage class: its engine keeps its connections instead of none, and
    every storage of the database in this process shares it. The tables are checked (and created,
    with `should_autocreate_tables`) by the first instance of the class only, here or in the
    process this one was forked from."""

    _engine: Any

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, token_provider: Any = None) -> None:
        key = (os.getpid(), postgres_url)
        checked = (type(self).__name__, _database(postgres_url))
        with _engines_lock:
            kept = _engines.get(key)
        check = should_autocreate_tables and checked not in _tables_checked
        super().__init__(postgres_url, check, token_provider=token_provider)  # type: ignore[call-arg]
        if check:
            _tables_checked.add(checked)
        shipped = self._engine
        if kept is None:
            kept = create_pg_engine(
                self.postgres_url,  # type: ignore[attr-defined]
                token_provider,
                isolation_level="AUTOCOMMIT",
                pool_size=POOL_SIZE,
                max_overflow=MAX_OVERFLOW,
                pool_recycle=POOL_RECYCLE_SECONDS,
                pool_pre_ping=True,
            )
            with _engines_lock:
                kept = _engines.setdefault(key, kept)
        self._engine = kept
        shipped.dispose()

    def dispose(self) -> None:
        # The event log's watcher, which has a connection of its own; the kept engine stays for
        # the process's next instance (the webserver's own engine, if any, is left as Dagster leaves it).
        super().dispose()  # type: ignore[misc]


# Answers about the schema that, once true, stay true (migrations only add tables and columns).
# Dagster asks them by reflecting the catalog on every call (`has_run_stats_index_cols` on each
# run-records read, `has_instigators_table` on each tick update): the daemon spent more CPU on
# those reflections in a burst than on the statements they guard.
# Keyed by the database (see `_database`), the check and its arguments. A process forked from one
# that knows them knows them too, and run workers hand what they learn to the fork server
# (`learned` / `learn`), so a worker does not reflect the catalog again: building the storages and
# answering these took about a tenth of a run worker's CPU in a burst (docs/throughput.md).
_facts: set[tuple[str, str, tuple]] = set()
# The storage classes (by name) whose tables were checked for a database, here or in an ancestor.
_tables_checked: set[tuple[str, str]] = set()


@functools.lru_cache(maxsize=16)
def _database(url: str) -> str:
    """A database named without its URL, which may hold a password: facts can go to a file."""
    return hashlib.sha256(url.encode()).hexdigest()[:24]


def _true_once_seen(check: _Check) -> _Check:
    @functools.wraps(check)
    def remembered(self: Any, *args: Any) -> bool:
        key = (_database(self.postgres_url), check.__qualname__, args)
        if key in _facts:
            return True
        answer = check(self, *args)
        if answer:
            _facts.add(key)
        return answer

    return remembered  # type: ignore[return-value]


def learned() -> dict[str, list]:
    """What this process knows of its databases' schemas, as JSON-ready lists."""
    return {
        "facts": sorted([db, check, list(args)] for db, check, args in _facts if all(isinstance(a, str) for a in args)),
        "tables": sorted([cls, db] for cls, db in _tables_checked),
    }


def learn(known: dict[str, Any]) -> int:
    """Take over what another process of the same deployment learned (`learned()`); returns how
    many facts were new. Malformed entries are ignored: at worst a check is asked again."""
    before = len(_facts) + len(_tables_checked)
    for entry in known.get("facts", []):
        if isinstance(entry, list) and len(entry) == 3 and isinstance(entry[2], list):
            db, check, args = entry
            if isinstance(db, str) and isinstance(check, str) and all(isinstance(a, str) for a in args):
                _facts.add((db, check, tuple(args)))
    for entry in known.get("tables", []):
        if isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) for x in entry):
            _tables_checked.add((entry[0], entry[1]))
    return len(_facts) + len(_tables_checked) - before


_Read = TypeVar("_Read", bound=Callable[..., Any])


def _asked_again_on_a_lost_connection(read: _Read) -> _Read:
    """`read`, repeated once on a new connection if the server ended the one it ran on.

    Only for reads: repeating them is harmless. SQLAlchemy has by then invalidated the pool's
    connections, so the second attempt connects afresh (dagster-postgres retries the connect itself
    while the server is still starting)."""

    @functools.wraps(read)
    def asked(*args: Any, **kwargs: Any) -> Any:
        try:
            return read(*args, **kwargs)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            return read(*args, **kwargs)

    return asked  # type: ignore[return-value]


class PooledRunStorage(_KeptConnection, PostgresRunStorage):
    # The reads that callers poll, by run id, status or tag, and the daemon's own checks.
    get_runs = _asked_again_on_a_lost_connection(PostgresRunStorage.get_runs)
    get_run_ids = _asked_again_on_a_lost_connection(PostgresRunStorage.get_run_ids)
    get_runs_count = _asked_again_on_a_lost_connection(PostgresRunStorage.get_runs_count)
    get_run_records = _asked_again_on_a_lost_connection(PostgresRunStorage.get_run_records)
    get_run_tags = _asked_again_on_a_lost_connection(PostgresRunStorage.get_run_tags)
    get_run_tag_keys = _asked_again_on_a_lost_connection(PostgresRunStorage.get_run_tag_keys)
    get_run_group = _asked_again_on_a_lost_connection(PostgresRunStorage.get_run_group)
    get_daemon_heartbeats = _asked_again_on_a_lost_connection(PostgresRunStorage.get_daemon_heartbeats)
    get_backfill = _asked_again_on_a_lost_connection(PostgresRunStorage.get_backfill)
    get_backfills = _asked_again_on_a_lost_connection(PostgresRunStorage.get_backfills)
    has_run_stats_index_cols = _true_once_seen(PostgresRunStorage.has_run_stats_index_cols)
    has_bulk_actions_selector_cols = _true_once_seen(PostgresRunStorage.has_bulk_actions_selector_cols)
    has_backfill_id_column = _true_once_seen(PostgresRunStorage.has_backfill_id_column)
    has_bulk_action_job_name_column = _true_once_seen(PostgresRunStorage.has_bulk_action_job_name_column)
    has_backfill_tags_table = _true_once_seen(PostgresRunStorage.has_backfill_tags_table)
    has_built_index = _true_once_seen(PostgresRunStorage.has_built_index)


class PooledEventLogStorage(_KeptConnection, PostgresEventLogStorage):
    has_table = _true_once_seen(PostgresEventLogStorage.has_table)
    has_asset_key_col = _true_once_seen(PostgresEventLogStorage.has_asset_key_col)
    has_secondary_index = _true_once_seen(PostgresEventLogStorage.has_secondary_index)


class PooledScheduleStorage(_KeptConnection, PostgresScheduleStorage):
    has_instigators_table = _true_once_seen(PostgresScheduleStorage.has_instigators_table)
    has_secondary_index_table = _true_once_seen(PostgresScheduleStorage.has_secondary_index_table)
    has_built_index = _true_once_seen(PostgresScheduleStorage.has_built_index)


class PooledPostgresStorage(DagsterPostgresStorage):
    """`DagsterPostgresStorage` whose storages keep one open connection per process."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
    ) -> None:
        # Not DagsterPostgresStorage.__init__: it would build the NullPool storages first.
        self.postgres_url = driver_url(postgres_url)
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        self._run_storage = PooledRunStorage(self.postgres_url, should_autocreate_tables, token_provider)
        self._event_log_storage = PooledEventLogStorage(self.postgres_url, should_autocreate_tables, token_provider)
        self._schedule_storage = PooledScheduleStorage(self.postgres_url, should_autocreate_tables, token_provider)
        DagsterStorage.__init__(self)

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return pg_config()

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: PostgresStorageConfig
    ) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
