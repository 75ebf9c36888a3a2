"""The report runs' IO manager: delivers each built file and writes the outcome to the audit log."""

from __future__ import annotations

from typing import Any

import dagster as dg

from report_platform import redaction
from report_platform.delivery.errors import DeliveryError
from report_platform.delivery.io_managers import DeliveryIOManager
from report_platform.delivery.ledger import DeliveryLedger
from report_platform.delivery.request import DeliveryRequest
from report_platform.scheduling.resources import RegistryResource


class ReportDeliveryIOManager(DeliveryIOManager):
    """Delivers a report run's file(s) to the report's destination and records each run's
    outcome (SUCCESS with where it went, or FAILED with the reason) in the audit log."""

    registry: RegistryResource

    def _ledger(self) -> DeliveryLedger:
        # The ledger lives in the registry's database: the same URL the registry resource names,
        # not a second setting that could point elsewhere.
        return DeliveryLedger.open(self.registry.registry_url, lease_seconds=self.lease_seconds)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        # Several requests when one materialisation covers several ticks (a backfilled hourly
        # report): each is delivered and recorded on its own, a failed one does not stop the rest.
        requests = obj if isinstance(obj, list) else [obj]
        service = self.registry.service()
        described: list[dict[str, Any]] = []
        failures: list[Exception] = []
        for request in requests:
            audit_id = request.extra.get("audit_run_id") if isinstance(request, DeliveryRequest) else None
            try:
                with redaction.redacting_errors():
                    receipt, metadata = self.deliver_one(context, request)
            except Exception as exc:
                if audit_id:
                    # Redacted before it is cut to one line, so no part of a secret survives the cut.
                    text = redaction.redact(str(exc)).strip().splitlines()
                    service.system.record_run_finish(
                        audit_id, status="FAILED", error=(text[0] if text else type(exc).__name__)[:2000]
                    )
                failures.append(exc)
                continue
            described.append(metadata)
            if audit_id is None:
                continue
            service.system.record_run_finish(
                audit_id,
                status="SUCCESS",
                rows=request.extra.get("rows"),
                bytes=request.artifact.size,
                sha256=request.artifact.sha256,
                delivered_to=[receipt.to_dict()] if receipt else [],
                note=_note(request.skip_reason if receipt is None else None, request.extra.get("filters")),
            )
        if len(requests) == 1 and described:
            context.add_output_metadata(described[0])
        elif described:
            context.add_output_metadata(
                {
                    "deliveries": dg.MetadataValue.json(_plain(described)),
                    "delivered_files": dg.MetadataValue.int(len(described)),
                }
            )
        if failures:
            if len(failures) == 1:
                raise failures[0]
            first = redaction.redact(str(failures[0])).strip().splitlines()
            raise DeliveryError(
                f"{len(failures)} of {len(requests)} files were not delivered; the first: {first[0] if first else ''}"
            ) from None


def _note(skipped: str | None, filters: str | None) -> str | None:
    """The audit row's note: why nothing was sent, and the filter the file was built with."""
    parts = [skipped, f"filtered: {filters}" if filters else None]
    return "; ".join(p for p in parts if p) or None


def _plain(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metadata entries as JSON-ready values (Dagster metadata values carry theirs in `.value`)."""
    return [{k: getattr(v, "value", v) for k, v in entry.items()} for entry in entries]
