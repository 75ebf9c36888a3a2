"""The production deployment, started once per module (report_platform_tests/production/harness.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from report_platform.deployment import DeploymentError
from report_platform_tests.production.harness import Production, started_production
from report_platform_tests.servers.postgres import PostgresServer, PostgresUnavailable, running_postgres


@pytest.fixture(scope="package")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the package (fails, never skips, if it cannot start)."""
    try:
        with running_postgres("unused") as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def production(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    with contextlib.ExitStack() as stack:
        try:
            started = stack.enter_context(started_production(postgres, tmp_path_factory.mktemp("production")))
        except DeploymentError as exc:
            pytest.fail(f"the deployment did not start: {exc}", pytrace=False)
        yield started
