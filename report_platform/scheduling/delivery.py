"""The report runs' IO manager: delivers each built file and writes the outcome to the audit log."""

from __future__ import annotations

from typing import Any

import dagster as dg

from report_platform import redaction
from report_platform.app import SYSTEM_ACTOR, open_service
from report_platform.delivery.io_managers import DeliveryIOManager
from report_platform.delivery.request import DeliveryRequest


class ReportDeliveryIOManager(DeliveryIOManager):
    """Delivers a report run's file(s) to the report's destination and records each run's
    outcome (SUCCESS with where it went, or FAILED with the reason) in the audit log."""

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        requests = obj if isinstance(obj, list) else [obj]
        service = open_service()
        for request in requests:
            audit_id = request.extra.get("audit_run_id") if isinstance(request, DeliveryRequest) else None
            try:
                with redaction.redacting_errors():
                    receipt = self.deliver_request(context, request)
            except Exception as exc:
                if audit_id:
                    # Redacted before it is cut to one line, so no part of a secret survives the cut.
                    text = redaction.redact(str(exc)).strip().splitlines()
                    service.record_run_finish(
                        SYSTEM_ACTOR, audit_id, status="FAILED", error=(text[0] if text else type(exc).__name__)[:2000]
                    )
                raise
            if audit_id is None:
                continue
            service.record_run_finish(
                SYSTEM_ACTOR,
                audit_id,
                status="SUCCESS",
                rows=request.extra.get("rows"),
                bytes=request.artifact.size,
                sha256=request.artifact.sha256,
                delivered_to=[receipt.to_dict()] if receipt else [],
                note=request.skip_reason if receipt is None else None,
            )
