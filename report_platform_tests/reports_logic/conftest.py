"""Shared definitions for the report-definition logic tests."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from report_platform.reports.definition import KnownNames

DELETE = object()

BASE: dict[str, Any] = {
    "name": "Daily SMS usage",
    "type": "sms_usage",
    "status": "enabled",
    "folder": "SMS",
    "workspace": "acme-east",
    "schedule": {"timezone": "America/New_York", "frequency": "daily", "time_of_day": "06:00:00"},
    "period": {"kind": "previous_day"},
    "destination": {
        "type": "email",
        "to": ["ops@example.com"],
        "cc": [],
        "bcc": ["audit@example.com"],
        "subject_template": "{{ReportName}} - {{Date}}",
        "body_template": "Report attached.",
    },
    "filename_pattern": "{{ReportName}}_{{PeriodStart}}_{{PeriodEnd}}.csv",
}

KNOWN = KnownNames(
    organizations={"acme": frozenset({"acme-east", "acme-west", "acme-labs"})},
    workflows={"acme-east": frozenset({"inbound-screening", "outbound-check"})},
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
