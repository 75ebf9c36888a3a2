"""The usage store under an S3 prefix: Parquet partitions written whole, read through Arrow.

Layout, the same tables and days as the local store but each write under a key of its own:

    <prefix><table>/day=YYYY-MM-DD/<name>.<version>.parquet

`name` is `data` for a table's partition (a quarantine day has one per source). S3 has no
rename, and a reader fetches a Parquet file in several ranged GETs (footer, then row groups): had
a new version replaced the object under the same key between two of those GETs, the reader would
mix two versions. So a write never touches an existing object: it PUTs a new version (S3 makes an
object visible only once it is whole), and readers take the newest version of each partition
from one listing. Superseded versions are deleted by a later write of the same partition once the
version after them is older than `SUPERSEDED_GRACE`, so a reader that listed before a replacement
can finish reading what it listed.

The report builders and `report-platform sql` read through `pyarrow.dataset` (DuckDB's `httpfs`
is not available for the pinned DuckDB): each file is a fragment that carries its day as a
guarantee on `occurred_at` (or `day`), so a filter on the period skips every other day's file
without opening it, and Parquet statistics skip row groups within a file.

Credentials come from boto3's standard chain (environment, shared profile, instance role); the
Arrow reader is handed the same credentials. No message here ever includes them.
"""

from __future__ import annotations

import io
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from report_platform.settings import S3Location
from report_platform.store.schema import (
    AEGIS_TRANSACTIONS,
    BILLING_LINE_ITEMS,
    QUARANTINE,
    SMS_MESSAGES,
    VOICE_CALLS,
    Table,
    empty_frame,
)

PARTITION_NAME = "data"
SUPERSEDED_GRACE = timedelta(hours=1)
_VERSIONED = re.compile(r"day=(\d{4}-\d{2}-\d{2})/([A-Za-z0-9_]+)\.(\d{8}T\d{12}Z-[0-9a-f]{8})\.parquet")
# Tables whose partition for day D holds only rows with occurred_at in [D, D + 1 day) (the landing
# checks refuse anything else; Aegis events may run past midnight and get no such guarantee).
_OCCURRED_IN_DAY = {VOICE_CALLS.name, SMS_MESSAGES.name, AEGIS_TRANSACTIONS.name, BILLING_LINE_ITEMS.name}
_DAY_COLUMN = {BILLING_LINE_ITEMS.name, QUARANTINE.name}
_TS = pa.timestamp("us", tz="UTC")


class StorageError(Exception):
    """The bucket could not be read or written; one line naming the place, never a credential."""


def _boto3() -> Any:
    import boto3

    return boto3


def client(location: S3Location) -> Any:
    """A boto3 S3 client for `location`, with the standard credential chain and retries."""
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": 5, "mode": "standard"},
        # Only the checksums asked for: some S3-compatible stores refuse boto3's default CRC32.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return _boto3().client("s3", endpoint_url=location.endpoint_url or None, config=config)


def storage_error(exc: BaseException, what: str, location: S3Location) -> StorageError:
    """`exc` (boto3, botocore or pyarrow) as one line: what failed, where, and what to check.

    Built from the error code only: S3's own messages can echo the access key id and what was
    signed, and none of that belongs in a log line.
    """
    import botocore.exceptions as bx

    where = f"{what} s3://{location.bucket}/{location.prefix}"
    # boto3's transfers (upload_file, upload_fileobj) wrap the client's error in their own.
    inner: BaseException | None = exc
    while inner is not None and not isinstance(inner, bx.BotoCoreError | bx.ClientError):
        inner = inner.__cause__ or inner.__context__
    exc = inner or exc
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return StorageError(f"{where}: no AWS credentials found (set them in the environment or the AWS profile)")
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectionClosedError | bx.ConnectTimeoutError):
        return StorageError(f"{where}: cannot reach the S3 endpoint {location.endpoint_url or '(AWS)'}")
    if isinstance(exc, bx.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            return StorageError(f"{where}: the bucket {location.bucket!r} does not exist")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
            return StorageError(f"{where}: the AWS credentials were rejected ({code})")
        if code in ("AccessDenied", "AllAccessDisabled", "403"):
            return StorageError(f"{where}: access denied ({code}); check the credentials' permissions on the bucket")
        return StorageError(f"{where}: S3 answered {code or 'an error'}")
    if isinstance(exc, bx.BotoCoreError):
        return StorageError(f"{where}: {type(exc).__name__}")
    lines = str(exc).strip().splitlines()
    return StorageError(f"{where}: {lines[0] if lines else type(exc).__name__}")


def arrow_filesystem(location: S3Location) -> Any:
    """pyarrow's S3 file system with the credentials boto3's chain finds (so both agree)."""
    import pyarrow.fs as pafs

    session = _boto3().session.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise StorageError(
            f"reading s3://{location.bucket}/{location.prefix}: no AWS credentials found "
            "(set them in the environment or the AWS profile)"
        )
    frozen = credentials.get_frozen_credentials()
    region = session.region_name or ("us-east-1" if location.endpoint_url else None)
    if region is None:
        try:
            region = pafs.resolve_s3_region(location.bucket)
        except OSError as exc:
            raise storage_error(exc, "reading", location) from None
    return pafs.S3FileSystem(
        access_key=frozen.access_key,
        secret_key=frozen.secret_key,
        session_token=frozen.token,
        region=region,
        endpoint_override=location.endpoint_url or None,
    )


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class PartitionFile:
    """The newest version of one partition file, and the older ones it superseded."""

    day: date
    name: str
    newest: StoredObject
    superseded: tuple[StoredObject, ...]


def list_objects(s3: Any, location: S3Location, folder: str) -> list[StoredObject]:
    """Every object under `<prefix><folder>`; raises StorageError."""
    found: list[StoredObject] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.key(folder)):
            for item in page.get("Contents", []):
                found.append(StoredObject(item["Key"], int(item["Size"]), item["LastModified"]))
    except Exception as exc:
        raise storage_error(exc, "listing", location) from None
    return found


def _table_folder(table: Table) -> str:
    return f"{table.name}/"


def partition_files(s3: Any, location: S3Location, table: Table, day: date | None = None) -> list[PartitionFile]:
    """The table's partition files (of one day, or all), newest version of each, by day then name."""
    folder = _table_folder(table) + (f"day={day.isoformat()}/" if day else "")
    versions: dict[tuple[date, str], list[StoredObject]] = {}
    cut = len(location.key(_table_folder(table)))
    for obj in list_objects(s3, location, folder):
        match = _VERSIONED.fullmatch(obj.key[cut:])
        if match:
            key = (date.fromisoformat(match[1]), match[2])
            versions.setdefault(key, []).append(obj)
    files = []
    for (on, name), objects in sorted(versions.items()):
        # S3's clock orders the versions; the name (a writer's time and random suffix) breaks ties.
        ordered = sorted(objects, key=lambda o: (o.last_modified, o.key))
        files.append(PartitionFile(on, name, ordered[-1], tuple(ordered[:-1])))
    return files


def _version() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"


def partition_key(location: S3Location, table: Table, day: date, name: str) -> str:
    return location.key(table.name, f"day={day.isoformat()}", f"{name}.{_version()}.parquet")


def write_partition(location: S3Location, table: Table, day: date, frame: pl.DataFrame, name: str) -> str:
    """PUT `frame` as a new version of the partition; returns its s3:// URL. Raises StorageError."""
    s3 = client(location)
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True, row_group_size=256_000)
    key = partition_key(location, table, day, name)
    try:
        # One PUT: S3 shows the object only once all of it has arrived.
        buffer.seek(0)
        s3.upload_fileobj(buffer, location.bucket, key)
    except Exception as exc:
        raise storage_error(exc, "writing", location) from None
    _delete_superseded(s3, location, table, day, name)
    return f"s3://{location.bucket}/{key}"


def _delete_superseded(s3: Any, location: S3Location, table: Table, day: date, name: str) -> None:
    """Delete versions whose successor has been visible for longer than any read should take."""
    for found in partition_files(s3, location, table, day):
        if found.name != name:
            continue
        chain = [*found.superseded, found.newest]
        cutoff = datetime.now(UTC) - SUPERSEDED_GRACE
        stale = [old.key for old, successor in zip(chain, chain[1:], strict=False) if successor.last_modified < cutoff]
        _delete(s3, location, stale)


def _delete(s3: Any, location: S3Location, keys: list[str]) -> None:
    try:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            s3.delete_objects(Bucket=location.bucket, Delete={"Objects": batch, "Quiet": True})
    except Exception as exc:
        raise storage_error(exc, "deleting from", location) from None


def remove_partition(location: S3Location, table: Table, day: date, name: str) -> None:
    """Delete every version of the partition file (a day's quarantine that is clean again)."""
    s3 = client(location)
    found = [f for f in partition_files(s3, location, table, day) if f.name == name]
    keys = [o.key for f in found for o in (*f.superseded, f.newest)]
    _delete(s3, location, keys)


def partition_days(location: S3Location, table: Table) -> list[date]:
    s3 = client(location)
    return sorted({f.day for f in partition_files(s3, location, table) if f.name == PARTITION_NAME})


def _read(location: S3Location, key: str) -> bytes:
    s3 = client(location)
    try:
        return s3.get_object(Bucket=location.bucket, Key=key)["Body"].read()
    except Exception as exc:
        raise storage_error(exc, "reading", location) from None


def read_partition(location: S3Location, table: Table, day: date, name: str = PARTITION_NAME) -> pl.DataFrame | None:
    """The partition file's newest version, or None when there is none."""
    s3 = client(location)
    for found in partition_files(s3, location, table, day):
        if found.name == name:
            return pl.read_parquet(io.BytesIO(_read(location, found.newest.key)))
    return None


def partition_rows(location: S3Location, table: Table, day: date, name: str) -> int:
    """Rows in the partition file's newest version (from its footer), 0 when there is none."""
    s3 = client(location)
    for found in partition_files(s3, location, table, day):
        if found.name == name:
            return pq.read_metadata(io.BytesIO(_read(location, found.newest.key))).num_rows
    return 0


def _guarantee(table: Table, day: date) -> pc.Expression:
    """What every row of the table's file for `day` satisfies, so a filter outside it skips the file."""
    truth = pc.scalar(True)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if table.name in _OCCURRED_IN_DAY:
        truth = truth & (pc.field("occurred_at") >= pa.scalar(start, _TS))
        truth = truth & (pc.field("occurred_at") < pa.scalar(start + timedelta(days=1), _TS))
    if table.name in _DAY_COLUMN:
        truth = truth & (pc.field("day") == pa.scalar(day, pa.date32()))
    return truth


def table_source(
    location: S3Location, table: Table, filesystem: Any = None, day: date | None = None
) -> pa.Table | ds.Dataset:
    """The table (or its partition of one `day`) as an Arrow dataset of its newest partition files;
    the documented schema (no rows) when it has none. Raises StorageError when the bucket cannot be
    listed."""
    schema = empty_frame(table).to_arrow().schema
    files = partition_files(client(location), location, table, day)
    if not files:
        return schema.empty_table()
    filesystem = filesystem or arrow_filesystem(location)
    fmt = ds.ParquetFileFormat()
    fragments = [
        # The size from the listing spares a HEAD per file; versions never change once written.
        fmt.make_fragment(
            f"{location.bucket}/{f.newest.key}",
            filesystem=filesystem,
            partition_expression=_guarantee(table, f.day),
            file_size=f.newest.size,
        )
        for f in files
    ]
    return ds.FileSystemDataset(fragments, schema=schema, format=fmt, filesystem=filesystem)
