"""Launching report runs outside the schedule: "run now", re-delivery of a period, backfills.

With a Dagster webserver reachable (`make run`), runs and backfills are submitted to it, so the
daemon's run queue, retries and monitoring apply and the UI shows them. Without one (a laptop,
a test), "run now" executes in this process against the same Dagster instance
(`$DAGSTER_HOME`), which still records the run and its materialisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import dagster as dg

from report_platform.app import definition_of
from report_platform.scheduling.exports import (
    TAG_AUDIT_RUN,
    TAG_PERIOD_END,
    TAG_PERIOD_START,
    TAG_REPORT,
    TAG_SCHEDULED,
    TAG_TRIGGER,
    asset_name,
    ensure_report_partition,
    job_name,
    partition_key,
)
from report_platform.scheduling.webserver import LOCATION, webserver, webserver_answers

if TYPE_CHECKING:
    from report_platform.registry import ReportService, RunRequest


def _client():  # noqa: ANN202
    """A GraphQL client for the running webserver, or None when none answers."""
    from dagster_graphql import DagsterGraphQLClient

    if not webserver_answers():
        return None
    host, port = webserver()
    return DagsterGraphQLClient(host, port_number=port, timeout=30)


@dataclass(frozen=True)
class Launched:
    dagster_run_id: str
    where: str  # "webserver" | "in-process"
    success: bool | None  # None while the run is still queued on the webserver


def _tags(
    report_id: str,
    scheduled_at: datetime,
    trigger: str,
    audit_run_id: str | None,
    period: tuple[date, date] | None,
    key: dg.MultiPartitionKey,
) -> dict[str, str]:
    tags = {
        TAG_REPORT: report_id,
        TAG_SCHEDULED: scheduled_at.isoformat(),
        TAG_TRIGGER: trigger,
        "dagster/partition": str(key),
        "dagster/partition/report": key.keys_by_dimension["report"],
        "dagster/partition/date": key.keys_by_dimension["date"],
    }
    if audit_run_id:
        tags[TAG_AUDIT_RUN] = audit_run_id
    if period:
        tags[TAG_PERIOD_START], tags[TAG_PERIOD_END] = period[0].isoformat(), period[1].isoformat()
    return tags


def launch_report_run(
    report_id: str,
    report_type: str,
    scheduled_at: datetime,
    *,
    trigger: str = "run_now",
    audit_run_id: str | None = None,
    period: tuple[date, date] | None = None,
    prefer_webserver: bool = True,
) -> Launched:
    instance = dg.DagsterInstance.get()
    ensure_report_partition(instance, report_type, report_id)
    key = partition_key(report_id, scheduled_at.date())
    tags = _tags(report_id, scheduled_at, trigger, audit_run_id, period, key)
    client = _client() if prefer_webserver else None
    if client is not None:
        run_id = client.submit_job_execution(job_name(report_type), repository_location_name=LOCATION, tags=tags)
        return Launched(run_id, "webserver", None)
    from report_platform.definitions import run_definitions
    from report_platform.resources import deployment_resources

    job = run_definitions().resolve_job_def(job_name(report_type))
    result = job.execute_in_process(
        instance=instance,
        # This process's settings now (the code location may have been loaded under others).
        resources=deployment_resources(),
        partition_key=str(key),
        tags={k: v for k, v in tags.items() if not k.startswith("dagster/partition")},
        raise_on_error=False,
    )
    return Launched(result.run_id, "in-process", result.success)


class RunNotLaunched(RuntimeError):
    """A queued "run now" could not be launched; its audit row is FAILED with this reason."""


def launch_requested_run(service: ReportService, request: RunRequest) -> Launched:
    """Launch a "run now" the registry queued (`request_run_now`), scheduled now in the report's timezone.

    If it cannot be launched (the stored definition no longer passes, Dagster's instance is
    broken, ...), its QUEUED audit row must not wait for a run that never comes: it is recorded
    FAILED with the reason, and `RunNotLaunched` says the same.
    """
    try:
        view = service.system.report_for_run(request.report_id)
        if view is None:
            raise LookupError(f"no report {request.report_id}")
        now = datetime.now(ZoneInfo(definition_of(view.definition).schedule.timezone)).replace(microsecond=0)
        period = (request.period_start, request.period_end) if request.period_start and request.period_end else None
        return launch_report_run(
            request.report_id, view.type, now, trigger="run_now", audit_run_id=request.run_id, period=period
        )
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        reason = f"the run could not be launched: {(lines[0] if lines else type(exc).__name__)[:500]}"
        service.system.record_run_finish(request.run_id, status="FAILED", error=reason)
        raise RunNotLaunched(reason) from exc


def wait_for(run_id: str, timeout: float = 600) -> bool:
    """Wait for a run launched on the webserver; True if it succeeded."""
    import time

    instance = dg.DagsterInstance.get()
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run.status == dg.DagsterRunStatus.SUCCESS
        time.sleep(1)
    raise TimeoutError(f"run {run_id} did not finish within {timeout:.0f} s")


def launch_backfill(report_id: str, report_type: str, dates: list[date]) -> str:
    """An asset backfill of the report's export over the given scheduled dates (one run each)."""
    instance = dg.DagsterInstance.get()
    ensure_report_partition(instance, report_type, report_id)
    keys = [str(partition_key(report_id, d)) for d in dates]
    client = _client()
    if client is None:
        raise RuntimeError("backfills run on the Dagster daemon: start it with `make run`, then try again")
    query = """
    mutation($params: LaunchBackfillParams!) {
      launchPartitionBackfill(backfillParams: $params) {
        __typename
        ... on LaunchBackfillSuccess { backfillId }
        ... on PythonError { message }
        ... on InvalidStepError { invalidStepKey }
        ... on UnauthorizedError { message }
        ... on PartitionSetNotFoundError { message }
      }
    }"""
    params = {
        "assetSelection": [{"path": [asset_name(report_type)]}],
        "partitionNames": keys,
        "tags": [{"key": TAG_REPORT, "value": report_id}, {"key": TAG_TRIGGER, "value": "backfill"}],
    }
    answer = client._execute(query, {"params": params})["launchPartitionBackfill"]  # noqa: SLF001
    if answer["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"the backfill was refused: {answer.get('message') or answer['__typename']}")
    return answer["backfillId"]
