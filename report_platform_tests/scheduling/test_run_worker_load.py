"""A run worker loads the code location without the registry's reports.

Dagster reconstructs the code location in every run (and step) worker. These tests load it the
way a worker does (`ReconstructableRepository.get_definition()`, a RECONSTRUCTION load) and the
way the code server does (an INITIALIZATION load), against registries of different sizes, and
count what the load built and every SQL statement it sent to the registry database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext, DefinitionsLoadType
from dagster._core.definitions.reconstruct import ReconstructableRepository, initialize_repository_def_from_pointer
from sqlalchemy import event
from sqlalchemy.engine import Engine

from report_platform.app import registry_service
from report_platform.settings import Home
from report_platform_tests.registry_setup import fresh_registry
from report_platform_tests.samples import sms_definition

OWNER = "owner@acme.example"
ROOT = Path(__file__).resolve().parents[2]
MODULE = "report_platform.definitions"
ATTRIBUTE = "report_platform_location"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    home = Home(tmp_path / "home").ensure()
    monkeypatch.setenv("REPORT_PLATFORM_HOME", str(home.root))
    monkeypatch.delenv("REPORT_PLATFORM_REGISTRY_URL", raising=False)
    connection = {"host": "127.0.0.1", "port": 9, "from_address": "reports@acme.example", "organizations": ["acme"]}
    home.connections.write_text(yaml.safe_dump({"smtp": {"default": connection}}))
    with fresh_registry(home, [(OWNER, "acme", "owner")]):
        yield home


def _register(home: Home, count: int) -> None:
    service = registry_service(home)
    for i in range(count):
        schedule = {"timezone": "UTC", "frequency": "daily", "time_of_day": f"{i % 24:02d}:{i % 60:02d}:00"}
        service.create_report(OWNER, sms_definition(name=f"Report {i:03d}", schedule=schedule))


@contextmanager
def _registry_statements(home: Home) -> Iterator[list[str]]:
    """Every SQL statement sent to the registry's database (not Dagster's) inside the block."""
    registry_file = str(home.root.resolve())
    seen: list[str] = []

    def _record(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001, ARG001
        database = conn.engine.url.database or ""
        if database and str(Path(database).resolve()).startswith(registry_file):
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", _record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", _record)


def _worker_load() -> dg.RepositoryDefinition:
    """The repository as a run worker reconstructs it from the run's code origin."""
    import report_platform.definitions as location

    recon = ReconstructableRepository.for_module(MODULE, ATTRIBUTE, working_directory=str(ROOT))
    # A worker process starts with no load context and has never initialised the location.
    location.forget_loaded()
    with DefinitionsLoadContext.scoped(DefinitionsLoadContext(DefinitionsLoadType.RECONSTRUCTION)):
        return recon.get_definition()


def _server_load() -> dg.RepositoryDefinition:
    """The repository as the code server initialises it for the webserver and the daemon."""
    pointer = ReconstructableRepository.for_module(MODULE, ATTRIBUTE, working_directory=str(ROOT)).pointer
    with DefinitionsLoadContext.scoped(DefinitionsLoadContext(DefinitionsLoadType.INITIALIZATION)):
        return initialize_repository_def_from_pointer(pointer)


def _shape(repository: dg.RepositoryDefinition) -> dict[str, list[str]]:
    return {
        "jobs": sorted(j.name for j in repository.get_all_jobs()),
        "schedules": sorted(s.name for s in repository.schedule_defs),
        "sensors": sorted(s.name for s in repository.sensor_defs),
        "assets": sorted(k.to_user_string() for k in repository.asset_graph.get_all_asset_keys()),
    }


def test_a_run_workers_load_does_not_depend_on_the_number_of_registered_reports(home):
    with _registry_statements(home) as empty_reads:
        empty = _shape(_worker_load())
    _register(home, 30)
    with _registry_statements(home) as full_reads:
        full = _shape(_worker_load())
    assert full == empty  # the same definitions, whatever the registry holds
    assert not [s for s in full["schedules"] if s.startswith("reports_")]  # no report's schedule is built
    assert full_reads == empty_reads == []  # and the registry is not read at all
    assert "sms_usage_report_job" in full["jobs"] and "sms_usage_export" in full["assets"]


def test_the_code_server_still_builds_the_report_schedules_and_the_same_jobs_and_assets(home):
    _register(home, 12)
    with _registry_statements(home) as reads:
        server = _shape(_server_load())
    worker = _shape(_worker_load())
    assert reads  # the code server reads the reports from the registry
    report_schedules = [s for s in server["schedules"] if s.startswith("reports_")]
    assert len(report_schedules) == 12
    assert server["jobs"] == worker["jobs"] and server["assets"] == worker["assets"]
    assert server["sensors"] == worker["sensors"]
    assert sorted(set(server["schedules"]) - set(report_schedules)) == worker["schedules"]


def test_a_report_jobs_snapshot_is_the_same_in_the_code_server_and_in_a_run_worker(home):
    _register(home, 3)
    server, worker = _server_load(), _worker_load()
    for name in ("sms_usage_report_job", "billing_report_job"):
        assert server.get_job(name).get_job_snapshot_id() == worker.get_job(name).get_job_snapshot_id()


def test_defs_is_the_code_location_the_code_server_sees(home):
    import report_platform.definitions as location

    _register(home, 2)
    location.forget_loaded()
    schedules = [s.name for s in location.defs.schedules if s.name.startswith("reports_")]
    assert len(schedules) == 2


def test_the_code_server_serves_every_reports_schedule_as_dagster_loads_it(home):
    """Through Dagster's own code-server loader, which initialises the location and then derives
    the served repository through a reconstruction in the same process."""
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._grpc.server import LoadedRepositories

    import report_platform.definitions as location

    _register(home, 5)
    location.forget_loaded()
    origin = LoadableTargetOrigin(module_name=MODULE, attribute=ATTRIBUTE, working_directory=str(ROOT))
    with DefinitionsLoadContext.scoped(DefinitionsLoadContext(DefinitionsLoadType.INITIALIZATION)):
        loaded = LoadedRepositories(origin, container_image=None, entry_point=["dagster"], container_context=None)
    served = next(iter(loaded.definitions_by_name.values()))
    assert len([s for s in served.schedule_defs if s.name.startswith("reports_")]) == 5


def test_a_process_that_serves_two_data_folders_never_runs_with_the_others_resources(
    home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """What one process built for one data folder is not what it runs for another (a test run
    serves many; the resources bind the folder and its registry)."""
    import report_platform.definitions as location

    location.forget_loaded()
    _server_load()  # initialised for `home`
    first = location.run_definitions()
    other = Home(tmp_path / "other").ensure()
    monkeypatch.setenv("REPORT_PLATFORM_HOME", str(other.root))
    second = location.run_definitions()
    assert second is not first
    assert Path(second.resources["registry"].data_home) == other.root.resolve()
    assert Path(first.resources["registry"].data_home) == home.root.resolve()
