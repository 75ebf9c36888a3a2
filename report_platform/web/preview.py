"""What a definition would do next: its next runs, the period each covers, the file name and subject.

The same functions a run uses (`reports.schedule`, `reports.periods`, `reports.templates` through
`reports.produce.file_name`), so the preview is what the runs will do; nothing is built or sent.
"""

from __future__ import annotations

from datetime import UTC, datetime

from report_platform.reports.definition import EmailDestination, ReportDefinition
from report_platform.reports.periods import resolve_period
from report_platform.reports.produce import file_name
from report_platform.reports.schedule import describe_schedule, next_run_after
from report_platform.reports.templates import render_header, template_context
from report_platform.web.schemas import PreviewAnswer, PreviewRun

PREVIEW_RUNS = 5


def preview(definition: ReportDefinition, now: datetime, count: int = PREVIEW_RUNS) -> PreviewAnswer:
    """The next `count` runs after `now` (aware)."""
    schedule = definition.schedule
    runs = []
    after = now
    for _ in range(count):
        at = next_run_after(schedule, after)
        period = resolve_period(definition.period, schedule.timezone, at)
        subject = None
        # The subject of the first e-mail destination (the panel edits that one).
        mail = next((d for d in definition.all_destinations if isinstance(d, EmailDestination)), None)
        if mail is not None:
            context = template_context(definition.name, at, period)
            subject = render_header(mail.subject_template, context)
        runs.append(
            PreviewRun(
                scheduled_at=at,
                scheduled_at_utc=at.astimezone(UTC),
                period_start=period.start_local,
                period_end=period.end_local,
                period_start_utc=period.start_utc,
                period_end_utc=period.end_utc,
                file_name=file_name(definition, at, period),
                subject=subject,
            )
        )
        after = at
    return PreviewAnswer(timezone=schedule.timezone, schedule=describe_schedule(schedule), runs=runs)
