"""Timings: what decides when a report is due (frequency, time of day, day, timezone), and the
name of the one Dagster schedule of all the reports that share it.

Here, apart from schedules.py, because the missed-tick sensor (missed.py) asks which schedule
ticks for a report, and schedules.py builds on missed.py.
"""

import functools
import hashlib
import json
from collections import defaultdict
from datetime import UTC, datetime

from report_platform.reports.definition import Schedule
from report_platform.reports.schedule import cron_schedules, describe_schedule

Spec = tuple[str, str, str, dict]  # (report id, name, type, schedule) as the registry lists them


def run_key(report_id: str, scheduled_at: datetime) -> str:
    """The run key of a report's own run for a scheduled time (a report run again on its own
    after its batch failed it): report id + scheduled time."""
    return f"{report_id}@{scheduled_at.astimezone(UTC).isoformat()}"


@functools.lru_cache(maxsize=4096)
def parsed_timing(schedule_json: str) -> tuple[Schedule, tuple[str, ...], str]:
    """The schedule, its cron strings and words; many reports share the same schedule."""
    schedule = Schedule.model_validate(json.loads(schedule_json))
    return schedule, tuple(cron_schedules(schedule)), describe_schedule(schedule)


def timing_of(schedule: dict) -> tuple[Schedule, tuple[str, ...], str]:
    return parsed_timing(json.dumps(schedule, sort_keys=True))


def timing_key(schedule: Schedule) -> str:
    """What decides when a report is due, as one string: reports with the same share a schedule."""
    return json.dumps(schedule.model_dump(mode="json"), sort_keys=True)


def timing_schedule_name(schedule: Schedule) -> str:
    """The schedule of the reports that share `schedule`'s timing: readable, and unique by a digest."""
    digest = hashlib.sha256(timing_key(schedule).encode()).hexdigest()[:10]
    return f"reports_{schedule.frequency}_{schedule.time_of_day:%H%M}_{digest}_schedule"


def schedule_groups(specs: list[Spec]) -> dict[str, list[Spec]]:
    """The reports' specs by timing (`timing_key`), in the registry's order."""
    groups: dict[str, list[Spec]] = defaultdict(list)
    for spec in specs:
        groups[timing_key(timing_of(spec[3])[0])].append(spec)
    return groups


def schedule_names(specs: list[Spec]) -> dict[str, str]:
    """Report id -> the name of the schedule that ticks for it."""
    return {spec[0]: timing_schedule_name(timing_of(spec[3])[0]) for spec in specs}
