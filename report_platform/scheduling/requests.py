"""A report run's delivery request: the archived file, where it goes, and the rendered texts.

Here, not in `reports` or `delivery`, because it is where the two meet: reports know nothing of
delivery and delivery knows nothing of report types.
"""

from __future__ import annotations

from report_platform.delivery.artifact import Artifact
from report_platform.delivery.request import DeliveryRequest
from report_platform.reports.definition import Destination, ReportDefinition
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
    )
    skip = prepared.rows == 0 and not definition.send_when_empty
    return DeliveryRequest(
        artifact=artifact,
        destination=destination,
        report_id=report_id,
        organization=organization,
        subject=subject,
        body=body,
        skip=skip,
        scope=f"{report_id}/{archived.path.parent.name}",
    )
