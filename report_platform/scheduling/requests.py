"""A report run's delivery request: the archived file, where it goes, and the rendered texts.

Here, not in `reports` or `delivery`, because it is where the two meet: reports know nothing of
delivery and delivery knows nothing of report types.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from report_platform.delivery.artifact import Artifact
from report_platform.delivery.request import DeliveryRequest
from report_platform.reports.builders.catalog import columns_for
from report_platform.reports.definition import Destination, ReportDefinition, applied_filters
from report_platform.reports.produce import Prepared
from report_platform.reports.templates import render, render_header, template_context


def delivery_requests(
    report_id: str, organization: str, definition: ReportDefinition, prepared: Prepared
) -> list[DeliveryRequest]:
    """One request per destination of the report, in the order written; all share the run's scope,
    and the ledger keeps each destination's deliveries apart (its type, connection and target)."""
    return [
        _request(report_id, organization, definition, prepared, destination)
        for destination in definition.all_destinations
    ]


def _request(
    report_id: str, organization: str, definition: ReportDefinition, prepared: Prepared, chosen: Destination
) -> DeliveryRequest:
    archived = prepared.archived
    context = template_context(definition.name, archived.scheduled_at, prepared.period)
    destination = chosen.model_dump(mode="json", exclude_none=True)
    subject = body = None
    if destination["type"] == "email":
        subject = render_header(destination.pop("subject_template", "{{ReportName}} - {{Date}}"), context)
        body_template = destination.pop("body_template", None)
        body = render(body_template, context) if body_template else None
    artifact = Artifact(
        path=archived.path,
        filename=archived.path.name,
        sha256=archived.sha256,
        size=archived.size,
        content_type=archived.content_type or "application/octet-stream",
        keep=archived.keep,
    )
    skip = prepared.rows == 0 and not definition.send_when_empty
    scope = f"{report_id}/{archived.path.parent.name}"
    return DeliveryRequest(
        artifact=artifact,
        destination=destination,
        report_id=report_id,
        organization=organization,
        subject=subject,
        body=body,
        skip=skip,
        scope=scope,
        manifest=manifest_fields(report_id, scope, definition, prepared) if destination.get("manifest") else None,
    )


def manifest_fields(report_id: str, run_id: str, definition: ReportDefinition, prepared: Prepared) -> dict[str, Any]:
    """What a run's `<file>.manifest.json` says about it; delivery adds the delivered file's facts.

    Only what every attempt and retry of the run repeats exactly (the manifest must be the same
    bytes each time): `run_id` is the run's identity (report id / scheduled time in UTC, plus a
    backfill's id) shared by its retries, and `built_at` is when the archived file was built.
    """
    tz = ZoneInfo(definition.schedule.timezone)
    period = prepared.period
    events = bool(getattr(definition.filters, "include_event_details", False))
    fields: dict[str, Any] = {
        "report_id": report_id,
        "report_name": definition.name,
        "report_type": definition.type,
        "run_id": run_id,
        "scheduled_at": prepared.archived.scheduled_at.astimezone(tz).isoformat(),
        "period": {
            "start": period.start_utc.astimezone(tz).isoformat(),
            "end": period.end_utc.astimezone(tz).isoformat(),
            "timezone": definition.schedule.timezone,
        },
        "rows": prepared.rows,
        "format": definition.file_format,
        "columns": [{"name": n, "type": t} for n, t in columns_for(definition.type, events)],
        "built_at": prepared.archived.built_at.isoformat(),
    }
    if applied := applied_filters(definition.filters):
        fields["filters"] = applied  # which rows the file holds, in words
    return fields
