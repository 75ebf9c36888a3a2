"""Read-only SQL for analysts (`report-platform sql`).

Read-only by construction, not by a list of forbidden words:

- the DuckDB engine that runs the query has no file system at all: external access is off, no
  path or directory is allowed (DuckDB would otherwise allow its temp folder and files next to
  `:memory:`), no extension can load, and the configuration is locked;
- the store's tables reach it as Arrow datasets that this module opens for reading, so the engine
  needs no file access to read them, and `COPY ... TO`, `ATTACH` or a write function have nowhere
  to write;
- only one statement runs, and only as a subquery, `SELECT * FROM (<query>) LIMIT n`: whatever the
  text holds, what parses there is a query. `EXPLAIN` runs the same way (`EXPLAIN SELECT * FROM
  (<query>)`); `EXPLAIN ANALYZE` executes what it explains and is refused.

Every query has a time limit (enforced with `interrupt()` from a watchdog thread), a row limit (one
extra row is fetched to tell "exactly N" from "more than N") and a memory limit with no spilling.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from report_platform.settings import S3Location
from report_platform.store.duck import s3_sources
from report_platform.store.partitions import Store, table_dir
from report_platform.store.s3 import StorageError
from report_platform.store.schema import TABLES, Table, empty_frame

DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_ROWS = 10_000
# A hard bound: with no temp folder DuckDB cannot spill, so a query past it fails instead of
# filling the disk or the machine other runs share.
MEMORY_LIMIT = "2GB"
THREADS = 2

# PIVOT parses as MULTI (it may define an enum first); it is still wrapped as a subquery, where
# only a query can parse.
_QUERY_TYPES = {duckdb.StatementType.SELECT, duckdb.StatementType.MULTI}
_READ_ONLY = "the store is read-only here"


class ReadOnlyQueryError(Exception):
    """The query was refused or failed; the message is one line for the person who wrote it."""


class QueryTimeout(ReadOnlyQueryError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"query stopped after {seconds:g} s")
        self.seconds = seconds


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool  # the query had more than `max_rows` rows; `rows` holds the first `max_rows`


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _table_source(store: Path, table: Table) -> pa.Table | ds.Dataset:
    """The table's partitions, read through Arrow; the documented schema even with no partition yet."""
    schema = empty_frame(table).to_arrow().schema
    # The same files as the catalog's views (`<table>/*/*.parquet`); hidden names are writers'
    # temporaries.
    folder = table_dir(store, table)
    files = sorted(str(p) for p in folder.glob("*/*.parquet") if not p.name.startswith("."))
    if not files:
        return schema.empty_table()
    return ds.dataset(files, schema=schema, format="parquet")


def analyst_connection(store: Store) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that sees the store's tables and can open no file."""
    # A store on S3 is read by Arrow with this process's credentials, outside DuckDB, which still
    # has no file system or network access of its own.
    if isinstance(store, S3Location):
        sources = s3_sources(store)
    else:
        sources = {table.name: _table_source(store, table) for table in TABLES}
    con = duckdb.connect(
        ":memory:",
        config={
            "threads": THREADS,
            "memory_limit": MEMORY_LIMIT,
            "temp_directory": "",
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_community_extensions": False,
            "python_enable_replacements": False,  # Python variables of this process are not tables
        },
    )
    try:
        con.execute("SET TimeZone = 'UTC'")
        for name, source in sources.items():
            con.register(name, source)
        # DuckDB allows some paths even with external access off; they must be emptied first, as
        # they cannot be changed afterwards.
        con.execute("SET allowed_paths = []")
        con.execute("SET allowed_directories = []")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _single_statement(con: duckdb.DuckDBPyConnection, text: str) -> duckdb.Statement:
    try:
        statements = con.extract_statements(text)
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(f"cannot parse query: {_first_line(exc)}") from None
    if not statements:
        raise ReadOnlyQueryError("empty query: give one SELECT")
    for st in statements:
        if st.type not in _QUERY_TYPES and st.type != duckdb.StatementType.EXPLAIN:
            kind = str(st.type).split(".")[-1]
            raise ReadOnlyQueryError(f"{_READ_ONLY}: {kind} statements are refused; only SELECT queries run")
    if len(statements) > 1:
        raise ReadOnlyQueryError(f"{_READ_ONLY}: one statement per query, got {len(statements)}")
    return statements[0]


def _word_spans(raw: bytes) -> list[tuple[int, int]]:
    """Byte spans of the tokens that are not comments, each running up to the next token."""
    # The tokenizer's offsets count UTF-8 bytes, not characters.
    tokens = duckdb.tokenize(raw.decode())
    ends = [start for start, _ in tokens[1:]] + [len(raw)]
    return [(start, end) for (start, kind), end in zip(tokens, ends, strict=True) if kind != duckdb.token_type.comment]


def _body(text: str) -> str:
    """The statement without its trailing semicolons and comments, so that it can sit in parentheses."""
    raw = text.encode()
    spans = _word_spans(raw)
    while spans and raw[spans[-1][0] : spans[-1][1]].strip() == b";":
        spans.pop()
    return raw[: spans[-1][1]].decode().rstrip() if spans else ""


def _wrapped(con: duckdb.DuckDBPyConnection, text: str, max_rows: int) -> str:
    sql = f"SELECT * FROM (\n{_body(text)}\n) AS analyst_query LIMIT {max_rows + 1}"
    try:
        checked = con.extract_statements(sql)
    except duckdb.Error:
        checked = []
    if len(checked) != 1 or checked[0].type not in _QUERY_TYPES:
        raise ReadOnlyQueryError(f"{_READ_ONLY}: only a query that can stand as a subquery runs")
    return sql


def _first_word(text: str) -> str:
    raw = text.encode()
    spans = _word_spans(raw)
    return raw[spans[0][0] : spans[0][1]].decode().strip().lower() if spans else ""


def _is_explain(statement: duckdb.Statement) -> bool:
    # EXPLAIN of a PIVOT parses as MULTI, so the first word decides too.
    return statement.type == duckdb.StatementType.EXPLAIN or _first_word(statement.query) == "explain"


def _explained(text: str) -> str:
    """What `EXPLAIN ...` explains; refuses `EXPLAIN ANALYZE`, which runs it."""
    raw = text.encode()
    spans = _word_spans(raw)
    if len(spans) < 2:
        raise ReadOnlyQueryError("EXPLAIN needs a query to explain")
    rest = raw[spans[1][0] :].decode()
    second = _first_word(rest)
    if second in {"analyze", "analyse"}:
        raise ReadOnlyQueryError(f"{_READ_ONLY}: EXPLAIN ANALYZE runs the statement it explains; use plain EXPLAIN")
    if second == "(":
        raise ReadOnlyQueryError("EXPLAIN options are not supported here; use plain EXPLAIN SELECT ...")
    return rest


def analyst_sql(con: duckdb.DuckDBPyConnection, query: str, max_rows: int) -> str:
    """The SQL that actually runs for `query`: one SELECT, or a plain EXPLAIN of one. Raises ReadOnlyQueryError."""
    statement = _single_statement(con, query)
    if not _is_explain(statement):
        return _wrapped(con, statement.query, max_rows)
    inner = _single_statement(con, _explained(statement.query))
    if _is_explain(inner):
        raise ReadOnlyQueryError("EXPLAIN of an EXPLAIN is not supported")
    return "EXPLAIN " + _wrapped(con, inner.query, max_rows)


def _watchdog(con: duckdb.DuckDBPyConnection, seconds: float, done: threading.Event, fired: threading.Event) -> None:
    if done.wait(seconds):
        return
    fired.set()
    # An interrupt only stops a query that is running, so it is repeated until the query has stopped.
    while not done.is_set():
        con.interrupt()
        done.wait(0.05)


def run_read_only(
    store: Store,
    query: str,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> QueryResult:
    """Run one analyst query against the store. Raises ReadOnlyQueryError (QueryTimeout past the time limit)."""
    if timeout_seconds <= 0:
        raise ValueError("timeout_seconds must be positive")
    if max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    try:
        con = analyst_connection(store)
    except StorageError as exc:
        raise ReadOnlyQueryError(str(exc)) from None
    done, fired = threading.Event(), threading.Event()
    watchdog = threading.Thread(target=_watchdog, args=(con, timeout_seconds, done, fired), daemon=True)
    watchdog.start()
    try:
        sql = analyst_sql(con, query, max_rows)
        result = con.execute(sql)
        rows = result.fetchall()
        columns = [d[0] for d in result.description or []]
    except duckdb.InterruptException:
        if fired.is_set():
            raise QueryTimeout(timeout_seconds) from None
        raise ReadOnlyQueryError("query interrupted") from None
    except duckdb.OutOfMemoryException:
        raise ReadOnlyQueryError(
            f"query needs more than the {MEMORY_LIMIT} of memory an analyst query may use; filter or aggregate more"
        ) from None
    except duckdb.PermissionException as exc:
        raise ReadOnlyQueryError(f"only the store's tables can be read: {_first_line(exc)}") from None
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(_first_line(exc)) from None
    finally:
        done.set()
        watchdog.join()
        con.close()
    return QueryResult(columns, rows[:max_rows], truncated=len(rows) > max_rows)
