"""Streaming CSV export: DuckDB query -> Arrow record batches -> Polars -> file.

Memory stays flat with the row count: the period is queried one window at a time (see
`usage.py`), each window's result is fetched `batch_rows` rows at a time, and each batch is
formatted and appended to the file.

Work is split by what each engine does fastest (measured, see docs/exports.md): DuckDB picks
and orders the rows, neutralises formula triggers and formats per-row-timezone timestamps;
Polars converts the single report-timezone timestamp and writes RFC 4180 CSV.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import duckdb
import polars as pl

from report_platform.reports.builders.output import AtomicHashedFile
from report_platform.reports.builders.safety import neutralise_sql
from report_platform.reports.builders.spec import CSV_CONTENT_TYPE, BuildResult, CsvFormat
from report_platform.settings import current_settings
from report_platform.store.duck import reader

# Microseconds always, and the offset as ±HH:MM: the store keeps microseconds, and a fixed
# width sorts as text in the same order as in time within one offset.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.6f%:z"
SQL_LOCAL_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"

ColumnKind = Literal["text", "raw", "timestamp", "local_timestamp"]


@dataclass(frozen=True)
class CsvColumn:
    """One output column: its exact header, a SQL expression over the source row, and how
    the value is written.

    - `text`: free text; formula triggers are neutralised (see `safety`).
    - `raw`: numbers, booleans and values we format ourselves, written as they come.
    - `timestamp`: a TIMESTAMPTZ written in the export's timezone with its offset.
    - `local_timestamp`: `sql` is a TIMESTAMPTZ and `tz_sql` an IANA timezone per row.
    """

    header: str
    sql: str
    kind: ColumnKind = "text"
    tz_sql: str | None = None


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def plain_decimal_sql(expr: str) -> str:
    """A DECIMAL as plain text without trailing zeros: 0.003500 -> 0.0035, 2.000000 -> 2."""
    text = f"CAST({expr} AS VARCHAR)"
    return f"CASE WHEN contains({text}, '.') THEN rtrim(rtrim({text}, '0'), '.') ELSE {text} END"


def local_timestamp_sql(ts: str, tz: str) -> str:
    """`ts` as wall-clock time in the per-row timezone `tz`, with that moment's offset."""
    local = f"({ts} AT TIME ZONE {tz})"
    # Offset = local wall clock minus UTC, both read as seconds since the epoch.
    off = f"CAST(epoch({local}) - epoch({ts}) AS BIGINT)"
    return (
        f"strftime({local}, '{SQL_LOCAL_FORMAT}') "
        f"|| CASE WHEN {off} < 0 THEN '-' ELSE '+' END "
        f"|| lpad(CAST(abs({off}) // 3600 AS VARCHAR), 2, '0') || ':' "
        f"|| lpad(CAST(abs({off}) % 3600 // 60 AS VARCHAR), 2, '0')"
    )


def select_list(columns: tuple[CsvColumn, ...]) -> str:
    parts = []
    for col in columns:
        if col.kind == "text":
            expr = neutralise_sql(f"CAST({col.sql} AS VARCHAR)")
        elif col.kind == "local_timestamp":
            assert col.tz_sql is not None, col.header
            expr = local_timestamp_sql(col.sql, col.tz_sql)
        else:
            expr = col.sql
        parts.append(f"{expr} AS {ident(col.header)}")
    return ",\n  ".join(parts)


def windows(start: datetime, end: datetime, step: timedelta) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) cut at multiples of `step` since midnight UTC (whole UTC days by default)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    cursor = start
    while cursor < end:
        steps = (cursor - midnight) // step + 1
        nxt = min(midnight + steps * step, end)
        yield cursor, nxt
        cursor = nxt


def build_threads() -> int:
    """DuckDB threads for a build: `REPORT_PLATFORM_BUILD_THREADS`, else all cores (max 4)."""
    configured = current_settings().build_threads
    return configured or min(os.cpu_count() or 2, 4)


def build_connection(store: Path) -> tuple[duckdb.DuckDBPyConnection, Path]:
    """A lock-free reader with a memory cap; a sort larger than the cap spills to a temp dir."""
    con = reader(
        store,
        threads=build_threads(),
        memory_limit=current_settings().build_memory,
    )
    spill = Path(tempfile.mkdtemp(prefix="report-build-"))
    con.execute(f"SET temp_directory = {sql_string(str(spill))}")
    con.execute("SET preserve_insertion_order = true")
    return con, spill


def _flush(buf: io.BytesIO, out: AtomicHashedFile) -> None:
    with buf.getbuffer() as view:  # released before the buffer is truncated again
        out.write(view)


def write_csv_export(
    store: Path,
    queries: Callable[[duckdb.DuckDBPyConnection], Iterator[tuple[str, dict]]],
    columns: tuple[CsvColumn, ...],
    out_path: Path,
    *,
    timezone: str,
    fmt: CsvFormat,
) -> BuildResult:
    """Run each (query, params) that `queries` yields, in order, and stream all their rows
    into one CSV file. Each query must select exactly `columns` (see `select_list`), ordered.
    """
    ts_columns = [c.header for c in columns if c.kind == "timestamp"]
    headers = [c.header for c in columns]
    con, spill = build_connection(store)
    rows = 0
    try:
        with AtomicHashedFile(out_path) as out:
            if fmt.bom:
                out.write("\ufeff".encode())
            header_written = False
            buf = io.BytesIO()
            for sql, params in queries(con):
                for batch in con.sql(sql, params=params).to_arrow_reader(fmt.batch_rows):
                    if batch.num_rows == 0:
                        continue
                    frame = pl.from_arrow(batch)
                    assert isinstance(frame, pl.DataFrame)
                    if ts_columns:
                        frame = frame.with_columns(
                            pl.col(ts_columns).dt.convert_time_zone(timezone).dt.strftime(TIMESTAMP_FORMAT)
                        )
                    buf.seek(0)
                    buf.truncate()
                    frame.write_csv(
                        buf,
                        include_header=not header_written,
                        line_terminator=fmt.line_terminator,
                    )
                    _flush(buf, out)
                    header_written = True
                    rows += frame.height
            if not header_written:
                empty = pl.DataFrame(schema=dict.fromkeys(headers, pl.String))
                empty.write_csv(buf, include_header=True, line_terminator=fmt.line_terminator)
                _flush(buf, out)
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    return BuildResult(out_path, rows, out.size, out.hexdigest, CSV_CONTENT_TYPE)
