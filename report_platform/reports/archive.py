"""The archive of built files: every export kept with its checksum, so a failed delivery is
retried from the archived file (never rebuilt) and what was sent can be proven later.

Layout, one folder per report and scheduled time (UTC, compact):

    <archive_root>/<report_id>/<YYYY>/<MM>/<YYYYMMDDTHHMMSSZ>/<filename>
                                                             <filename>.sha256   (sha256sum format)
                                                             manifest.json

Each file is written under a temporary name and renamed; the manifest is written last, so a
folder with a manifest always holds a complete file. Retention: a run's folder is deleted by
`prune` once it is older (by `built_at`) than its own `retention_days` (stored in the manifest
when given) or else `prune`'s default, `DEFAULT_RETENTION_DAYS` = 90.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from report_platform.durable import sha256_file, write_text_durably
from report_platform.reports.builders.output import AtomicHashedFile
from report_platform.settings import DEFAULT_RETENTION_DAYS

MANIFEST = "manifest.json"
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class ArchiveError(ValueError):
    pass


@dataclass(frozen=True)
class ArchivedFile:
    """A file in the archive and what its manifest says about it."""

    path: Path
    sha256: str
    size: int
    report_id: str
    scheduled_at: datetime
    built_at: datetime
    rows: int | None = None
    period_start: str | None = None
    period_end: str | None = None
    content_type: str | None = None
    retention_days: int | None = None

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def checksum_path(self) -> Path:
        return self.path.with_name(self.path.name + ".sha256")


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ArchiveError(f"{name} must carry a timezone, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def run_folder(archive_root: Path, report_id: str, scheduled_at: datetime, variant: str | None = None) -> Path:
    """Where the file of (report, scheduled time) lives; `variant` keeps a deliberate re-delivery
    (e.g. a backfill) apart from the scheduled run's own file and delivery ledger."""
    for value, what in ((report_id, "report id"), (variant, "archive variant")):
        if value is not None and (not _SAFE_ID.fullmatch(value) or ".." in value):
            raise ArchiveError(f"{what} {value!r} cannot be used as a folder name")
    at = _utc(scheduled_at, "scheduled_at")
    name = f"{at:%Y%m%dT%H%M%SZ}" + (f"-{variant}" if variant else "")
    return archive_root / report_id / f"{at:%Y}" / f"{at:%m}" / name


def archive_file(
    archive_root: Path,
    report_id: str,
    scheduled_at: datetime,
    path: Path,
    *,
    retention_days: int | None,
    rows: int | None = None,
    period_start: str | None = None,
    period_end: str | None = None,
    content_type: str | None = None,
    built_at: datetime | None = None,
    variant: str | None = None,
) -> ArchivedFile:
    """Copy the built file at `path` into the archive, with its checksum and manifest.

    Archiving the same (report, scheduled time) again replaces the earlier file atomically.
    """
    if retention_days is not None and retention_days < 1:
        raise ArchiveError(f"retention_days must be at least 1, got {retention_days}")
    folder = run_folder(archive_root, report_id, scheduled_at, variant)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    with path.open("rb") as src, AtomicHashedFile(target) as out:
        while block := src.read(1 << 20):
            out.write(block)
    digest = out.hexdigest
    write_text_durably(target.with_name(target.name + ".sha256"), f"{digest}  {target.name}\n")
    archived = ArchivedFile(
        path=target,
        sha256=digest,
        size=out.size,
        report_id=report_id,
        scheduled_at=_utc(scheduled_at, "scheduled_at"),
        built_at=_utc(built_at or datetime.now(UTC), "built_at"),
        rows=rows,
        period_start=period_start,
        period_end=period_end,
        content_type=content_type,
        retention_days=retention_days,
    )
    manifest = {
        "report_id": report_id,
        "scheduled_at": archived.scheduled_at.isoformat(),
        "built_at": archived.built_at.isoformat(),
        "file": target.name,
        "rows": rows,
        "bytes": archived.size,
        "sha256": digest,
        "period": {"start": period_start, "end": period_end},
        "content_type": content_type,
        "retention_days": retention_days,
    }
    write_text_durably(folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return archived


def _load(folder: Path) -> ArchivedFile | None:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    path = folder / data["file"]
    if not path.exists():
        return None
    return ArchivedFile(
        path=path,
        sha256=data["sha256"],
        size=int(data["bytes"]),
        report_id=data["report_id"],
        scheduled_at=datetime.fromisoformat(data["scheduled_at"]),
        built_at=datetime.fromisoformat(data["built_at"]),
        rows=data.get("rows"),
        period_start=(data.get("period") or {}).get("start"),
        period_end=(data.get("period") or {}).get("end"),
        content_type=data.get("content_type"),
        retention_days=data.get("retention_days"),
    )


def find_archived(
    archive_root: Path, report_id: str, scheduled_at: datetime, variant: str | None = None
) -> ArchivedFile | None:
    """The archived file of (report, scheduled time), if a complete one exists."""
    return _load(run_folder(archive_root, report_id, scheduled_at, variant))


def verify(archived: ArchivedFile) -> bool:
    """True when the file still has the size and SHA-256 recorded when it was archived."""
    try:
        if archived.path.stat().st_size != archived.size:
            return False
        return sha256_file(archived.path) == archived.sha256
    except OSError:
        return False


def prune(archive_root: Path, retention_days: int = DEFAULT_RETENTION_DAYS, now: datetime | None = None) -> list[Path]:
    """Delete archived runs older than their retention; returns the folders removed."""
    now = _utc(now or datetime.now(UTC), "now")
    removed: list[Path] = []
    if not archive_root.exists():
        return removed
    for manifest in sorted(archive_root.glob(f"*/*/*/*/{MANIFEST}")):
        archived = _load(manifest.parent)
        if archived is None:
            continue
        keep = timedelta(days=archived.retention_days or retention_days)
        if now - archived.built_at > keep:
            shutil.rmtree(manifest.parent)
            removed.append(manifest.parent)
            for parent in (manifest.parent.parent, manifest.parent.parent.parent):
                try:
                    parent.rmdir()  # only succeeds once a month/year folder is empty
                except OSError:
                    break
    return removed
