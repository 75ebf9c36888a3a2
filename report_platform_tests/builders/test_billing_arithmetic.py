"""The billing workbook's arithmetic, checked the way a finance reader checks it: on the
summary tab every Total is Quantity x Rate rounded half-up to the cent, and the workspace
tabs of an organisation workbook add up to the summary to the cent."""

from __future__ import annotations

import random
import shutil
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from report_platform.domain.tenancy import DEMO_TENANCY, Organization, Tenancy, Workspace
from report_platform.reports.builders import ExportError, ExportSpec, build_export
from report_platform.reports.builders.billing import HEADERS, SUMMARY_TAB, allocate, reconcile_workbook
from report_platform.store.partitions import write_partition
from report_platform.store.schema import BILLING_LINE_ITEMS, MONEY
from report_platform_tests.builders.test_billing import EVERY_DAY, NY

CENT = Decimal("0.01")
ORGANISATIONS = [o.id for o in DEMO_TENANCY.organizations]
WORKSPACES = [w.id for w in DEMO_TENANCY.workspaces()]
MAY = (datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC))

Read = tuple[str, Decimal, Decimal | None, Decimal]  # Type, Quantity, Rate, Total


def round_half_up(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def read_lines(path: Path) -> dict[str, list[Read]]:
    """Each tab's (Type, Quantity, Rate, Total), read back with openpyxl."""
    tabs = {}
    for ws in load_workbook(path).worksheets:
        rows = [tuple(c.value for c in row) for row in ws.iter_rows()]
        assert rows[0] == HEADERS
        tabs[ws.title] = [(t, dec(q), dec(r), dec(total)) for t, _, q, r, total in rows[1:]]
    return tabs


def build(store: Path, out: Path, tenancy, rate_card, *, org=None, ws=None, period=EVERY_DAY) -> Path:
    return build_export(store, ExportSpec("billing", ws, org, NY, *period), out, tenancy, rate_card).path


def arithmetic_errors(lines: list[Read]) -> list[str]:
    return [
        f"{t}: {q} x {r} = {round_half_up(q * r)}, shown {total}"
        for t, q, r, total in lines
        if r is None or total != round_half_up(q * r)
    ]


def sums_per_type_and_rate(tabs: list[list[Read]]) -> dict[tuple[str, Decimal | None], tuple[Decimal, Decimal]]:
    out: dict[tuple[str, Decimal | None], tuple[Decimal, Decimal]] = {}
    for lines in tabs:
        for t, q, r, total in lines:
            sq, st_ = out.get((t, r), (Decimal(0), Decimal(0)))
            out[(t, r)] = (sq + q, st_ + total)
    return out


@pytest.mark.parametrize("org", ORGANISATIONS)
def test_every_summary_line_total_is_quantity_times_rate(org, store, tmp_path, tenancy, rate_card):
    summary = read_lines(build(store, tmp_path / "b.xlsx", tenancy, rate_card, org=org))[SUMMARY_TAB]
    assert summary
    wrong = arithmetic_errors(summary)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("org", ORGANISATIONS)
def test_organisation_tabs_sum_to_the_summary_and_stay_within_a_cent(org, store, tmp_path, tenancy, rate_card):
    tabs = read_lines(build(store, tmp_path / "b.xlsx", tenancy, rate_card, org=org))
    summary = tabs.pop(SUMMARY_TAB)
    assert tabs
    want = {(t, r): (q, total) for t, q, r, total in summary}
    assert len(want) == len(summary)  # one summary line per (type, rate)
    assert sums_per_type_and_rate(list(tabs.values())) == want
    for title, lines in tabs.items():
        for t, q, r, total in lines:
            assert abs(total - q * r) <= CENT, (title, t, q, r, total)
            assert total == total.quantize(CENT)
        for t, q, r, _ in lines:
            if t in rate_card.taxes:  # the base a reader can check on this very tab
                assert r == rate_card.taxes[t].percent / 100
                assert q == sum(total for b, _, _, total in lines if b in rate_card.taxes[t].base)


@pytest.mark.parametrize("ws", WORKSPACES)
def test_a_workspace_workbook_is_its_own_summary(ws, store, tmp_path, tenancy, rate_card):
    tabs = read_lines(build(store, tmp_path / "b.xlsx", tenancy, rate_card, ws=ws))
    assert list(tabs) == [SUMMARY_TAB, tenancy.workspace(ws).name]
    summary, own = tabs[SUMMARY_TAB], tabs[tenancy.workspace(ws).name]
    assert own == summary and summary
    wrong = arithmetic_errors(own)
    assert not wrong, "\n".join(wrong)
    org = read_lines(build(store, tmp_path / "o.xlsx", tenancy, rate_card, org=tenancy.workspace(ws).organization_id))
    in_org = org[tenancy.workspace(ws).name]
    assert [(t, q, r) for t, q, r, _ in in_org if t not in rate_card.taxes] == [
        (t, q, r) for t, q, r, _ in own if t not in rate_card.taxes
    ]


def test_built_workbooks_reconcile(store, tmp_path, tenancy, rate_card):
    for n, org in enumerate(ORGANISATIONS):
        assert reconcile_workbook(build(store, tmp_path / f"o{n}.xlsx", tenancy, rate_card, org=org), rate_card) == []
    for n, ws in enumerate(WORKSPACES):
        assert reconcile_workbook(build(store, tmp_path / f"w{n}.xlsx", tenancy, rate_card, ws=ws), rate_card) == []
    empty = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC))
    assert reconcile_workbook(build(store, tmp_path / "e.xlsx", tenancy, rate_card, org="acme", period=empty)) == []


def _store(root: Path, items: list[tuple[str, str, str, str]]) -> Path:
    """(workspace id, type, quantity, rate) line items on 2026-05-01."""
    frame = pl.DataFrame(
        {
            "organization_id": ["org"] * len(items),
            "workspace_id": [i[0] for i in items],
            "day": [date(2026, 5, 1)] * len(items),
            "occurred_at": [datetime(2026, 5, 1, tzinfo=UTC)] * len(items),
            "type": [i[1] for i in items],
            "description": [i[1] for i in items],
            "quantity": [Decimal(i[2]) for i in items],
            "rate": [Decimal(i[3]) for i in items],
        },
        schema_overrides={"quantity": MONEY, "rate": MONEY},
    )
    write_partition(root, BILLING_LINE_ITEMS, date(2026, 5, 1), frame)
    return root


# Listed out of id order, so that the tabs' order (the tenancy's) and the tie-break (the id) differ.
THREE = Tenancy(
    (
        Organization(
            "org",
            "Org",
            (
                Workspace("ws-c", "org", "C", (), ()),
                Workspace("ws-a", "org", "A", (), ()),
                Workspace("ws-b", "org", "B", (), ()),
            ),
        ),
    )
)


def test_leftover_cents_go_to_the_largest_remainders_then_by_workspace_id(tmp_path, rate_card):
    # Each workspace: one call, 0.0125 exactly; the summary bills 3 x 0.0125 = 0.0375 -> 0.04.
    # Messages: 7 x 0.0079 = 0.0553 (ws-c), 1 x 0.0079 = 0.0079 (ws-b): 0.0632 -> 0.06.
    items = [(ws, "Calls", "1", "0.0125") for ws in ("ws-a", "ws-b", "ws-c")]
    items += [("ws-c", "Messages", "7", "0.0079"), ("ws-b", "Messages", "1", "0.0079")]
    store = _store(tmp_path / "store", items)
    path = build(store, tmp_path / "b.xlsx", THREE, rate_card, org="org", period=MAY)
    tabs = read_lines(path)
    assert list(tabs) == [SUMMARY_TAB, "C", "A", "B"]
    line = {(title, t): (q, total) for title, lines in tabs.items() for t, q, _, total in lines}
    assert line[(SUMMARY_TAB, "Calls")] == (3, Decimal("0.04"))
    assert [line[(ws, "Calls")][1] for ws in "ABC"] == [Decimal("0.02"), Decimal("0.01"), Decimal("0.01")]
    assert line[(SUMMARY_TAB, "Messages")] == (8, Decimal("0.06"))
    # floors 0.05 and 0.00; the leftover cent goes to the larger remainder, 0.0079 > 0.0053
    assert (line[("C", "Messages")][1], line[("B", "Messages")][1]) == (Decimal("0.05"), Decimal("0.01"))
    assert ("A", "Messages") not in line  # a tab lists only the types its workspace used
    assert not arithmetic_errors(tabs[SUMMARY_TAB])
    assert reconcile_workbook(path, rate_card) == []


def test_a_rate_change_gives_one_summary_line_per_rate(tmp_path, rate_card):
    items = [
        ("ws-a", "Messages", "1000", "0.0079"),
        ("ws-b", "Messages", "3", "0.0081"),
        ("ws-c", "Calls", "1", "0.0125"),
    ]
    path = build(_store(tmp_path / "store", items), tmp_path / "b.xlsx", THREE, rate_card, org="org", period=MAY)
    summary = read_lines(path)[SUMMARY_TAB]
    assert [line for line in summary if line[0] == "Messages"] == [
        ("Messages", Decimal(1000), Decimal("0.0079"), Decimal("7.90")),
        ("Messages", Decimal(3), Decimal("0.0081"), Decimal("0.02")),
    ]
    taxes = {t: (q, total) for t, q, _, total in summary if t in rate_card.taxes}
    assert taxes["TaxesAndFees"] == (Decimal("7.93"), round_half_up(Decimal("7.93") * Decimal("0.0625")))
    assert reconcile_workbook(path, rate_card) == []


def test_a_number_a_spreadsheet_cannot_hold_exactly_fails_the_build(tmp_path, rate_card):
    store = _store(tmp_path / "store", [("ws-a", "MessageCarrierFees", "1234567890.123456", "1.00")])
    with pytest.raises(ExportError, match="15 significant digits"):
        build(store, tmp_path / "b.xlsx", THREE, rate_card, org="org", period=MAY)


def _edit(src: Path, dst: Path, tab: str, row: int, column: int, value) -> Path:
    shutil.copyfile(src, dst)
    wb = load_workbook(dst)
    wb[tab].cell(row=row, column=column).value = value  # cell(value=None) would leave it alone
    wb.save(dst)
    return dst


def test_reconcile_names_what_does_not_add_up(store, tmp_path, tenancy, rate_card):
    path = build(store, tmp_path / "b.xlsx", tenancy, rate_card, org="acme")
    tabs = read_lines(path)
    t, _, r, total = tabs["Acme West"][0]
    summary_total = next(s_total for s_t, _, s_r, s_total in tabs[SUMMARY_TAB] if (s_t, s_r) == (t, r))
    off_tab = _edit(path, tmp_path / "tab.xlsx", "Acme West", 2, 5, float(total + CENT))
    assert (
        f"{t} at {r.normalize():f}: the tabs' Totals sum to {summary_total + CENT}, the summary shows {summary_total}"
        in reconcile_workbook(off_tab)
    )

    st_, sq, sr, stotal = tabs[SUMMARY_TAB][0]
    off_summary = _edit(path, tmp_path / "summary.xlsx", SUMMARY_TAB, 2, 5, float(stotal - CENT))
    problems = reconcile_workbook(off_summary)
    assert f"{SUMMARY_TAB} row 2 {st_}: Total {stotal - CENT}, but {sq:f} x {sr.normalize():f} = {stotal}" in problems
    assert any("the tabs' Totals sum to" in p for p in problems), problems

    no_rate = _edit(path, tmp_path / "rate.xlsx", SUMMARY_TAB, 2, 4, None)
    assert f"{SUMMARY_TAB} row 2 {st_}: Rate not a number" in reconcile_workbook(no_rate)

    (tmp_path / "junk.xlsx").write_bytes(b"not a zip")
    assert len(reconcile_workbook(tmp_path / "junk.xlsx")) == 1


def test_reconcile_checks_tax_bases_against_the_rate_card(store, tmp_path, tenancy, rate_card):
    path = build(store, tmp_path / "b.xlsx", tenancy, rate_card, ws="acme-east")
    summary = read_lines(path)[SUMMARY_TAB]
    row = next(n for n, line in enumerate(summary, start=2) if line[0] == "TRS")
    _, base, rate, _ = summary[row - 2]
    moved = _edit(path, tmp_path / "tax.xlsx", SUMMARY_TAB, row, 3, float(base + 1))
    problems = reconcile_workbook(moved, rate_card)
    assert f"{SUMMARY_TAB} row {row} TRS: base {base + 1:f}, but the base types total {base:f}" in problems
    assert reconcile_workbook(moved) != []  # its Total no longer matches Quantity x Rate either


shares_strategy = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=3),
    st.decimals(min_value=Decimal("-50"), max_value=Decimal("100000"), places=8, allow_nan=False),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(shares_strategy, st.randoms(use_true_random=False))
def test_allocation_preserves_the_total_stays_within_a_cent_and_is_deterministic(shares, rnd: random.Random):
    total = round_half_up(sum(shares.values(), Decimal(0)))
    got = allocate(total, shares)
    assert list(got) == list(shares)
    assert sum(got.values(), Decimal(0)) == total
    for key, amount in got.items():
        assert amount == amount.quantize(CENT)
        assert abs(amount - shares[key]) <= CENT
    shuffled = list(shares.items())
    rnd.shuffle(shuffled)
    assert allocate(total, dict(shuffled)) == got


def test_allocation_of_a_single_share_is_its_own_rounding():
    assert allocate(Decimal("10.01"), {"ws": Decimal("10.005")}) == {"ws": Decimal("10.01")}
    assert allocate(Decimal("0.00"), {}) == {}


def test_allocation_refuses_a_total_the_shares_cannot_reach():
    with pytest.raises(ValueError, match="cannot allocate"):
        allocate(Decimal("0.05"), {"a": Decimal("0.01"), "b": Decimal("0.01")})
    with pytest.raises(ValueError, match="cannot allocate"):
        allocate(Decimal("0.015"), {"a": Decimal("0.015")})
