from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook

from report_platform.domain.rate_card import LINE_TYPES, RateCard, money
from report_platform.domain.tenancy import Tenancy
from report_platform.reports.builders import ExportError, ExportSpec, build_export
from report_platform.reports.builders.billing import HEADERS, SUMMARY_TAB, tab_names
from report_platform.store.partitions import write_partition
from report_platform.store.schema import BILLING_LINE_ITEMS, MONEY

EVERY_DAY = (datetime(2026, 3, 7, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
NY = "America/New_York"


def billing(store: Path, out: Path, tenancy, rate_card, *, org=None, ws=None, period=EVERY_DAY):
    spec = ExportSpec("billing", ws, org, NY, *period)
    return build_export(store, spec, out, tenancy, rate_card)


def read_tabs(path: Path) -> dict[str, list[tuple]]:
    wb = load_workbook(path)
    tabs = {}
    for ws in wb.worksheets:
        rows = list(ws.iter_rows())
        for row in rows:
            assert row[0].data_type == "s" and row[1].data_type == "s", [c.value for c in row]
            for cell in row[2:]:
                assert cell.data_type == ("s" if row is rows[0] else "n"), cell.value
        tabs[ws.title] = [tuple(c.value for c in row) for row in rows]
    return tabs


def dec(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def lines(rows: list[tuple]) -> list[tuple[str, str, Decimal, Decimal | None, Decimal]]:
    assert rows[0] == HEADERS
    return [(t, d, dec(q), dec(r), dec(total)) for t, d, q, r, total in rows[1:]]


def store_quantities(con, ws: str) -> dict[str, Decimal]:
    return dict(
        con.sql(
            "SELECT type, sum(quantity) FROM billing_line_items WHERE workspace_id = $w "
            "AND occurred_at >= $s AND occurred_at < $e GROUP BY type",
            params={"w": ws, "s": EVERY_DAY[0], "e": EVERY_DAY[1]},
        ).fetchall()
    )


def check_tab(got, rate_card: RateCard, quantities: dict[str, Decimal], *, exact: bool = True) -> None:
    """Types in order, the store's quantities, taxes on their stated base; each Total is
    money(Quantity x Rate), or within a cent of it on an organisation's workspace tab."""
    types = [t for t, *_ in got]
    assert types == sorted(types, key=LINE_TYPES.index)
    priced = {t: (q, total) for t, _, q, _, total in got if t not in rate_card.taxes}
    assert {t: q for t, (q, _) in priced.items()} == quantities
    for t, _, q, r, total in got:
        if exact:
            assert total == money(q * r)
        else:
            assert abs(total - q * r) <= Decimal("0.01") and total == money(total)
        if t in rate_card.taxes:
            tax = rate_card.taxes[t]
            assert r == tax.percent / 100
            assert q == sum(priced[b][1] for b in tax.base if b in priced)


def test_organisation_billing_has_summary_then_one_tab_per_workspace(store, con, tmp_path, tenancy, rate_card):
    result = billing(store, tmp_path / "b.xlsx", tenancy, rate_card, org="acme")
    assert result.content_type.endswith("spreadsheetml.sheet")
    tabs = read_tabs(result.path)
    assert list(tabs) == [SUMMARY_TAB, "Acme East", "Acme West", "Acme Labs"]
    per_ws = {}
    for title, ws in zip(list(tabs)[1:], ["acme-east", "acme-west", "acme-labs"], strict=True):
        got = lines(tabs[title])
        check_tab(got, rate_card, store_quantities(con, ws), exact=False)
        per_ws[ws] = got
    assert {"TaxesAndFees", "TRS", "FUSF", "CampaignFee"} <= {t for t, *_ in per_ws["acme-east"]}
    assert "ByopPoolFee" not in {t for t, *_ in per_ws["acme-west"]}  # only types it used
    summary = lines(tabs[SUMMARY_TAB])
    assert [t for t, *_ in summary] == sorted({t for g in per_ws.values() for t, *_ in g}, key=LINE_TYPES.index)
    for t, _, q, r, total in summary:
        assert total == money(q * r)
        mine = [line for g in per_ws.values() for line in g if line[0] == t and line[3] == r]
        assert total == sum(line[4] for line in mine)  # reconciles to the cent
        assert q == sum(line[2] for line in mine)


def test_workspace_billing_shows_only_that_workspace(store, con, tmp_path, tenancy, rate_card):
    tabs = read_tabs(billing(store, tmp_path / "b.xlsx", tenancy, rate_card, ws="acme-west").path)
    assert list(tabs) == [SUMMARY_TAB, "Acme West"]
    got = lines(tabs["Acme West"])
    check_tab(got, rate_card, store_quantities(con, "acme-west"))
    assert [line[2:] for line in lines(tabs[SUMMARY_TAB])] == [line[2:] for line in got]
    org = lines(read_tabs(billing(store, tmp_path / "o.xlsx", tenancy, rate_card, org="acme").path)[SUMMARY_TAB])
    assert lines(tabs[SUMMARY_TAB]) != org  # not the organisation's figures


def test_empty_period_gives_headers_only(store, tmp_path, tenancy, rate_card):
    period = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC))
    result = billing(store, tmp_path / "b.xlsx", tenancy, rate_card, org="acme", period=period)
    assert result.rows == 0
    assert read_tabs(result.path) == {SUMMARY_TAB: [HEADERS]}


def test_billing_days_are_utc_days_starting_in_the_period(store, con, tmp_path, tenancy, rate_card):
    # 2026-03-08 00:00 UTC is inside a New York 2026-03-07 period only by UTC day start.
    period = (datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC))
    tabs = read_tabs(billing(store, tmp_path / "b.xlsx", tenancy, rate_card, ws="globex-main", period=period).path)
    want = dict(
        con.sql(
            "SELECT type, sum(quantity) FROM billing_line_items WHERE workspace_id = 'globex-main' "
            "AND day = DATE '2026-03-08' GROUP BY type"
        ).fetchall()
    )
    got = {t: q for t, _, q, _, _ in lines(tabs["Globex Main"]) if t not in rate_card.taxes}
    assert got == want


def _hostile_store(root: Path) -> Path:
    rows = [
        ("Messages", '=HYPERLINK("http://x.example","refund")', "1000", "0.0079", 1),
        ("Messages", "SMS segments, new price", "3", "0.0081", 2),
        ("Calls", "Calls \x01\x02 with controls \x0b", "3", "0.0125", 2),
        ("ProtectNumber", "@SUM(A1:A2)", "2", "1.50", 2),
    ]
    frame = pl.DataFrame(
        {
            "organization_id": ["org"] * len(rows),
            "workspace_id": ["ws-1"] * len(rows),
            "day": [date(2026, 5, d) for *_, d in rows],
            "occurred_at": [datetime(2026, 5, d, tzinfo=UTC) for *_, d in rows],
            "type": [r[0] for r in rows],
            "description": [r[1] for r in rows],
            "quantity": [Decimal(r[2]) for r in rows],
            "rate": [Decimal(r[3]) for r in rows],
        },
        schema_overrides={"quantity": MONEY, "rate": MONEY},
    )
    for d in (1, 2):
        write_partition(root, BILLING_LINE_ITEMS, date(2026, 5, d), frame.filter(pl.col("day") == date(2026, 5, d)))
    return root


def test_hostile_text_is_stored_as_plain_strings_and_rate_changes_split_lines(tmp_path, rate_card):
    from report_platform.domain.tenancy import Organization, Workspace

    tenancy = Tenancy((Organization("org", "Org", (Workspace("ws-1", "org", "=cmd|' /C calc'!A0", (), ()),)),))
    store = _hostile_store(tmp_path / "store")
    period = (datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC))
    result = billing(store, tmp_path / "b.xlsx", tenancy, rate_card, org="org", period=period)
    tabs = read_tabs(result.path)
    assert list(tabs) == [SUMMARY_TAB, "=cmd|' _C calc'!A0"]
    got = lines(tabs["=cmd|' _C calc'!A0"])
    messages = [line for line in got if line[0] == "Messages"]
    assert [(q, r, total) for _, _, q, r, total in messages] == [
        (Decimal(1000), Decimal("0.0079"), Decimal("7.90")),
        (Decimal(3), Decimal("0.0081"), Decimal("0.02")),
    ]
    assert messages[0][1] == '\'=HYPERLINK("http://x.example","refund")'
    assert [line[1] for line in got if line[0] == "Calls"] == ["Calls  with controls "]
    assert [line[1] for line in got if line[0] == "ProtectNumber"] == ["'@SUM(A1:A2)"]
    summary = lines(tabs[SUMMARY_TAB])
    assert [line[2:] for line in summary if line[0] == "Messages"] == [  # one line per rate
        (Decimal(1000), Decimal("0.0079"), Decimal("7.90")),
        (Decimal(3), Decimal("0.0081"), Decimal("0.02")),
    ]
    taxes = {line[0]: line for line in got if line[0] in rate_card.taxes}
    assert taxes["TaxesAndFees"][2] == Decimal("7.90") + Decimal("0.02") + Decimal("0.04") + Decimal("3.00")
    assert taxes["TaxesAndFees"][4] == money(taxes["TaxesAndFees"][2] * Decimal("0.0625"))
    assert "FUSF" not in taxes  # no interstate minutes, no base


def test_a_cell_over_excels_limit_fails_clearly(tmp_path, rate_card):
    from report_platform.domain.tenancy import Organization, Workspace

    store = tmp_path / "store"
    frame = pl.DataFrame(
        {
            "organization_id": ["org"],
            "workspace_id": ["ws-1"],
            "day": [date(2026, 5, 1)],
            "occurred_at": [datetime(2026, 5, 1, tzinfo=UTC)],
            "type": ["Calls"],
            "description": ["x" * 40_000],
            "quantity": [Decimal(1)],
            "rate": [Decimal("0.0125")],
        },
        schema_overrides={"quantity": MONEY, "rate": MONEY},
    )
    write_partition(store, BILLING_LINE_ITEMS, date(2026, 5, 1), frame)
    tenancy = Tenancy((Organization("org", "Org", (Workspace("ws-1", "org", "WS", (), ()),)),))
    with pytest.raises(ExportError, match="32,767"):
        billing(store, tmp_path / "b.xlsx", tenancy, rate_card, org="org")
    assert not list(tmp_path.glob("*.xlsx*")) and not list(tmp_path.glob(".b.xlsx*"))


_ILLEGAL = set("[]:*?/\\")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=8))
def test_tab_names_are_legal_and_unique(names: list[str]) -> None:
    got = tab_names(names)
    assert len(got) == len(names)
    folded = [g.casefold() for g in got]
    assert len(set(folded)) == len(got) and SUMMARY_TAB.casefold() not in folded
    wb = Workbook()  # openpyxl checks titles on create_sheet
    for name in got:
        assert name and name.casefold() != "history"
        assert len(name.encode("utf-16-le")) // 2 <= 31
        assert not (_ILLEGAL & set(name)) and not any(ord(c) < 32 for c in name)
        assert not name.startswith("'") and not name.endswith("'")
        wb.create_sheet(name)


def test_tab_names_dedupe_case_insensitively() -> None:
    long = "A" * 40
    assert tab_names(["East", "east", "EAST", "History", "", "billing summary", long, long]) == [
        "East",
        "east (2)",
        "EAST (3)",
        "Workspace",
        "Workspace (2)",
        "billing summary (2)",
        "A" * 31,
        "A" * 27 + " (2)",
    ]
