"""Report exports as Dagster assets: one asset per report type, partitioned by report × date.

Partitions are two-dimensional: `report` (a dynamic dimension holding the report ids of that
type, added when a report is first scheduled or run) and `date` (the scheduled local date). The
asset catalog shows every report's materialisations with rows, bytes, period and SHA-256, the
lineage runs from the usage assets to each export, and re-delivering past periods is an
ordinary asset backfill over (report, dates).

A run's scheduled time comes from its tags (schedule ticks and "run now" set it); a backfill run
has none, so it re-delivers each tick of the report on its partition's local date: one
materialisation then holds several files, each listed in its `files` metadata table.

The asset checks of `scheduling/checks.py` run on the built files before delivery; a blocking
one that fails (a billing workbook that does not reconcile) stops the delivery of the run.
"""

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from report_platform import redaction
from report_platform.app import definition_of
from report_platform.delivery.request import DeliveryRequest
from report_platform.domain.rate_card import load_rate_card
from report_platform.ingest.assets import UsageStoreResource
from report_platform.registry.service import ReportService
from report_platform.reports import produce
from report_platform.reports.archive import Archive
from report_platform.reports.builders import ExportSpec, aegis, billing, sms, voice
from report_platform.reports.builders.catalog import REPORT_KINDS
from report_platform.reports.definition import REPORT_TYPES, ReportDefinition, applied_filters, describe_filters
from report_platform.reports.schedule import ticks_between
from report_platform.scheduling import checks
from report_platform.scheduling.requests import delivery_requests
from report_platform.scheduling.resources import ArchiveResource, RegistryResource
from report_platform.settings import Home

DATE_START = "2025-01-01"

TAG_REPORT = "report_platform/report_id"
TAG_SCHEDULED = "report_platform/scheduled_at"
TAG_TRIGGER = "report_platform/trigger"
TAG_AUDIT_RUN = "report_platform/audit_run_id"
TAG_PERIOD_START = "report_platform/period_start"
TAG_PERIOD_END = "report_platform/period_end"
TAG_EARLIER_ATTEMPTS = "report_platform/earlier_attempts"

# Bump a type's code version whenever the file it builds changes (its builder, columns, period or
# file naming): the UI then flags partitions built by the older code as changed.
CODE_VERSIONS = {
    "voice_usage": "1",
    "sms_usage": "1",
    "aegis_interaction": "1",
    "billing": "1",
}
# The columns of each type's file, as its builder writes them.
EXPORT_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "voice_usage": tuple((h, "string") for h in voice.HEADERS),
    "sms_usage": tuple((h, "string") for h in sms.HEADERS),
    "aegis_interaction": tuple((h, "string") for h in aegis.HEADERS),
    "billing": tuple(zip(billing.HEADERS, ("string", "string", "decimal", "decimal", "decimal"), strict=True)),
}


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


def _runs_of(tags: dict[str, str], definition: ReportDefinition, local_date: date) -> list[datetime]:
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


def _attempt(tags: dict[str, str]) -> int:
    """The attempt number in the audit log: Dagster's retries of the run, after the attempts made
    before it (a report re-run on its own after it failed in a batch, see batches.py)."""
    return int(tags.get(TAG_EARLIER_ATTEMPTS, "0")) + int(tags.get("dagster/retry_number", "0")) + 1


def _variant(tags: dict[str, str]) -> str | None:
    """A backfill re-delivers on purpose: its own archive folder and ledger (see produce.prepare)."""
    backfill = tags.get("dagster/backfill")
    return f"backfill-{backfill}" if backfill else None


@dataclass(frozen=True)
class _Built:
    """One file of a run: its tick, what was built and archived, and its audit-log run."""

    scheduled_at: datetime
    prepared: produce.Prepared
    spec: ExportSpec
    requests: list[DeliveryRequest]  # one per destination of the report
    audit_id: str


@dataclass(frozen=True)
class BuiltReport:
    """What one report's run built for its partition, checked and ready to deliver: the files (one
    per tick), their delivery requests, and the asset checks' results (and any workbook that does
    not reconcile, which withholds the whole run)."""

    report_id: str
    report_type: str
    definition: ReportDefinition
    built: list[_Built]
    results: list[dg.AssetCheckResult]
    problems: dict[datetime, list[str]]

    @property
    def requests(self) -> list[DeliveryRequest]:
        return [request for b in self.built for request in b.requests]

    def metadata(self) -> dict:
        return _metadata(self.report_type, self.definition, self.built)


def build_report(
    service: ReportService,
    home: Home,
    archive: Archive,
    report_id: str,
    local_date: date,
    tags: dict[str, str],
    dagster_run_id: str,
    report_type: str | None = None,
) -> BuiltReport:
    """Build, archive and check the report's file(s) for `local_date`, writing an audit-log run
    per file; `tags` are the Dagster run's (the scheduled time, trigger, period override)."""
    view = service.system.report_for_run(report_id)
    if view is None:
        raise dg.Failure(description=f"no report {report_id} in the registry")
    if report_type is not None and view.type != report_type:
        raise dg.Failure(description=f"report {report_id} is a {view.type} report, not {report_type}")
    report_type = view.type
    definition = definition_of(view.definition)
    override = _period_override(tags)
    built: list[_Built] = []
    for scheduled_at in _runs_of(tags, definition, local_date):
        period = produce.resolve(definition, scheduled_at, override)
        audit_id = service.system.record_run_start(
            report_id,
            trigger=_trigger(tags),
            dagster_run_id=dagster_run_id,
            scheduled_at=scheduled_at.astimezone(UTC),
            period_start=period.start_utc,
            period_end=period.end_utc,
            attempt=_attempt(tags),
            run_id=tags.get(TAG_AUDIT_RUN) if len(built) == 0 else None,
        )
        try:
            prepared = produce.prepare(
                home,
                report_id,
                definition,
                scheduled_at,
                period_override=override,
                variant=_variant(tags),
                archive=archive,
            )
        except Exception as exc:
            service.system.record_run_finish(audit_id, status="FAILED", error=one_line(exc))
            raise
        # The audit log records the filter each run applied (its note), as the definition said then.
        extra = {"audit_run_id": audit_id, "rows": prepared.rows, "filters": applied_filters(definition.filters)}
        requests = [
            replace(request, extra=extra)
            for request in delivery_requests(report_id, view.organization, definition, prepared)
        ]
        built.append(_Built(scheduled_at, prepared, produce.export_spec(definition, period), requests, audit_id))
    files = [checks.ExportFile(b.scheduled_at, b.spec, b.prepared.archived.path, b.prepared.rows) for b in built]
    try:
        results = [checks.rows_check(home.store, files)]
        problems = {}
        if report_type == "billing":
            problems = checks.reconcile_problems(files, load_rate_card(home.rate_card))
            results.append(checks.reconcile_check(files, problems))
    except Exception as exc:
        for b in built:
            service.system.record_run_finish(b.audit_id, status="FAILED", error=one_line(exc))
        raise
    return BuiltReport(report_id, report_type, definition, built, results, problems)


def produce_export(
    context: dg.AssetExecutionContext,
    report_type: str,
    registry: RegistryResource,
    usage_store: UsageStoreResource,
    archive_resource: ArchiveResource,
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    service, archive = registry.service(), archive_resource.open()
    report = build_report(
        service,
        usage_store.home_dir(),
        archive,
        keys["report"],
        date.fromisoformat(keys["date"]),
        dict(context.run.tags),
        context.run.run_id,
        report_type,
    )
    if report.problems:
        yield from report.results
        raise withheld(context.run.run_id, service, archive, report)
    requests = report.requests
    # Several destinations, or several ticks of one date (a backfill of an hourly report), are one
    # output: delivery sends each.
    yield dg.Output(requests[0] if len(requests) == 1 else requests, metadata=report.metadata())
    yield from report.results


def _metadata(report_type: str, definition: ReportDefinition, built: list[_Built]) -> dict:
    """Every file of the materialisation in `files`, with totals; the delivery IO manager adds its
    receipts. With a single file its own keys are also shown at the top level."""
    records = [
        dg.TableRecord(
            {
                "scheduled_at": b.scheduled_at.isoformat(),
                "period_start": b.prepared.period.start_local.isoformat(),
                "period_end": b.prepared.period.end_local.isoformat(),
                "rows": b.prepared.rows,
                "bytes": b.prepared.archived.size,
                "sha256": b.prepared.archived.sha256,
                "archived_file": b.prepared.archived.where,
                "rebuilt": not b.prepared.reused,
            }
        )
        for b in built
    ]
    rows = sum(b.prepared.rows for b in built)
    metadata: dict = {
        "report_id": built[0].requests[0].report_id,
        "report_name": definition.name,
        # Which rows the files hold ("Campaigns: Acme East Sales Line", "All campaigns").
        "filters": describe_filters(report_type, definition.filters) or "none (billing)",
        "file_count": dg.MetadataValue.int(len(built)),
        "rows": dg.MetadataValue.int(rows),
        "total_bytes": dg.MetadataValue.int(sum(b.prepared.archived.size for b in built)),
        "files": dg.MetadataValue.table(records, schema=_FILES_SCHEMA),
        "dagster/row_count": dg.MetadataValue.int(rows),
        "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(report_type)),
    }
    if len(built) == 1:
        (only,) = records
        metadata.update(
            scheduled_at=only.data["scheduled_at"],
            period_start=only.data["period_start"],
            period_end=only.data["period_end"],
            bytes=dg.MetadataValue.int(only.data["bytes"]),
            sha256=only.data["sha256"],
            archived_file=dg.MetadataValue.path(only.data["archived_file"]),
            rebuilt=only.data["rebuilt"],
        )
    return metadata


_FILES_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("scheduled_at", "string", description="The tick the file was built for."),
        dg.TableColumn("period_start", "string", description="Start of its period, in the report's timezone."),
        dg.TableColumn("period_end", "string", description="End of its period (excluded)."),
        dg.TableColumn("rows", "int"),
        dg.TableColumn("bytes", "int"),
        dg.TableColumn("sha256", "string"),
        dg.TableColumn("archived_file", "string"),
        dg.TableColumn("rebuilt", "bool", description="False when an intact archived file was reused."),
    ]
)


def column_schema(report_type: str) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in EXPORT_COLUMNS[report_type]])


def withheld(run_id: str, service: ReportService, archive: Archive, report: BuiltReport) -> dg.Failure:
    """Nothing of the run is delivered: each file's audit-log run is FAILED with the reason, and a
    workbook that does not reconcile is set aside in the archive, so the next attempt rebuilds it."""
    problems = report.problems
    for b in report.built:
        found = problems.get(b.scheduled_at)
        if found:
            reason = "not delivered: " + checks.summary_of(found)
            # A retry or re-run would otherwise reuse the same file and fail on it again.
            archive.set_aside(b.prepared.archived, run_id)
        else:
            bad = ", ".join(at.isoformat() for at in problems)
            reason = f"not delivered: a workbook of the same run does not reconcile ({bad})"
        service.system.record_run_finish(
            b.audit_id,
            status="FAILED",
            rows=b.prepared.rows,
            bytes=b.prepared.archived.size,
            sha256=b.prepared.archived.sha256,
            error=reason,
        )
    listed = [p for found in problems.values() for p in found]
    return dg.Failure(
        description=f"billing workbook does not reconcile, nothing delivered: {listed[0]}"
        + (f" (and {len(listed) - 1} more)" if len(listed) > 1 else ""),
        metadata={"problems": dg.MetadataValue.json({at.isoformat(): found for at, found in problems.items()})},
    )


def one_line(exc: BaseException) -> str:
    """An error as one redacted line for the audit log (no secret survives the cut)."""
    text = redaction.redact(str(exc)).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


def _export_asset(report_type: str) -> dg.AssetsDefinition:
    key = dg.AssetKey(asset_name(report_type))

    @dg.asset(
        key=key,
        partitions_def=partitions(report_type),
        group_name="reports",
        kinds={"polars", REPORT_KINDS[report_type].extension.removeprefix(".")},
        deps=list(REPORT_KINDS[report_type].sources),
        io_manager_key="delivery_io_manager",
        description=f"The {report_type} export of one scheduled report for one scheduled date: built with "
        "Polars from the usage store, archived with its SHA-256, delivered by the report's destination.",
        tags={"layer": "reports"},
        code_version=CODE_VERSIONS[report_type],
        metadata={"dagster/column_schema": dg.MetadataValue.table_schema(column_schema(report_type))},
        check_specs=checks.check_specs(report_type, key),
    )
    def _asset(
        context: dg.AssetExecutionContext,
        registry: RegistryResource,
        usage_store: UsageStoreResource,
        archive: ArchiveResource,
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        yield from produce_export(context, report_type, registry, usage_store, archive)

    return _asset


export_assets = [_export_asset(t) for t in REPORT_TYPES]
# A report run is one step (the export asset, its checks and its delivery), so it runs in the run
# worker's own process: Dagster's default multiprocess executor would start a second interpreter
# per run to execute that one step (see docs/throughput.md for what that costs).
report_jobs = {
    t: dg.define_asset_job(
        job_name(t),
        selection=[asset_name(t)],
        description=f"Build and deliver one {t} report.",
        executor_def=dg.in_process_executor,
    )
    for t in REPORT_TYPES
}
