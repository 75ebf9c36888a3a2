"""What one run of a report produces: period → export file → archive → delivery request.

This is the one path shared by the scheduled run, "run now", re-delivery of a past period and
`report-platform reports render`, so all of them build exactly the same file for the same
scheduled time. Nothing here sends anything.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from report_platform.domain.rate_card import load_rate_card
from report_platform.domain.tenancy import Tenancy, load_tenancy
from report_platform.reports.archive import Archive, ArchivedFile, open_archive
from report_platform.reports.builders import BuildResult, ExportError, ExportSpec, build_export
from report_platform.reports.definition import CAMPAIGN_FILTERS, ReportDefinition, campaign_filters
from report_platform.reports.periods import ResolvedPeriod, period_for_dates, resolve_period
from report_platform.reports.schedule import wall_time_to_utc
from report_platform.reports.templates import render_filename, template_context
from report_platform.settings import Home, current_settings

# Each build writes into a folder of its own in the data folder, removed when it ends.
BUILD_PREFIX = ".build-"
STALE_BUILD_SECONDS = 3600.0


def retention_days() -> int:
    return current_settings().archive_retention_days


def scheduled_time(value: str | datetime, timezone: str) -> datetime:
    """`--at` as an aware datetime: ISO 8601; without an offset it is wall-clock in `timezone`."""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    if at.tzinfo is None:
        return wall_time_to_utc(at, ZoneInfo(timezone)).astimezone(ZoneInfo(timezone))
    return at.astimezone(ZoneInfo(timezone))


def resolve(
    definition: ReportDefinition, scheduled_at: datetime, period_override: tuple[date, date] | None = None
) -> ResolvedPeriod:
    tz = definition.schedule.timezone
    if period_override is not None:
        return period_for_dates(period_override[0], period_override[1], tz)
    return resolve_period(definition.period, tz, scheduled_at)


def export_spec(definition: ReportDefinition, period: ResolvedPeriod) -> ExportSpec:
    filters = definition.filters
    return ExportSpec(
        type=definition.type,
        workspace_id=definition.workspace,
        organization_id=definition.organization if definition.workspace is None else None,
        timezone=definition.schedule.timezone,
        start_utc=period.start_utc,
        end_utc=period.end_utc,
        workflows=tuple(getattr(filters, "workflows", ())),
        include_event_details=bool(getattr(filters, "include_event_details", False)),
        campaigns=tuple(getattr(filters, "campaigns", ())),
        core_campaigns=tuple(getattr(filters, "core_campaigns", ())),
        engage_campaigns=tuple(getattr(filters, "engage_campaigns", ())),
        format=definition.file_format,
    )


_KIND_WORDS = {"core": "Core campaign", "engage": "Engage campaign"}


def check_campaigns(definition: ReportDefinition, tenancy: Tenancy) -> None:
    """Refuse to build when a campaign the report filters on is no longer in its workspace.

    The names were checked when the report was saved; a campaign renamed or removed since would
    otherwise match no row and quietly deliver an empty file (or, dropped from the filter, widen
    the report to every campaign). Raises ExportError naming each missing campaign.
    """
    chosen = campaign_filters(definition.filters)
    if not chosen or definition.workspace is None:
        return
    names = tenancy.campaign_names().get(definition.workspace, {})
    problems = []
    for field, wanted in chosen.items():
        kind = CAMPAIGN_FILTERS[field]
        have = names.get(kind, frozenset())
        missing = [n for n in wanted if n not in have]
        if missing:
            listed = ", ".join(repr(n) for n in missing)
            known = ", ".join(sorted(have)) or "none"
            problems.append(
                f"filters.{field}: {_KIND_WORDS[kind]} {listed} no longer in workspace '{definition.workspace}' "
                f"(renamed or removed; known: {known})"
            )
    if problems:
        raise ExportError(
            "; ".join(problems) + ". Nothing was built or delivered: the report is not widened to other "
            "campaigns; edit its filters."
        )


def file_name(definition: ReportDefinition, scheduled_at: datetime, period: ResolvedPeriod) -> str:
    context = template_context(definition.name, scheduled_at, period)
    return render_filename(definition.filename_pattern, context)


@dataclass(frozen=True)
class Built:
    """A file built for one run, with what produced it."""

    path: Path
    rows: int
    bytes: int
    sha256: str
    content_type: str
    scheduled_at: datetime
    period: ResolvedPeriod

    def summary(self) -> dict:
        tz = ZoneInfo(self.period.timezone)
        return {
            "path": str(self.path),
            "rows": self.rows,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "period_start": self.period.start_utc.astimezone(tz).isoformat(),
            "period_end": self.period.end_utc.astimezone(tz).isoformat(),
            "scheduled_at": self.scheduled_at.isoformat(),
        }


def build(
    home: Home,
    definition: ReportDefinition,
    scheduled_at: datetime,
    out_dir: Path,
    *,
    period_override: tuple[date, date] | None = None,
    tenancy: Tenancy | None = None,
) -> Built:
    """Build the report as the run scheduled at `scheduled_at` would, into `out_dir`."""
    tenancy = tenancy or load_tenancy(home.root)
    check_campaigns(definition, tenancy)
    period = resolve(definition, scheduled_at, period_override)
    target = out_dir / file_name(definition, scheduled_at, period)
    result: BuildResult = build_export(
        home.store, export_spec(definition, period), target, tenancy, load_rate_card(home.rate_card)
    )
    return Built(result.path, result.rows, result.bytes, result.sha256, result.content_type, scheduled_at, period)


@dataclass(frozen=True)
class Prepared:
    archived: ArchivedFile
    period: ResolvedPeriod
    rows: int
    reused: bool  # the archive already held this run's file: nothing was rebuilt


def prepare(
    home: Home,
    report_id: str,
    definition: ReportDefinition,
    scheduled_at: datetime,
    *,
    period_override: tuple[date, date] | None = None,
    variant: str | None = None,
    archive: Archive | None = None,
) -> Prepared:
    """The archived file for this run: reused when a complete, intact one exists, else built.

    Retries of a run find its file and reuse it (never rebuilt, and the delivery ledger keeps
    confirmed deliveries from being sent again). A `variant` (a backfill's id) is a deliberate
    re-delivery: it gets its own freshly built file and ledger, shared only by its own retries.
    `archive` defaults to the one `home` names (its folder, or its bucket).
    """
    archive = archive or open_archive(home.archive, home.archive_s3)
    period = resolve(definition, scheduled_at, period_override)
    existing = archive.find(report_id, scheduled_at, variant)
    if existing is not None and archive.verify(existing) and existing.period_start == period.start_utc.isoformat():
        return Prepared(existing, period, existing.rows or 0, reused=True)
    remove_stale_builds(home.root)
    with tempfile.TemporaryDirectory(dir=home.root, prefix=BUILD_PREFIX) as tmp:
        with _naming_a_full_disk(home.root, f"building the report {definition.name!r}"):
            built = build(home, definition, scheduled_at, Path(tmp), period_override=period_override)
        # The local archive folder is the archive, or the cache of an archive on S3: written either way.
        with _naming_a_full_disk(home.archive, f"archiving {built.path.name}"):
            archived = archive.put(
                report_id,
                scheduled_at,
                built.path,
                retention_days=retention_days(),
                rows=built.rows,
                period_start=period.start_utc.isoformat(),
                period_end=period.end_utc.isoformat(),
                content_type=built.content_type,
                variant=variant,
            )
    return Prepared(archived, period, built.rows, reused=False)


def remove_stale_builds(root: Path, older_than_seconds: float = STALE_BUILD_SECONDS) -> list[Path]:
    """Remove the temporary build folders of workers that died mid-build; returns those removed.

    A folder whose newest entry is younger than `older_than_seconds` may be a live build's (a
    build writes all along), so it stays; a build killed mid-write would otherwise leave its
    partial file in the data folder for good.
    """
    cutoff = time.time() - older_than_seconds
    removed = []
    for folder in root.glob(f"{BUILD_PREFIX}*"):
        try:
            newest = max([folder.stat().st_mtime, *(entry.stat().st_mtime for entry in folder.iterdir())])
        except FileNotFoundError:
            continue  # removed meanwhile, by its own build or another sweep
        if newest < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class DiskFullError(OSError):
    """The disk a report is built or archived on has no space left; the message names it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = errno.ENOSPC


@contextmanager
def _naming_a_full_disk(folder: Path, doing: str) -> Iterator[None]:
    # The OS says only "No space left on device"; whoever reads the run's failure needs to know
    # which disk, and that nothing half-made was kept or sent (the partial file goes with `tmp`,
    # and an archived file is replaced only by a complete one).
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) and "No space left on device" not in str(exc):
            raise
        raise DiskFullError(
            f"no space left on the disk holding {folder} ({_disk_usage(folder)}) while {doing}: nothing was "
            "delivered, no partial file was kept, and the files of earlier runs are untouched. Free space "
            "there, then run the report again"
        ) from exc


def _disk_usage(folder: Path) -> str:
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return "its size unknown"
    mount = folder.resolve()
    with suppress(OSError):
        device = mount.stat().st_dev
        while mount.parent != mount and mount.parent.stat().st_dev == device:
            mount = mount.parent
    return f"file system mounted at {mount}, {usage.free / 1e6:.1f} MB free of {usage.total / 1e6:.0f} MB"
