from __future__ import annotations

from collections.abc import Iterator

import pytest

from report_platform_devservers.standins import MotoStandin
from report_platform_tests.security.full_run import FullRun, prepare, run_everything
from report_platform_tests.servers.fixtures import moto_server  # noqa: F401
from report_platform_tests.servers.postgres import PostgresServer, postgres_server  # noqa: F401


@pytest.fixture(scope="session")
def full_run(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,  # noqa: F811
    moto_server: MotoStandin,  # noqa: F811
) -> Iterator[FullRun]:
    """The platform after one full run with real secrets (see full_run.py); made once per test
    process (each xdist worker that runs a test asking for it makes its own)."""
    run = prepare(tmp_path_factory.mktemp("full-run"), postgres_server, moto_server)
    try:
        run_everything(run)
        yield run
    finally:
        run.stop_servers()
