"""The next runs and backfill ticks we compute are the runs Dagster's scheduler makes.

The reference is Dagster's own iterator over the ScheduleDefinition that schedules.py builds
(its cron string and execution timezone), started weeks earlier, minus the firings that the
schedule's tick evaluation skips (`is_due`).
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from dagster._utils.schedules import schedule_execution_time_iterator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from report_platform.reports.definition import WEEKDAYS, Schedule
from report_platform.reports.schedule import effective_day_of_month, is_due, next_run_after, ticks_between
from report_platform.scheduling.schedules import timing_schedule

ZONES = sorted(zoneinfo.available_timezones())
MIDNIGHT_DST_ZONES = ("America/Havana", "America/Santiago", "Asia/Beirut")


def _schedule(tz: str, frequency: str, tod: str, **days: object) -> Schedule:
    return Schedule(timezone=tz, frequency=frequency, time_of_day=tod, **days)


def _dagster_runs(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """The runs Dagster's scheduler makes for this schedule in [start, end)."""
    definition = timing_schedule(schedule.model_dump(mode="json"), ["r1"])
    tz = ZoneInfo(definition.execution_timezone)
    # Weeks before, so monthly schedules are on their rhythm; a second past local noon, as the
    # scheduler restarts its iterator just after a tick, never on the minute nor near a DST change.
    anchor = datetime.combine(start.astimezone(tz).date() - timedelta(days=40), time(12, 0, 1), tz)
    runs = []
    for fired in schedule_execution_time_iterator(
        anchor.timestamp(), definition.cron_schedule, definition.execution_timezone
    ):
        # What the schedule's evaluation receives: the tick's instant in the execution timezone.
        at = datetime.fromtimestamp(fired.timestamp(), tz)
        # Compared in UTC: aware datetimes sharing a tzinfo compare by wall clock, ignoring fold.
        if at.astimezone(UTC) >= end.astimezone(UTC):
            return runs
        if at.astimezone(UTC) >= start.astimezone(UTC) and is_due(schedule, at):
            runs.append(at)
    raise AssertionError("unreachable")


def _dst_changes(tz: ZoneInfo, first_year: int, last_year: int) -> list[datetime]:
    """UTC hours in which the zone's offset changes, first_year..last_year inclusive."""
    changes = []
    at = datetime(first_year, 1, 1, tzinfo=UTC)
    end = datetime(last_year + 1, 1, 1, tzinfo=UTC)
    offset = at.astimezone(tz).utcoffset()
    while at < end:
        at += timedelta(hours=1)
        new = at.astimezone(tz).utcoffset()
        if new != offset:
            changes.append(at)
            offset = new
    return changes


def _assert_matches_dagster(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    expected = _dagster_runs(schedule, start, end)
    assert [t.isoformat() for t in ticks_between(schedule, start, end)] == [t.isoformat() for t in expected]
    # In UTC: wall-clock arithmetic just after a spring-forward gap lands an hour late.
    just_before = start.astimezone(UTC) - timedelta(microseconds=1)
    for before, after in zip([just_before, *expected], expected, strict=False):
        assert next_run_after(schedule, before).isoformat() == after.isoformat()
    return expected


@pytest.mark.parametrize("tod", ["00:00:00", "00:30:00", "23:00:00", "23:30:00"])
@pytest.mark.parametrize("tz_name", MIDNIGHT_DST_ZONES)
def test_daily_runs_match_dagster_where_clocks_change_at_midnight(tz_name: str, tod: str) -> None:
    tz = ZoneInfo(tz_name)
    schedule = _schedule(tz_name, "daily", tod)
    changes = _dst_changes(tz, 2024, 2026)
    assert len(changes) >= 5
    for change in changes:
        runs = _assert_matches_dagster(schedule, change - timedelta(days=2), change + timedelta(days=2))
        # Daily: one run on each local day, whatever the clocks do.
        days = [run.date() for run in runs]
        assert days == [days[0] + timedelta(days=n) for n in range(len(days))]
        # The scheduler restarts its iterator just after each tick; it finds the same next run.
        definition = timing_schedule(schedule.model_dump(mode="json"), ["r1"])
        for previous, run in zip(runs, runs[1:], strict=False):
            restarted = schedule_execution_time_iterator(
                previous.timestamp() + 1, definition.cron_schedule, definition.execution_timezone
            )
            assert next(restarted).timestamp() == run.timestamp()


def test_havana_half_past_midnight_on_spring_forward_runs_when_dagster_does() -> None:
    # 2025-03-09 00:00 does not exist in Havana (clocks go to 01:00). Dagster fires the 00:30
    # schedule at 01:30 CDT, not at the end of the gap.
    schedule = _schedule("America/Havana", "daily", "00:30:00")
    tz = ZoneInfo("America/Havana")
    run = next_run_after(schedule, datetime(2025, 3, 8, 12, tzinfo=tz))
    assert run.isoformat() == "2025-03-09T01:30:00-04:00"


def test_beirut_ambiguous_evening_runs_at_the_first_occurrence_as_dagster_does() -> None:
    # Beirut falls back from 24:00 to 23:00 on 2025-10-25: 23:30 happens twice; Dagster fires the
    # first (+03:00), unlike the 01:00-03:00 window where it takes the second.
    schedule = _schedule("Asia/Beirut", "daily", "23:30:00")
    tz = ZoneInfo("Asia/Beirut")
    run = next_run_after(schedule, datetime(2025, 10, 25, 12, tzinfo=tz))
    assert run.isoformat() == "2025-10-25T23:30:00+03:00"


@pytest.mark.parametrize(
    ("tz_name", "tod", "weekday", "week_of_change", "expected"),
    [
        # Nuuk springs forward from 23:00 to 24:00: the Saturday 23:30 run fires at 00:30 Sunday.
        ("America/Nuuk", "23:30:00", "saturday", date(2025, 3, 29), "2025-03-30T00:30:00-01:00"),
        # Dublin's summer time is its standard time: Dagster fires 01:00 at 00:00 on the change.
        ("Europe/Dublin", "01:00:00", "sunday", date(2025, 3, 30), "2025-03-30T00:00:00+00:00"),
    ],
)
def test_weekly_runs_in_the_week_the_clocks_change(
    tz_name: str, tod: str, weekday: str, week_of_change: date, expected: str
) -> None:
    schedule = _schedule(tz_name, "weekly", tod, day_of_week=weekday)
    tz = ZoneInfo(tz_name)
    start = datetime.combine(week_of_change - timedelta(days=7), time(12), tz)
    runs = _assert_matches_dagster(schedule, start, start + timedelta(days=14))
    assert len(runs) == 2
    assert expected in [run.isoformat() for run in runs]


def test_a_backfill_day_window_sees_the_same_ticks_as_dagster() -> None:
    # The backfill asks for one local day at a time, starting at local midnight.
    schedule = _schedule("America/Havana", "daily", "00:00:00")
    tz = ZoneInfo("America/Havana")
    for day in (date(2024, 11, 3), date(2025, 3, 9), date(2025, 11, 2), date(2026, 3, 8)):
        start = datetime.combine(day, time(0), tz)
        end = datetime.combine(day + timedelta(days=1), time(0), tz)
        _assert_matches_dagster(schedule, start, end)


def test_monthly_on_the_31st_matches_dagster_and_runs_on_each_months_last_day() -> None:
    schedule = _schedule("Asia/Beirut", "monthly", "23:30:00", day_of_month=31)
    tz = ZoneInfo("Asia/Beirut")
    runs = _assert_matches_dagster(schedule, datetime(2028, 1, 1, tzinfo=tz), datetime(2029, 1, 1, tzinfo=tz))
    assert [r.day for r in runs] == [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


_HOURS = st.one_of(st.sampled_from([0, 1, 2, 3, 21, 22, 23]), st.integers(0, 23))
_MINUTES = st.one_of(st.sampled_from([0, 30, 45]), st.integers(0, 59))
_SPAN = {"hourly": 2, "daily": 8, "weekly": 50, "monthly": 200}


@st.composite
def _schedules(draw: st.DrawFn) -> Schedule:
    frequency = draw(st.sampled_from(["hourly", "daily", "weekly", "monthly"]))
    days: dict[str, object] = {}
    if frequency == "weekly":
        days["day_of_week"] = draw(st.sampled_from(WEEKDAYS))
    if frequency == "monthly":
        days["day_of_month"] = draw(st.one_of(st.sampled_from([1, 28, 29, 30, 31]), st.integers(1, 31)))
    tod = f"{draw(_HOURS):02d}:{draw(_MINUTES):02d}:{draw(st.integers(0, 59)):02d}"
    return _schedule(draw(st.sampled_from(ZONES)), frequency, tod, **days)


@st.composite
def _windows(draw: st.DrawFn, schedule: Schedule) -> tuple[datetime, datetime]:
    """A window in 2020-2035, most of the time starting shortly before a change of the clocks."""
    tz = ZoneInfo(schedule.timezone)
    year = draw(st.integers(2020, 2035))
    changes = _dst_changes(tz, year, year)
    if changes and draw(st.integers(0, 3)) > 0:
        start = draw(st.sampled_from(changes)) - timedelta(seconds=draw(st.integers(0, 3 * 86400)))
    else:
        start = datetime(year, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 364 * 86400)))
    return start.astimezone(tz), start + timedelta(days=_SPAN[schedule.frequency])


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_runs_match_dagster_for_any_zone_frequency_and_time(data: st.DataObject) -> None:
    schedule = data.draw(_schedules())
    start, end = data.draw(_windows(schedule))
    _assert_matches_dagster(schedule, start, end)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_splitting_a_range_does_not_change_its_ticks(data: st.DataObject) -> None:
    schedule = data.draw(_schedules())
    start, end = data.draw(_windows(schedule))
    middle = start.astimezone(UTC) + (end - start) * data.draw(st.floats(0, 1))
    whole = list(ticks_between(schedule, start, end))
    assert whole == [*ticks_between(schedule, start, middle), *ticks_between(schedule, middle, end)]


def _cron_day(schedule: Schedule, run: datetime) -> date:
    """The local day the run is for: the one whose time of day is nearest (DST moves runs)."""
    tod = schedule.time_of_day
    return (run.replace(tzinfo=None) - timedelta(hours=tod.hour - 12, minutes=tod.minute)).date()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_runs_keep_the_products_day_rules(data: st.DataObject) -> None:
    schedule = data.draw(_schedules().filter(lambda s: s.frequency != "hourly"))
    start, end = data.draw(_windows(schedule))
    days = [_cron_day(schedule, run) for run in ticks_between(schedule, start, end)]
    assert days == sorted(set(days))
    if schedule.frequency == "daily":
        assert all(b - a == timedelta(days=1) for a, b in zip(days, days[1:], strict=False))
    elif schedule.frequency == "weekly":
        assert all(day.weekday() == schedule.weekday for day in days)
        assert all(b - a == timedelta(days=7) for a, b in zip(days, days[1:], strict=False))
    else:
        assert schedule.day_of_month is not None
        assert all(day.day == effective_day_of_month(schedule.day_of_month, day.year, day.month) for day in days)
        months = [(day.year, day.month) for day in days]
        assert len(set(months)) == len(months)
