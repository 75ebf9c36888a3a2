"""Read-only SQL for analysts: only statements that cannot change anything are run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from report_platform.store.duck import reader

READ_ONLY = {
    duckdb.StatementType.SELECT,
    duckdb.StatementType.EXPLAIN,
}


class ReadOnlyQueryError(Exception):
    pass


def run_read_only(store: Path, query: str, limit: int | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    con = reader(store)
    try:
        try:
            statements = con.extract_statements(query)
        except duckdb.Error as exc:
            raise ReadOnlyQueryError(f"cannot parse query: {str(exc).splitlines()[0]}") from None
        if not statements:
            raise ReadOnlyQueryError("empty query")
        for st in statements:
            if st.type not in READ_ONLY:
                kind = str(st.type).split(".")[-1]
                raise ReadOnlyQueryError(
                    f"the store is read-only here: {kind} statements are refused; only SELECT queries run"
                )
        # Nothing a query reads may reach outside the store once the views are bound.
        con.execute("SET allowed_directories = ?", [[str(store.resolve()) + "/"]])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        result = None
        try:
            for st in statements:
                result = con.execute(st.query)
            if result is None or result.description is None:
                return [], []
            rows = result.fetchmany(limit) if limit else result.fetchall()
            return [d[0] for d in result.description], rows
        except duckdb.Error as exc:
            raise ReadOnlyQueryError(str(exc).splitlines()[0]) from None
    finally:
        con.close()
