"""The usage exports as csv.gz and Parquet: the same rows as the CSV, read back the ways
recipients read them (DuckDB, Polars), with Parquet's columns typed."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl
import pytest

from report_platform.durable import sha256_file
from report_platform.reports.builders import ExportError, ExportSpec, build_export
from report_platform.reports.builders.catalog import columns_for
from report_platform_tests.builders.helpers import plain_decimal, read_duckdb

NY = "America/New_York"
TABLE = {"voice_usage": "voice_calls", "sms_usage": "sms_messages", "aegis_interaction": "aegis_transactions"}
# Around the spring-forward change, in New York: offsets -05:00 and -04:00 in one file.
MARCH = (datetime(2026, 3, 7, 5, tzinfo=UTC), datetime(2026, 3, 10, 4, tzinfo=UTC))
EMPTY = (datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 2, tzinfo=UTC))
WS = "acme-east"


def build(store: Path, out: Path, type_: str, file_format: str, period=MARCH, **kw):
    spec = ExportSpec(type_, WS, None, NY, period[0], period[1], format=file_format, **kw)
    return build_export(store, spec, out, None, None)  # type: ignore[arg-type]


def store_count(store: Path, table: str, period) -> int:
    """Counted straight from the partition files, not through the builders' code."""
    con = duckdb.connect()
    try:
        files = str(store / table / "**" / "*.parquet")
        return con.sql(
            "SELECT count(*) FROM read_parquet(?, union_by_name = true) "
            "WHERE workspace_id = ? AND occurred_at >= ? AND occurred_at < ?",
            params=[files, WS, period[0], period[1]],
        ).fetchall()[0][0]
    finally:
        con.close()


def as_csv_text(value: object, tz: str) -> str | None:
    """A typed Parquet value as the CSV writes it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(ZoneInfo(tz)).isoformat(timespec="microseconds")
    if isinstance(value, Decimal):
        return plain_decimal(value)
    return str(value)


@pytest.fixture(scope="module")
def csv_files(store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("csv")
    return {t: build(store, out / f"{t}.csv", t, "csv", include_event_details=False).path for t in TABLE}


@pytest.mark.parametrize("type_", list(TABLE))
def test_csv_gz_is_the_csv_gzipped_and_reads_back_in_duckdb_and_polars(
    store: Path, tmp_path: Path, csv_files: dict[str, Path], type_: str
) -> None:
    result = build(store, tmp_path / "x.csv.gz", type_, "csv.gz")
    assert result.content_type == "application/gzip"
    assert result.sha256 == sha256_file(result.path) and result.bytes == result.path.stat().st_size
    assert gzip.decompress(result.path.read_bytes()) == csv_files[type_].read_bytes()
    expected = store_count(store, TABLE[type_], MARCH)
    assert result.rows == expected > 100

    headers, rows = read_duckdb(result.path)  # DuckDB detects gzip from the extension
    csv_headers, csv_rows = read_duckdb(csv_files[type_])
    assert (headers, rows) == (csv_headers, csv_rows)
    frame = pl.read_csv(result.path, infer_schema=False)
    assert frame.equals(pl.read_csv(csv_files[type_], infer_schema=False))
    assert frame.height == expected


def test_csv_gz_is_reproducible(store: Path, tmp_path: Path) -> None:
    first = build(store, tmp_path / "a.csv.gz", "sms_usage", "csv.gz")
    second = build(store, tmp_path / "b.csv.gz", "sms_usage", "csv.gz")
    assert first.sha256 == second.sha256


@pytest.mark.parametrize("type_", list(TABLE))
def test_parquet_holds_the_csv_rows_typed(store: Path, tmp_path: Path, csv_files: dict[str, Path], type_: str) -> None:
    result = build(store, tmp_path / "x.parquet", type_, "parquet")
    assert result.content_type == "application/vnd.apache.parquet"
    assert result.sha256 == sha256_file(result.path) and result.bytes == result.path.stat().st_size
    expected = store_count(store, TABLE[type_], MARCH)
    assert result.rows == expected > 100

    csv_headers, csv_rows = read_duckdb(csv_files[type_])
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        rel = con.sql("SELECT * FROM read_parquet(?)", params=[str(result.path)])
        assert list(rel.columns) == csv_headers
        tz = "UTC" if type_ == "aegis_interaction" else NY
        parquet_rows = [tuple(as_csv_text(v, tz) for v in row) for row in rel.fetchall()]
    finally:
        con.close()
    assert len(parquet_rows) == expected
    # read_csv(all_varchar) reads an empty field as NULL, as Parquet stores a missing value.
    assert parquet_rows == csv_rows

    frame = pl.read_parquet(result.path)
    assert frame.columns == csv_headers and frame.height == expected
    polars_rows = [tuple(as_csv_text(v, tz) for v in row) for row in frame.iter_rows()]
    assert polars_rows == csv_rows


def test_parquet_column_types(store: Path, tmp_path: Path) -> None:
    sms = pl.read_parquet_schema(build(store, tmp_path / "s.parquet", "sms_usage", "parquet").path)
    assert sms["Timestamp"] == pl.Datetime("us", NY)
    assert sms["From"] == sms["To"] == sms["Message"] == pl.String
    assert sms["Segments"] == pl.Int32
    assert sms["Carrier Fees"] == pl.Decimal(18, 6)
    voice = pl.read_parquet_schema(build(store, tmp_path / "v.parquet", "voice_usage", "parquet").path)
    assert voice["Timestamp"] == pl.Datetime("us", NY) and voice["From"] == pl.String
    assert voice["Duration"] == pl.Int32
    aegis = pl.read_parquet_schema(build(store, tmp_path / "a.parquet", "aegis_interaction", "parquet").path)
    assert aegis["Timestamp"] == pl.Datetime("us", "UTC")
    assert aegis["Local Timestamp"] == pl.String  # its zone varies by row
    assert aegis["IsTest"] == pl.Boolean and aegis["SIPCall.Status"] == pl.Int32
    assert [(n, str(t)) for n, t in zip(aegis.names(), aegis.dtypes(), strict=True)][:2] == [
        ("Id", "String"),
        ("Timestamp", "Datetime(time_unit='us', time_zone='UTC')"),
    ]
    assert tuple(aegis.names()) == tuple(n for n, _ in columns_for("aegis_interaction"))

    con = duckdb.connect()
    try:
        described = dict(
            (r[0], r[1])
            for r in con.sql("DESCRIBE SELECT * FROM read_parquet(?)", params=[str(tmp_path / "s.parquet")]).fetchall()
        )
    finally:
        con.close()
    assert described["Timestamp"] == "TIMESTAMP WITH TIME ZONE"
    assert described["From"] == "VARCHAR" and described["Carrier Fees"] == "DECIMAL(18,6)"


def test_phone_numbers_stay_text_with_their_plus(store: Path, tmp_path: Path) -> None:
    path = build(store, tmp_path / "s.parquet", "sms_usage", "parquet").path
    numbers = pl.read_parquet(path, columns=["From", "To"])
    assert numbers["From"].str.starts_with("+").all()
    assert numbers["To"].str.contains(r"^\+[1-9][0-9]{6,14}$").all()


def test_parquet_timestamps_read_back_in_the_report_timezone(store: Path, tmp_path: Path) -> None:
    frame = pl.read_parquet(build(store, tmp_path / "s.parquet", "sms_usage", "parquet").path)
    offsets = {ts.utcoffset().total_seconds() / 3600 for ts in frame["Timestamp"]}
    assert offsets == {-5.0, -4.0}  # both sides of the spring-forward change


@pytest.mark.parametrize("type_", list(TABLE))
def test_empty_period_gives_a_typed_parquet_with_no_rows(store: Path, tmp_path: Path, type_: str) -> None:
    result = build(store, tmp_path / "e.parquet", type_, "parquet", period=EMPTY)
    assert result.rows == 0
    frame = pl.read_parquet(result.path)
    assert frame.height == 0 and frame.columns == [n for n, _ in columns_for(type_)]
    assert frame.schema["Timestamp"].time_zone == ("UTC" if type_ == "aegis_interaction" else NY)


def test_empty_period_csv_gz_is_a_gzipped_header(store: Path, tmp_path: Path) -> None:
    result = build(store, tmp_path / "e.csv.gz", "voice_usage", "csv.gz", period=EMPTY)
    assert gzip.decompress(result.path.read_bytes()) == b"Timestamp,From,To,Destination,Campaign,Status,Duration\r\n"


def test_aegis_event_details_in_parquet(store: Path, tmp_path: Path) -> None:
    csv_path = build(store, tmp_path / "a.csv", "aegis_interaction", "csv", include_event_details=True).path
    pq_path = build(store, tmp_path / "a.parquet", "aegis_interaction", "parquet", include_event_details=True).path
    events = pl.read_parquet(pq_path, columns=["Events"])["Events"]
    assert events.str.starts_with('[{"seq":1,').all()
    assert events.to_list() == pl.read_csv(csv_path, infer_schema=False)["Events"].to_list()


@pytest.mark.parametrize(
    ("type_", "file_format", "message"),
    [
        ("billing", "parquet", "a billing report cannot be written as parquet; it is only xlsx"),
        ("billing", "csv", "a billing report cannot be written as csv; it is only xlsx"),
        ("sms_usage", "xlsx", "a sms_usage report cannot be written as xlsx; it is one of csv, csv.gz, parquet"),
        ("sms_usage", "json", "unknown format 'json'; expected one of csv, csv.gz, parquet for a sms_usage report"),
    ],
)
def test_a_format_the_type_cannot_write_is_refused(
    store: Path, tmp_path: Path, type_: str, file_format: str, message: str
) -> None:
    with pytest.raises(ExportError) as err:
        build(store, tmp_path / "x", type_, file_format)
    assert str(err.value) == message
    assert not (tmp_path / "x").exists()
