"""Delivery of a built file to e-mail, SFTP or S3. Knows nothing about report types.

The names below are imported when first used (PEP 562): report definitions use the
destination models, and must not pay for boto3, paramiko, Dagster and SQLAlchemy, which the
senders and the ledger import.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULE_OF = {
    "Artifact": "artifact",
    "Receipt": "artifact",
    "Connections": "connections",
    "S3Connection": "connections",
    "SftpConnection": "connections",
    "SmtpConnection": "connections",
    "parse_destination": "destinations",
    "deliver": "dispatch",
    "ConfigurationError": "errors",
    "DeliveryError": "errors",
    "PermanentDeliveryError": "errors",
    "TransientDeliveryError": "errors",
    "DeliveryIdentity": "ledger",
    "DeliveryLedger": "ledger",
    "DeliveryRequest": "request",
    "deliver_with_retries": "retry",
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})
