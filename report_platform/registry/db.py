"""Opening the registry database: SQLite by default, PostgreSQL in production."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from report_platform.database import make_engine
from report_platform.registry.models import Base

__all__ = ["init_registry", "make_engine"]


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
