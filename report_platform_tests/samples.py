"""Report definitions shared by the test folders: PRODUCT.md §7's example, as a dict."""

from __future__ import annotations

import copy
from typing import Any

_SMS_DEFINITION: dict[str, Any] = {
    "name": "Daily SMS usage",
    "type": "sms_usage",
    "status": "enabled",
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


def sms_definition(**changes: Any) -> dict[str, Any]:
    """A fresh copy of the example, with top-level fields replaced."""
    return {**copy.deepcopy(_SMS_DEFINITION), **changes}
