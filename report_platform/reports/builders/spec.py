"""What a build is asked for and what it returns; no dependency on the report definition."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, get_args

CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
# A gzip file is delivered as the file it is (a download, an attachment), not as CSV with a
# Content-Encoding: clients would then decompress it on the fly and the checksum would not match.
GZIP_CONTENT_TYPE = "application/gzip"
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"  # registered with IANA in 2024
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

FileFormat = Literal["csv", "csv.gz", "parquet", "xlsx"]
FILE_FORMATS: tuple[str, ...] = get_args(FileFormat)
# What each format's files end with and are delivered as.
FORMAT_EXTENSIONS: dict[str, str] = {"csv": ".csv", "csv.gz": ".csv.gz", "parquet": ".parquet", "xlsx": ".xlsx"}
FORMAT_CONTENT_TYPES: dict[str, str] = {
    "csv": CSV_CONTENT_TYPE,
    "csv.gz": GZIP_CONTENT_TYPE,
    "parquet": PARQUET_CONTENT_TYPE,
    "xlsx": XLSX_CONTENT_TYPE,
}


class ExportError(ValueError):
    """A build request that cannot be honoured, with a message a person can act on."""


@dataclass(frozen=True)
class ExportSpec:
    """One export of one report type over the half-open UTC period [start_utc, end_utc).

    `workspace_id` scopes every type; billing may instead set `organization_id` (all the
    organisation's workspaces). `timezone` is the report's IANA timezone: Voice and SMS
    timestamps are written in it. `workflows` (empty = all) and `include_event_details` only
    apply to `aegis_interaction`; `campaigns` (Core campaign names, empty = all) to
    `voice_usage`; `core_campaigns` and `engage_campaigns` to `sms_usage`, where a message is
    exported when it belongs to any of them (both empty = all). `format` is the file's format
    (`FILE_FORMATS`); None means the type's default (CSV for the usage types, XLSX for billing).
    """

    type: str
    workspace_id: str | None
    organization_id: str | None
    timezone: str
    start_utc: datetime
    end_utc: datetime
    workflows: tuple[str, ...] = ()
    include_event_details: bool = False
    format: str | None = None
    campaigns: tuple[str, ...] = ()
    core_campaigns: tuple[str, ...] = ()
    engage_campaigns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("start_utc", "end_utc"):
            value = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise ExportError(f"{name} must carry a timezone, got naive {value.isoformat()}")
        if self.end_utc < self.start_utc:
            raise ExportError(
                f"period ends ({self.end_utc.isoformat()}) before it starts ({self.start_utc.isoformat()})"
            )
        if (self.workspace_id is None) == (self.organization_id is None):
            raise ExportError("set exactly one of workspace_id or organization_id")


@dataclass(frozen=True)
class CsvFormat:
    """How CSV files are laid out; the defaults are what `docs/exports.md` describes.

    `line_terminator` ends every record (line breaks inside a quoted value are kept as they
    are in the data). `bom=True` starts the file with a UTF-8 byte-order mark, which makes
    older Excel versions detect UTF-8 when a file is double-clicked. `batch_rows` bounds how
    many rows are held in memory at once.
    """

    line_terminator: str = "\r\n"
    bom: bool = False
    batch_rows: int = 100_000


@dataclass(frozen=True)
class BuildResult:
    path: Path
    rows: int
    bytes: int
    sha256: str
    content_type: str
