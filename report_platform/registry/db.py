"""Opening the registry database: SQLite by default, PostgreSQL in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from report_platform.registry.models import Base


def make_engine(url: str) -> Engine:
    """An engine for `url`, with SQLite set up for several processes sharing one file."""
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
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
            # With WAL this stays crash-safe; only a power cut may lose the last commits.
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front, so a read-modify-write (diff, then update)
        # cannot interleave with another process's and lose an update.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def init_registry(url: str | None = None) -> sessionmaker[Session]:
    """Create the registry's tables if missing and return a session factory bound to them.

    Without `url`, uses `Home.from_env().registry_url` (`registry.db` in the data folder, or
    `$REPORT_PLATFORM_REGISTRY_URL`). The engine is `factory.kw["bind"]`.
    """
    if url is None:
        from report_platform.settings import Home

        url = Home.from_env().registry_url
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False)
