"""What every part of a report definition shares: names of things, caps, the error type and field checks."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from report_platform.reports.templates import template_errors

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

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# Caps on what a definition may hold, so reading and checking one has a size and time bound.
# A real definition is a few hundred bytes, a handful of levels deep, with short lists.
MAX_DEFINITION_BYTES = 256 * 1024
MAX_NESTING_DEPTH = 20  # the top-level mapping is level 1
MAX_LIST_ITEMS = 1000  # any list: each of to/cc/bcc, workflows, ...
MAX_PROBLEMS_LISTED = 50  # beyond that the rest are counted, so the answer stays readable and small
TOO_LARGE = f"the definition is larger than {MAX_DEFINITION_BYTES} bytes (256 KiB), the limit for a report definition"


class DefinitionError(ValueError):
    """A report definition is invalid; `errors` holds one message per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


class FieldError(ValueError):
    """Raised inside a model validator to attach the message to one of the model's fields."""

    def __init__(self, field_path: str, message: str) -> None:
        self.field_path = field_path
        super().__init__(message)


def shown(value: Any) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


def require_text(value: Any, what: str = "text") -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be {what}, got {shown(value)}")
    return value


def single_line(value: Any, *, max_len: int, allow_empty: bool = False) -> str:
    text = require_text(value).strip()
    if not text and not allow_empty:
        raise ValueError("must not be empty")
    if CONTROL_CHARACTERS.search(text):
        raise ValueError("must be a single line without control characters")
    if len(text) > max_len:
        raise ValueError(f"must be at most {max_len} characters, got {len(text)}")
    return text


def check_list_length(value: list[Any]) -> None:
    if len(value) > MAX_LIST_ITEMS:
        raise ValueError(f"at most {MAX_LIST_ITEMS} items are allowed, got {len(value)}")


def check_template(value: str) -> str:
    problems = template_errors(value)
    if problems:
        raise ValueError("; ".join(problems))
    return value


def strict_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {shown(value)}")
    return value


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
