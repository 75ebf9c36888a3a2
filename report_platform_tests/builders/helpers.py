"""Reading exports back the ways recipients do, and formatting store rows independently."""

from __future__ import annotations

import csv
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from report_platform.reports.builders.safety import neutralise


def read_csv_module(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def read_duckdb(path: Path) -> tuple[list[str], list[tuple]]:
    con = duckdb.connect()
    try:
        rel = con.sql(
            "SELECT * FROM read_csv(?, all_varchar = true, header = true, delim = ',', "
            "quote = '\"', escape = '\"', strict_mode = true)",
            params=[str(path)],
        )
        return list(rel.columns), rel.fetchall()
    finally:
        con.close()


def read_polars(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)


def iso(ts: datetime, tz: str) -> str:
    return ts.astimezone(ZoneInfo(tz)).isoformat(timespec="microseconds")


def text(value: object) -> str | None:
    return None if value is None else neutralise(str(value))


def plain_decimal(value: Decimal | None) -> str | None:
    if value is None:
        return None
    s = format(value, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def boolean(value: bool | None) -> str | None:
    return None if value is None else ("true" if value else "false")


def as_csv_module(values: list[str | None]) -> list[str]:
    """What Python's csv module yields for a row: None and '' both read back as ''."""
    return ["" if v is None else v for v in values]
