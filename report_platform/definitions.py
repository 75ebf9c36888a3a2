"""Assembles the Dagster code location; nothing is defined here."""

from __future__ import annotations

import dagster as dg

from report_platform import redaction
from report_platform.app import registry_service
from report_platform.ingest.assets import usage_assets, usage_daily_schedule, usage_job
from report_platform.resources import deployment_resources
from report_platform.scheduling.exports import export_assets, report_jobs
from report_platform.scheduling.maintenance import archive_retention_job, archive_retention_schedule
from report_platform.scheduling.schedules import report_schedules
from report_platform.scheduling.sensors import registry_sensor, report_run_failure_sensor
from report_platform.settings import Home


def build_definitions(schedules: list[dg.ScheduleDefinition], revision: int) -> dg.Definitions:
    return dg.Definitions(
        assets=[*usage_assets, *export_assets],
        jobs=[usage_job, archive_retention_job, *report_jobs.values()],
        schedules=[usage_daily_schedule, archive_retention_schedule, *schedules],
        sensors=[registry_sensor(revision), report_run_failure_sensor],
        resources=deployment_resources(),
    )


# Every process that loads the code location (code server, run and step workers) redacts
# secrets from its log records and so from Dagster's event log.
redaction.install()
# The schedules are made from the registry when the code location loads (the runs, schedules and
# sensors then reach it through the `registry` resource).
defs = build_definitions(*report_schedules(registry_service(Home.from_env())))
