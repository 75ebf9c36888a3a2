"""`aegis_interaction`: screened calls of one workspace, optionally with their event logs.

`Timestamp` is UTC; `Local Timestamp` is the same moment in the caller's own timezone
(`caller_timezone`, row by row, so each row carries the offset in force there and then).
With event details, `Events` holds the transaction's whole event stream as one JSON array
ordered by `seq`. A day whose `aegis_interactions` partition is current (ingest/interactions.py)
has those arrays rendered already: its windows read them with the other columns from that one
file. Any other day (ingested before that table existed, whose events could not be rendered, or
changed since), and every day of a store on S3 (which keeps no `aegis_interactions`), aggregates
its events here, in DuckDB, as exports always did; both give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date
from pathlib import Path

import duckdb

from report_platform.ingest.interactions import current_interactions
from report_platform.reports.builders.csv_writer import CsvColumn, columns_for_format, select_list, write_csv_export
from report_platform.reports.builders.spec import BuildResult, CsvFormat, ExportSpec
from report_platform.reports.builders.usage import ROWS_PER_WINDOW, Queries, record_filter, usage_queries, where_sql
from report_platform.settings import S3Location
from report_platform.store import s3
from report_platform.store.partitions import SCHEMA_DIR, Store, partition_path, table_dir
from report_platform.store.schema import AEGIS_EVENTS

UTC_SQL_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"

# Event logs (5-40 events per transaction) are aggregated per window; this many
# transactions per window (~220,000 events) keeps that aggregation small at any volume.
EVENTS_ROWS_PER_WINDOW = 10_000


# Where a window's events are read: the day's partition file in a local store; on S3, that
# file as an Arrow dataset registered under this name (DuckDB reads no s3:// path without httpfs).
LOCAL_EVENTS = "read_parquet($event_files)"
S3_EVENTS = "aegis_events_of_the_day"


def _event_files(store: Store, extra_where: str) -> Callable[[duckdb.DuckDBPyConnection, dict], dict]:
    """The events partition of the window's UTC day (a transaction's events are stored in its
    own day's partition, store/schema.py) and the window's range of transaction ids. Partitions
    keep events sorted by transaction id, so that range lets DuckDB skip every row group of the
    day that holds none of the window's events instead of scanning the whole day each time."""
    bounds_sql = (
        f"SELECT min(t.transaction_id), max(t.transaction_id) FROM aegis_transactions AS t {where_sql(extra_where)}"
    )
    registered: list[date] = []

    def params(con: duckdb.DuckDBPyConnection, window: dict) -> dict:
        day = window["start"].astimezone(UTC).date()
        lo, hi = con.sql(bounds_sql, params=window).fetchall()[0]
        bounds = {"lo": lo or "", "hi": hi or ""}
        if isinstance(store, S3Location):
            if registered != [day]:  # windows come day by day: one listing per day
                con.register(S3_EVENTS, s3.table_source(store, AEGIS_EVENTS, day=day))
                registered[:] = [day]
            return bounds
        path = partition_path(store, AEGIS_EVENTS, day)
        empty = table_dir(store, AEGIS_EVENTS) / SCHEMA_DIR / "empty.parquet"
        return {"event_files": [str(path if path.exists() else empty)], **bounds}

    return params


# Each event is rendered as JSON text and the texts joined in `seq` order: cheaper and more
# compact than aggregating structs. `json()` checks and normalises the stored payload. The
# events are narrowed to the window's transactions by a semi-join, so the join's hash table
# holds transaction ids only, never the day's events.
EVENTS_AGG = f"""'[' || string_agg(
           '{{"seq":' || e.seq
           || ',"at":"' || strftime(e.occurred_at, '{UTC_SQL_FORMAT}')
           || '","type":' || to_json(e.event_type)
           || ',"detail":' || CAST(json(e.detail) AS VARCHAR) || '}}',
           ',' ORDER BY e.seq) || ']'"""


def events_sql(cols: tuple[CsvColumn, ...], extra_where: str, events: str = LOCAL_EVENTS) -> str:
    return f"""WITH t AS (SELECT * FROM aegis_transactions AS t {where_sql(extra_where)}),
ev AS (
  SELECT e.transaction_id, {EVENTS_AGG} AS events
  FROM {events} AS e
  WHERE e.transaction_id BETWEEN $lo AND $hi AND e.workspace_id = $workspace
    AND e.transaction_id IN (SELECT transaction_id FROM t)
  GROUP BY e.transaction_id
)
SELECT
  {select_list(cols)}
FROM t LEFT JOIN ev ON ev.transaction_id = t.transaction_id
ORDER BY t.occurred_at, t.transaction_id"""


def interactions_sql(cols: tuple[CsvColumn, ...], extra_where: str) -> str:
    """A window of derived days (`$interactions`: `aegis_interactions` partitions). Their rows are
    stored by workspace, then time, so a window reads only the row groups of its workspace and
    hours. The ORDER BY stays: the file's order alone is not kept through the query's joins."""
    return (
        f"SELECT\n  {select_list(cols)}\nFROM read_parquet($interactions) AS t\n{where_sql(extra_where)}\n"
        "ORDER BY t.occurred_at, t.transaction_id"
    )


def _window_query(
    store: Store, fallback_cols: tuple[CsvColumn, ...], derived_cols: tuple[CsvColumn, ...], extra_where: str
) -> Callable[[duckdb.DuckDBPyConnection, dict], tuple[str, dict]]:
    """Each window's query: the day's derived partition when it is current, else the aggregation."""
    derived_sql = interactions_sql(derived_cols, extra_where)
    fallback_sql = events_sql(fallback_cols, extra_where, S3_EVENTS if isinstance(store, S3Location) else LOCAL_EVENTS)
    event_files = _event_files(store, extra_where)
    derived: dict[date, Path | None] = {}

    def query(con: duckdb.DuckDBPyConnection, params: dict) -> tuple[str, dict]:
        day = params["start"].astimezone(UTC).date()
        if day not in derived:  # checked once per day: it hashes the day's source partitions
            derived[day] = current_interactions(store, day)
        path = derived[day]
        if path is not None:
            return derived_sql, {**params, "interactions": [str(path)]}
        return fallback_sql, {**params, **event_files(con, params)}

    return query


def columns(include_event_details: bool, events: str = "ev.events") -> tuple[CsvColumn, ...]:
    return (
        CsvColumn("Id", "t.transaction_id"),
        CsvColumn("Timestamp", "t.occurred_at", "timestamp"),
        CsvColumn("Workflow", "t.workflow"),
        CsvColumn("From", "t.from_number"),
        CsvColumn("To", "t.to_number"),
        CsvColumn("Result", "t.result"),
        CsvColumn("Reason", "t.reason"),
        CsvColumn("City", "t.city"),
        CsvColumn("State", "t.state"),
        CsvColumn("Zip", "t.zip"),
        CsvColumn("Timezone", "t.caller_timezone"),
        CsvColumn("Local Timestamp", "t.occurred_at", "local_timestamp", "t.caller_timezone"),
        CsvColumn("IsTest", "t.is_test", "raw", value_type="boolean"),
        CsvColumn("PCIDFrom", "t.pcid_from"),
        CsvColumn("DataBoost.Valid", "t.databoost_valid", "raw", value_type="boolean"),
        CsvColumn("DataBoost.ActivityScore", "t.databoost_activity_score", "raw", value_type="int32"),
        CsvColumn("DataBoost.LineType", "t.databoost_line_type"),
        CsvColumn("DataBoost.Carrier", "t.databoost_carrier"),
        CsvColumn("DNC.Blocked", "t.dnc_blocked", "raw", value_type="boolean"),
        CsvColumn("DNC.SANCoverage", "t.dnc_san_coverage", "raw", value_type="boolean"),
        CsvColumn("DNC.Reason", "t.dnc_reason"),
        CsvColumn("StateDNC.Blocked", "t.state_dnc_blocked", "raw", value_type="boolean"),
        CsvColumn("StateDNC.Reason", "t.state_dnc_reason"),
        CsvColumn("KnownLitigator.Blocked", "t.litigator_blocked", "raw", value_type="boolean"),
        CsvColumn("KnownLitigator.Info", "t.litigator_info"),
        CsvColumn("SIPCall.Duration", "t.sip_duration_seconds", "raw", value_type="int32"),
        CsvColumn("SIPCall.Status", "t.sip_status", "raw", value_type="int32"),
        CsvColumn("SIPCall.HangupCause", "t.sip_hangup_cause"),
        CsvColumn("SIPCall.HangupCauseCode", "t.sip_hangup_cause_code", "raw", value_type="int32"),
        CsvColumn("SIPCall.AttestationLevel", "t.sip_attestation"),
        CsvColumn("Events", events if include_event_details else "NULL::VARCHAR", "raw"),
    )


HEADERS = tuple(c.header for c in columns(False))


def build_aegis(store: Store, spec: ExportSpec, out_path: Path, fmt: CsvFormat) -> BuildResult:
    """Write the Aegis interaction export, CSV, csv.gz or Parquet (workflow filter: empty means all)."""
    file_format = spec.format or "csv"
    cols, queries = aegis_queries(store, spec, file_format)
    return write_csv_export(store, queries, cols, out_path, timezone="UTC", fmt=fmt, file_format=file_format)


def aegis_queries(store: Store, spec: ExportSpec, file_format: str = "csv") -> tuple[tuple[CsvColumn, ...], Queries]:
    """The export's columns and its (sql, params) per window, in order (`write_csv_export`)."""
    cols = columns_for_format(columns(spec.include_event_details), file_format)
    extra_where, extra_params = record_filter(spec)
    window_query = None
    if spec.include_event_details:
        derived_cols = columns_for_format(columns(True, "t.events"), file_format)
        window_query = _window_query(store, cols, derived_cols, extra_where)
    queries = usage_queries(
        store,
        spec,
        "aegis_transactions",
        "transaction_id",
        cols,
        extra_where=extra_where,
        extra_params=extra_params,
        # Event logs keep windows small whichever way they are read: a window's batches hold its
        # rows' JSON (~3.6 KB each), and both queries sort them. The same windows give the same
        # batches, hence the same Parquet row groups, from either source.
        rows_per_window=EVENTS_ROWS_PER_WINDOW if spec.include_event_details else ROWS_PER_WINDOW,
        window_query=window_query,
    )
    return cols, queries
