"""Usage partitions as Parquet files, replaced atomically.

A partition is exactly one file, `store/<table>/day=YYYY-MM-DD/data.parquet`. A write goes to a
temporary file in the same folder, is fsynced, and is renamed over the old file: a reader (or a
crash) sees either the old partition or the new one, never half of one, and re-writing a day
replaces it instead of appending to it. Nobody takes a DuckDB write lock to ingest, so analysts
and report runs can read while ingestion runs.

A store on S3 (`S3Location`) keeps the same tables and days under its prefix, with the same
promise kept another way (store/s3.py). Every function here takes either, so callers never ask
where the store is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import BinaryIO

import polars as pl

from report_platform.durable import atomic_write
from report_platform.settings import S3Location
from report_platform.store import s3
from report_platform.store.schema import Table, empty_frame

Store = Path | S3Location

PARTITION_FILE = "data.parquet"
PARTITION_MODE = 0o640
SCHEMA_DIR = "_schema"  # a zero-row file so a view over an empty table still has its columns


def table_dir(store: Path, table: Table) -> Path:
    return store / table.name


def partition_path(store: Store, table: Table, day: date, name: str = s3.PARTITION_NAME) -> Path:
    """The partition's file in a local store (`name`: `data`, or a quarantine day's source)."""
    if isinstance(store, S3Location):
        # A file path means a local store: on S3 a partition is read through `read_partition`
        # or the Arrow datasets of store/s3.py.
        raise s3.StorageError(f"reading {table.name} by file path needs a local store; the store is at {store}")
    return table_dir(store, table) / f"day={day.isoformat()}" / f"{name}.parquet"


def glob_pattern(store: Path, table: Table) -> str:
    """Every partition plus the zero-row schema file, for `read_parquet`."""
    return str(table_dir(store, table) / "*" / "*.parquet")


def write_atomic(frame: pl.DataFrame, target: Path) -> None:
    """Write `frame` as Parquet at `target`, replacing any old file in one rename."""
    # The temporary name must not match the views' `*.parquet` glob, or a crash mid-write would
    # leave a half-written file that every query then trips over. Partitions are for the
    # analysts' group to read (docs/store.md), and a replaced partition must not lose that.
    with atomic_write(target, mode=PARTITION_MODE, prefix=".tmp-", suffix=".partial") as handle:
        frame.write_parquet(handle, compression="zstd", statistics=True, row_group_size=256_000)


def remove_stale_temporaries(folder: Path, older_than_seconds: float = 3600) -> None:
    """Temporary files left by a writer that died; young ones may belong to a live writer."""
    import time

    if not folder.exists():
        return
    cutoff = time.time() - older_than_seconds
    for leftover in folder.glob(".tmp-*.partial"):
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
        except FileNotFoundError:
            pass


def ensure_table(store: Store, table: Table) -> None:
    if isinstance(store, S3Location):
        return  # an S3 table's readers take the schema from store/schema.py, not from a file
    schema_file = table_dir(store, table) / SCHEMA_DIR / "empty.parquet"
    if not schema_file.exists():
        write_atomic(empty_frame(table), schema_file)


def write_partition(store: Store, table: Table, day: date, frame: pl.DataFrame, name: str = s3.PARTITION_NAME) -> str:
    """Replace the table's partition for `day` with `frame` (columns in the table's order); returns
    where it was written."""
    frame = frame.select(table.names).cast(table.schema)  # type: ignore[arg-type]
    if isinstance(store, S3Location):
        return s3.write_partition(store, table, day, frame, name)
    ensure_table(store, table)
    target = partition_path(store, table, day, name)
    remove_stale_temporaries(target.parent)
    write_atomic(frame, target)
    return str(target)


def remove_partition(store: Store, table: Table, day: date, name: str = s3.PARTITION_NAME) -> None:
    if isinstance(store, S3Location):
        s3.remove_partition(store, table, day, name)
    else:
        partition_path(store, table, day, name).unlink(missing_ok=True)


def partition_rows(store: Store, table: Table, day: date, name: str = s3.PARTITION_NAME) -> int:
    """Rows in the partition (0 when there is none), read from its footer."""
    if isinstance(store, S3Location):
        return s3.partition_rows(store, table, day, name)
    path = partition_path(store, table, day, name)
    if not path.exists():
        return 0
    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


@contextmanager
def partition_file(store: Path, table: Table, day: date) -> Iterator[BinaryIO]:
    """A file whose bytes replace the table's partition for `day` when the block ends, as
    `write_partition` does; for writers that stream a partition instead of holding it whole.
    A local store only (a store on S3 takes whole frames, `write_partition`)."""
    ensure_table(store, table)
    target = partition_path(store, table, day)
    remove_stale_temporaries(target.parent)
    with atomic_write(target, mode=PARTITION_MODE, prefix=".tmp-", suffix=".partial") as handle:
        yield handle


def partition_days(store: Store, table: Table) -> list[date]:
    if isinstance(store, S3Location):
        return s3.partition_days(store, table)
    root = table_dir(store, table)
    if not root.exists():
        return []
    days = []
    for child in root.iterdir():
        if child.name.startswith("day=") and (child / PARTITION_FILE).exists():
            days.append(date.fromisoformat(child.name[4:]))
    return sorted(days)


def read_partition(store: Store, table: Table, day: date) -> pl.DataFrame:
    if isinstance(store, S3Location):
        found = s3.read_partition(store, table, day)
        return found if found is not None else empty_frame(table)
    path = partition_path(store, table, day)
    if not path.exists():
        return empty_frame(table)
    return pl.read_parquet(path)
