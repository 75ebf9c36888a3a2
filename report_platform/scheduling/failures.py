"""A report run that failed: FAILED in the audit log, and its owner told once it fails for good.

"For good" means Dagster will not retry it, as Dagster itself records on the failed run
(`dagster/will_retry`). Earlier failures are recorded but mail nobody, so
the owner gets one message per scheduled run, not one per attempt.
"""

from __future__ import annotations

import dagster as dg

from report_platform import redaction
from report_platform.delivery.connections import Connections
from report_platform.registry.service import ReportService
from report_platform.registry.views import ReportView
from report_platform.scheduling.exports import TAG_REPORT

WILL_RETRY_TAG = "dagster/will_retry"  # set by Dagster on every failed run when run retries are on


def will_be_retried(run: dg.DagsterRun) -> bool:
    """Dagster's own answer, the `dagster/will_retry` tag it puts on a failed run (absent: retries
    are off). Re-deriving it from retry numbers misses Dagster's other rules, e.g. that with
    `retry_on_asset_or_op_failure: false` a step failure is final."""
    return run.tags.get(WILL_RETRY_TAG, "false").lower() == "true"


def record_failure(run: dg.DagsterRun, message: str, service: ReportService, connections: Connections) -> list[str]:
    """Mark the run's unfinished audit rows FAILED; returns the owners e-mailed."""
    # The message is stored in the audit log and mailed to the owners: never with a secret in it.
    message = redaction.redact(message)
    report_id = run.tags[TAG_REPORT]
    rows = service.system.runs_for_dagster_run(run.run_id)
    # What the run itself recorded (a campaign no longer in the workspace, a refused upload) says
    # more than Dagster's "steps failed", so the owner is told that.
    recorded = list(dict.fromkeys(redaction.redact(r.error) for r in rows if r.finished_at is not None and r.error))
    for row in rows:
        if row.finished_at is None:
            service.system.record_run_finish(row.id, status="FAILED", error=message[:2000])
    if will_be_retried(run) or not rows:
        return []
    unnotified = [r for r in rows if r.notified_owner_at is None]
    if not unnotified:
        return []
    view = service.system.report_for_run(report_id)
    if view is None:
        return []
    owners = notify_owner(view, run.run_id, "; ".join(recorded)[:2000] or message, connections)
    for row in unnotified:
        service.system.record_owner_notified(row.id)
    return owners


def notify_owner(view: ReportView, dagster_run_id: str, message: str, connections: Connections) -> list[str]:
    from report_platform.delivery.email import send_notice

    owners = sorted({view.updated_by, view.created_by})
    if not owners:
        return []
    name = "default"
    send_notice(
        connection_name=name,
        connection=connections.get_smtp(name),
        to=owners,
        subject=f"Scheduled report failed: {view.name}",
        body=(
            f'The scheduled report "{view.name}" ({view.id}) failed and will not be retried.\n\n'
            f"Error: {message}\n\nDagster run: {dagster_run_id}\n"
            "See the report's audit log (report-platform reports audit-log) for its history.\n"
        ),
    )
    return owners
