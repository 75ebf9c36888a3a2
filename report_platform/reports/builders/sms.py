"""`sms_usage`: SMS/MMS messages of one workspace, inbound and outbound (PRODUCT.md §3)."""

from __future__ import annotations

from pathlib import Path

from report_platform.reports.builders.csv_writer import (
    CsvColumn,
    columns_for_format,
    plain_decimal_sql,
)
from report_platform.reports.builders.spec import BuildResult, CsvFormat, ExportSpec
from report_platform.reports.builders.usage import record_filter, require_workspace, usage_sql, write_usage_export
from report_platform.store.partitions import Store

COLUMNS = (
    CsvColumn("Timestamp", "t.occurred_at", "timestamp"),
    CsvColumn("Status", "t.status"),
    CsvColumn("From", "t.from_number"),
    CsvColumn("To", "t.to_number"),
    CsvColumn("Core Campaign", "t.core_campaign"),
    CsvColumn("Engage Campaign", "t.engage_campaign"),
    CsvColumn("Message", "t.message"),
    CsvColumn("Segments", "t.segments", "raw", value_type="int32"),
    CsvColumn(
        "Carrier Fees", plain_decimal_sql("t.carrier_fee"), "raw", value_type="decimal(18,6)", typed_sql="t.carrier_fee"
    ),
    CsvColumn("Message Type", "t.message_type"),
    CsvColumn("Sent Status", "t.sent_status"),
    CsvColumn("Sent Message", "t.sent_message"),
    CsvColumn("Error Status", "t.error_status"),
    CsvColumn("Error Message", "t.error_message"),
)
HEADERS = tuple(c.header for c in COLUMNS)


def build_sms(store: Store, spec: ExportSpec, out_path: Path, fmt: CsvFormat) -> BuildResult:
    """Write the SMS usage export (CSV, csv.gz or Parquet; Core / Engage campaign filters: both empty
    means all); `Timestamp` is in the report's timezone."""
    return write_usage_export(store, spec, out_path, fmt, "sms_messages", "message_id", COLUMNS)


def sms_query(spec: ExportSpec, file_format: str = "csv") -> tuple[str, dict]:
    """The whole period as one query (for comparisons with DuckDB's own CSV and Parquet writers)."""
    extra_where, extra_params = record_filter(spec)
    params = {"workspace": require_workspace(spec), "start": spec.start_utc, "end": spec.end_utc, **extra_params}
    return usage_sql("sms_messages", "message_id", columns_for_format(COLUMNS, file_format), extra_where), params
