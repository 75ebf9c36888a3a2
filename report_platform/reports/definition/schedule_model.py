"""The `schedule:` of a definition: wall-clock time in an IANA timezone, and how time and zone are read."""

from __future__ import annotations

import difflib
import functools
import re
import zoneinfo
from collections.abc import Mapping
from datetime import time
from typing import Any, Literal

from pydantic import field_serializer, field_validator, model_validator

from report_platform.reports.definition.fields import WEEKDAYS, FieldError, StrictModel, require_text, shown

_TIME_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])")


@functools.lru_cache(maxsize=1)
def _all_timezones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def check_timezone(value: Any) -> str:
    """Return `value` if it names an IANA timezone, else raise ValueError with a suggestion."""
    name = require_text(value, "an IANA timezone name like 'America/New_York'").strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, _all_timezones(), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else " (use an IANA name like 'Europe/London')"
        raise ValueError(f"unknown timezone {shown(name)}{hint}") from None
    return name


def parse_time_of_day(value: Any) -> time:
    """Parse a strict `HH:MM:SS` string."""
    if isinstance(value, time):
        return value.replace(microsecond=0, tzinfo=None)
    if not isinstance(value, str) or not _TIME_RE.fullmatch(value.strip()):
        raise ValueError(f"must be HH:MM:SS (e.g. '06:00:00'), got {shown(value)}")
    hours, minutes, seconds = (int(p) for p in value.strip().split(":"))
    return time(hours, minutes, seconds)


class Schedule(StrictModel):
    """When a report runs: wall-clock time in its IANA timezone."""

    timezone: str
    frequency: Literal["hourly", "daily", "weekly", "monthly"]
    time_of_day: time
    day_of_week: str | None = None
    day_of_month: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill_day_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = dict(data)
            if data.get("frequency") == "weekly" and data.get("day_of_week") is None:
                data["day_of_week"] = "monday"
            if data.get("frequency") == "monthly" and data.get("day_of_month") is None:
                data["day_of_month"] = 1
        return data

    _timezone = field_validator("timezone", mode="before")(check_timezone)

    @field_validator("time_of_day", mode="before")
    @classmethod
    def _time(cls, value: Any) -> time:
        return parse_time_of_day(value)

    @field_validator("day_of_week", mode="before")
    @classmethod
    def _weekday(cls, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            key = value.strip().lower()
            for name in WEEKDAYS:
                if key in (name, name[:3]):
                    return name
        raise ValueError(f"must be a weekday name like 'monday' or 'mon', got {shown(value)}")

    @field_validator("day_of_month", mode="before")
    @classmethod
    def _month_day(cls, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 31:
            raise ValueError(f"must be a whole number from 1 to 31, got {shown(value)}")
        return value

    @model_validator(mode="after")
    def _day_matches_frequency(self) -> Schedule:
        if self.day_of_week is not None and self.frequency != "weekly":
            raise FieldError(
                "day_of_week",
                f"only allowed when frequency is weekly (frequency is {self.frequency})",
            )
        if self.day_of_month is not None and self.frequency != "monthly":
            raise FieldError(
                "day_of_month",
                f"only allowed when frequency is monthly (frequency is {self.frequency})",
            )
        return self

    @field_serializer("time_of_day")
    def _dump_time(self, value: time) -> str:
        return value.strftime("%H:%M:%S")

    @property
    def weekday(self) -> int | None:
        """Day of week as Python counts it (Monday = 0), for weekly schedules."""
        return WEEKDAYS.index(self.day_of_week) if self.day_of_week else None
