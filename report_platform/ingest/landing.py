"""The landing zone: one file per source and UTC day, validated row by row.

Layout (local folder or S3 prefix, same shape):

    <root>/<source>/<YYYY-MM-DD>.parquet | .csv | .jsonl

`source` is a usage table name (voice_calls, sms_messages, aegis_transactions, aegis_events);
columns are that table's columns (`docs/store.md`). CSV is RFC 4180 with a header row, UTF-8;
timestamps are ISO 8601 with an offset (or UTC when none). A row that fails validation is kept
in the `quarantine` table with the reason; a file that cannot be read at all fails the
partition with a message naming the file and the problem.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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
    """Read a landing file with every column as text, or raise LandingFileError."""
    source = io.BytesIO(file.data) if isinstance(file.data, bytes) else file.data
    try:
        if file.fmt == "parquet":
            frame = pl.read_parquet(source)
        elif file.fmt == "csv":
            frame = pl.read_csv(source, infer_schema=False, encoding="utf8", raise_if_empty=False)
        elif file.fmt == "jsonl":
            frame = _read_jsonl(source)
        else:
            raise LandingFileError(f"unsupported format {file.fmt!r}")
    except LandingFileError as exc:
        raise LandingFileError(f"{file.name}: {exc}") from exc
    except Exception as exc:
        raise LandingFileError(f"{file.name}: cannot be read as {file.fmt}: {_first_line(exc)}") from exc
    return frame


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read_jsonl(source: io.BytesIO | Path) -> pl.DataFrame:
    raw = source.getvalue() if isinstance(source, io.BytesIO) else source.read_bytes()
    records = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LandingFileError(f"line {number}: not JSON ({exc.msg})") from exc
        if not isinstance(value, dict):
            raise LandingFileError(f"line {number}: expected a JSON object")
        records.append(
            {k: None if v is None else (v if isinstance(v, str) else json.dumps(v)) for k, v in value.items()}
        )
    return pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame()


def _parse(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    text = col.cast(pl.String).str.strip_chars()
    if dtype == UTC_TS:
        return pl.coalesce(
            text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", time_zone="UTC", strict=False),
            text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%z", time_zone="UTC", strict=False),
            text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False).dt.replace_time_zone("UTC"),
            text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False).dt.replace_time_zone("UTC"),
        )
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
