"""Schedules: cron strings, descriptions, next runs and ticks across DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from report_platform.reports.definition import Schedule
from report_platform.reports.schedule import (
    cron_schedules,
    describe_schedule,
    is_due,
    next_run_after,
    ticks_between,
)

NY = ZoneInfo("America/New_York")


def schedule(frequency: str, tod: str = "06:00:00", tz: str = "America/New_York", **days: object) -> Schedule:
    return Schedule(timezone=tz, frequency=frequency, time_of_day=tod, **days)


@pytest.mark.parametrize(
    ("sched", "crons"),
    [
        (schedule("hourly", "00:15:30"), ["15 * * * *"]),
        (schedule("daily", "06:05:00"), ["5 6 * * *"]),
        (schedule("weekly", day_of_week="monday"), ["0 6 * * 1"]),
        (schedule("weekly", day_of_week="sunday"), ["0 6 * * 0"]),
        (schedule("monthly", day_of_month=1), ["0 6 1 * *"]),
        (schedule("monthly", day_of_month=28), ["0 6 28 * *"]),
        (
            schedule("monthly", day_of_month=29),
            ["0 6 28,29 2 *", "0 6 29 1,3,4,5,6,7,8,9,10,11,12 *"],
        ),
        (
            schedule("monthly", day_of_month=30),
            ["0 6 28,29 2 *", "0 6 30 1,3,4,5,6,7,8,9,10,11,12 *"],
        ),
        (
            schedule("monthly", day_of_month=31),
            ["0 6 28,29 2 *", "0 6 30 4,6,9,11 *", "0 6 31 1,3,5,7,8,10,12 *"],
        ),
    ],
)
def test_cron_schedules(sched: Schedule, crons: list[str]) -> None:
    assert cron_schedules(sched) == crons


@pytest.mark.parametrize(
    ("sched", "text"),
    [
        (schedule("daily"), "Daily at 06:00 America/New_York"),
        (schedule("hourly", "00:15:00", "America/Chicago"), "Hourly at :15 America/Chicago"),
        (schedule("weekly", tz="Europe/London"), "Weekly on Monday at 06:00 Europe/London"),
        (
            schedule("monthly", tz="UTC", day_of_month=31),
            "Monthly on day 31 (or the month's last day) at 06:00 UTC",
        ),
        (schedule("monthly", "23:45:10", "UTC", day_of_month=15), "Monthly on day 15 at 23:45 UTC"),
    ],
)
def test_describe_schedule(sched: Schedule, text: str) -> None:
    assert describe_schedule(sched) == text


def test_daily_runs_at_six_local_all_year() -> None:
    ticks = list(ticks_between(schedule("daily"), datetime(2026, 1, 1, tzinfo=NY), datetime(2027, 1, 1, tzinfo=NY)))
    assert len(ticks) == 365
    assert all(t.astimezone(NY).time() == time(6) for t in ticks)
    assert {t.utcoffset() for t in ticks} == {timedelta(hours=-5), timedelta(hours=-4)}


def test_next_run_after_is_strictly_after() -> None:
    sched = schedule("daily")
    assert next_run_after(sched, datetime(2026, 5, 1, 6, tzinfo=NY)) == datetime(2026, 5, 2, 6, tzinfo=NY)
    assert next_run_after(sched, datetime(2026, 5, 1, 5, 59, tzinfo=NY)) == datetime(2026, 5, 1, 6, tzinfo=NY)


def test_next_run_after_accepts_any_offset_and_answers_in_report_timezone() -> None:
    result = next_run_after(schedule("daily"), datetime(2026, 5, 1, 12, tzinfo=UTC))
    assert result.isoformat() == "2026-05-02T06:00:00-04:00"
    assert result.tzinfo == NY


def test_time_in_spring_forward_gap_fires_at_three() -> None:
    sched = schedule("daily", "02:30:00")
    first = next_run_after(sched, datetime(2026, 3, 7, 12, tzinfo=NY))
    assert first.isoformat() == "2026-03-08T03:00:00-04:00"
    assert next_run_after(sched, first).isoformat() == "2026-03-09T02:30:00-04:00"


def test_ambiguous_time_fires_once_on_fall_back() -> None:
    sched = schedule("daily", "01:30:00")
    ticks = list(ticks_between(sched, datetime(2026, 10, 31, tzinfo=NY), datetime(2026, 11, 3, tzinfo=NY)))
    assert [t.isoformat() for t in ticks] == [
        "2026-10-31T01:30:00-04:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-02T01:30:00-05:00",
    ]


def test_hourly_skips_the_lost_hour_and_repeats_the_doubled_one() -> None:
    sched = schedule("hourly", "00:30:00")
    spring = ticks_between(sched, datetime(2026, 3, 8, tzinfo=NY), datetime(2026, 3, 8, 4, tzinfo=NY))
    assert [t.astimezone(UTC).hour for t in spring] == [5, 6, 7]
    fall = list(ticks_between(sched, datetime(2026, 11, 1, tzinfo=NY), datetime(2026, 11, 1, 3, tzinfo=NY)))
    assert [t.isoformat() for t in fall] == [
        "2026-11-01T00:30:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-01T02:30:00-05:00",
    ]


def test_half_hour_dst_zone() -> None:
    # Lord Howe Island moves its clocks by 30 minutes at 02:00 (to 02:30) in October.
    tz = ZoneInfo("Australia/Lord_Howe")
    sched = schedule("daily", "02:15:00", "Australia/Lord_Howe")
    result = next_run_after(sched, datetime(2026, 10, 4, 0, tzinfo=tz))
    assert result.replace(tzinfo=None) == datetime(2026, 10, 4, 2, 30)


def test_seconds_are_not_used() -> None:
    result = next_run_after(schedule("daily", "06:00:45"), datetime(2026, 5, 1, tzinfo=NY))
    assert result == datetime(2026, 5, 1, 6, 0, 0, tzinfo=NY)


def test_weekly_runs_on_its_day() -> None:
    sched = schedule("weekly", "09:00:00", day_of_week="fri")
    ticks = list(ticks_between(sched, datetime(2026, 5, 1, tzinfo=NY), datetime(2026, 6, 1, tzinfo=NY)))
    assert [t.day for t in ticks] == [1, 8, 15, 22, 29]


@pytest.mark.parametrize(
    ("day", "year", "expected_feb"),
    [(31, 2026, 28), (31, 2028, 29), (30, 2028, 29), (29, 2026, 28), (29, 2028, 29), (1, 2028, 1)],
)
def test_monthly_day_past_month_end_means_last_day(day: int, year: int, expected_feb: int) -> None:
    sched = schedule("monthly", tz="UTC", day_of_month=day)
    feb = next_run_after(sched, datetime(year, 2, 1, tzinfo=UTC) - timedelta(seconds=1))
    assert feb.date() == date(year, 2, expected_feb)


def test_monthly_31_runs_twelve_times_a_year_on_the_last_days() -> None:
    sched = schedule("monthly", tz="UTC", day_of_month=31)
    ticks = list(ticks_between(sched, datetime(2028, 1, 1, tzinfo=UTC), datetime(2029, 1, 1, tzinfo=UTC)))
    assert [t.day for t in ticks] == [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def test_is_due_rejects_the_extra_february_firing() -> None:
    sched = schedule("monthly", tz="UTC", day_of_month=30)
    assert not is_due(sched, datetime(2028, 2, 28, 6))
    assert is_due(sched, datetime(2028, 2, 29, 6))
    assert is_due(sched, datetime(2027, 2, 28, 6))
    assert not is_due(sched, datetime(2027, 3, 28, 6))


def test_is_due_converts_aware_times_to_the_report_timezone() -> None:
    sched = schedule("weekly", day_of_week="monday")
    # Monday 01:00 UTC is still Sunday evening in New York.
    assert not is_due(sched, datetime(2026, 5, 4, 1, tzinfo=UTC))
    assert is_due(sched, datetime(2026, 5, 4, 12, tzinfo=UTC))
    assert is_due(schedule("daily"), datetime(2026, 5, 4, 12, tzinfo=UTC))


def test_ticks_between_is_half_open() -> None:
    sched = schedule("daily")
    start = datetime(2026, 5, 1, 6, tzinfo=NY)
    ticks = list(ticks_between(sched, start, start + timedelta(days=2)))
    assert ticks == [start, start + timedelta(days=1)]


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run_after(schedule("daily"), datetime(2026, 5, 1))


def test_ticks_between_starting_just_after_a_spring_forward_gap_keeps_the_first_tick() -> None:
    chicago = ZoneInfo("America/Chicago")
    start = datetime(2026, 3, 8, 3, tzinfo=chicago)  # the first instant after 02:00-03:00 is skipped
    ticks = list(ticks_between(schedule("hourly", "00:00:00", "America/Chicago"), start, start + timedelta(hours=2)))
    assert [t.isoformat() for t in ticks] == ["2026-03-08T03:00:00-05:00", "2026-03-08T04:00:00-05:00"]


def test_is_due_counts_a_firing_moved_past_midnight_for_the_day_it_belongs_to() -> None:
    # Nuuk springs forward from 23:00 to 24:00 on Saturday 2025-03-29; Dagster fires the
    # Saturday 23:30 run at 00:30 on Sunday.
    sched = schedule("weekly", "23:30:00", "America/Nuuk", day_of_week="saturday")
    assert is_due(sched, datetime(2025, 3, 30, 0, 30, tzinfo=ZoneInfo("America/Nuuk")))
    assert not is_due(sched, datetime(2025, 3, 30, 12, 0))
    assert not is_due(sched, datetime(2025, 3, 30, 23, 30))
