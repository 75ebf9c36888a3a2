"""DuckDB over the Parquet partitions: the analyst catalog file and short-lived readers.

The catalog file (`store.duckdb`) holds only views, written once when the store is set up; after
that every process opens it read-only, which DuckDB allows for any number of processes at once.
Report runs and `report-platform sql` do not even open the file: they make an in-memory DuckDB
with the same views, so no process ever holds a lock a writer would wait for.

A store on S3 has no catalog file (its views would need DuckDB's `httpfs`): a reader registers
each table as an Arrow dataset instead (store/s3.py), under the same names.
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb

from report_platform.settings import S3Location
from report_platform.store import s3
from report_platform.store.partitions import Store, ensure_table, glob_pattern
from report_platform.store.schema import TABLES

CATALOG_VERSION = "1"


def _quote(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def view_sql(store: Path) -> list[str]:
    return [
        f"CREATE OR REPLACE VIEW {t.name} AS SELECT * FROM read_parquet({_quote(glob_pattern(store, t))})"
        for t in TABLES
    ]


def prepare_store(store: Store) -> None:
    """Make every table readable (zero-row schema files), even before any ingestion."""
    for table in TABLES:
        ensure_table(store, table)


def write_catalog(store: Path, catalog: Path, attempts: int = 50) -> None:
    """(Re)write the analyst catalog's views. Retries while another process has the file open."""
    prepare_store(store)
    catalog.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(attempts):
        try:
            con = duckdb.connect(str(catalog))
        except duckdb.IOException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)
            continue
        try:
            for stmt in view_sql(store):
                con.execute(stmt)
            con.execute("CREATE OR REPLACE TABLE _catalog_info AS SELECT ? AS version", [CATALOG_VERSION])
        finally:
            con.close()
        return


def catalog_is_current(store: Path, catalog: Path) -> bool:
    if not catalog.exists():
        return False
    try:
        con = duckdb.connect(str(catalog), read_only=True)
    except duckdb.Error:
        return False
    try:
        version = con.execute("SELECT version FROM _catalog_info").fetchone()
        have = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    except duckdb.Error:
        return False
    finally:
        con.close()
    return bool(version and version[0] == CATALOG_VERSION and {t.name for t in TABLES} <= have)


def ensure_catalog(store: Store, catalog: Path) -> None:
    if isinstance(store, S3Location):
        return
    if not catalog_is_current(store, catalog):
        write_catalog(store, catalog)


def reader(store: Store, *, threads: int | None = None, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per store table; holds no lock on any file."""
    prepare_store(store)
    # Listed before the connection exists, so a bucket that cannot be read leaves nothing open.
    sources = s3_sources(store) if isinstance(store, S3Location) else None
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = {_quote(memory_limit)}")
    if sources is None:
        for stmt in view_sql(store):  # type: ignore[arg-type]
            con.execute(stmt)
    else:
        for name, source in sources.items():
            con.register(name, source)
    return con


def s3_sources(store: S3Location) -> dict[str, object]:
    """Each table of a store on S3 as an Arrow dataset, listed now (one file system for all)."""
    filesystem = s3.arrow_filesystem(store)
    return {t.name: s3.table_source(store, t, filesystem) for t in TABLES}
