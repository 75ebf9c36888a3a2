"""Delivery failures, split by what a retry can do about them."""

from __future__ import annotations


class DeliveryError(Exception):
    """A file could not be delivered. The message says what to fix and never holds a secret."""

    def __init__(self, message: str, *, destination: str | None = None) -> None:
        super().__init__(message)
        self.destination = destination


class TransientDeliveryError(DeliveryError):
    """Worth retrying: timeouts, dropped connections, SMTP 4xx, S3 5xx/throttling."""


class PermanentDeliveryError(DeliveryError):
    """Retrying will not help until someone changes something (credentials, host key, bucket)."""


class ConfigurationError(PermanentDeliveryError):
    """The connection or destination is wrong: missing env var, unknown connection name, ..."""
