"""`voice_usage`: inbound callback calls of one workspace (PRODUCT.md §3)."""

from __future__ import annotations

from pathlib import Path

from report_platform.reports.builders.csv_writer import CsvColumn
from report_platform.reports.builders.spec import BuildResult, CsvFormat, ExportSpec
from report_platform.reports.builders.usage import write_usage_export
from report_platform.store.partitions import Store

COLUMNS = (
    CsvColumn("Timestamp", "t.occurred_at", "timestamp"),
    CsvColumn("From", "t.from_number"),
    CsvColumn("To", "t.to_number"),
    CsvColumn("Destination", "t.destination"),
    CsvColumn("Campaign", "t.campaign_name"),
    CsvColumn("Status", "t.status"),
    CsvColumn("Duration", "t.duration_seconds", "raw", value_type="int32"),
)
HEADERS = tuple(c.header for c in COLUMNS)


def build_voice(store: Store, spec: ExportSpec, out_path: Path, fmt: CsvFormat) -> BuildResult:
    """Write the voice usage export (CSV, csv.gz or Parquet; Core campaign filter: empty means all);
    `Timestamp` is in the report's timezone."""
    return write_usage_export(store, spec, out_path, fmt, "voice_calls", "call_id", COLUMNS)
