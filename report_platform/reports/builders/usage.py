"""The query shared by the usage CSV exports: one workspace, one period, in time order.

The period is read window by window, never all at once, so that ordering a window's rows
never needs more memory than `rows_per_window` rows: each UTC day that has a partition is
counted first and cut into as many equal slices of time as its row count needs. Days with
no partition are skipped without a query.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from report_platform.reports.builders.csv_writer import (
    CsvColumn,
    columns_for_format,
    select_list,
    windows,
    write_csv_export,
)
from report_platform.reports.builders.spec import BuildResult, CsvFormat, ExportError, ExportSpec
from report_platform.store.partitions import Store, partition_days
from report_platform.store.schema import TABLES_BY_NAME

DAY = timedelta(days=1)
ROWS_PER_WINDOW = 250_000

Queries = Callable[[duckdb.DuckDBPyConnection], Iterator[tuple[str, dict]]]


def require_workspace(spec: ExportSpec) -> str:
    if not spec.workspace_id:
        raise ExportError(f"a {spec.type} report is scoped to one workspace; none was given")
    return spec.workspace_id


def record_filter(spec: ExportSpec) -> tuple[str, dict]:
    """The report's own filter (workflows, campaigns) as SQL over the alias `t` and its parameters.

    Names travel as list parameters, never in the SQL text. `list_contains($names, column)` is
    what DuckDB pushes into the Parquet scan (as `column IN (...)`), so only the matching rows
    are read past the filter column; an OR across the two SMS columns is evaluated after it.
    """
    if spec.type == "aegis_interaction" and spec.workflows:
        return " AND list_contains($workflows, t.workflow)", {"workflows": list(spec.workflows)}
    if spec.type == "voice_usage" and spec.campaigns:
        return " AND list_contains($campaigns, t.campaign_name)", {"campaigns": list(spec.campaigns)}
    if spec.type == "sms_usage":
        tests, params = [], {}
        for name, column in (("core_campaigns", "core_campaign"), ("engage_campaigns", "engage_campaign")):
            if getattr(spec, name):
                tests.append(f"list_contains(${name}, t.{column})")
                params[name] = list(getattr(spec, name))
        if len(tests) == 1:
            return f" AND {tests[0]}", params
        if tests:
            return f" AND ({' OR '.join(tests)})", params
    return "", {}


def usage_sql(table: str, id_column: str, columns: tuple[CsvColumn, ...], extra_where: str = "") -> str:
    """Rows of `$workspace` with `$start <= occurred_at < $end`, ordered by time then id.

    The workspace filter is in the SQL itself, so no row of another workspace is ever read
    into an export; the period is half-open: start included, end excluded.
    """
    return (
        f"SELECT\n  {select_list(columns)}\nFROM {table} AS t\n{_where(extra_where)}\n"
        f"ORDER BY t.occurred_at, t.{id_column}"
    )


def where_sql(extra_where: str = "") -> str:
    """The workspace, period and `extra_where` filter over the alias `t`."""
    return _where(extra_where)


def _where(extra_where: str) -> str:
    return "WHERE t.workspace_id = $workspace AND t.occurred_at >= $start AND t.occurred_at < $end" + extra_where


def usage_queries(
    store: Store,
    spec: ExportSpec,
    table: str,
    id_column: str,
    columns: tuple[CsvColumn, ...],
    *,
    extra_where: str = "",
    extra_params: dict | None = None,
    rows_per_window: int | None = None,
    window_query: Callable[[duckdb.DuckDBPyConnection, dict], tuple[str, dict]] | None = None,
) -> Queries:
    """(sql, params) for each window of the period, in time order, for `write_csv_export`.

    `window_query(con, params)` replaces the default `usage_sql` query: given the window's
    parameters (workspace, start, end, the filter's), it returns the window's query and parameters.
    """
    workspace = require_workspace(spec)
    per_window = rows_per_window or ROWS_PER_WINDOW
    sql = usage_sql(table, id_column, columns, extra_where)
    count_sql = f"SELECT count(*) FROM {table} AS t {_where(extra_where)}"
    quantile_sql = f"SELECT quantile_disc(t.occurred_at, $q) FROM {table} AS t {_where(extra_where)}"
    stored_days = set(partition_days(store, TABLES_BY_NAME[table]))

    def queries(con: duckdb.DuckDBPyConnection) -> Iterator[tuple[str, dict]]:
        for day_start, day_end in windows(spec.start_utc, spec.end_utc, DAY):
            if day_start.date() not in stored_days:
                continue
            base = {"workspace": workspace, **(extra_params or {})}
            rows = con.sql(count_sql, params={**base, "start": day_start, "end": day_end})
            count = rows.fetchall()[0][0]
            if not count:
                continue
            pieces = math.ceil(count / per_window)
            for start, end in _quantile_slices(con, quantile_sql, {**base, "start": day_start, "end": day_end}, pieces):
                params = {**base, "start": start, "end": end}
                yield window_query(con, params) if window_query is not None else (sql, params)

    return queries


def _quantile_slices(
    con: duckdb.DuckDBPyConnection, quantile_sql: str, day: dict, pieces: int
) -> Iterator[tuple[datetime, datetime]]:
    """Cut the day where its rows are, not into equal hours: traffic peaks in the afternoon, and
    equal time slices there would hold several times `rows_per_window` rows."""
    start, end = day["start"], day["end"]
    if pieces <= 1:
        yield start, end
        return
    cuts = con.sql(quantile_sql, params={**day, "q": [i / pieces for i in range(1, pieces)]}).fetchall()[0][0]
    bounds = [start, *sorted({c for c in cuts if start < c < end}), end]
    yield from zip(bounds, bounds[1:], strict=False)


def write_usage_export(
    store: Store, spec: ExportSpec, out_path: Path, fmt: CsvFormat, table: str, id_column: str, columns: tuple
) -> BuildResult:
    """A usage table's rows of the spec's workspace, period and filter, written in its format
    (CSV, csv.gz or Parquet), ordered by time then `id_column`; timestamps in the report's timezone."""
    file_format = spec.format or "csv"
    cols = columns_for_format(columns, file_format)
    extra_where, extra_params = record_filter(spec)
    queries = usage_queries(store, spec, table, id_column, cols, extra_where=extra_where, extra_params=extra_params)
    return write_csv_export(store, queries, cols, out_path, timezone=spec.timezone, fmt=fmt, file_format=file_format)
