"""The `period:` of a definition: which stretch of time a run reports on."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import Discriminator, field_validator, model_validator

from report_platform.reports.definition.fields import FieldError, StrictModel, shown
from report_platform.reports.period_bounds import period_dates_problem

# A rolling window longer than a year is almost certainly a typo (e.g. 700d for 70d).
MAX_LOOKBACK_MINUTES = 366 * 24 * 60
_LOOKBACK_RE = re.compile(r"([1-9][0-9]{0,6})([mhdw])")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 24 * 60, "w": 7 * 24 * 60}
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _parse_date(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_RE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"must be a date YYYY-MM-DD, got {shown(value)}")


class PreviousDay(StrictModel):
    """The local calendar day before the scheduled time."""

    kind: Literal["previous_day"]


class PreviousWeek(StrictModel):
    """The last full Monday-Sunday week before the scheduled time."""

    kind: Literal["previous_week"]


class PreviousMonth(StrictModel):
    """The last full calendar month before the scheduled time."""

    kind: Literal["previous_month"]


class RollingWindow(StrictModel):
    """A lookback such as `6h` or `7d` ending at the scheduled time."""

    kind: Literal["rolling_window"]
    lookback: str

    @field_validator("lookback", mode="before")
    @classmethod
    def _lookback(cls, value: Any) -> str:
        text = value.strip() if isinstance(value, str) else value
        match = _LOOKBACK_RE.fullmatch(text) if isinstance(text, str) else None
        if not match:
            raise ValueError(
                "must be a positive whole number and a unit m, h, d or w "
                f"(e.g. '30m', '6h', '7d', '2w'), got {shown(value)}"
            )
        if int(match.group(1)) * _UNIT_MINUTES[match.group(2)] > MAX_LOOKBACK_MINUTES:
            raise ValueError(f"must be at most 366 days, got {shown(value)}")
        return text

    @property
    def amount(self) -> int:
        return int(self.lookback[:-1])

    @property
    def unit(self) -> str:
        return self.lookback[-1]


class CustomRange(StrictModel):
    """A fixed local date range, inclusive of both dates."""

    kind: Literal["custom_range"]
    start: date
    end: date

    _dates = field_validator("start", "end", mode="before")(_parse_date)

    @model_validator(mode="after")
    def _within_bounds(self) -> CustomRange:
        problem = period_dates_problem(self.start, self.end)
        if problem is not None:
            raise FieldError(*problem)
        return self


Period = Annotated[
    PreviousDay | PreviousWeek | PreviousMonth | RollingWindow | CustomRange,
    Discriminator("kind"),
]
