"""Sensors that keep Dagster in step with the registry and the audit log."""

import dagster as dg

from report_platform.scheduling.exports import TAG_REPORT
from report_platform.scheduling.resources import ConnectionsResource, RegistryResource
from report_platform.scheduling.webserver import reload_code_location


def registry_sensor(loaded_revision: int) -> dg.SensorDefinition:
    """Reloads the code location when reports were created, edited or deleted since it loaded."""

    @dg.sensor(
        name="report_registry_sensor",
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Reloads report schedules when the registry changes (no restart needed).",
    )
    def _sensor(context: dg.SensorEvaluationContext, registry: RegistryResource) -> dg.SkipReason:
        current = registry.service().system.revision()
        if current == loaded_revision:
            return dg.SkipReason(f"registry unchanged (revision {current})")
        reloaded = reload_code_location()
        return dg.SkipReason(
            f"registry revision {loaded_revision} -> {current}: "
            + ("code location reload requested" if reloaded else "no webserver to reload; schedules load at next start")
        )

    return _sensor


@dg.run_failure_sensor(
    name="report_run_failure_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks failed report runs FAILED in the audit log and tells the owner once a run fails for good.",
    monitor_all_code_locations=False,
)
def report_run_failure_sensor(
    context: dg.RunFailureSensorContext, registry: RegistryResource, connections: ConnectionsResource
) -> None:
    from report_platform.scheduling.failures import record_failure, will_be_retried

    run = context.dagster_run
    if TAG_REPORT not in run.tags:
        return
    failure = context.failure_event
    message = failure.message if failure else "run failed"
    reason = getattr(failure.event_specific_data, "failure_reason", None) if failure else None
    retried = will_be_retried(run, context.instance, reason)
    record_failure(run, message or "run failed", registry.service(), connections.load(), will_retry=retried)
