"""Delivery of a built file to e-mail, SFTP or S3. Knows nothing about report types."""

from report_platform.delivery.artifact import Artifact, Receipt
from report_platform.delivery.connections import (
    Connections,
    S3Connection,
    SftpConnection,
    SmtpConnection,
)
from report_platform.delivery.dispatch import deliver, parse_destination
from report_platform.delivery.errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from report_platform.delivery.ledger import DeliveryIdentity, DeliveryLedger
from report_platform.delivery.request import DeliveryRequest
from report_platform.delivery.retry import deliver_with_retries

__all__ = [
    "Artifact",
    "ConfigurationError",
    "Connections",
    "DeliveryError",
    "DeliveryRequest",
    "DeliveryIdentity",
    "DeliveryLedger",
    "PermanentDeliveryError",
    "Receipt",
    "S3Connection",
    "SftpConnection",
    "SmtpConnection",
    "TransientDeliveryError",
    "deliver",
    "deliver_with_retries",
    "parse_destination",
]
