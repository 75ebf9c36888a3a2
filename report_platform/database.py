"""The SQL database the registry and the delivery ledger share: SQLite by default, PostgreSQL in
production. Both open it through `make_engine`, so SQLite gets the same locking everywhere."""

from __future__ import annotations

import random
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.types import TypeDecorator


def make_engine(url: str, *, durable_commits: bool = False) -> Engine:
    """An engine for `url`, with SQLite set up for several processes sharing one file.

    `durable_commits`: every SQLite commit is on disk before it returns (`synchronous=FULL`), as
    the delivery ledger needs: a claim or confirmation lost to a power cut could mean a resend.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # The CLI, the API and every Dagster run process open the same file; wait for a lock
    # rather than failing with "database is locked".
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy issue BEGIN itself (below) instead of pysqlite's lazy, deferred one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if parsed.database and parsed.database != ":memory:":
            _journal_to_wal(cursor)  # readers never wait for the writer
            # With WAL, NORMAL stays crash-safe; only a power cut may lose the last commits.
            cursor.execute(f"PRAGMA synchronous={'FULL' if durable_commits else 'NORMAL'}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front, so a read-modify-write (diff, then update)
        # cannot interleave with another process's and lose an update.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


# How long a connection keeps asking to switch a new database to WAL (the connect timeout's 30 s).
WAL_SWITCH_SECONDS = 30.0


def _journal_to_wal(cursor: Any) -> None:
    """`PRAGMA journal_mode=WAL`, asked again while SQLite says the database is locked.

    Switching a new database to WAL takes its exclusive lock, and SQLite answers "database is
    locked" at once, without waiting out the busy timeout, to a connection that asks while
    another holds a lock on the file: several processes opening a new registry at the same moment
    (the CLI, the console, the daemon's first runs) failed that way in 1 of 20 to 60 opens here.
    Once the database is in WAL mode the pragma takes no lock, so this only waits at creation.
    """
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            # SQLITE_BUSY is SQLite's "database is locked"; any other error is not a race.
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))  # apart, so the next try does not meet the same lock


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC.

    SQLite has no time zones, so values are written as naive UTC and given `UTC` back on read;
    PostgreSQL keeps `timestamptz`. Naive input is refused: it would be ambiguous.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; pass an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
