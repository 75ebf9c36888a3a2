"""Shared definitions for the report-definition logic tests."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from report_platform.reports.definition import KnownNames
from report_platform_tests.samples import sms_definition

DELETE = object()

BASE: dict[str, Any] = sms_definition(folder="SMS")

# An S3 destination with every field set.
S3_KMS: dict[str, Any] = {
    "type": "s3",
    "connection": "reports-aws",
    "bucket": "acme-reports",
    "prefix": "pcid/sms/",
    "server_side_encryption": "aws:kms",
    "kms_key_id": "alias/reports",
}

KNOWN = KnownNames(
    organizations={"acme": frozenset({"acme-east", "acme-west", "acme-labs"})},
    workflows={"acme-east": frozenset({"inbound-screening", "outbound-check"})},
    campaigns={
        "acme-east": {
            "core": frozenset({"Acme East Callback", "Acme East Sales Line"}),
            "engage": frozenset({"Acme East Promotions"}),
        }
    },
)


def variant(changes: dict[str, Any] | None = None, base: dict[str, Any] = BASE) -> dict[str, Any]:
    """A copy of `base` with dotted paths set to new values (or removed with DELETE)."""
    data = copy.deepcopy(base)
    for path, value in (changes or {}).items():
        *parents, last = path.split(".")
        target = data
        for part in parents:
            target = target.setdefault(part, {})
        if value is DELETE:
            target.pop(last, None)
        else:
            target[last] = copy.deepcopy(value)
    return data


@pytest.fixture
def known() -> KnownNames:
    return KNOWN
