"""What every part of a report definition shares: names of things, caps, the error type and field checks."""

from __future__ import annotations

# The field checks are delivery's: a destination is checked there again when it is delivered,
# with the same messages, and the rest of a definition uses the same checks.
from report_platform.delivery.destinations import (
    CONTROL_CHARACTERS,
    MAX_LIST_ITEMS,
    FieldError,
    StrictModel,
    check_list_length,
    require_text,
    shown,
    single_line,
    strict_bool,
)
from report_platform.reports.templates import template_errors

__all__ = [
    "CONTROL_CHARACTERS",
    "FREQUENCIES",
    "MAX_DEFINITION_BYTES",
    "MAX_LIST_ITEMS",
    "MAX_NESTING_DEPTH",
    "MAX_PROBLEMS_LISTED",
    "PERIOD_KINDS",
    "TOO_LARGE",
    "WEEKDAYS",
    "DefinitionError",
    "FieldError",
    "StrictModel",
    "check_list_length",
    "check_template",
    "require_text",
    "shown",
    "single_line",
    "strict_bool",
]

FREQUENCIES: tuple[str, ...] = ("hourly", "daily", "weekly", "monthly")
WEEKDAYS: tuple[str, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
PERIOD_KINDS: tuple[str, ...] = (
    "previous_day",
    "previous_week",
    "previous_month",
    "rolling_window",
    "custom_range",
)

# Caps on what a definition may hold, so reading and checking one has a size and time bound.
# A real definition is a few hundred bytes, a handful of levels deep, with short lists.
MAX_DEFINITION_BYTES = 256 * 1024
MAX_NESTING_DEPTH = 20  # the top-level mapping is level 1
# MAX_LIST_ITEMS (any list: each of to/cc/bcc, workflows, ...) is delivery's, for the recipients.
MAX_PROBLEMS_LISTED = 50  # beyond that the rest are counted, so the answer stays readable and small
TOO_LARGE = f"the definition is larger than {MAX_DEFINITION_BYTES} bytes (256 KiB), the limit for a report definition"


class DefinitionError(ValueError):
    """A report definition is invalid; `errors` holds one message per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


def check_template(value: str) -> str:
    problems = template_errors(value)
    if problems:
        raise ValueError("; ".join(problems))
    return value
