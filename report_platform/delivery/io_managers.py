"""Dagster IO managers that deliver a report run's built file to its destination.

`handle_output` receives a `DeliveryRequest` (a path and metadata, never rows), delivers it
through `deliver()` (ledger first, then retries) and records where it went as output metadata.
Credentials come from the environment via connections.yaml, never from run config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import dagster as dg

from report_platform.delivery.artifact import Receipt
from report_platform.delivery.connections import Connections
from report_platform.delivery.dispatch import deliver
from report_platform.delivery.errors import ConfigurationError
from report_platform.delivery.ledger import DEFAULT_LEASE_SECONDS, DeliveryLedger, worker_label
from report_platform.delivery.request import DeliveryRequest

_DESTINATION_TYPES = ("email", "sftp", "s3")


class _DeliveryIOManager(dg.ConfigurableIOManager):
    connections_file: str | None = None
    """connections.yaml to use; default `$REPORT_PLATFORM_HOME/connections.yaml`."""
    registry_url: str | None = None
    """Database holding the delivery ledger; default the registry's (`REPORT_PLATFORM_REGISTRY_URL`)."""
    attempts: int = 4
    base_delay_seconds: float = 2.0
    max_delay_seconds: float = 60.0
    lease_seconds: float = DEFAULT_LEASE_SECONDS

    handles: ClassVar[tuple[str, ...]] = _DESTINATION_TYPES

    def _connections(self) -> Connections:
        if self.connections_file:
            return Connections.load(Path(self.connections_file))
        return Connections.from_env()

    def _ledger(self) -> DeliveryLedger:
        from report_platform.settings import Home

        return DeliveryLedger.open(self.registry_url or Home.from_env().registry_url, lease_seconds=self.lease_seconds)

    def handle_output(self, context: dg.OutputContext, obj: DeliveryRequest) -> None:
        self.deliver_request(context, obj)

    def deliver_request(self, context: dg.OutputContext, obj: DeliveryRequest) -> Receipt | None:
        """Deliver one request and record it as output metadata; None when it was skipped."""
        receipt, metadata = self.deliver_one(context, obj)
        context.add_output_metadata(metadata)
        return receipt

    def deliver_one(self, context: dg.OutputContext, obj: DeliveryRequest) -> tuple[Receipt | None, dict[str, Any]]:
        """Deliver one request; return its receipt (None when skipped) and the metadata describing it.

        Dagster keeps one value per metadata key and output, so a caller delivering several files
        from one output collects these and adds them once.
        """
        if not isinstance(obj, DeliveryRequest):
            raise TypeError(f"{type(self).__name__} delivers DeliveryRequest values, got {type(obj).__name__}")
        kind = obj.destination_type
        if kind not in self.handles:
            raise ConfigurationError(
                f"{type(self).__name__} cannot deliver to a {kind!r} destination (report {obj.report_id})"
            )
        if obj.skip:
            context.log.info(f"report {obj.report_id}: {obj.skip_reason}; nothing delivered")
            return None, {"report_id": obj.report_id, "destination": kind, "skipped": obj.skip_reason}
        receipt = deliver(
            obj.artifact,
            obj.destination,
            self._connections(),
            subject=obj.subject,
            body=obj.body,
            ledger=self._ledger(),
            scope=obj.scope or None,
            organization=obj.organization,
            worker=worker_label(_run_id(context)),
            attempts=self.attempts,
            base_delay=self.base_delay_seconds,
            max_delay=self.max_delay_seconds,
            manifest=obj.manifest,
        )
        reused = bool(receipt.extra.get("reused"))
        context.log.info(
            f"report {obj.report_id}: {obj.artifact.filename} "
            f"{'already delivered' if reused else 'delivered'} to {receipt.target}"
        )
        metadata: dict[str, Any] = {
            "report_id": obj.report_id,
            "destination": receipt.destination,
            "target": receipt.target,
            "location": receipt.location,
            "bytes": receipt.size,
            "sha256": receipt.sha256,
            "delivered_at": receipt.delivered_at.isoformat(),
            "reused_earlier_delivery": reused,
            "attempts": int(receipt.extra.get("attempts", 0)),
        }
        if "manifest" in receipt.extra:
            metadata["manifest"] = receipt.extra["manifest"]["target"]
        if "outcomes" in receipt.extra:
            metadata["recipients"] = dg.MetadataValue.json(receipt.extra["outcomes"])
        for key in ("message_id", "zipped", "checksum_sha256", "server_side_encryption", "etag", "already_present"):
            if key in receipt.extra:
                metadata[key] = receipt.extra[key]
        return receipt, metadata

    def load_input(self, context: dg.InputContext) -> Any:
        raise NotImplementedError(
            "delivery IO managers only send files out; read the archived file from the "
            "archive (the DeliveryRequest's artifact path) instead of loading this output"
        )


def _run_id(context: dg.OutputContext) -> str | None:
    try:
        return context.run_id
    except dg.DagsterInvariantViolationError:  # a context built outside a run
        return None


class EmailDeliveryIOManager(_DeliveryIOManager):
    """Mails the built file as an attachment through a named SMTP connection."""

    handles: ClassVar[tuple[str, ...]] = ("email",)


class SftpDeliveryIOManager(_DeliveryIOManager):
    """Uploads the built file to a named SFTP connection (temporary name, then rename)."""

    handles: ClassVar[tuple[str, ...]] = ("sftp",)


class S3DeliveryIOManager(_DeliveryIOManager):
    """Uploads the built file to a bucket through a named S3 connection, checksum verified."""

    handles: ClassVar[tuple[str, ...]] = ("s3",)


class DeliveryIOManager(_DeliveryIOManager):
    """Delivers to whichever destination the request names: e-mail, SFTP or S3."""

    handles: ClassVar[tuple[str, ...]] = _DESTINATION_TYPES
