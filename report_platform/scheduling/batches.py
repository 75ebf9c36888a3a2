"""Reports due at the same scheduled time are built and delivered several to a Dagster run.

A run costs the same whatever it builds: its events, its status, the run queue's and the
scheduler's work for it, a process. At the busiest minute (a thousand reports due at 06:00) those
costs, paid once per report, came to as much as the reports' own work (docs/throughput.md). So
the schedule of a timing (schedules.py) asks for one run of `report_batch_job` per batch of up to
`BATCH_SIZE` due reports; a lone due report still gets the report job's own run.

What stays each report's own, as in a report job's run:
- its partition of the export asset is materialised with the same metadata (`AssetMaterialization`
  from the batch's step), and its asset checks are evaluated on that partition;
- its audit-log run, its delivery ledger rows (exactly once per report and tick, whichever run
  delivers) and its delivery requests are the same objects the report job builds;
- a report that fails does not stop the others: the batch goes on with the next one, and
  `report_batch_sensor` requests the report job's own run for each report the batch did not
  deliver (run key per report and tick), with Dagster's run retries and the failure notice of any
  report run. The batch run fails, naming those reports, and is never retried as a whole
  (`dagster/max_retries` 0). A batch run cancelled by hand is not run again, as a cancelled
  report run is not.
"""

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import dagster as dg

from report_platform.ingest.assets import UsageStoreResource
from report_platform.registry.service import ReportService
from report_platform.reports.archive import Archive
from report_platform.scheduling.exports import (
    TAG_EARLIER_ATTEMPTS,
    TAG_REPORT,
    TAG_SCHEDULED,
    TAG_TRIGGER,
    asset_name,
    build_report,
    one_line,
    partition_key,
    report_jobs,
    withheld,
)
from report_platform.scheduling.report_io_manager import (
    ReportDeliveryIOManager,
    delivery_metadata,
    failed_deliveries,
)
from report_platform.scheduling.resources import ArchiveResource, RegistryResource
from report_platform.scheduling.timings import run_key
from report_platform.settings import Home

BATCH_SIZE = 20
BATCH_JOB = "report_batch_job"
TAG_BATCH = "report_platform/batch"  # the schedule of the timing that requested the run
TAG_BATCH_SIZE = "report_platform/batch_size"
TAG_BATCH_RUN = "report_platform/batch_run"  # on a report's own run: the batch run it failed in
OP_NAME = "deliver_reports"


def member_tag(report_id: str) -> str:
    """A tag on a batch run for each of its reports: the Dagster UI's run filter finds a report's
    batch runs by it, as it finds the report's own runs by `report_platform/report_id`."""
    return f"report_platform/report.{report_id}"


class BatchConfig(dg.Config):
    """The reports one batch run builds and delivers, in this order, for the run's scheduled time."""

    report_ids: list[str]


def batches(report_ids: list[str], size: int = BATCH_SIZE) -> list[list[str]]:
    """Due reports split into the fewest batches of at most `size`, of even sizes, in id order: the
    same due reports always make the same batches, so evaluating a tick again asks for the same runs."""
    ordered = sorted(report_ids)
    if not ordered:
        return []
    count = -(-len(ordered) // size)
    share, extra = divmod(len(ordered), count)
    out, start = [], 0
    for index in range(count):
        end = start + share + (1 if index < extra else 0)
        out.append(ordered[start:end])
        start = end
    return out


def batch_run_config(report_ids: list[str]) -> dict[str, Any]:
    return {"ops": {OP_NAME: {"config": {"report_ids": report_ids}}}}


def members_of(run: dg.DagsterRun) -> list[str]:
    """The reports a batch run was asked to deliver (its run config)."""
    return list(run.run_config.get("ops", {}).get(OP_NAME, {}).get("config", {}).get("report_ids", []))


def _evaluation(result: dg.AssetCheckResult, key: dg.AssetKey, partition: str) -> dg.AssetCheckEvaluation:
    """A report's check result as the evaluation of its partition's check: a step that is not the
    asset's own logs evaluations, not results."""
    assert result.check_name is not None
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=result.check_name,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
        partition=partition,
    )


def _deliver_report(
    context: dg.OpExecutionContext,
    report_id: str,
    local_date: date,
    service: ReportService,
    home: Home,
    opened: Archive,
    delivery: ReportDeliveryIOManager,
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """One report of the batch, as its report job's run would build and deliver it."""
    tags = dict(context.run.tags)
    report = build_report(service, home, opened, report_id, local_date, tags, context.run.run_id)
    key = dg.AssetKey(asset_name(report.report_type))
    partition = str(partition_key(report_id, local_date))
    evaluations = [_evaluation(result, key, partition) for result in report.results]
    if report.problems:
        yield from evaluations
        raise withheld(context.run.run_id, service, opened, report)
    requests = report.requests
    described, failures = delivery.deliver_requests(context, requests)
    if failures:
        raise failed_deliveries(requests, failures)
    metadata = report.metadata()
    if described:
        metadata.update(described[0] if len(requests) == 1 else delivery_metadata(described))
    yield dg.AssetMaterialization(asset_key=key, partition=partition, metadata=metadata)
    yield from evaluations


@dg.op(
    name=OP_NAME,
    out={},
    description="Builds and delivers each report of the batch in turn, each to its own destinations.",
)
def deliver_reports(
    context: dg.OpExecutionContext,
    config: BatchConfig,
    registry: RegistryResource,
    usage_store: UsageStoreResource,
    archive: ArchiveResource,
    # The report job's own delivery IO manager, as a resource: the same deliveries and audit records.
    delivery_io_manager: dg.ResourceParam[ReportDeliveryIOManager],
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    local_date = datetime.fromisoformat(context.run.tags[TAG_SCHEDULED]).date()
    # Opened once for the batch: the reports share the registry, the data folder and the archive.
    service, home, opened = registry.service(), usage_store.home_dir(), archive.open()
    failed: dict[str, str] = {}
    for report_id in config.report_ids:
        try:
            yield from _deliver_report(context, report_id, local_date, service, home, opened, delivery_io_manager)
        except Exception as exc:
            # The audit log has the report's FAILED run (build_report and delivery record it);
            # report_batch_sensor runs the report again on its own.
            failed[report_id] = one_line(exc)
            context.log.error(f"report {report_id}: {failed[report_id]}; it runs again in a run of its own")
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} of {len(config.report_ids)} reports of the batch failed; "
            "each runs again in a run of its own: " + ", ".join(failed),
            metadata={"failed": dg.MetadataValue.json(failed)},
            allow_retries=False,
        )


report_batch_job = dg.GraphDefinition(name=BATCH_JOB, node_defs=[deliver_reports]).to_job(
    description="Builds and delivers the reports due at one scheduled time, several to a run.",
    executor_def=dg.in_process_executor,
    # Each report that fails is run again on its own (report_batch_sensor); retrying the whole
    # batch would build the others again for nothing.
    tags={"dagster/max_retries": "0"},
)


def rerun_requests(run: dg.DagsterRun, registry: RegistryResource) -> list[dg.RunRequest]:
    """The report job's own run for each report of the finished batch run that it did not
    deliver; audit rows the batch left unfinished (its worker died) are marked FAILED first."""
    service = registry.service()
    rows = service.system.runs_for_dagster_run(run.run_id)
    for row in rows:
        if row.finished_at is None:
            service.system.record_run_finish(row.id, status="FAILED", error="the batch run ended before this report")
    delivered = {row.report_id for row in rows if row.status == "SUCCESS"}
    attempts: dict[str, int] = {}
    for row in rows:
        attempts[row.report_id] = max(attempts.get(row.report_id, 0), row.attempt or 1)
    scheduled = datetime.fromisoformat(run.tags[TAG_SCHEDULED])
    requests = []
    for report_id in members_of(run):
        if report_id in delivered:
            continue
        view = service.system.report_for_run(report_id)
        if view is None or view.deleted_at is not None:
            continue
        requests.append(
            dg.RunRequest(
                run_key=run_key(report_id, scheduled),
                job_name=report_jobs[view.type].name,
                partition_key=partition_key(report_id, scheduled.date()),
                tags={
                    TAG_REPORT: report_id,
                    TAG_SCHEDULED: scheduled.isoformat(),
                    TAG_TRIGGER: "retry",
                    TAG_EARLIER_ATTEMPTS: str(attempts.get(report_id, 0)),
                    TAG_BATCH_RUN: run.run_id,
                },
            )
        )
    return requests


@dg.run_failure_sensor(
    name="report_batch_failure_sensor",
    monitored_jobs=[report_batch_job],
    request_jobs=list(report_jobs.values()),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs each report a failed batch run did not deliver again, in a run of its own.",
)
def report_batch_failure_sensor(context: dg.RunFailureSensorContext, registry: RegistryResource):  # noqa: ANN201
    requests = rerun_requests(context.dagster_run, registry)
    if not requests:
        return dg.SkipReason(f"batch run {context.dagster_run.run_id}: every report was delivered or is deleted")
    return requests
