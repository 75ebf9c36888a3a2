"""Opening the registry database: SQLite by default, PostgreSQL in production."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from report_platform import migrations
from report_platform.database import make_engine

__all__ = ["init_registry", "make_engine"]


def init_registry(url: str | None = None) -> sessionmaker[Session]:
    """Bring the registry database to the newest schema and return a session factory bound to it.

    Without `url`, uses `Home.from_env().registry_url` (`registry.db` in the data folder, or
    `$REPORT_PLATFORM_REGISTRY_URL`). The schema (the registry's tables and the delivery ledger)
    is migrated under a lock, so processes opening the registry at once never race; a database
    made before migrations is stamped first (see `report_platform.migrations`). The
    engine is `factory.kw["bind"]`.
    """
    if url is None:
        from report_platform.settings import Home

        url = Home.from_env().registry_url
    engine = make_engine(url)
    migrations.upgrade(engine)
    return sessionmaker(engine, expire_on_commit=False)
