"""Report exports as Dagster assets: one asset per report type, partitioned by report × date.

Partitions are two-dimensional: `report` (a dynamic dimension holding the report ids of that
type, added when a report is first scheduled or run) and `date` (the scheduled local date). The
asset catalog shows every report's materialisations with rows, bytes, period and SHA-256, the
lineage runs from the usage assets to each export, and re-delivering past periods is an
ordinary asset backfill over (report, dates).

A run's scheduled time comes from its tags (schedule ticks and "run now" set it); a backfill run
has none, so it re-delivers each tick of the report on its partition's local date.
"""

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from report_platform import redaction
from report_platform.app import SYSTEM_ACTOR, definition_of, open_service
from report_platform.delivery.request import DeliveryRequest
from report_platform.reports import produce
from report_platform.reports.definition import REPORT_TYPES, ReportDefinition
from report_platform.reports.schedule import ticks_between
from report_platform.settings import Home

DATE_START = "2025-01-01"
SOURCES = {
    "voice_usage": ["voice_calls"],
    "sms_usage": ["sms_messages"],
    "aegis_interaction": ["aegis_transactions", "aegis_events"],
    "billing": ["billing_line_items"],
}

TAG_REPORT = "report_platform/report_id"
TAG_SCHEDULED = "report_platform/scheduled_at"
TAG_TRIGGER = "report_platform/trigger"
TAG_AUDIT_RUN = "report_platform/audit_run_id"
TAG_PERIOD_START = "report_platform/period_start"
TAG_PERIOD_END = "report_platform/period_end"


def report_dimension(report_type: str) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=f"{report_type}_reports")


def partitions(report_type: str) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {
            "report": report_dimension(report_type),
            "date": dg.DailyPartitionsDefinition(start_date=DATE_START, end_offset=1),
        }
    )


def partition_key(report_id: str, local_date: date) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"report": report_id, "date": local_date.isoformat()})


def asset_name(report_type: str) -> str:
    return f"{report_type}_export"


def job_name(report_type: str) -> str:
    return f"{report_type}_report_job"


def ensure_report_partition(instance: dg.DagsterInstance, report_type: str, report_id: str) -> None:
    name = report_dimension(report_type).name
    if not instance.has_dynamic_partition(name, report_id):
        instance.add_dynamic_partitions(name, [report_id])


def _ticks_on(definition: ReportDefinition, local_date: date) -> list[datetime]:
    tz = ZoneInfo(definition.schedule.timezone)
    start = datetime.combine(local_date, time(0), tz)
    end = datetime.combine(local_date + timedelta(days=1), time(0), tz)
    return list(ticks_between(definition.schedule, start, end))


def _runs_of(context: dg.AssetExecutionContext, definition: ReportDefinition, local_date: date) -> list[datetime]:
    tags = context.run.tags
    if TAG_SCHEDULED in tags:
        return [datetime.fromisoformat(tags[TAG_SCHEDULED])]
    ticks = _ticks_on(definition, local_date)
    if not ticks:
        raise dg.Failure(
            description=f"the report does not run on {local_date.isoformat()} "
            f"({definition.schedule.frequency}); pick dates on which it is scheduled"
        )
    return ticks


def _period_override(tags: dict[str, str]) -> tuple[date, date] | None:
    if TAG_PERIOD_START in tags and TAG_PERIOD_END in tags:
        return date.fromisoformat(tags[TAG_PERIOD_START]), date.fromisoformat(tags[TAG_PERIOD_END])
    return None


def _trigger(tags: dict[str, str]) -> str:
    if int(tags.get("dagster/retry_number", "0")) > 0:
        return "retry"
    if "dagster/backfill" in tags:
        return "backfill"
    # Schedules and the CLI tag their runs; an untagged run was launched by a person in the UI.
    return tags.get(TAG_TRIGGER, "run_now")


def _variant(tags: dict[str, str]) -> str | None:
    """A backfill re-delivers on purpose: its own archive folder and ledger (see produce.prepare)."""
    backfill = tags.get("dagster/backfill")
    return f"backfill-{backfill}" if backfill else None


def produce_export(context: dg.AssetExecutionContext, report_type: str) -> DeliveryRequest:
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    report_id, local_date = keys["report"], date.fromisoformat(keys["date"])
    service = open_service()
    view = service.report_for_run(SYSTEM_ACTOR, report_id)
    if view is None:
        raise dg.Failure(description=f"no report {report_id} in the registry")
    if view.type != report_type:
        raise dg.Failure(description=f"report {report_id} is a {view.type} report, not {report_type}")
    definition = definition_of(view.definition)
    tags = dict(context.run.tags)
    override = _period_override(tags)
    home = Home.from_env().ensure()
    requests = []
    for scheduled_at in _runs_of(context, definition, local_date):
        period = produce.resolve(definition, scheduled_at, override)
        audit_id = service.record_run_start(
            SYSTEM_ACTOR,
            report_id,
            trigger=_trigger(tags),
            dagster_run_id=context.run.run_id,
            scheduled_at=scheduled_at.astimezone(UTC),
            period_start=period.start_utc,
            period_end=period.end_utc,
            attempt=int(tags.get("dagster/retry_number", "0")) + 1,
            run_id=tags.get(TAG_AUDIT_RUN) if len(requests) == 0 else None,
        )
        try:
            prepared = produce.prepare(
                home, report_id, definition, scheduled_at, period_override=override, variant=_variant(tags)
            )
        except Exception as exc:
            service.record_run_finish(SYSTEM_ACTOR, audit_id, status="FAILED", error=_one_line(exc))
            raise
        request = produce.delivery_request(report_id, view.organization, definition, prepared)
        requests.append(replace(request, extra={"audit_run_id": audit_id, "rows": prepared.rows}))
        context.add_output_metadata(
            {
                "report_id": report_id,
                "report_name": definition.name,
                "scheduled_at": scheduled_at.isoformat(),
                "period_start": period.start_local.isoformat(),
                "period_end": period.end_local.isoformat(),
                "rows": dg.MetadataValue.int(prepared.rows),
                "bytes": dg.MetadataValue.int(prepared.archived.size),
                "sha256": prepared.archived.sha256,
                "archived_file": dg.MetadataValue.path(str(prepared.archived.path)),
                "rebuilt": not prepared.reused,
            }
        )
    if len(requests) == 1:
        return requests[0]
    return requests  # type: ignore[return-value]  # several ticks of one date (backfill of an hourly report)


def _one_line(exc: BaseException) -> str:
    text = redaction.redact(str(exc)).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


def _export_asset(report_type: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=asset_name(report_type),
        partitions_def=partitions(report_type),
        group_name="reports",
        kinds={"polars", "xlsx" if report_type == "billing" else "csv"},
        deps=SOURCES[report_type],
        io_manager_key="delivery_io_manager",
        description=f"The {report_type} export of one scheduled report for one scheduled date: built with "
        "Polars from the usage store, archived with its SHA-256, delivered by the report's destination.",
        tags={"layer": "reports"},
    )
    def _asset(context: dg.AssetExecutionContext) -> DeliveryRequest:
        return produce_export(context, report_type)

    return _asset


export_assets = [_export_asset(t) for t in REPORT_TYPES]
report_jobs = {
    t: dg.define_asset_job(job_name(t), selection=[asset_name(t)], description=f"Build and deliver one {t} report.")
    for t in REPORT_TYPES
}
