"""The landing zone: one file per source and UTC day, validated row by row.

Layout (local folder or S3 prefix, same shape):

    <root>/<source>/<YYYY-MM-DD>.parquet | .csv | .jsonl

`source` is a usage table name (voice_calls, sms_messages, aegis_transactions, aegis_events);
columns are that table's columns (`docs/store.md`), each at most once. CSV is RFC 4180 with a
header row, UTF-8; timestamps are ISO 8601 with `Z` or an offset (UTC when none). Text values are
kept exactly as written; only numbers, booleans and timestamps may carry surrounding spaces. A row
that fails validation is kept in the `quarantine` table with the reason; a file that cannot be
read at all fails the partition with a message naming the file and the problem.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl

from report_platform.store.schema import MONEY, QUARANTINE, UTC_TS, Table

EXTENSIONS = ("parquet", "csv", "jsonl")
ENUMS: dict[str, dict[str, tuple[str, ...]]] = {
    "voice_calls": {
        "status": ("completed", "no-answer", "busy", "failed", "voicemail", "canceled"),
        "jurisdiction": ("intrastate", "interstate"),
    },
    "sms_messages": {"direction": ("inbound", "outbound"), "message_type": ("SMS", "MMS")},
    "aegis_transactions": {
        "result": ("Accepted", "Rejected"),
        "workflow_tier": ("lite", "etl"),
        "sip_attestation": ("A", "B", "C"),
    },
}
KEYS = {
    "voice_calls": ("call_id",),
    "sms_messages": ("message_id",),
    "aegis_transactions": ("transaction_id",),
    "aegis_events": ("transaction_id", "seq"),
}


class LandingFileError(Exception):
    """The file cannot be read as a landing file at all; the partition fails."""


@dataclass(frozen=True)
class LandingFile:
    name: str  # shown in messages and quarantine rows: a path or s3:// URL
    fmt: str
    data: bytes | Path


@dataclass(frozen=True)
class Validated:
    rows: pl.DataFrame
    quarantined: pl.DataFrame


class LocalLanding:
    def __init__(self, root: Path) -> None:
        self.root = root

    def find(self, source: str, day: date) -> LandingFile | None:
        hits = [self.root / source / f"{day.isoformat()}.{ext}" for ext in EXTENSIONS]
        hits = [p for p in hits if p.exists()]
        if len(hits) > 1:
            raise LandingFileError(
                f"{source} {day}: more than one landing file ({', '.join(p.name for p in hits)}); keep one"
            )
        if not hits:
            return None
        return LandingFile(str(hits[0]), hits[0].suffix[1:], hits[0])


class S3Landing:
    """The same layout under an S3 prefix, read with a boto3 client (dagster-aws's S3Resource)."""

    def __init__(self, client, bucket: str, prefix: str = "") -> None:  # noqa: ANN001 - boto3 client
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def find(self, source: str, day: date) -> LandingFile | None:
        for ext in EXTENSIONS:
            key = f"{self.prefix}{source}/{day.isoformat()}.{ext}"
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except self.client.exceptions.NoSuchKey:
                continue
            return LandingFile(f"s3://{self.bucket}/{key}", ext, body)
        return None


def read_raw(file: LandingFile) -> pl.DataFrame:
    """Read a landing file with every column as text, or raise LandingFileError.

    CSV: an empty field is no value (null) and a quoted empty field `""` an empty text; nothing
    is trimmed. JSON Lines: `null` or an absent key is no value; numbers keep their digits.
    """
    try:
        if file.fmt == "parquet":
            frame = _read_parquet(file)
        elif file.fmt == "csv":
            frame = pl.read_csv(_open(file), infer_schema=False, encoding="utf8", raise_if_empty=False)
            # Polars renames a repeated header name instead of refusing it; which copy is meant is
            # the provider's call, so the header is read again as written.
            _refuse_duplicates(_csv_header(_open(file)), "duplicate column(s) in the header")
        elif file.fmt == "jsonl":
            frame = _read_jsonl(_open(file))
        else:
            raise LandingFileError(f"unsupported format {file.fmt!r}")
    except LandingFileError as exc:
        raise LandingFileError(f"{file.name}: {exc}") from exc
    except Exception as exc:
        raise LandingFileError(f"{file.name}: cannot be read as {file.fmt}: {_first_line(exc)}") from exc
    return frame


def _open(file: LandingFile) -> io.BytesIO | Path:
    """A fresh source for each reader: a consumed buffer would read as empty."""
    return io.BytesIO(file.data) if isinstance(file.data, bytes) else file.data


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _refuse_duplicates(names: list[str], problem: str) -> None:
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise LandingFileError(f"{problem}: {', '.join(repeated)}")


def _csv_header(source: io.BytesIO | Path) -> list[str]:
    """The first CSV record as written (quoted names may hold commas or line breaks)."""
    with source if isinstance(source, io.BytesIO) else source.open("rb") as fh:
        header = next(csv.reader(line.decode("utf-8") for line in fh), [])
    if header:
        header[0] = header[0].removeprefix("\ufeff")
    return header


def _read_parquet(file: LandingFile) -> pl.DataFrame:
    try:
        return pl.read_parquet(_open(file))
    except pl.exceptions.DuplicateError:
        import pyarrow.parquet as pq

        _refuse_duplicates(pq.read_schema(_open(file)).names, "duplicate column(s) in the schema")
        raise


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    _refuse_duplicates([key for key, _ in pairs], "duplicate key(s) in the object")
    return dict(pairs)


def _as_text(value: object) -> str | None:
    """A JSON value as the text a CSV would carry; nested objects and arrays as JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=float)


def _read_jsonl(source: io.BytesIO | Path) -> pl.DataFrame:
    raw = source.getvalue() if isinstance(source, io.BytesIO) else source.read_bytes()
    records = []
    # Lines end at LF only: str.splitlines would also split inside values at U+2028, U+0085 and
    # other characters that JSON strings may hold unescaped.
    for number, line in enumerate(raw.decode("utf-8-sig").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_float=Decimal, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise LandingFileError(f"line {number}: not JSON ({exc.msg})") from exc
        except LandingFileError as exc:
            raise LandingFileError(f"line {number}: {exc}") from exc
        if not isinstance(value, dict):
            raise LandingFileError(f"line {number}: expected a JSON object")
        records.append({k: _as_text(v) for k, v in value.items()})
    return pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame()


def _normal_timestamp(text: pl.Expr) -> pl.Expr:
    # Literal replaces, not regexes: this runs on every row. chrono's `%#z` reads ±HH, ±HHMM and ±HH:MM.
    return text.str.to_uppercase().str.replace(" ", "T", literal=True).str.replace("Z", "+00:00", literal=True)


def _timestamp_with_seconds_and_offset(text: pl.Expr) -> pl.Expr:
    """The usual shape (seconds and an offset): `_timestamp`'s first choice, tried on every row."""
    return _normal_timestamp(text).str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%#z", time_zone="UTC", strict=False)


def _timestamp(text: pl.Expr) -> pl.Expr:
    """ISO 8601 / RFC 3339 date-time text to UTC: `T`, `t` or a space between date and time,
    optional seconds and fraction, then `Z`, `±HH:MM`, `±HHMM`, `±HH` or nothing (UTC)."""
    normal = _normal_timestamp(text)
    return pl.coalesce(
        normal.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%#z", time_zone="UTC", strict=False),
        normal.str.to_datetime("%Y-%m-%dT%H:%M%#z", time_zone="UTC", strict=False),
        normal.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False).dt.replace_time_zone("UTC"),
        normal.str.to_datetime("%Y-%m-%dT%H:%M", strict=False).dt.replace_time_zone("UTC"),
    )


def _complete_timestamps(typed: pl.DataFrame, name: str) -> pl.DataFrame:
    """Parse with every `_timestamp` form the rows the usual shape left empty, and only those.

    `pl.coalesce` evaluates all four forms on every row; most files use one shape, so the others
    are tried on the few rows that need them. The result is the same as `_timestamp` on all rows.
    """
    retry = typed.select(pl.col(name).is_null() & pl.col(f"_raw_{name}").is_not_null()).to_series()
    if not retry.any():
        return typed
    index = retry.arg_true()
    parsed = (
        typed.select(pl.col(f"_raw_{name}").gather(index)).select(_timestamp(pl.first().str.strip_chars())).to_series()
    )
    return typed.with_columns(typed[name].scatter(index, parsed))


def _parse(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.String:
        return col.cast(pl.String)  # text is the provider's: " =1+1" stays " =1+1"
    text = col.cast(pl.String).str.strip_chars()
    if dtype == UTC_TS:
        return _timestamp_with_seconds_and_offset(text)  # the other forms: _complete_timestamps
    if dtype == pl.Boolean:
        lowered = text.str.to_lowercase()
        return (
            pl.when(lowered.is_in(["true", "1", "yes"]))
            .then(True)
            .when(lowered.is_in(["false", "0", "no"]))
            .then(False)
        )
    if dtype == MONEY:
        return text.cast(MONEY, strict=False)
    return text.cast(dtype, strict=False)


def validate(frame: pl.DataFrame, table: Table, day: date, file_name: str, workspaces: frozenset[str]) -> Validated:
    """Split a raw landing frame into typed rows and quarantined rows with reasons."""
    missing = [c.name for c in table.columns if c.required and c.name not in frame.columns]
    if missing:
        raise LandingFileError(f"{file_name}: missing required column(s): {', '.join(missing)}")
    raw = frame.with_row_index("_row", offset=1)
    for c in table.columns:
        if c.name not in raw.columns:
            raw = raw.with_columns(pl.lit(None, dtype=pl.String).alias(c.name))
    typed = raw.select(
        "_row",
        *[_parse(pl.col(c.name), c.dtype).alias(c.name) for c in table.columns],
        *[pl.col(c.name).cast(pl.String).alias(f"_raw_{c.name}") for c in table.columns],
    )
    for c in table.columns:
        if c.dtype == UTC_TS:
            typed = _complete_timestamps(typed, c.name)
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    day_end = day_start + timedelta(days=1)
    checks: list[pl.Expr] = []
    for c in table.columns:
        raw_col = pl.col(f"_raw_{c.name}")
        present = raw_col.is_not_null() & (raw_col.str.strip_chars() != "")
        if c.required:
            checks.append(pl.when(~present).then(pl.lit(f"{c.name}: missing")))
        checks.append(
            pl.when(present & pl.col(c.name).is_null()).then(
                pl.format(f"{c.name}: not a valid {c.dtype}: {{}}", raw_col.str.slice(0, 60))
            )
        )
    # Events belong to their transaction's day; a call that starts at 23:59 logs past midnight.
    latest = day_end + (timedelta(hours=6) if table.name == "aegis_events" else timedelta(0))
    checks.append(
        pl.when((pl.col("occurred_at") < day_start) | (pl.col("occurred_at") >= latest)).then(
            pl.lit(f"occurred_at: outside the landing day {day.isoformat()} (UTC)")
        )
    )
    checks.append(
        pl.when(~pl.col("workspace_id").is_in(sorted(workspaces))).then(
            pl.format("workspace_id: unknown workspace {}", pl.col("workspace_id"))
        )
    )
    for name, allowed in ENUMS.get(table.name, {}).items():
        checks.append(
            pl.when(pl.col(name).is_not_null() & ~pl.col(name).is_in(allowed)).then(
                pl.format(f"{name}: must be one of {', '.join(allowed)}, got {{}}", pl.col(name))
            )
        )
    keys = list(KEYS.get(table.name, ()))
    if keys:
        checks.append(pl.when(pl.struct(keys).is_duplicated()).then(pl.lit(f"duplicate {'/'.join(keys)} in file")))
    with_reason = typed.with_columns(_reason=pl.concat_str(checks, separator="; ", ignore_nulls=True))
    with_reason = with_reason.with_columns(
        pl.when(pl.col("_reason") == "").then(None).otherwise(pl.col("_reason")).alias("_reason")
    )
    good = with_reason.filter(pl.col("_reason").is_null()).select(table.names)
    bad = with_reason.filter(pl.col("_reason").is_not_null())
    raw_json = bad.select(
        pl.struct([pl.col(f"_raw_{c.name}").alias(c.name) for c in table.columns]).struct.json_encode().alias("raw")
    )
    quarantined = pl.DataFrame(
        {
            "source": [table.name] * bad.height,
            "day": [day] * bad.height,
            "file": [file_name] * bad.height,
            "row_number": bad["_row"].cast(pl.Int64),
            "reason": bad["_reason"],
            "raw": raw_json["raw"],
        },
        schema=QUARANTINE.schema,
    )
    return Validated(good.cast(table.schema), quarantined)  # type: ignore[arg-type]
