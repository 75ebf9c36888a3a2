"""`aegis_interactions`: each Aegis transaction with its event stream rendered once, as JSON.

The Aegis export with event details writes each transaction's events as one JSON array ordered by
`seq`. Built at export time, that ordered aggregation of 5-40 events per transaction is most of
the export's cost, paid again by every export. Here it is rendered once per UTC day, after the
day is ingested, and stored with the transaction's columns, by workspace, then time: an export
of a derived day reads the row groups of its workspace and window and sorts them, nothing more.

A partition records the SHA-256 of the `aegis_transactions` and `aegis_events` partitions it was
derived from (Parquet key-value metadata). `current_interactions` hands it out only while both
still match, so a day whose partitions changed since (written by other means, restored from a
backup) is never read stale: exports aggregate its events as they did before, as they do for a
day ingested before this table existed.

The JSON is rendered by DuckDB with the same functions as the export's aggregation
(`builders/aegis.py`, `EVENTS_AGG`), so the bytes are the same; a test compares the two.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from report_platform.store.partitions import Store, partition_file, partition_path
from report_platform.store.schema import AEGIS_EVENTS, AEGIS_INTERACTIONS, AEGIS_TRANSACTIONS, empty_frame

DERIVED_FROM = b"report_platform.derived_from"
SOURCES = (AEGIS_TRANSACTIONS, AEGIS_EVENTS)
# A row group holds about this many events plus transactions (~30 MB of JSON): rendering memory
# stays flat with the day's volume, and an export reads a few row groups per window.
CHUNK_WEIGHT = 200_000
EVENT_COLUMNS = ("seq", "occurred_at", "event_type", "detail")
UTC_SQL_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"

# One event as it appears in the array, with the array's punctuation: `[` before a transaction's
# first event, `,` after each but its last, `]` after the last. A transaction's events, rendered
# in order, are then its whole array, end to end in one buffer. `make_timestamp(epoch_us(...))`
# is the same UTC wall clock as `strftime` of the TIMESTAMPTZ in a UTC session, without the
# time-zone calendar (half the cost).
PIECE_SQL = f"""SELECT pos, concat(
    CASE WHEN first THEN '[{{"seq":' ELSE '{{"seq":' END, seq,
    ',"at":"', strftime(make_timestamp(epoch_us(occurred_at)), '{UTC_SQL_FORMAT}'),
    '","type":', to_json(event_type),
    ',"detail":', CAST(json(detail) AS VARCHAR),
    CASE WHEN last THEN '}}]' ELSE '}},' END) AS piece
FROM chunk"""


class InteractionsError(Exception):
    """The day cannot be derived (not ingested, or an event that cannot be rendered as JSON)."""


@dataclass(frozen=True)
class Derived:
    path: Path
    rows: int
    rendered: bool  # False: the partition was already derived from the day's current partitions


def digest(path: Path) -> str:
    """SHA-256 of a partition file; empty when there is none."""
    if not path.exists():
        return ""
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()


def _recorded_sources(path: Path) -> dict[str, str] | None:
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):  # no partition, or not a Parquet file
        return None
    raw = metadata.get(DERIVED_FROM)
    return json.loads(raw) if raw else None


def current_interactions(store: Path, day: date) -> Path | None:
    """The day's `aegis_interactions` partition if it was derived from the day's current
    transactions and events partitions, else None (always on S3, which keeps none)."""
    if not isinstance(store, Path):
        return None
    path = partition_path(store, AEGIS_INTERACTIONS, day)
    recorded = _recorded_sources(path)
    if recorded is None:
        return None
    for table in SOURCES:
        if recorded.get(table.name) != digest(partition_path(store, table, day)):
            return None
    return path


def refresh_interactions_day(store: Store, day: date, *, force: bool = False) -> Derived:
    """Derive the day's `aegis_interactions` partition from the store, unless it is already
    current (`force` derives it anyway). Raises InteractionsError when the day cannot be derived."""
    if not isinstance(store, Path):
        # Streamed into a local file (`partition_file`); a store on S3 keeps no aegis_interactions,
        # and its Aegis exports aggregate the day's events as they did before this table existed.
        raise InteractionsError("aegis_interactions is derived in a local usage store only")
    target = partition_path(store, AEGIS_INTERACTIONS, day)
    # Each source is hashed and parsed from the same bytes, so the recorded digest is that of
    # what was rendered even if an ingest replaces the file meanwhile.
    data = {table.name: _read_bytes(partition_path(store, table, day)) for table in SOURCES}
    if not data[AEGIS_TRANSACTIONS.name]:
        raise InteractionsError(f"aegis_transactions has no partition for {day.isoformat()}; ingest the day first")
    sources = {name: hashlib.sha256(raw).hexdigest() if raw else "" for name, raw in data.items()}
    if not force and _recorded_sources(target) == sources:
        return Derived(target, pq.read_metadata(target).num_rows, rendered=False)
    tx = pl.read_parquet(io.BytesIO(data[AEGIS_TRANSACTIONS.name]))
    raw_events = data[AEGIS_EVENTS.name]
    events = pl.read_parquet(io.BytesIO(raw_events)) if raw_events else empty_frame(AEGIS_EVENTS)
    del data
    schema = empty_frame(AEGIS_INTERACTIONS).to_arrow().schema.with_metadata({DERIVED_FROM: json.dumps(sources)})
    # On any error the partition stays as it was (`partition_file` replaces it only when complete).
    # A row group is written on a thread of its own while the next is rendered (both release the
    # GIL); one write in flight at a time keeps the row groups in order and memory bounded.
    with (
        partition_file(store, AEGIS_INTERACTIONS, day) as handle,
        pq.ParquetWriter(
            handle,
            schema,
            compression="zstd",
            # The JSON is unique per row: a dictionary or min/max statistics of it are wasted work.
            use_dictionary=[n for n in schema.names if n != "events"],
            write_statistics=[n for n in schema.names if n != "events"],
        ) as writer,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="aegis-interactions-writer") as pool,
    ):
        writing: Future | None = None
        for chunk in render(tx, events, CHUNK_WEIGHT):
            if writing is not None:
                writing.result()
            writing = pool.submit(writer.write_table, chunk.cast(schema))
        if writing is not None:
            writing.result()
    return Derived(target, tx.height, rendered=True)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def render(tx: pl.DataFrame, events: pl.DataFrame, chunk_weight: int = CHUNK_WEIGHT) -> Iterator[pa.Table]:
    """`tx` in stored order with an `events` column, as Arrow tables of about `chunk_weight`
    events plus transactions each.

    A transaction's events are those with its id and workspace (what the export's aggregation
    reads: the report workspace's events of the report's transactions), in `seq` order.
    """
    for name in EVENT_COLUMNS:
        if events[name].null_count():
            # The export's aggregation would skip such an event; derive nothing rather than differ.
            raise InteractionsError(f"aegis_events has events without {name}")
    ordered = tx.sort("workspace_id", "occurred_at", "transaction_id")
    n = ordered.height
    keys = ordered.lazy().select("transaction_id", pl.col("workspace_id").alias("tx_workspace")).with_row_index("rank")
    # Where each event goes: its transaction's rank, then its seq (shifted to sort as unsigned).
    placed = (
        events.lazy()
        .select("transaction_id", "workspace_id", "seq")
        .with_row_index("row")
        .join(keys, on="transaction_id", how="inner")
        .filter(pl.col("workspace_id") == pl.col("tx_workspace"))
        .select(
            "row",
            "rank",
            order=pl.col("rank").cast(pl.UInt64) * (1 << 32)
            + (pl.col("seq").cast(pl.Int64) + (1 << 31)).cast(pl.UInt64),
        )
        .sort("order")
        .collect()
    )
    rows = placed["row"].to_numpy()
    ranks = placed["rank"].to_numpy().astype(np.int64)
    del placed
    counts = np.bincount(ranks, minlength=n)
    event_starts = np.concatenate([[0], np.cumsum(counts)])
    cuts = np.searchsorted(np.cumsum(counts + 1), np.arange(chunk_weight, n + len(rows), chunk_weight), side="right")
    bounds = np.unique(np.concatenate([[0], cuts, [n]]))
    source = events.select(EVENT_COLUMNS)
    con = duckdb.connect(":memory:")
    try:
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            lo, hi = event_starts[a], event_starts[b]
            pieces = _pieces(con, source, rows[lo:hi], ranks[lo:hi], events)
            yield ordered.slice(a, b - a).to_arrow().append_column("events", _arrays(pieces, counts[a:b]))
    finally:
        con.close()


def _pieces(
    con: duckdb.DuckDBPyConnection, source: pl.DataFrame, rows: np.ndarray, ranks: np.ndarray, events: pl.DataFrame
) -> pa.StringArray | pa.LargeStringArray:
    """The events at `rows` of `source`, rendered in that order, as one array."""
    m = len(rows)
    first = np.ones(m, dtype=bool)
    last = np.ones(m, dtype=bool)
    first[1:] = ranks[1:] != ranks[:-1]
    last[:-1] = ranks[1:] != ranks[:-1]
    # Polars gathers text as views, and hands them to DuckDB as Arrow string views: no copy.
    chunk = (
        source[rows]
        .with_columns(first=pl.Series(first), last=pl.Series(last), pos=pl.Series(np.arange(m, dtype=np.int64)))
        .to_arrow(compat_level=pl.CompatLevel.newest())
    )
    con.register("chunk", chunk)
    try:
        result = con.sql(PIECE_SQL).to_arrow_table()
    except duckdb.Error as exc:
        raise InteractionsError(_unrenderable(con, rows, events, exc)) from None
    finally:
        con.unregister("chunk")
    pieces = result["piece"]
    if not np.array_equal(result["pos"].to_numpy(), np.arange(m)):  # DuckDB keeps the order; make sure
        pieces = pieces.take(pa.array(np.argsort(result["pos"].to_numpy(), kind="stable")))
    return pieces.combine_chunks()


def _unrenderable(con: duckdb.DuckDBPyConnection, rows: np.ndarray, events: pl.DataFrame, exc: duckdb.Error) -> str:
    bad = con.sql("SELECT pos FROM chunk WHERE NOT json_valid(detail) LIMIT 1").fetchall()
    if not bad:
        return f"cannot render the day's events as JSON: {str(exc).splitlines()[0]}"
    event = events.row(int(rows[bad[0][0]]), named=True)
    return f"event {event['seq']} of transaction {event['transaction_id']}: detail is not JSON"


def _arrays(pieces: pa.StringArray | pa.LargeStringArray, counts: np.ndarray) -> pa.LargeStringArray:
    """Each transaction's array: the span of its pieces in `pieces`' buffer, not copied; null for a
    transaction without events (as the export's outer join gives)."""
    if len(pieces) == 0:
        return pa.nulls(len(counts), pa.large_string())
    width = np.int64 if pa.types.is_large_string(pieces.type) else np.int32
    offsets = np.frombuffer(pieces.buffers()[1], dtype=width)[pieces.offset : pieces.offset + len(pieces) + 1]
    spans = offsets[np.concatenate([[0], np.cumsum(counts)])].astype(np.int64)
    return pa.LargeStringArray.from_buffers(
        len(counts),
        pa.py_buffer(spans),
        pieces.buffers()[2],
        pa.py_buffer(np.packbits(counts > 0, bitorder="little")),
    )
