"""The report runs' IO manager: delivers each built file to each destination and writes the
outcome to the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg

from report_platform import redaction
from report_platform.delivery.artifact import Receipt
from report_platform.delivery.errors import DeliveryError
from report_platform.delivery.io_managers import DeliveryIOManager
from report_platform.delivery.ledger import DeliveryLedger
from report_platform.delivery.request import DeliveryRequest
from report_platform.registry.service import ReportService
from report_platform.scheduling.resources import RegistryResource


@dataclass(frozen=True)
class _Outcome:
    """One request's result: its receipt (None when skipped) or the error that stopped it."""

    request: DeliveryRequest
    receipt: Receipt | None = None
    error: str | None = None

    def entry(self) -> dict[str, Any]:
        """The audit log's record of this destination."""
        entry: dict[str, Any] = {"destination": self.request.destination_label, "type": self.request.destination_type}
        if self.error is not None:
            entry.update(status="failed", error=self.error)
        elif self.receipt is None:
            entry.update(status="skipped", note=self.request.skip_reason)
        else:
            reused = bool(self.receipt.extra.get("reused"))
            entry.update(status="already delivered" if reused else "delivered", target=self.receipt.target)
        return entry


def _one_line(exc: Exception) -> str:
    # Redacted before it is cut to one line, so no part of a secret survives the cut.
    text = redaction.redact(str(exc)).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:2000]


class ReportDeliveryIOManager(DeliveryIOManager):
    """Delivers a report run's file(s) to each of the report's destinations and records each
    run's outcome in the audit log: SUCCESS when every destination has the file, FAILED naming
    each destination that does not, with every destination's own outcome beside it."""

    registry: RegistryResource

    def _ledger(self) -> DeliveryLedger:
        # The ledger lives in the registry's database: the same URL the registry resource names,
        # not a second setting that could point elsewhere.
        return DeliveryLedger.open(self.registry.registry_url, lease_seconds=self.lease_seconds)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        # Several requests: one per destination, and one set per tick when a materialisation covers
        # several (a backfilled hourly report). Each is delivered on its own; a failed one does not
        # stop the rest, and the ledger lets a retry of the run send only what is still missing.
        requests = obj if isinstance(obj, list) else [obj]
        described, failures = self.deliver_requests(context, requests)
        if len(requests) == 1 and described:
            context.add_output_metadata(described[0])
        elif described:
            context.add_output_metadata(delivery_metadata(described))
        if failures:
            raise failed_deliveries(requests, failures) from None

    def deliver_requests(
        self, context: dg.OutputContext | dg.OpExecutionContext, requests: list[Any]
    ) -> tuple[list[dict[str, Any]], list[tuple[Any, Exception]]]:
        """Deliver each request and record each audit-log run's outcome; returns the metadata of
        the deliveries made and the (request, error) of those that failed. A batch run's step
        calls this for each report it delivers (`batches.py`), the report job's output through
        `handle_output`."""
        described: list[dict[str, Any]] = []
        failures: list[tuple[Any, Exception]] = []
        by_run: dict[str, list[_Outcome]] = {}
        for request in requests:
            audit_id = request.extra.get("audit_run_id") if isinstance(request, DeliveryRequest) else None
            try:
                with redaction.redacting_errors():
                    receipt, metadata = self.deliver_one(context, request)  # type: ignore[arg-type]
            except Exception as exc:
                failures.append((request, exc))
                if audit_id:
                    by_run.setdefault(audit_id, []).append(_Outcome(request, error=_one_line(exc)))
                continue
            described.append(metadata)
            if audit_id:
                by_run.setdefault(audit_id, []).append(_Outcome(request, receipt=receipt))
        if by_run:
            service = self.registry.service()
            for audit_id, outcomes in by_run.items():
                _record(service, audit_id, outcomes)
        return described, failures


def delivery_metadata(described: list[dict[str, Any]]) -> dict[str, Any]:
    """The metadata of several deliveries made for one materialisation."""
    return {
        "deliveries": dg.MetadataValue.json(_plain(described)),
        "delivered_files": dg.MetadataValue.int(len(described)),
    }


def failed_deliveries(requests: list[Any], failures: list[tuple[Any, Exception]]) -> Exception:
    """The error a run's failed deliveries raise: the one error itself when it was the only request."""
    if len(failures) == 1 and len(requests) == 1:
        return failures[0][1]
    named = "; ".join(f"{_label(request)}: {_one_line(exc)}" for request, exc in failures)
    return DeliveryError(f"{len(failures)} of {len(requests)} deliveries failed: {named}")


def _label(request: Any) -> str:
    return request.destination_label if isinstance(request, DeliveryRequest) else type(request).__name__


def _record(service: ReportService, audit_id: str, outcomes: list[_Outcome]) -> None:
    """The audit-log run of one tick: SUCCESS only when each destination has the file."""
    first = outcomes[0].request
    failed = [o for o in outcomes if o.error is not None]
    receipts = [o.receipt.to_dict() for o in outcomes if o.receipt is not None]
    built = {"rows": first.extra.get("rows"), "bytes": first.artifact.size, "sha256": first.artifact.sha256}
    destinations = [o.entry() for o in outcomes]
    if failed:
        # With several destinations each failure names its own; a report with one keeps the plain reason.
        several = len(outcomes) > 1
        error = "; ".join(f"{o.request.destination_label}: {o.error}" if several else str(o.error) for o in failed)
        service.system.record_run_finish(
            audit_id, status="FAILED", error=error[:2000], delivered_to=receipts, destinations=destinations, **built
        )
        return
    skipped = all(o.receipt is None for o in outcomes)
    service.system.record_run_finish(
        audit_id,
        status="SUCCESS",
        delivered_to=receipts,
        note=_note(first.skip_reason if skipped else None, first.extra.get("filters")),
        destinations=destinations,
        **built,
    )


def _note(skipped: str | None, filters: str | None) -> str | None:
    """The audit row's note: why nothing was sent, and the filter the file was built with."""
    parts = [skipped, f"filtered: {filters}" if filters else None]
    return "; ".join(p for p in parts if p) or None


def _plain(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metadata entries as JSON-ready values (Dagster metadata values carry theirs in `.value`)."""
    return [{k: getattr(v, "value", v) for k, v in entry.items()} for entry in entries]
