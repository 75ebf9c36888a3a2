"""`billing`: an XLSX workbook of priced usage, a summary tab then one tab per workspace.

Arithmetic (Decimal end to end, never float):
- a workspace line is one (type, rate) of that workspace's line items in the period:
  Quantity = sum of the items' quantities, Total = money(Quantity x Rate); a rate that changed
  within the period gives one line per rate;
- a tax line's Quantity is its stated base, the sum of the tab's Totals of the base types;
  Rate = percent / 100; Total = money(base x rate);
- the summary has one line per type: Quantity and Total are the sums over the workspace tabs
  (so each type reconciles to the cent), Rate is the common rate, or empty when it varies.
Billing days are UTC days: a line item counts when its day starts in [start_utc, end_utc).

Scope: with `organization_id`, the summary covers the organisation and each of its
workspaces with a line in the period gets a tab; with `workspace_id`, the summary and the
single tab show that workspace only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from report_platform.domain.rate_card import LINE_TYPES, RateCard, money
from report_platform.domain.tenancy import Tenancy
from report_platform.durable import fsync_file, replace_durably
from report_platform.reports.builders.output import sha256_file, temp_path_next_to
from report_platform.reports.builders.safety import neutralise
from report_platform.reports.builders.spec import XLSX_CONTENT_TYPE, BuildResult, ExportError, ExportSpec
from report_platform.store.duck import reader

SUMMARY_TAB = "Billing Summary"
HEADERS = ("Type", "Description", "Quantity", "Rate", "Total")
MAX_CELL_CHARS = 32_767
MAX_TAB_CHARS = 31
RESERVED_TABS = ("history",)  # Excel keeps "History" for change tracking
_ILLEGAL_TAB = re.compile(r"[\[\]:*?/\\\x00-\x1f\x7f]")
TOTAL_FORMAT = "#,##0.00"
RATE_FORMAT = "0.00####"


@dataclass(frozen=True)
class Line:
    type: str
    description: str
    quantity: Decimal
    rate: Decimal | None
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
               arg_max(description, occurred_at) AS description, min(occurred_at) AS first_at
        FROM billing_line_items
        WHERE {scope} AND occurred_at >= $start AND occurred_at < $end
        GROUP BY workspace_id, type, rate
        ORDER BY workspace_id, first_at, rate
    """
    return sql, {"scope": value, "start": spec.start_utc, "end": spec.end_utc}


def workspace_lines(items: list[tuple[str, str, Decimal, Decimal]], rate_card: RateCard) -> tuple[Line, ...]:
    """One workspace's lines from its (type, description, quantity, rate) sums, taxes last.

    Types follow `LINE_TYPES`; a tax appears when the tab has a line of one of its base types.
    """
    order = {t: i for i, t in enumerate(LINE_TYPES)}
    lines = [
        Line(t, d, q, r, money(q * r))
        for t, d, q, r in sorted(items, key=lambda i: order.get(i[0], len(order)))
        if t not in rate_card.taxes
    ]
    for tax_type in sorted(rate_card.taxes, key=lambda t: order.get(t, len(order))):
        tax = rate_card.taxes[tax_type]
        base_lines = [line for line in lines if line.type in tax.base]
        if not base_lines:
            continue
        base = sum((line.total for line in base_lines), Decimal(0))
        lines.append(Line(tax_type, tax.description, base, tax.rate, money(base * tax.rate)))
    return tuple(lines)


def summary_lines(tabs: Iterable[Tab]) -> tuple[Line, ...]:
    """Per type: sums of the tabs' quantities and totals; the rate when every line agrees."""
    by_type: dict[str, list[Line]] = {}
    for tab in tabs:
        for line in tab.lines:
            by_type.setdefault(line.type, []).append(line)
    order = {t: i for i, t in enumerate(LINE_TYPES)}
    out = []
    for type_ in sorted(by_type, key=lambda t: order.get(t, len(order))):
        lines = by_type[type_]
        rates = {line.rate for line in lines}
        out.append(
            Line(
                type_,
                lines[-1].description,
                sum((line.quantity for line in lines), Decimal(0)),
                rates.pop() if len(rates) == 1 else None,
                sum((line.total for line in lines), Decimal(0)),
            )
        )
    return tuple(out)


def _quantity_format(value: Decimal) -> str:
    return "#,##0" if value == value.to_integral_value() else "#,##0.00####"


Row = tuple[str, str, Decimal, Decimal | None, Decimal]


def _rows(lines: Iterable[Line]) -> list[Row]:
    """Lines with their text cleaned, so a refusal happens before any file is written."""
    return [(clean_text(ln.type), clean_text(ln.description), ln.quantity, ln.rate, ln.total) for ln in lines]


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

    def number(value: Decimal | None, fmt: str) -> WriteOnlyCell:
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


def billing_tabs(store: Path, spec: ExportSpec, tenancy: Tenancy, rate_card: RateCard) -> list[Tab]:
    """The workspace tabs of the export, in the tenancy's workspace order."""
    sql, params = _query(spec)
    con = reader(store, threads=2)
    try:
        rows = con.sql(sql, params=params).fetchall()
    finally:
        con.close()
    per_ws: dict[str, list[tuple[str, str, Decimal, Decimal]]] = {}
    for ws_id, type_, rate, quantity, description, _ in rows:
        per_ws.setdefault(ws_id, []).append((type_, description, Decimal(quantity), Decimal(rate)))
    known = {w.id: (i, w.name) for i, w in enumerate(tenancy.workspaces())}
    ids = sorted(per_ws, key=lambda w: (known.get(w, (len(known), w))[0], w))
    titles = tab_names(known.get(w, (0, w))[1] for w in ids)
    return [Tab(w, title, workspace_lines(per_ws[w], rate_card)) for w, title in zip(ids, titles, strict=True)]


def build_billing(store: Path, spec: ExportSpec, out_path: Path, tenancy: Tenancy, rate_card: RateCard) -> BuildResult:
    """Write the billing workbook for `spec` (organisation- or workspace-scoped)."""
    if spec.organization_id is not None:
        try:
            tenancy.organization(spec.organization_id)
        except KeyError as exc:
            raise ExportError(f"unknown organisation {spec.organization_id!r}") from exc
    tabs = billing_tabs(store, spec, tenancy, rate_card)
    sheets = [(SUMMARY_TAB, _rows(summary_lines(tabs)))] + [(t.title, _rows(t.lines)) for t in tabs]
    wb = Workbook(write_only=True)
    for title, rows in sheets:
        _write_tab(wb.create_sheet(title), rows)
    tmp = temp_path_next_to(out_path)
    try:
        wb.save(tmp)
        digest, size = sha256_file(tmp), tmp.stat().st_size
        fsync_file(tmp)
        replace_durably(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    rows = sum(len(t.lines) for t in tabs)
    return BuildResult(out_path, rows, size, digest, XLSX_CONTENT_TYPE)
