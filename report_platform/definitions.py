"""Assembles the Dagster code location; nothing is defined here.

Dagster loads a code location for two reasons, and says which (`DefinitionsLoadContext`): to
learn what exists (`INITIALIZATION`: the code server the webserver and daemon talk to, `dagster
definitions validate`), and to run something it learnt about earlier (`RECONSTRUCTION`: a run or
step worker). Only the first needs the reports' schedules; the schedules are
evaluated in the code server, never in a run. A run worker therefore builds the jobs, assets,
resources and sensors only, and never reads the registry's list of reports: its load costs the
same with ten reports or ten thousand. The jobs and assets are the same objects either way, so
the run's job snapshot is the one the code server showed.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

# Dagster 1.13 does not export these at the top level yet; `@dg.definitions` loaders read them.
from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext, DefinitionsLoadType

from report_platform import redaction
from report_platform.app import registry_service
from report_platform.ingest.assets import usage_assets, usage_daily_schedule, usage_job
from report_platform.resources import deployment_resources
from report_platform.scheduling.batches import report_batch_failure_sensor, report_batch_job
from report_platform.scheduling.exports import export_assets, report_jobs
from report_platform.scheduling.maintenance import archive_retention_job, archive_retention_schedule
from report_platform.scheduling.missed import report_missed_tick_sensor
from report_platform.scheduling.sensors import registry_sensor, report_run_failure_sensor
from report_platform.settings import Home, current_settings


def build_definitions(schedules: list[dg.ScheduleDefinition], revision: int) -> dg.Definitions:
    return dg.Definitions(
        assets=[*usage_assets, *export_assets],
        jobs=[usage_job, archive_retention_job, *report_jobs.values(), report_batch_job],
        schedules=[usage_daily_schedule, archive_retention_schedule, *schedules],
        sensors=[
            registry_sensor(revision),
            report_run_failure_sensor,
            report_missed_tick_sensor,
            report_batch_failure_sensor,
        ],
        resources=deployment_resources(),
        # Steps run in the run worker's own process, also in the runs of an asset backfill or a
        # "Materialize" from the UI. Dagster's default starts an interpreter per step: five per
        # usage partition, whose steps write one at a time anyway (pool `usage_store`), so
        # separate processes bought no parallelism and cost seconds of CPU each (docs/throughput.md).
        executor=dg.in_process_executor,
    )


def location_definitions(load_type: DefinitionsLoadType) -> dg.Definitions:
    """The code location as a load of `load_type` needs it: every report's schedule when Dagster
    initialises it, none when a run worker reconstructs it to run one job. (The registry sensor's
    revision only matters where sensors are evaluated, the code server; a worker never runs it.)"""
    if load_type == DefinitionsLoadType.RECONSTRUCTION:
        return build_definitions([], 0)
    # Imported here: a run worker needs neither the schedule module's cron work nor the registry query.
    from report_platform.scheduling.schedules import report_schedules

    return build_definitions(*report_schedules(registry_service(Home.from_env())))


def run_definitions() -> dg.Definitions:
    """The code location as a run worker loads it: what "run now" executes in this process."""
    return _loaded(DefinitionsLoadType.RECONSTRUCTION)


# What this process has built, by load type and by the settings it was built with (the resources
# bind the data folder and registry): a process that serves several data folders, as a test run
# does, never runs one folder's report with another's resources.
_built: dict[tuple[DefinitionsLoadType, str], dg.Definitions] = {}


def _settings_key() -> str:
    return current_settings().model_dump_json()


def _loaded(load_type: DefinitionsLoadType) -> dg.Definitions:
    """The location for `load_type`, built once per settings; a reconstruction in a process that
    has initialised the location with the same settings serves what that built."""
    key = _settings_key()
    if load_type == DefinitionsLoadType.RECONSTRUCTION:
        known = _built.get((DefinitionsLoadType.INITIALIZATION, key)) or _built.get((load_type, key))
        if known is not None:
            return known
    built = _built[(load_type, key)] = location_definitions(load_type)
    return built


def forget_loaded() -> None:
    """Drop what this process built, as if it were a fresh process (tests)."""
    _built.clear()


# Every process that loads the code location (code server, run and step workers) redacts
# secrets from its log records and so from Dagster's event log.
redaction.install()


@dg.definitions
def report_platform_location() -> dg.Definitions:
    """What Dagster loads (workspace.yaml names this module): see the module's docstring.

    Dagster's code server initialises the location and then, in the same process, derives the
    repository it serves through a reconstruction (`LoadedRepositories`: the lazy definitions are
    resolved for INITIALIZATION, then `ReconstructableRepository.get_definition()` runs under a
    RECONSTRUCTION context). So a reconstruction in a process that has just initialised the
    location serves what that initialisation built, every report's schedule included; only a
    process that never initialised it, a run or step worker, gets the registry-free shape.
    """
    return _loaded(DefinitionsLoadContext.get().load_type)


def __getattr__(name: str) -> Any:
    """`defs`: the code location as the code server sees it, built on first use (tests, tools)."""
    if name != "defs":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    key = (DefinitionsLoadType.INITIALIZATION, _settings_key())
    return _built[key] if key in _built else _loaded(DefinitionsLoadType.INITIALIZATION)
