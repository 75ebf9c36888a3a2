"""Schedules: cron strings for Dagster, and the runs Dagster makes from them (next run, ticks)."""

from __future__ import annotations

import calendar
import functools
import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from report_platform.reports.definition import Schedule

_OTHER_MONTHS = "1,3,4,5,6,7,8,9,10,11,12"
_THIRTY_DAY_MONTHS = "4,6,9,11"
# How far from its wall time Dagster fires across a DST change (3 h seen, Antarctica/Casey).
_DST_SHIFT = timedelta(hours=4)
# Where Dagster's iteration starts each day (see `_runs_from`).
_ANCHOR = time(12, 0, 1)


@functools.lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name (cached)."""
    return ZoneInfo(name)


def _exists(naive: datetime, tz: ZoneInfo) -> bool:
    aware = naive.replace(tzinfo=tz, fold=0)
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive


def _gap_end(naive: datetime, tz: ZoneInfo) -> datetime:
    """First real instant after the DST gap that swallowed the wall time `naive` (in UTC)."""
    candidates = sorted(naive.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1))
    lo, hi = candidates
    after_offset = hi.astimezone(tz).utcoffset()
    # Transitions fall on whole seconds; bisect for the first second on the new offset.
    low, high = 0, int((hi - lo).total_seconds())
    while low < high:
        mid = (low + high) // 2
        if (lo + timedelta(seconds=mid)).astimezone(tz).utcoffset() == after_offset:
            high = mid
        else:
            low = mid + 1
    return lo + timedelta(seconds=low)


def wall_time_to_utc(naive: datetime, tz: ZoneInfo) -> datetime:
    """Resolve a local wall time to an instant (for periods and times a person types).

    A time inside a spring-forward gap becomes the end of the gap (02:30 -> 03:00); an ambiguous
    fall-back time resolves to its second occurrence. Schedule firings do not use this: they come
    from Dagster (`ticks_between`), whose choices differ when the clocks change outside 01:00-03:59.
    """
    if not _exists(naive, tz):
        return _gap_end(naive, tz)
    return naive.replace(tzinfo=tz, fold=1).astimezone(UTC)


def local_day_start(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of a local calendar day, in UTC (midnight, or the gap's end)."""
    naive = datetime.combine(day, time(0))
    if not _exists(naive, tz):
        return _gap_end(naive, tz)
    return naive.replace(tzinfo=tz, fold=0).astimezone(UTC)


def effective_day_of_month(day_of_month: int, year: int, month: int) -> int:
    """The day a monthly schedule runs in a month: its day, or the month's last day."""
    return min(day_of_month, calendar.monthrange(year, month)[1])


def _day_matches(schedule: Schedule, day: date) -> bool:
    if schedule.frequency == "weekly":
        return day.weekday() == schedule.weekday
    if schedule.frequency == "monthly":
        assert schedule.day_of_month is not None
        return day.day == effective_day_of_month(schedule.day_of_month, day.year, day.month)
    return True


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")


def _runs_from(schedule: Schedule, start: datetime) -> Iterator[datetime]:
    """The schedule's runs at or after `start`, ascending, as Dagster's scheduler makes them.

    Dagster's own iterator over the cron strings and timezone of the report's ScheduleDefinition,
    minus the firings its tick evaluation skips (`is_due`). It starts at the last local noon
    before `start`, a second past, as the scheduler restarts it just after a tick: no zone
    changes its clocks near noon, and a start inside a DST change or on the minute can throw
    Dagster off its rhythm (or fail its own invariant check).
    """
    # Imported on first use: describing or validating a schedule need not load Dagster.
    from dagster._check import CheckError
    from dagster._utils.schedules import schedule_execution_time_iterator

    tz = zone(schedule.timezone)
    start_utc = start.astimezone(UTC)
    cron = dagster_cron_schedule(schedule)
    day = start.astimezone(tz).date()
    if datetime.combine(day, _ANCHOR, tz) >= start:
        day -= timedelta(days=1)
    for days_back in range(7):
        anchor = datetime.combine(day - timedelta(days=days_back), _ANCHOR, tz)
        fired = schedule_execution_time_iterator(anchor.timestamp(), cron, schedule.timezone)
        try:
            first = next(fired)
        except CheckError:
            continue
        break
    else:
        raise ValueError(f"Dagster cannot iterate {cron!r} in {schedule.timezone} near {start.isoformat()}")
    for tick in itertools.chain([first], fired):
        # As the tick evaluation receives it: the instant, in the execution timezone.
        at = datetime.fromtimestamp(tick.timestamp(), tz)
        if at.astimezone(UTC) >= start_utc and is_due(schedule, at):
            yield at


def next_run_after(schedule: Schedule, after: datetime) -> datetime:
    """The first run strictly after `after` (aware), in the report's timezone.

    Runs fire at the start of the minute: the seconds of time_of_day are not used. So the first
    run after any instant of a minute is the first run after the minute's start, which is what is
    computed (and remembered: a list of a thousand reports asks for each one's next run, and
    Dagster's iterator costs about a millisecond a call).
    """
    _require_aware(after, "after")
    minute = after.astimezone(UTC).replace(second=0, microsecond=0)
    return _next_run_after_minute(schedule.model_dump_json(), minute)


@functools.lru_cache(maxsize=8192)
def _next_run_after_minute(schedule_json: str, minute: datetime) -> datetime:
    schedule = Schedule.model_validate_json(schedule_json)
    return next(at for at in _runs_from(schedule, minute) if at.astimezone(UTC) > minute)


def ticks_between(schedule: Schedule, start: datetime, end: datetime) -> Iterator[datetime]:
    """Every run in [start, end), ascending, in the report's timezone."""
    _require_aware(start, "start")
    _require_aware(end, "end")
    end_utc = end.astimezone(UTC)
    for at in _runs_from(schedule, start):
        if at.astimezone(UTC) >= end_utc:
            return
        yield at


def is_due(schedule: Schedule, local_dt: datetime) -> bool:
    """Whether a firing at `local_dt` is for a day the schedule runs.

    Monthly schedules on day 29-31 have cron entries that fire on both Feb 28 and 29; this
    tells the extra firing apart. A naive `local_dt` is taken as wall-clock time in the
    report's timezone.
    """
    if local_dt.tzinfo is not None:
        local_dt = local_dt.astimezone(zone(schedule.timezone))
    return _day_matches(schedule, _fired_for(schedule, local_dt.replace(tzinfo=None)))


def _fired_for(schedule: Schedule, wall: datetime) -> date:
    """The day whose run a firing at local wall time `wall` is.

    Across a DST change Dagster fires up to a few hours off the time of day, sometimes on the
    next or previous date (Nuuk 23:30 -> 00:30 the next day, Dublin 01:00 -> 00:00).
    """
    tod = schedule.time_of_day
    for day in (wall.date(), wall.date() - timedelta(days=1), wall.date() + timedelta(days=1)):
        if abs(wall - datetime.combine(day, time(tod.hour, tod.minute))) <= _DST_SHIFT:
            return day
    return wall.date()


def cron_schedules(schedule: Schedule) -> list[str]:
    """Cron strings in the report's local time, for a Dagster schedule with that timezone.

    Cron has no seconds: runs fire at HH:MM:00. For day_of_month 29-31 the entries also fire
    on Feb 28 in leap years; filter those firings with `is_due`.
    """
    minute, hour = schedule.time_of_day.minute, schedule.time_of_day.hour
    if schedule.frequency == "hourly":
        return [f"{minute} * * * *"]
    if schedule.frequency == "daily":
        return [f"{minute} {hour} * * *"]
    if schedule.frequency == "weekly":
        assert schedule.weekday is not None
        return [f"{minute} {hour} * * {(schedule.weekday + 1) % 7}"]
    day = schedule.day_of_month
    assert day is not None
    if day <= 28:
        return [f"{minute} {hour} {day} * *"]
    crons = [f"{minute} {hour} 28,29 2 *"]
    if day == 31:
        crons.append(f"{minute} {hour} 30 {_THIRTY_DAY_MONTHS} *")
        crons.append(f"{minute} {hour} 31 1,3,5,7,8,10,12 *")
    else:
        crons.append(f"{minute} {hour} {day} {_OTHER_MONTHS} *")
    return crons


def dagster_cron_schedule(schedule: Schedule) -> str | list[str]:
    """The `cron_schedule` of the report's Dagster ScheduleDefinition: one string, or a list."""
    crons = cron_schedules(schedule)
    return crons[0] if len(crons) == 1 else crons


def describe_schedule(schedule: Schedule) -> str:
    """The schedule in words, e.g. 'Weekly on Monday at 06:00 Europe/London'."""
    at = schedule.time_of_day.strftime("%H:%M")
    tz = schedule.timezone
    if schedule.frequency == "hourly":
        return f"Hourly at :{schedule.time_of_day.minute:02d} {tz}"
    if schedule.frequency == "daily":
        return f"Daily at {at} {tz}"
    if schedule.frequency == "weekly":
        assert schedule.day_of_week is not None
        return f"Weekly on {schedule.day_of_week.capitalize()} at {at} {tz}"
    day = schedule.day_of_month
    assert day is not None
    last_day_note = " (or the month's last day)" if day > 28 else ""
    return f"Monthly on day {day}{last_day_note} at {at} {tz}"
