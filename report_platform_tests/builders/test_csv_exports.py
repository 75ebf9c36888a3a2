from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from report_platform.durable import sha256_file
from report_platform.reports.builders import CsvFormat, ExportError, ExportSpec, build_export
from report_platform.reports.builders.safety import TRIGGERS, needs_prefix, restore
from report_platform_tests.builders.helpers import (
    as_csv_module,
    boolean,
    iso,
    plain_decimal,
    read_csv_module,
    read_duckdb,
    read_polars,
    text,
)

NY = "America/New_York"
# PRODUCT.md §3, written out here rather than imported so a changed header fails a test.
HEADERS = {
    "voice_usage": "Timestamp, From, To, Destination, Campaign, Status, Duration",
    "sms_usage": "Timestamp, Status, From, To, Core Campaign, Engage Campaign, Message, Segments, "
    "Carrier Fees, Message Type, Sent Status, Sent Message, Error Status, Error Message",
    "aegis_interaction": "Id, Timestamp, Workflow, From, To, Result, Reason, City, State, Zip, "
    "Timezone, Local Timestamp, IsTest, PCIDFrom, DataBoost.Valid, DataBoost.ActivityScore, "
    "DataBoost.LineType, DataBoost.Carrier, DNC.Blocked, DNC.SANCoverage, DNC.Reason, "
    "StateDNC.Blocked, StateDNC.Reason, KnownLitigator.Blocked, KnownLitigator.Info, "
    "SIPCall.Duration, SIPCall.Status, SIPCall.HangupCause, SIPCall.HangupCauseCode, "
    "SIPCall.AttestationLevel, Events",
}
TABLE = {"voice_usage": "voice_calls", "sms_usage": "sms_messages"}
TABLE["aegis_interaction"] = "aegis_transactions"
MARCH = (datetime(2026, 3, 7, 5, tzinfo=UTC), datetime(2026, 3, 10, 4, tzinfo=UTC))
NOVEMBER = (datetime(2026, 10, 31, 4, tzinfo=UTC), datetime(2026, 11, 3, 5, tzinfo=UTC))
EVERY_DAY = (datetime(2026, 3, 7, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))


def build(store: Path, out: Path, type_: str, ws: str, period, tz: str = NY, **kw):
    spec = ExportSpec(type_, ws, None, tz, period[0], period[1], **kw)
    return build_export(store, spec, out, None, None, csv_format=kw.pop("fmt", None))  # type: ignore[arg-type]


def count(con, table: str, ws: str, period) -> int:
    return con.sql(
        f"SELECT count(*) FROM {table} WHERE workspace_id = $w AND occurred_at >= $s AND occurred_at < $e",
        params={"w": ws, "s": period[0], "e": period[1]},
    ).fetchall()[0][0]


@pytest.mark.parametrize("type_", list(HEADERS))
def test_headers_are_exactly_the_product_columns(store: Path, tmp_path: Path, type_: str) -> None:
    result = build(store, tmp_path / "x.csv", type_, "acme-east", MARCH)
    header, rows = read_csv_module(result.path)
    assert header == HEADERS[type_].split(", ")
    assert rows and all(len(r) == len(header) for r in rows)


@pytest.mark.parametrize("type_", list(HEADERS))
@pytest.mark.parametrize("ws", ["acme-east", "acme-labs", "globex-main"])
def test_rows_are_exactly_the_workspace_rows_of_the_period(
    store: Path, con, tmp_path: Path, type_: str, ws: str
) -> None:
    result = build(store, tmp_path / "x.csv", type_, ws, MARCH)
    _, rows = read_csv_module(result.path)
    expected = count(con, TABLE[type_], ws, MARCH)
    assert expected > 0
    assert result.rows == len(rows) == expected
    if type_ == "aegis_interaction":
        owners = con.sql(
            "SELECT DISTINCT workspace_id FROM aegis_transactions WHERE list_contains($ids, transaction_id)",
            params={"ids": [r[0] for r in rows]},
        ).fetchall()
        assert owners == [(ws,)]


def test_the_result_describes_the_file_it_wrote(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "sms.csv"
    out.write_text("an older build")
    result = build(store, out, "sms_usage", "acme-west", MARCH)
    assert result.path == out
    assert result.bytes == out.stat().st_size
    assert result.sha256 == sha256_file(out)
    assert result.content_type.startswith("text/csv")
    assert [p.name for p in tmp_path.iterdir()] == ["sms.csv"]  # no temporary file left


@pytest.mark.parametrize("type_", list(HEADERS))
def test_period_is_half_open(store: Path, con, tmp_path: Path, type_: str) -> None:
    stamps = [
        r[0]
        for r in con.sql(
            f"SELECT occurred_at FROM {TABLE[type_]} WHERE workspace_id = 'acme-east' ORDER BY occurred_at LIMIT 50"
        ).fetchall()
    ]
    start, end = stamps[10], stamps[40]
    result = build(store, tmp_path / "x.csv", type_, "acme-east", (start, end), tz="UTC")
    _, rows = read_csv_module(result.path)
    col = 1 if type_ == "aegis_interaction" else 0
    got = [datetime.fromisoformat(r[col]) for r in rows]
    assert got[0] == start
    assert end not in got and max(got) < end
    assert len(rows) == sum(start <= s < end for s in stamps)


@pytest.mark.parametrize("type_", ["voice_usage", "sms_usage"])
@pytest.mark.parametrize(
    ("period", "change_utc", "before", "after"),
    [
        (MARCH, datetime(2026, 3, 8, 7, tzinfo=UTC), "-05:00", "-04:00"),
        (NOVEMBER, datetime(2026, 11, 1, 6, tzinfo=UTC), "-04:00", "-05:00"),
    ],
)
def test_timestamps_carry_the_report_timezone_offset_across_dst(
    store: Path, con, tmp_path: Path, type_: str, period, change_utc, before, after
) -> None:
    result = build(store, tmp_path / "x.csv", type_, "acme-east", period)
    _, rows = read_csv_module(result.path)
    stored = [
        r[0]
        for r in con.sql(
            f"SELECT occurred_at FROM {TABLE[type_]} WHERE workspace_id = 'acme-east' "
            "AND occurred_at >= $s AND occurred_at < $e ORDER BY occurred_at",
            params={"s": period[0], "e": period[1]},
        ).fetchall()
    ]
    offsets = set()
    for row, ts in zip(rows, stored, strict=True):
        assert datetime.fromisoformat(row[0]) == ts
        assert row[0] == iso(ts, NY)
        assert row[0][-6:] == (before if ts < change_utc else after)
        assert len(row[0]) == len("2026-03-08T01:59:59.123456-05:00")
        offsets.add(row[0][-6:])
    assert offsets == {before, after}


def test_aegis_timestamps_are_utc_and_local_per_caller(store: Path, con, tmp_path: Path) -> None:
    result = build(store, tmp_path / "a.csv", "aegis_interaction", "acme-west", NOVEMBER)
    header, rows = read_csv_module(result.path)
    stored = dict(
        con.sql(
            "SELECT transaction_id, (occurred_at, caller_timezone) FROM aegis_transactions "
            "WHERE workspace_id = 'acme-west'"
        ).fetchall()
    )
    ts_i, tz_i, local_i = (header.index(h) for h in ("Timestamp", "Timezone", "Local Timestamp"))
    zones = set()
    for row in rows:
        at, tz = stored[row[0]].values() if isinstance(stored[row[0]], dict) else stored[row[0]]
        assert row[ts_i] == at.astimezone(UTC).isoformat(timespec="microseconds")
        assert row[ts_i].endswith("+00:00")
        assert row[tz_i] == tz
        assert row[local_i] == iso(at, tz)
        zones.add((tz, row[local_i][-6:]))
    # Both sides of the change in New York, and zones that keep one offset all year.
    assert {("America/New_York", "-04:00"), ("America/New_York", "-05:00")} <= zones
    assert ("America/Phoenix", "-07:00") in zones and ("Pacific/Honolulu", "-10:00") in zones


def test_aegis_events_are_empty_unless_asked(store: Path, tmp_path: Path) -> None:
    result = build(store, tmp_path / "a.csv", "aegis_interaction", "acme-east", MARCH)
    header, rows = read_csv_module(result.path)
    assert {r[header.index("Events")] for r in rows} == {""}


def test_aegis_events_hold_the_full_ordered_log_as_json(store: Path, con, tmp_path: Path) -> None:
    result = build(
        store,
        tmp_path / "a.csv",
        "aegis_interaction",
        "acme-labs",
        MARCH,
        include_event_details=True,
    )
    header, rows = read_csv_module(result.path)
    events_i = header.index("Events")
    expected: dict[str, list] = {}
    for tx, seq, at, kind, detail in con.sql(
        "SELECT transaction_id, seq, occurred_at, event_type, detail FROM aegis_events "
        "WHERE workspace_id = 'acme-labs' ORDER BY transaction_id, seq"
    ).fetchall():
        expected.setdefault(tx, []).append(
            {
                "seq": seq,
                "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
                "type": kind,
                "detail": json.loads(detail),
            }
        )
    assert rows
    for row in rows:
        events = json.loads(row[events_i])
        assert events == expected[row[0]]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_aegis_workflow_filter(store: Path, con, tmp_path: Path) -> None:
    def workflows(**kw) -> dict[str, int]:
        result = build(store, tmp_path / "a.csv", "aegis_interaction", "acme-east", MARCH, **kw)
        header, rows = read_csv_module(result.path)
        seen: dict[str, int] = {}
        for r in rows:
            seen[r[header.index("Workflow")]] = seen.get(r[header.index("Workflow")], 0) + 1
        return seen

    everything = workflows()
    assert set(everything) == {"inbound-screening", "outbound-verify"}
    assert workflows(workflows=("outbound-verify",)) == {"outbound-verify": everything["outbound-verify"]}
    assert workflows(workflows=("inbound-screening", "outbound-verify")) == everything
    assert workflows(workflows=("no-such-workflow",)) == {}


SMS_SQL = """
SELECT occurred_at, status, from_number, to_number, core_campaign, engage_campaign, message,
       segments, carrier_fee, message_type, sent_status, sent_message, error_status, error_message
FROM sms_messages WHERE workspace_id = $w AND occurred_at >= $s AND occurred_at < $e
ORDER BY occurred_at, message_id
"""


def expected_sms(con, ws: str, period, tz: str) -> list[list[str | None]]:
    out = []
    for r in con.sql(SMS_SQL, params={"w": ws, "s": period[0], "e": period[1]}).fetchall():
        row = [iso(r[0], tz)] + [text(v) for v in r[1:7]]
        row += [str(r[7]), plain_decimal(r[8])] + [text(v) for v in r[9:]]
        out.append(row)
    return out


def test_sms_round_trips_through_csv_duckdb_and_polars(store: Path, con, tmp_path: Path) -> None:
    result = build(store, tmp_path / "sms.csv", "sms_usage", "acme-east", EVERY_DAY)
    expected = expected_sms(con, "acme-east", EVERY_DAY, NY)
    messages = [r[6] for r in expected if r[6]]
    # The period really holds the generator's hostile text, or this test proves nothing.
    assert any("\n" in m for m in messages) and any('"' in m for m in messages)
    assert any("," in m for m in messages) and any(m.startswith("'=") for m in messages)
    assert any(len(m) >= 1600 for m in messages) and any("🎉" in m for m in messages)

    header, rows = read_csv_module(result.path)
    assert rows == [as_csv_module(r) for r in expected]

    duck_header, duck_rows = read_duckdb(result.path)
    assert duck_header == header
    assert [list(r) for r in duck_rows] == expected

    frame = read_polars(result.path)
    assert frame.columns == header
    assert [list(r) for r in frame.rows()] == expected

    # Undoing the quote prefix gives back exactly what the store holds.
    stored = [
        r[0]
        for r in con.sql(
            "SELECT message FROM sms_messages WHERE workspace_id = 'acme-east' "
            "AND occurred_at >= $s AND occurred_at < $e ORDER BY occurred_at, message_id",
            params={"s": EVERY_DAY[0], "e": EVERY_DAY[1]},
        ).fetchall()
    ]
    assert [restore(r[6]) or None for r in rows] == stored


def test_voice_values_match_the_store(store: Path, con, tmp_path: Path) -> None:
    result = build(store, tmp_path / "v.csv", "voice_usage", "globex-main", NOVEMBER)
    _, rows = read_csv_module(result.path)
    expected = [
        as_csv_module([iso(r[0], NY), *(text(v) for v in r[1:6]), str(r[6])])
        for r in con.sql(
            "SELECT occurred_at, from_number, to_number, destination, campaign_name, status, "
            "duration_seconds FROM voice_calls WHERE workspace_id = 'globex-main' "
            "AND occurred_at >= $s AND occurred_at < $e ORDER BY occurred_at, call_id",
            params={"s": NOVEMBER[0], "e": NOVEMBER[1]},
        ).fetchall()
    ]
    assert rows == expected


def test_aegis_values_match_the_store(store: Path, con, tmp_path: Path) -> None:
    result = build(store, tmp_path / "a.csv", "aegis_interaction", "globex-main", EVERY_DAY)
    header, duck_rows = read_duckdb(result.path)
    stored = {
        r["transaction_id"]: r
        for r in con.sql("SELECT * FROM aegis_transactions WHERE workspace_id = 'globex-main'").pl().to_dicts()
    }
    source = {
        "Workflow": "workflow",
        "From": "from_number",
        "To": "to_number",
        "Result": "result",
        "Reason": "reason",
        "City": "city",
        "State": "state",
        "Zip": "zip",
        "PCIDFrom": "pcid_from",
        "DataBoost.LineType": "databoost_line_type",
        "DataBoost.Carrier": "databoost_carrier",
        "DNC.Reason": "dnc_reason",
        "StateDNC.Reason": "state_dnc_reason",
        "KnownLitigator.Info": "litigator_info",
        "SIPCall.HangupCause": "sip_hangup_cause",
        "SIPCall.AttestationLevel": "sip_attestation",
    }
    flags = {
        "IsTest": "is_test",
        "DataBoost.Valid": "databoost_valid",
        "DNC.Blocked": "dnc_blocked",
        "DNC.SANCoverage": "dnc_san_coverage",
        "StateDNC.Blocked": "state_dnc_blocked",
        "KnownLitigator.Blocked": "litigator_blocked",
    }
    numbers = {
        "DataBoost.ActivityScore": "databoost_activity_score",
        "SIPCall.Duration": "sip_duration_seconds",
        "SIPCall.Status": "sip_status",
        "SIPCall.HangupCauseCode": "sip_hangup_cause_code",
    }
    hostile = 0
    for row in duck_rows:
        got = dict(zip(header, row, strict=True))
        want = stored[got["Id"]]
        for h, c in source.items():
            assert got[h] == text(want[c]), h
        for h, c in flags.items():
            assert got[h] == boolean(want[c]), h
        for h, c in numbers.items():
            assert got[h] == (None if want[c] is None else str(want[c])), h
        hostile += got["KnownLitigator.Info"] != want["litigator_info"]
    assert hostile > 0  # litigator info carries formula triggers, now neutralised


@pytest.mark.parametrize("type_", list(HEADERS))
def test_no_cell_starts_with_a_formula_trigger(store: Path, tmp_path: Path, type_: str) -> None:
    result = build(store, tmp_path / "x.csv", type_, "acme-east", MARCH, include_event_details=False)
    _, rows = read_csv_module(result.path)
    for row in rows:
        for cell in row:
            assert not needs_prefix(cell), cell
            assert not cell or cell[0] not in TRIGGERS or restore(cell) == cell


@pytest.mark.parametrize("type_", list(HEADERS))
@pytest.mark.parametrize(
    "period",
    [
        (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC)),
        (MARCH[0], MARCH[0]),
    ],
    ids=["no-data", "zero-length"],
)
def test_empty_period_gives_a_header_only_file(store: Path, tmp_path: Path, type_: str, period) -> None:
    result = build(store, tmp_path / "x.csv", type_, "acme-east", period)
    assert result.rows == 0
    assert result.path.read_bytes() == (HEADERS[type_].replace(", ", ",") + "\r\n").encode()


def test_records_end_with_crlf_and_no_bom_by_default(store: Path, tmp_path: Path) -> None:
    period = (MARCH[0], MARCH[0] + timedelta(hours=2))
    data = build(store, tmp_path / "v.csv", "voice_usage", "acme-east", period).path.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\r\n") == data.count(b"\n") > 1


def test_optional_bom_and_lf(store: Path, tmp_path: Path) -> None:
    spec = ExportSpec("voice_usage", "acme-east", None, NY, *MARCH)
    fmt = CsvFormat(line_terminator="\n", bom=True, batch_rows=100)
    result = build_export(store, spec, tmp_path / "v.csv", None, None, csv_format=fmt)  # type: ignore[arg-type]
    data = result.path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfTimestamp,From,")
    assert b"\r\n" not in data
    plain = build(store, tmp_path / "p.csv", "voice_usage", "acme-east", MARCH)
    assert data[3:].replace(b"\n", b"\r\n") == plain.path.read_bytes()  # small batches too


def test_csv_reports_need_a_workspace(store: Path, tmp_path: Path) -> None:
    spec = ExportSpec("sms_usage", None, "acme", NY, *MARCH)
    with pytest.raises(ExportError, match="one workspace"):
        build_export(store, spec, tmp_path / "x.csv", None, None)  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="unknown report type"):
        build_export(store, ExportSpec("fax", "acme-east", None, NY, *MARCH), tmp_path / "y", None, None)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())
