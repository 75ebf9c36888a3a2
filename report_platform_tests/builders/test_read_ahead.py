"""CSV exports read DuckDB's batches ahead on a thread of their own; the file must be the one that
reading and writing in turn gives, byte for byte, and errors on either side must stop both."""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from report_platform.reports.builders import ExportSpec, build_export, csv_writer
from report_platform.reports.builders.csv_writer import read_ahead
from report_platform.reports.builders.spec import CsvFormat

NY = "America/New_York"


def _spec(type_: str, file_format: str, **kw) -> ExportSpec:
    # Across the spring-forward day, so the report-timezone offsets change inside the file.
    return ExportSpec(
        type_,
        "acme-east",
        None,
        NY,
        datetime(2026, 3, 7, 5, tzinfo=UTC),
        datetime(2026, 3, 10, 4, tzinfo=UTC),
        format=file_format,
        **kw,
    )


@pytest.mark.parametrize(
    ("type_", "file_format", "extra"),
    [
        ("sms_usage", "csv", {}),
        ("sms_usage", "csv.gz", {}),
        ("voice_usage", "csv", {}),
        ("aegis_interaction", "csv", {"include_event_details": True}),
    ],
)
def test_read_ahead_writes_the_same_bytes_as_reading_in_turn(
    store: Path, tenancy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, type_: str, file_format: str, extra: dict
) -> None:
    # Small batches so that the read-ahead queue fills and drains many times within the period.
    fmt = CsvFormat(batch_rows=97)
    spec = _spec(type_, file_format, **extra)
    monkeypatch.setattr(csv_writer, "READ_AHEAD", 0)
    in_turn = build_export(store, spec, tmp_path / "in_turn", tenancy, None, csv_format=fmt)
    monkeypatch.setattr(csv_writer, "READ_AHEAD", 2)
    ahead = build_export(store, spec, tmp_path / "ahead", tenancy, None, csv_format=fmt)

    old, new = in_turn.path.read_bytes(), ahead.path.read_bytes()
    assert in_turn.rows > 3 * fmt.batch_rows  # many batches, over the three days' queries
    assert new == old
    assert (ahead.rows, ahead.bytes, ahead.sha256) == (in_turn.rows, in_turn.bytes, in_turn.sha256)
    assert ahead.sha256 == hashlib.sha256(new).hexdigest()
    if file_format == "csv.gz":
        assert gzip.decompress(new).count(b"\r\n") >= ahead.rows + 1


def test_items_keep_their_order_through_a_small_queue() -> None:
    with read_ahead(iter(range(5_000)), depth=1) as items:
        assert list(items) == list(range(5_000))


def test_an_error_while_reading_reaches_the_writer() -> None:
    def items() -> Iterator[int]:
        yield 1
        raise RuntimeError("the store's file went away")

    seen = []
    with pytest.raises(RuntimeError, match="went away"), read_ahead(items(), depth=2) as batches:
        for item in batches:
            seen.append(item)
    assert seen == [1]


def test_an_error_while_writing_stops_the_reader_and_closes_it() -> None:
    closed = threading.Event()
    produced = []

    def items() -> Iterator[int]:
        try:
            for i in range(1_000_000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    with pytest.raises(OSError, match="disk full"), read_ahead(items(), depth=2) as batches:
        for item in batches:
            if item == 3:
                raise OSError("disk full")
    # The block waited for the reader: it is closed and stopped a few items ahead, not at the end.
    assert closed.is_set()
    assert len(produced) < 10
    assert not any(t.name == "export-read-ahead" for t in threading.enumerate())
