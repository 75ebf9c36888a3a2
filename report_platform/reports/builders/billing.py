"""`billing`: an XLSX workbook of priced usage, a summary tab then one tab per workspace.

Arithmetic (Decimal end to end, never float), so that a reader can redo it from the file:
- the summary has one line per (type, rate) of the period's line items: Quantity = sum of the
  items' quantities, Total = money(Quantity x Rate); a rate that changed within the period
  gives one line per rate;
- a tax line's Quantity is its stated base, the sum of the same tab's Totals of the base types;
  Rate = percent / 100; Total = money(base x rate);
- a workspace tab's line has the workspace's own Quantity, and as Total its largest-remainder
  share of the summary Total (`allocate`): the tabs sum to the summary to the cent and each
  tab line is within one cent of its own Quantity x Rate. A workspace-scoped workbook has one
  tab, equal to its summary.
`reconcile_workbook` checks a built file against these rules.
Billing days are UTC days: a line item counts when its day starts in [start_utc, end_utc).

Scope: with `organization_id`, the summary covers the organisation and each of its
workspaces with a line in the period gets a tab; with `workspace_id`, the summary and the
single tab show that workspace only.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Context, Decimal
from pathlib import Path

from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from report_platform.domain.rate_card import CENT, LINE_TYPES, RateCard, money
from report_platform.domain.tenancy import Tenancy
from report_platform.durable import atomic_write, sha256_file
from report_platform.reports.builders.safety import neutralise
from report_platform.reports.builders.spec import XLSX_CONTENT_TYPE, BuildResult, ExportError, ExportSpec
from report_platform.store.duck import reader
from report_platform.store.partitions import Store

SUMMARY_TAB = "Billing Summary"
HEADERS = ("Type", "Description", "Quantity", "Rate", "Total")
MAX_CELL_CHARS = 32_767
MAX_TAB_CHARS = 31
RESERVED_TABS = ("history",)  # Excel keeps "History" for change tracking
_ILLEGAL_TAB = re.compile(r"[\[\]:*?/\\\x00-\x1f\x7f]")
TOTAL_FORMAT = "#,##0.00"
RATE_FORMAT = "0.00####"
EXCEL_DIGITS = 15  # significant digits a spreadsheet number keeps
_EXCEL_NUMBER = Context(prec=EXCEL_DIGITS)


@dataclass(frozen=True)
class Line:
    type: str
    description: str
    quantity: Decimal
    rate: Decimal
    total: Decimal


@dataclass(frozen=True)
class Tab:
    workspace_id: str
    title: str
    lines: tuple[Line, ...]


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2  # Excel counts UTF-16 code units


def _cut(text: str, limit: int) -> str:
    while _utf16_len(text) > limit:
        text = text[:-1]
    return text


def tab_names(wanted: Iterable[str], taken: Iterable[str] = (SUMMARY_TAB,)) -> list[str]:
    """Legal, unique Excel sheet names for `wanted`, in order.

    Characters Excel refuses (`[]:*?/\\` and control characters) become `_`, leading and
    trailing apostrophes and spaces go, names are cut to 31 UTF-16 units, an empty or reserved
    name becomes `Workspace`, and a name equal to an earlier one ignoring case gets ` (2)`,
    ` (3)`, ... (cut so the suffix fits).
    """
    used = {t.casefold() for t in taken}
    out = []
    for raw in wanted:
        name = _ILLEGAL_TAB.sub("_", raw).strip().strip("'").strip()
        name = _cut(name, MAX_TAB_CHARS).strip().strip("'").strip()
        if not name or name.casefold() in RESERVED_TABS:
            name = "Workspace"
        candidate, n = name, 1
        while candidate.casefold() in used:
            n += 1
            suffix = f" ({n})"
            candidate = _cut(name, MAX_TAB_CHARS - len(suffix)).rstrip().rstrip("'") + suffix
        used.add(candidate.casefold())
        out.append(candidate)
    return out


def clean_text(value: str) -> str:
    """Text as a cell may hold it: characters XLSX cannot store removed, formula triggers
    neutralised; too long a value is refused rather than cut."""
    text = neutralise(ILLEGAL_CHARACTERS_RE.sub("", value)) or ""
    if len(text) > MAX_CELL_CHARS:
        raise ExportError(
            f"a billing cell would hold {len(text):,} characters; Excel cells hold at most {MAX_CELL_CHARS:,}: "
            f"{text[:60]!r}..."
        )
    return text


def _query(spec: ExportSpec) -> tuple[str, dict]:
    if spec.organization_id is not None:
        scope, value = "organization_id = $scope", spec.organization_id
    else:
        scope, value = "workspace_id = $scope", spec.workspace_id
    sql = f"""
        SELECT workspace_id, type, rate, sum(quantity) AS quantity,
               arg_max(description, occurred_at) AS description, min(occurred_at) AS first_at,
               max(occurred_at) AS last_at
        FROM billing_line_items
        WHERE {scope} AND occurred_at >= $start AND occurred_at < $end
        GROUP BY workspace_id, type, rate
        ORDER BY workspace_id, type, rate
    """
    return sql, {"scope": value, "start": spec.start_utc, "end": spec.end_utc}


@dataclass(frozen=True)
class Usage:
    """One workspace's line items of one (type, rate) in the period, summed."""

    workspace_id: str
    type: str
    description: str  # of the latest item
    quantity: Decimal
    rate: Decimal
    first_at: datetime
    last_at: datetime


def allocate(total: Decimal, shares: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Split `total` (whole cents) over the keys of `shares` by largest remainder.

    Each key gets its exact share floored to the cent; the cents left over go one each to the
    keys with the largest remainders, equal remainders in key order, so the result depends only
    on the mapping's contents. The amounts sum to `total` exactly and each is within one cent of
    its share. `total` = money(sum of the shares) always qualifies; a total that the shares
    cannot reach that way (fewer than zero or more than one leftover cent per key) is refused.
    """
    floors = {k: v.quantize(CENT, rounding=ROUND_FLOOR) for k, v in shares.items()}
    left = (total - sum(floors.values(), Decimal(0))) / CENT
    if left != left.to_integral_value() or not 0 <= left <= len(shares):
        raise ValueError(f"cannot allocate {total} over shares summing to {sum(shares.values(), Decimal(0))}")
    by_remainder = sorted(shares, key=lambda k: (floors[k] - shares[k], k))
    for key in by_remainder[: int(left)]:
        floors[key] += CENT
    return floors


def _by_type_and_rate(usage: Iterable[Usage]) -> dict[tuple[str, Decimal], dict[str, Usage]]:
    groups: dict[tuple[str, Decimal], dict[str, Usage]] = {}
    for u in usage:
        group = groups.setdefault((u.type, u.rate), {})
        if u.workspace_id in group:
            raise ValueError(f"two usage sums for {u.workspace_id} {u.type} at {u.rate}")
        group[u.workspace_id] = u
    return groups


def price(
    usage: Iterable[Usage], rate_card: RateCard, workspace_order: Sequence[str] = ()
) -> tuple[tuple[Line, ...], dict[str, tuple[Line, ...]]]:
    """The summary lines and each workspace's lines, from one `Usage` per (workspace, type, rate).

    Summary: one line per (type, rate), Total = money(Quantity x Rate); a tax's Quantity is its
    base, the sum of the summary's Totals of the base types. Each summary Total is allocated to
    the workspaces by their exact shares (`allocate`): a workspace line's Quantity is its own, its
    Total that allocation; a workspace's tax base is the sum of its own Totals of the base types.
    A tax appears where there is a line of one of its base types. Lines follow `LINE_TYPES`, a
    type's rates in order of first use, taxes last; workspaces follow `workspace_order`, then id.
    """
    type_rank = {t: i for i, t in enumerate(LINE_TYPES)}
    groups = _by_type_and_rate(u for u in usage if u.type not in rate_card.taxes)
    ordered = sorted(
        groups.items(),
        key=lambda g: (type_rank.get(g[0][0], len(type_rank)), min(u.first_at for u in g[1].values()), g[0][1]),
    )
    summary: list[Line] = []
    tabs: dict[str, list[Line]] = {}
    for (type_, rate), by_ws in ordered:
        quantity = sum((u.quantity for u in by_ws.values()), Decimal(0))
        latest = max(by_ws.values(), key=lambda u: (u.last_at, u.workspace_id))
        line = Line(type_, latest.description, quantity, rate, money(quantity * rate))
        summary.append(line)
        shares = allocate(line.total, {ws: u.quantity * rate for ws, u in by_ws.items()})
        for ws, u in by_ws.items():
            tabs.setdefault(ws, []).append(Line(type_, u.description, u.quantity, rate, shares[ws]))
    for tax_type in sorted(rate_card.taxes, key=lambda t: type_rank.get(t, len(type_rank))):
        tax = rate_card.taxes[tax_type]
        if not any(line.type in tax.base for line in summary):
            continue
        base = sum((line.total for line in summary if line.type in tax.base), Decimal(0))
        line = Line(tax_type, tax.description, base, tax.rate, money(base * tax.rate))
        summary.append(line)
        bases = {
            ws: sum((ln.total for ln in lines if ln.type in tax.base), Decimal(0))
            for ws, lines in tabs.items()
            if any(ln.type in tax.base for ln in lines)
        }
        shares = allocate(line.total, {ws: b * tax.rate for ws, b in bases.items()})
        for ws, b in bases.items():
            tabs[ws].append(Line(tax_type, tax.description, b, tax.rate, shares[ws]))
    ws_rank = {w: i for i, w in enumerate(workspace_order)}
    in_order = sorted(tabs, key=lambda w: (ws_rank.get(w, len(ws_rank)), w))
    return tuple(summary), {ws: tuple(tabs[ws]) for ws in in_order}


def _quantity_format(value: Decimal) -> str:
    return "#,##0" if value == value.to_integral_value() else "#,##0.00####"


Row = tuple[str, str, Decimal, Decimal, Decimal]


def exact_number(value: Decimal) -> Decimal:
    """`value` if a spreadsheet cell holds it exactly; more than 15 significant digits are refused
    rather than rounded by the file format."""
    digits = value.normalize().as_tuple().digits
    if len(digits) > EXCEL_DIGITS:
        raise ExportError(
            f"a billing number has more than {EXCEL_DIGITS} significant digits, which Excel cannot hold: {value}"
        )
    return value


def _rows(lines: Iterable[Line]) -> list[Row]:
    """Lines with their text and numbers checked, so a refusal happens before any file is written."""
    return [
        (
            clean_text(ln.type),
            clean_text(ln.description),
            exact_number(ln.quantity),
            exact_number(ln.rate),
            exact_number(ln.total),
        )
        for ln in lines
    ]


def _write_tab(ws: WriteOnlyWorksheet, rows: list[Row]) -> None:
    bold = Font(bold=True)
    for letter, width in zip("ABCDE", (24, 60, 16, 12, 14), strict=True):
        ws.column_dimensions[letter].width = width

    def text(value: str, font: Font | None = None) -> WriteOnlyCell:
        cell = WriteOnlyCell(ws, value=value)
        cell.data_type = "s"  # openpyxl would otherwise take a leading "=" for a formula
        if font is not None:
            cell.font = font
        return cell

    def number(value: Decimal, fmt: str) -> WriteOnlyCell:
        cell = WriteOnlyCell(ws, value=value)
        cell.number_format = fmt
        return cell

    ws.append([text(h, bold) for h in HEADERS])
    for type_, description, quantity, rate, total in rows:
        ws.append(
            [
                text(type_),
                text(description),
                number(quantity, _quantity_format(quantity)),
                number(rate, RATE_FORMAT),
                number(total, TOTAL_FORMAT),
            ]
        )


def billing_usage(store: Store, spec: ExportSpec) -> list[Usage]:
    """The export's line items summed per (workspace, type, rate)."""
    sql, params = _query(spec)
    con = reader(store, threads=2)
    try:
        rows = con.sql(sql, params=params).fetchall()
    finally:
        con.close()
    return [
        Usage(ws_id, type_, description, Decimal(quantity), Decimal(rate), first_at, last_at)
        for ws_id, type_, rate, quantity, description, first_at, last_at in rows
    ]


def billing_workbook(
    store: Store, spec: ExportSpec, tenancy: Tenancy, rate_card: RateCard
) -> tuple[tuple[Line, ...], list[Tab]]:
    """The summary lines and the workspace tabs of the export, in the tenancy's workspace order."""
    summary, per_ws = price(billing_usage(store, spec), rate_card, [w.id for w in tenancy.workspaces()])
    names = {w.id: w.name for w in tenancy.workspaces()}
    titles = tab_names(names.get(w, w) for w in per_ws)
    return summary, [Tab(w, title, lines) for (w, lines), title in zip(per_ws.items(), titles, strict=True)]


def build_billing(store: Store, spec: ExportSpec, out_path: Path, tenancy: Tenancy, rate_card: RateCard) -> BuildResult:
    """Write the billing workbook for `spec` (organisation- or workspace-scoped)."""
    if spec.organization_id is not None:
        try:
            tenancy.organization(spec.organization_id)
        except KeyError as exc:
            raise ExportError(f"unknown organisation {spec.organization_id!r}") from exc
    summary, tabs = billing_workbook(store, spec, tenancy, rate_card)
    sheets = [(SUMMARY_TAB, _rows(summary))] + [(t.title, _rows(t.lines)) for t in tabs]
    wb = Workbook(write_only=True)
    for title, rows in sheets:
        _write_tab(wb.create_sheet(title), rows)
    with atomic_write(out_path) as handle:
        wb.save(handle)
    digest, size = sha256_file(out_path), out_path.stat().st_size
    rows = sum(len(t.lines) for t in tabs)
    return BuildResult(out_path, rows, size, digest, XLSX_CONTENT_TYPE)


def _cell_number(value: object) -> Decimal | None:
    # A float cell was written from a Decimal of at most 15 significant digits; rounding the
    # binary value back to 15 digits recovers that Decimal exactly.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return _EXCEL_NUMBER.create_decimal_from_float(value)
    return None


def _show(value: Decimal) -> str:
    return f"{value.normalize():f}"


ReadLine = tuple[int, str, Decimal, Decimal, Decimal]  # row number, Type, Quantity, Rate, Total


def _read_tab(title: str, rows: list[tuple], problems: list[str]) -> list[ReadLine]:
    if not rows or tuple(rows[0]) != HEADERS:
        problems.append(f"{title}: the header row is not {', '.join(HEADERS)}")
        return []
    out = []
    for n, row in enumerate(rows[1:], start=2):
        cells = tuple(row) + (None,) * (len(HEADERS) - len(row))
        type_, description = cells[0], cells[1]
        numbers = [_cell_number(v) for v in cells[2:5]]
        if not isinstance(type_, str) or not isinstance(description, str):
            problems.append(f"{title} row {n}: Type and Description must be text")
            continue
        if None in numbers:
            missing = [h for h, v in zip(HEADERS[2:], numbers, strict=True) if v is None]
            problems.append(f"{title} row {n} {type_}: {', '.join(missing)} not a number")
            continue
        quantity, rate, total = numbers
        out.append((n, type_, quantity, rate, total))
    return out


def _check_taxes(title: str, lines: list[ReadLine], rate_card: RateCard, problems: list[str]) -> None:
    for n, type_, quantity, rate, _ in lines:
        tax = rate_card.taxes.get(type_)
        if tax is None:
            continue
        base = sum((t for _, ty, _, _, t in lines if ty in tax.base), Decimal(0))
        if quantity != base:
            problems.append(f"{title} row {n} {type_}: base {_show(quantity)}, but the base types total {_show(base)}")
        if rate != tax.rate:
            problems.append(f"{title} row {n} {type_}: rate {_show(rate)}, but {tax.percent}% is {_show(tax.rate)}")


def reconcile_workbook(path: Path, rate_card: RateCard | None = None) -> list[str]:
    """What is wrong with a billing workbook's arithmetic, as sentences; empty when it reconciles.

    Checked: the first tab is the summary and every tab has the billing header; every summary
    line has Total = money(Quantity x Rate) and appears once per (Type, Rate); on the workspace
    tabs, every line is within one cent of its own Quantity x Rate and belongs to a summary line,
    and per (Type, Rate) the tabs' Quantities and Totals sum to the summary's exactly. With
    `rate_card`, each tax line's Rate is its percentage and its Quantity the sum of the same
    tab's Totals of the base types.
    """
    try:
        wb = load_workbook(path, read_only=True)
    except (OSError, zipfile.BadZipFile, InvalidFileException, KeyError) as exc:
        return [f"{path}: not a readable workbook ({exc})"]
    try:
        sheets = [(ws.title, list(ws.iter_rows(values_only=True))) for ws in wb.worksheets]
    finally:
        wb.close()
    if not sheets or sheets[0][0] != SUMMARY_TAB:
        return [f"{path}: the first tab is not {SUMMARY_TAB!r}"]
    problems: list[str] = []
    summary = _read_tab(SUMMARY_TAB, sheets[0][1], problems)
    tabs = [(title, _read_tab(title, rows, problems)) for title, rows in sheets[1:]]
    expected: dict[tuple[str, Decimal], ReadLine] = {}
    for line in summary:
        n, type_, quantity, rate, total = line
        if total != money(quantity * rate):
            problems.append(
                f"{SUMMARY_TAB} row {n} {type_}: Total {_show(total)}, but {_show(quantity)} x {_show(rate)} "
                f"= {_show(money(quantity * rate))}"
            )
        if (type_, rate) in expected:
            problems.append(f"{SUMMARY_TAB} row {n} {type_}: a second line at rate {_show(rate)}")
        expected[(type_, rate)] = line
    if summary and not tabs:
        problems.append(f"{path}: the summary has lines but there is no workspace tab")
    sums: dict[tuple[str, Decimal], tuple[Decimal, Decimal]] = {}
    for title, lines in tabs:
        seen = set()
        for n, type_, quantity, rate, total in lines:
            if total != total.quantize(CENT):
                problems.append(f"{title} row {n} {type_}: Total {_show(total)} is not a whole number of cents")
            if abs(total - quantity * rate) > CENT:
                problems.append(
                    f"{title} row {n} {type_}: Total {_show(total)} is more than a cent from "
                    f"{_show(quantity)} x {_show(rate)} = {_show(quantity * rate)}"
                )
            if (type_, rate) not in expected:
                problems.append(f"{title} row {n} {type_}: no summary line at rate {_show(rate)}")
            if (type_, rate) in seen:
                problems.append(f"{title} row {n} {type_}: a second line at rate {_show(rate)}")
            seen.add((type_, rate))
            q, t = sums.get((type_, rate), (Decimal(0), Decimal(0)))
            sums[(type_, rate)] = (q + quantity, t + total)
    if tabs:
        for (type_, rate), (_, _, quantity, _, total) in expected.items():
            q, t = sums.get((type_, rate), (Decimal(0), Decimal(0)))
            if q != quantity:
                problems.append(
                    f"{type_} at {_show(rate)}: the tabs' Quantities sum to {_show(q)}, "
                    f"the summary shows {_show(quantity)}"
                )
            if t != total:
                problems.append(
                    f"{type_} at {_show(rate)}: the tabs' Totals sum to {_show(t)}, the summary shows {_show(total)}"
                )
    if rate_card is not None:
        _check_taxes(SUMMARY_TAB, summary, rate_card, problems)
        for title, lines in tabs:
            _check_taxes(title, lines, rate_card, problems)
    return problems
