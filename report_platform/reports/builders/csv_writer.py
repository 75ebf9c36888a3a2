"""Streaming export of the usage types: DuckDB query -> Arrow record batches -> file.

Memory stays flat with the row count: the period is queried one window at a time (see
`usage.py`), each window's result is fetched `batch_rows` rows at a time, and each batch is
formatted and appended to the file.

DuckDB reads the next batches on a thread of its own while the current one is formatted, hashed
and written (`read_ahead`), a few batches ahead at most; the file's bytes and order are those of
reading and writing in turn.

Work is split by what each engine does fastest (measured, see docs/exports.md): DuckDB picks
and orders the rows, neutralises formula triggers and formats per-row-timezone timestamps;
Polars converts the single report-timezone timestamp and writes RFC 4180 CSV. `csv.gz` is the
same CSV through a gzip stream; `parquet` takes the batches as typed Arrow columns (timestamps
with the report's zone, numbers as numbers, phone numbers as text) into a Parquet writer, one
row group per batch.
"""

from __future__ import annotations

import contextvars
import io
import os
import queue
import shutil
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, TypeVar

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from report_platform.reports.builders.output import AtomicHashedFile
from report_platform.reports.builders.safety import neutralise_sql
from report_platform.reports.builders.spec import FORMAT_CONTENT_TYPES, BuildResult, CsvFormat, ExportError
from report_platform.settings import current_settings
from report_platform.store.duck import reader
from report_platform.store.partitions import Store

# Microseconds always, and the offset as ±HH:MM: the store keeps microseconds, and a fixed
# width sorts as text in the same order as in time within one offset.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.6f%:z"
SQL_LOCAL_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"

ColumnKind = Literal["text", "raw", "timestamp", "local_timestamp"]
# The value a column holds: its Parquet type, and the type a manifest lists. In CSV every value
# is this type written as text.
ValueType = Literal["string", "int32", "decimal(18,6)", "boolean", "timestamp"]
USAGE_FORMATS = ("csv", "csv.gz", "parquet")
GZIP_LEVEL = 6  # zlib's default: DuckDB's and gzip(1)'s too
# Batches read ahead of the one being written: two keep DuckDB busy while a batch is written, and
# bound the extra memory to two batches.
READ_AHEAD = 2
T = TypeVar("T")


@dataclass(frozen=True)
class CsvColumn:
    """One output column: its exact header, a SQL expression over the source row, and how
    the value is written.

    - `text`: free text; formula triggers are neutralised (see `safety`).
    - `raw`: numbers, booleans and values we format ourselves, written as they come.
    - `timestamp`: a TIMESTAMPTZ written in the export's timezone with its offset.
    - `local_timestamp`: `sql` is a TIMESTAMPTZ and `tz_sql` an IANA timezone per row. It stays
      text in every format: a typed timestamp column holds one zone, and this one's varies by row.

    `value_type` is what the column holds (Parquet writes it typed); `typed_sql`, when given,
    selects that typed value where `sql` formats it as text for CSV (Carrier Fees).
    """

    header: str
    sql: str
    kind: ColumnKind = "text"
    tz_sql: str | None = None
    value_type: ValueType = "string"
    typed_sql: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "timestamp" and self.value_type != "timestamp":
            object.__setattr__(self, "value_type", "timestamp")


def typed_columns(columns: tuple[CsvColumn, ...]) -> tuple[CsvColumn, ...]:
    """The columns as a typed format (Parquet) selects them: `typed_sql` where a column has one."""
    return tuple(
        CsvColumn(c.header, c.typed_sql, c.kind, c.tz_sql, c.value_type) if c.typed_sql else c for c in columns
    )


def columns_for_format(columns: tuple[CsvColumn, ...], file_format: str) -> tuple[CsvColumn, ...]:
    return typed_columns(columns) if file_format == "parquet" else columns


def arrow_type(value_type: ValueType, timezone: str) -> pa.DataType:
    if value_type == "timestamp":
        return pa.timestamp("us", tz=timezone)
    return {
        "string": pa.string(),
        "int32": pa.int32(),
        "decimal(18,6)": pa.decimal128(18, 6),
        "boolean": pa.bool_(),
    }[value_type]


def arrow_schema(columns: tuple[CsvColumn, ...], timezone: str) -> pa.Schema:
    return pa.schema([pa.field(c.header, arrow_type(c.value_type, timezone)) for c in columns])


def column_types(columns: tuple[CsvColumn, ...]) -> tuple[tuple[str, str], ...]:
    """(header, value type) of each column, in file order."""
    return tuple((c.header, c.value_type) for c in columns)


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


def build_connection(store: Store) -> tuple[duckdb.DuckDBPyConnection, Path]:
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


def _flush(buf: io.BytesIO, out: AtomicHashedFile | _GzipStream) -> None:
    with buf.getbuffer() as view:  # released before the buffer is truncated again
        out.write(view)


class _GzipStream:
    """Gzip-compresses what is written into `out`. zlib's own gzip header carries no file name and
    a zero mtime, so the same rows always give the same bytes (and the same SHA-256)."""

    def __init__(self, out: AtomicHashedFile) -> None:
        self._out = out
        self._zip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        compressed = self._zip.compress(data)
        if compressed:
            self._out.write(compressed)
        return len(data)

    def finish(self) -> None:
        self._out.write(self._zip.flush())


class _HashedSink:
    """The file-like object pyarrow's Parquet writer writes to: every byte goes through
    `AtomicHashedFile`, so the Parquet file is hashed as it is written, like the CSV."""

    def __init__(self, out: AtomicHashedFile) -> None:
        self._out = out
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return self._out.write(data)

    def tell(self) -> int:
        return self._out.size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def write_csv_export(
    store: Store,
    queries: Callable[[duckdb.DuckDBPyConnection], Iterator[tuple[str, dict]]],
    columns: tuple[CsvColumn, ...],
    out_path: Path,
    *,
    timezone: str,
    fmt: CsvFormat,
    file_format: str = "csv",
) -> BuildResult:
    """Run each (query, params) that `queries` yields, in order, and stream all their rows
    into one file of `file_format` (`csv`, `csv.gz` or `parquet`). Each query must select
    exactly `columns` (see `select_list`; for Parquet, `columns_for_format`), ordered.
    """
    if file_format not in USAGE_FORMATS:
        raise ExportError(f"format {file_format!r} is not one of {', '.join(USAGE_FORMATS)}")
    con, spill = build_connection(store)
    try:
        with AtomicHashedFile(out_path) as out:
            if file_format == "parquet":
                rows = _write_parquet(con, queries, columns, out, timezone=timezone, fmt=fmt)
            elif file_format == "csv.gz":
                stream = _GzipStream(out)
                rows = _write_csv(con, queries, columns, stream, timezone=timezone, fmt=fmt)
                stream.finish()
            else:
                rows = _write_csv(con, queries, columns, out, timezone=timezone, fmt=fmt)
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    return BuildResult(out_path, rows, out.size, out.hexdigest, FORMAT_CONTENT_TYPES[file_format])


def _write_csv(
    con: duckdb.DuckDBPyConnection,
    queries: Callable[[duckdb.DuckDBPyConnection], Iterator[tuple[str, dict]]],
    columns: tuple[CsvColumn, ...],
    out: AtomicHashedFile | _GzipStream,
    *,
    timezone: str,
    fmt: CsvFormat,
) -> int:
    ts_columns = [c.header for c in columns if c.kind == "timestamp"]
    headers = [c.header for c in columns]
    rows = 0
    if fmt.bom:
        out.write("\ufeff".encode())
    header_written = False
    buf = io.BytesIO()
    with read_ahead(_batches(con, queries, fmt.batch_rows)) as batches:
        for batch in batches:
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
    return rows


def _batches(
    con: duckdb.DuckDBPyConnection,
    queries: Callable[[duckdb.DuckDBPyConnection], Iterator[tuple[str, dict]]],
    batch_rows: int,
) -> Iterator[pa.RecordBatch]:
    """The non-empty Arrow batches of every query, in order."""
    for sql, params in queries(con):
        for batch in con.sql(sql, params=params).to_arrow_reader(batch_rows):
            if batch.num_rows:
                yield batch


_DONE = object()


@contextmanager
def read_ahead(items: Iterator[T], depth: int | None = None) -> Iterator[Iterator[T]]:
    """`items`, produced on a thread of their own at most `depth` (default `READ_AHEAD`) ahead of
    the consumer; `depth=0` reads them on the caller's thread, in turn with the writing.

    DuckDB runs a query (and a window's sort) without the GIL, so the next batches are read while
    this thread formats, hashes and writes the current one: on two cores that overlap is most of
    the export's time beyond DuckDB's own. The order is kept (one producer, a FIFO queue) and
    memory stays bounded by `depth` batches. An error on either side stops both: the producer's
    is raised here, and leaving the block early stops the producer and waits for it, so nothing
    uses the connection after the block.
    """
    depth = READ_AHEAD if depth is None else depth
    if depth <= 0:
        try:
            yield items
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        return
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(_Failed(exc))
        finally:
            # Closed here, on the thread that used the connection, before the consumer moves on.
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def consume() -> Iterator[T]:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(produce,), name="export-read-ahead", daemon=True)
    worker.start()
    try:
        yield consume()
    finally:
        stop.set()
        worker.join()


@dataclass(frozen=True)
class _Failed:
    error: BaseException


def _write_parquet(
    con: duckdb.DuckDBPyConnection,
    queries: Callable[[duckdb.DuckDBPyConnection], Iterator[tuple[str, dict]]],
    columns: tuple[CsvColumn, ...],
    out: AtomicHashedFile,
    *,
    timezone: str,
    fmt: CsvFormat,
) -> int:
    schema = arrow_schema(columns, timezone)
    rows = 0
    # An empty period still gives a file with the columns and their types, and no row group.
    with pq.ParquetWriter(_HashedSink(out), schema, compression="snappy") as writer:
        for sql, params in queries(con):
            for batch in con.sql(sql, params=params).to_arrow_reader(fmt.batch_rows):
                if batch.num_rows == 0:
                    continue
                # Casting a zoned timestamp to another zone only relabels it (the stored instant
                # stays UTC), so readers show the report's local time with its offset.
                writer.write_batch(batch.cast(schema))
                rows += batch.num_rows
    return rows
