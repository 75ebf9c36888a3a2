"""Housekeeping: archived report files older than their retention are removed once a day."""

import dagster as dg

from report_platform.scheduling.resources import ArchiveResource


@dg.op(description="Delete archived report files older than their retention (default 90 days).")
def prune_archive(context: dg.OpExecutionContext, archive: ArchiveResource) -> None:
    removed = archive.prune()
    context.log.info(f"removed {len(removed)} archived run folder(s) past retention from {archive.where}")


@dg.job(description="Archive retention: REPORT_PLATFORM_ARCHIVE_RETENTION_DAYS (default 90).")
def archive_retention_job() -> None:
    prune_archive()


archive_retention_schedule = dg.ScheduleDefinition(
    name="archive_retention_schedule",
    job=archive_retention_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
