"""A report run that failed: FAILED in the audit log, and people told once it fails for good.

"For good" means Dagster will not retry it, as Dagster itself records on the failed run
(`dagster/will_retry`). Earlier failures are recorded but mail nobody, so the owner and the
report's `notify_on_failure` addresses get one message per scheduled run, not one per attempt.
Each final failure also counts towards the report's `pause_after_failures`: at that many in a
row the report pauses itself, which the audit log and the same message say.
"""

from __future__ import annotations

import logging

import dagster as dg
from dagster._core.events import RunFailureReason

from report_platform import redaction
from report_platform.app import definition_of
from report_platform.delivery.connections import Connections
from report_platform.registry.run_log import FinalFailure
from report_platform.registry.service import ReportService
from report_platform.registry.views import ReportView
from report_platform.reports.definition import ReportDefinition
from report_platform.scheduling.exports import TAG_REPORT

log = logging.getLogger(__name__)

WILL_RETRY_TAG = "dagster/will_retry"  # set by Dagster on every failed run when run retries are on


def will_be_retried(
    run: dg.DagsterRun,
    instance: dg.DagsterInstance | None = None,
    failure_reason: RunFailureReason | None = None,
) -> bool:
    """Dagster's own answer, the `dagster/will_retry` tag it puts on a failed run. Re-deriving it
    from retry numbers misses Dagster's other rules, e.g. that with
    `retry_on_asset_or_op_failure: false` a step failure is final.

    Dagster stores the failure first and adds the tag just after, so a sensor can see a failure
    whose tag is not there yet. Given the `instance`, the answer is then Dagster's own function
    for it, the one that will write the tag; without one, no tag means retries are off.
    """
    tag = run.tags.get(WILL_RETRY_TAG)
    if tag is not None:
        return tag.lower() == "true"
    if instance is None or not instance.run_retries_enabled:
        return False
    from dagster._core.execution.retries import auto_reexecution_should_retry_run

    return auto_reexecution_should_retry_run(instance, run.with_status(dg.DagsterRunStatus.FAILURE), failure_reason)


def record_failure(
    run: dg.DagsterRun,
    message: str,
    service: ReportService,
    connections: Connections,
    *,
    will_retry: bool | None = None,
) -> list[str]:
    """Mark the run's unfinished audit rows FAILED; on a final failure count it, pause the report
    at its limit, and mail the owner and `notify_on_failure`. Returns the addresses mailed.

    `will_retry` is whether Dagster retries the run (default: its `dagster/will_retry` tag)."""
    # The message is stored in the audit log and mailed: never with a secret in it.
    message = redaction.redact(message)
    report_id = run.tags[TAG_REPORT]
    rows = service.system.runs_for_dagster_run(run.run_id)
    # What the run itself recorded (a campaign no longer in the workspace, a refused upload) says
    # more than Dagster's "steps failed", so the owner is told that.
    recorded = list(dict.fromkeys(redaction.redact(r.error) for r in rows if r.finished_at is not None and r.error))
    for row in rows:
        if row.finished_at is None:
            service.system.record_run_finish(row.id, status="FAILED", error=message[:2000])
    if (will_be_retried(run) if will_retry is None else will_retry) or not rows:
        return []
    if all(r.notified_owner_at is not None for r in rows):
        return []
    view = service.system.report_for_run(report_id)
    if view is None:
        return []
    # Counted before anyone is mailed, in one transaction that marks the rows: a second look at
    # the same failure (a sensor evaluated again) neither counts nor mails twice.
    definition = definition_of(view.definition)
    outcome = service.system.record_final_failure(
        report_id, [r.id for r in rows], pause_after=definition.pause_threshold
    )
    if not outcome.counted:
        return []
    # What the run recorded (each failed destination, a campaign gone from the workspace) says more
    # than Dagster's "steps failed", so that is what people are told.
    return notify_failure(view, definition, run.run_id, "; ".join(recorded)[:2000] or message, connections, outcome)


def failure_recipients(view: ReportView, definition: ReportDefinition) -> list[str]:
    """The owner (who created and who last changed the report) and its `notify_on_failure`, once each."""
    addresses = [view.created_by, view.updated_by, *definition.failure_recipients]
    chosen: dict[str, str] = {}
    for address in addresses:
        if address and address.lower() not in chosen:
            chosen[address.lower()] = address
    return list(chosen.values())


def notify_failure(
    view: ReportView,
    definition: ReportDefinition,
    dagster_run_id: str,
    message: str,
    connections: Connections,
    outcome: FinalFailure,
) -> list[str]:
    from report_platform.delivery.email import send_notice

    recipients = failure_recipients(view, definition)
    if not recipients:
        return []
    threshold = definition.pause_threshold
    if outcome.paused:
        subject = f"Scheduled report paused after {outcome.consecutive} failed runs: {view.name}"
        streak = (
            f"It has now failed {outcome.consecutive} times in a row, so it has been paused "
            f"(pause_after_failures: {threshold}). It will not run on its schedule until an Owner resumes it "
            f"(report-platform reports resume {view.id}), which also resets the count.\n\n"
        )
    else:
        subject = f"Scheduled report failed: {view.name}"
        streak = (
            f"Failed runs in a row: {outcome.consecutive} (the report pauses itself at {threshold}).\n\n"
            if outcome.consecutive > 1
            else ""
        )
    name = "default"
    send_notice(
        connection_name=name,
        connection=connections.get_smtp(name),
        to=recipients,
        subject=subject,
        body=(
            f'The scheduled report "{view.name}" ({view.id}) failed and will not be retried.\n\n'
            f"Error: {message}\n\n{streak}Dagster run: {dagster_run_id}\n"
            f"Audit log: /reports/{view.id}/audit-log in the console, or "
            f"report-platform reports audit-log {view.id} --user EMAIL\n"
        ),
    )
    log.info("report %s: failure notice sent to %d address(es)", view.id, len(recipients))
    return recipients
