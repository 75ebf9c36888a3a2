"""Landing values arrive in the store as the provider wrote them: timestamps with any ISO 8601
offset, text untouched, empty fields with one documented meaning, and no ambiguous columns."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from report_platform.domain.tenancy import DEMO_TENANCY
from report_platform.ingest.generator import generate
from report_platform.ingest.landing import LandingFileError
from report_platform.ingest.load import SourceSettings
from report_platform.settings import Home
from report_platform.store.duck import reader
from report_platform.store.partitions import partition_path
from report_platform.store.schema import SMS_MESSAGES
from report_platform_tests.foundation.util import ingest

DAY = date(2026, 3, 8)
LANDING = SourceSettings(mode="landing")
Row = dict[str, str | None]


def _sms_row(message_id: str, **values: str | None) -> Row:
    """A valid SMS row, every value as text, with `values` written over it."""
    frame = generate("sms_messages", DEMO_TENANCY, DAY, 20, seed=3)["sms_messages"].head(1)
    row: Row = frame.cast(pl.String).to_dicts()[0]
    row.update(message_id=message_id, occurred_at="2026-03-08T10:00:00+00:00", carrier_fee="0.0035")
    row.update(values)
    return row


def _csv_field(value: str | None) -> str:
    """None as an empty field; any text quoted, so an empty text is `""`."""
    return "" if value is None else '"' + value.replace('"', '""') + '"'


def _land(home: Home, rows: list[Row], fmt: str, source: str = "sms_messages") -> Path:
    path = home.landing / source / f"{DAY}.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        header = ",".join(rows[0])
        lines = [",".join(_csv_field(row[c]) for c in rows[0]) for row in rows]
        path.write_bytes(("\r\n".join([header, *lines]) + "\r\n").encode())
    else:
        path.write_bytes("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode())
    return path


def _stored(home: Home, column: str) -> dict[str, object]:
    con = reader(home.store)
    return dict(con.execute(f"select message_id, {column} from sms_messages").fetchall())


def _quarantine_reasons(home: Home) -> dict[str, str]:
    con = reader(home.store)
    rows = con.execute("select json_extract_string(raw, '$.message_id'), reason from quarantine").fetchall()
    return dict(rows)


TIMESTAMPS = {
    "z": ("2026-03-08T10:00:00Z", datetime(2026, 3, 8, 10, tzinfo=UTC)),
    "z-fraction": ("2026-03-08T10:00:00.250Z", datetime(2026, 3, 8, 10, 0, 0, 250_000, tzinfo=UTC)),
    "lower-z": ("2026-03-08t10:00:00z", datetime(2026, 3, 8, 10, tzinfo=UTC)),
    "utc-offset": ("2026-03-08T10:00:00+00:00", datetime(2026, 3, 8, 10, tzinfo=UTC)),
    "plus-one": ("2026-03-08T11:00:00.5+01:00", datetime(2026, 3, 8, 10, 0, 0, 500_000, tzinfo=UTC)),
    "minus-five-no-colon": ("2026-03-08T05:00:00-0500", datetime(2026, 3, 8, 10, tzinfo=UTC)),
    "half-hour-no-colon": ("2026-03-08T15:30:00+0530", datetime(2026, 3, 8, 10, tzinfo=UTC)),
    "hours-only-offset": ("2026-03-08T12:00:00+02", datetime(2026, 3, 8, 10, tzinfo=UTC)),
    "space-separator": ("2026-03-08 10:00:00Z", datetime(2026, 3, 8, 10, tzinfo=UTC)),
    "no-seconds": ("2026-03-08T10:00Z", datetime(2026, 3, 8, 10, tzinfo=UTC)),
    "naive-is-utc": ("2026-03-08T10:00:00", datetime(2026, 3, 8, 10, tzinfo=UTC)),
    "padded": ("  2026-03-08T10:00:00Z ", datetime(2026, 3, 8, 10, tzinfo=UTC)),
}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_iso_8601_timestamps_with_z_or_any_offset_load_as_the_same_utc_instant(home, fmt):
    _land(home, [_sms_row(name, occurred_at=text) for name, (text, _) in TIMESTAMPS.items()], fmt)
    result = ingest(home, "sms_messages", LANDING)
    assert _quarantine_reasons(home) == {} and result.rows == {"sms_messages": len(TIMESTAMPS)}
    assert _stored(home, "occurred_at") == {name: expected for name, (_, expected) in TIMESTAMPS.items()}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_timestamp_that_is_not_iso_8601_is_quarantined(home, fmt):
    bad = ["08/03/2026 10:00", "2026-03-08T10:00:00Zjunk", "2026-03-08", "2026-03-08T25:00:00Z", "10:00:00Z"]
    _land(home, [_sms_row(f"bad-{i}", occurred_at=text) for i, text in enumerate(bad)], fmt)
    ingest(home, "sms_messages", LANDING)
    reasons = _quarantine_reasons(home)
    assert sorted(reasons) == [f"bad-{i}" for i in range(len(bad))]
    assert all("occurred_at: not a valid" in reason for reason in reasons.values()), reasons


TEXTS = {
    "formula": " =1+1",
    "padded": "  two spaces either side  ",
    "tab": "\tstarts with a tab",
    "trailing-space": "ends with a space ",
    "newlines": "line one\r\nline two\n",
    "line-separator": "before\u2028after\u0085end",
    "quotes": '"quoted", she said',
}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_values_are_stored_exactly_as_written(home, fmt):
    _land(home, [_sms_row(name, message=text, core_campaign=f" {name} ") for name, text in TEXTS.items()], fmt)
    result = ingest(home, "sms_messages", LANDING)
    assert result.quarantined == 0
    assert _stored(home, "message") == TEXTS
    assert _stored(home, "core_campaign") == {name: f" {name} " for name in TEXTS}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_padded_id_is_kept_as_written_and_an_unknown_workspace_is_quarantined(home, fmt):
    _land(home, [_sms_row(" padded-id "), _sms_row("padded-workspace", workspace_id=" acme-east")], fmt)
    ingest(home, "sms_messages", LANDING)
    assert list(_stored(home, "message")) == [" padded-id "]
    assert _quarantine_reasons(home) == {"padded-workspace": "workspace_id: unknown workspace  acme-east"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_empty_field_is_null_and_an_empty_text_stays_empty(home, fmt):
    rows = [
        _sms_row("no-value", message=None, engage_campaign=None),
        _sms_row("empty-text", message="", engage_campaign=""),
        _sms_row("empty-required", from_number=""),
        _sms_row("blank-required", from_number="  "),
        _sms_row("no-required", from_number=None),
    ]
    _land(home, rows, fmt)
    ingest(home, "sms_messages", LANDING)
    assert _stored(home, "message") == {"no-value": None, "empty-text": ""}
    assert _stored(home, "engage_campaign") == {"no-value": None, "empty-text": ""}
    assert _quarantine_reasons(home) == {
        "empty-required": "from_number: missing",
        "blank-required": "from_number: missing",
        "no-required": "from_number: missing",
    }


def test_a_key_missing_from_a_json_line_is_null(home):
    row = _sms_row("absent")
    del row["message"], row["engage_campaign"]
    _land(home, [row], "jsonl")
    ingest(home, "sms_messages", LANDING)
    assert _stored(home, "message") == {"absent": None}


def test_json_numbers_keep_their_exact_digits(home):
    path = home.landing / "sms_messages" / f"{DAY}.jsonl"
    path.parent.mkdir(parents=True)
    row = json.dumps(_sms_row("exact", segments="2"))
    row = row.replace('"carrier_fee": "0.0035"', '"carrier_fee": 123456789012.123456').replace(
        '"segments": "2"', '"segments": 2'
    )
    path.write_text(row + "\n")
    ingest(home, "sms_messages", LANDING)
    assert _stored(home, "carrier_fee") == {"exact": Decimal("123456789012.123456")}
    assert _stored(home, "segments") == {"exact": 2}


def _write_duplicated_status(home: Home, fmt: str) -> Path:
    row = _sms_row("dup")
    path = home.landing / "sms_messages" / f"{DAY}.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        path.write_text(",".join([*row, "status"]) + "\n" + ",".join([*map(_csv_field, row.values()), "failed"]) + "\n")
    elif fmt == "jsonl":
        path.write_text(json.dumps(row)[:-1] + ', "status": "failed"}\n')
    else:
        names = [*row, "status"]
        pq.write_table(pa.table([pa.array([v]) for v in [*row.values(), "failed"]], names=names), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_duplicated_column_fails_the_file_naming_file_and_column(home, fmt):
    _land(home, [_sms_row("before")], "csv")
    ingest(home, "sms_messages", LANDING)
    (home.landing / "sms_messages" / f"{DAY}.csv").unlink()
    before = partition_path(home.store, SMS_MESSAGES, DAY).read_bytes()
    path = _write_duplicated_status(home, fmt)
    with pytest.raises(LandingFileError) as err:
        ingest(home, "sms_messages", LANDING)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "duplicate" in message and message.endswith("status"), message
    assert "\n" not in message
    assert partition_path(home.store, SMS_MESSAGES, DAY).read_bytes() == before
