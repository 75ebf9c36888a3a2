"""Registry fixtures: a service over SQLite or a real PostgreSQL, seeded with two organisations."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text

from report_platform import migrations
from report_platform.registry.db import init_registry, make_engine
from report_platform.registry.models import Base
from report_platform.registry.service import ReportService
from report_platform_tests.samples import sms_definition
from report_platform_tests.servers.postgres import PostgresServer, postgres_server  # noqa: F401

OWNER = "owner@acme.example"
ADMIN = "admin@acme.example"
USER = "user@acme.example"
EAST_USER = "east@acme.example"  # a User credentialed for acme-east only
GLOBEX_OWNER = "owner@globex.example"
UNKNOWN = "nobody@acme.example"

SMS_DEFINITION: dict[str, Any] = sms_definition()


def definition(**changes: Any) -> dict[str, Any]:
    """A valid definition (the PRODUCT.md example) with top-level fields replaced or removed."""
    result = copy.deepcopy(SMS_DEFINITION)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def billing_definition(organization: str = "acme") -> dict[str, Any]:
    return definition(
        name="Monthly billing",
        type="billing",
        workspace=None,
        organization=organization,
        schedule={
            "timezone": "UTC",
            "frequency": "monthly",
            "day_of_month": 1,
            "time_of_day": "02:00:00",
        },
        period={"kind": "previous_month"},
        filename_pattern="{{ReportName}}_{{PeriodStart}}.xlsx",
    )


def seed(service: ReportService) -> None:
    service.register_organization("acme", ["acme-east", "acme-west", "acme-labs"], name="Acme")
    service.register_organization("globex", ["globex-main"], name="Globex")
    service.add_user(OWNER, "acme", "owner")
    service.add_user(ADMIN, "acme", "admin")
    service.add_user(USER, "acme", "user")
    service.add_user(EAST_USER, "acme", "user", ["acme-east"])
    service.add_user(GLOBEX_OWNER, "globex", "owner")


def snapshot(engine: Engine) -> dict[str, list[tuple]]:
    """Every row of every registry table the database has, to prove a refused action changed nothing.

    Plain SQL, so values come back as stored (JSON as text on SQLite), which is both stricter
    and much faster than decoding every row. A database of an older schema lacks the newer tables.
    """
    with engine.connect() as conn:
        present = set(inspect(conn).get_table_names())
        return {
            table.name: [
                tuple(row)
                for row in conn.exec_driver_sql(
                    f"SELECT * FROM {table.name} ORDER BY " + ", ".join(c.name for c in table.primary_key.columns)
                )
            ]
            for table in Base.metadata.sorted_tables
            if table.name in present
        }


def wipe(url: str) -> None:
    """Migrate the database if needed and empty the registry's tables (cheaper than a new PostgreSQL database)."""
    engine = make_engine(url)
    try:
        migrations.upgrade(engine)
        with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def registry_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """An empty registry database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    wipe(server.url)
    return server.url


class FixedClock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2025, 3, 5, 12, 0, tzinfo=UTC))


@pytest.fixture
def service(registry_url: str, clock: FixedClock) -> Iterator[ReportService]:
    """A seeded service (real validator and schedule functions) on a fresh database."""
    factory = init_registry(registry_url)
    svc = ReportService(factory, clock=clock)
    seed(svc)
    yield svc
    svc.engine.dispose()


@pytest.fixture
def engine(service: ReportService) -> Engine:
    return service.engine


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
