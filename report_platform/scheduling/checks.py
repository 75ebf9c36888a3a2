"""Asset checks of the report exports: what a recipient relies on in the file they receive.

Each export asset declares these checks (`check_specs=`) and evaluates them on the files it has
just built, before it hands them to delivery, so every report run shows them in the UI:

- `rows_match_store` (every type, not blocking): a CSV holds as many records as the store has
  for its period and scope, counted with the builders' own filter; a billing workbook holds as
  many lines on its workspace tabs as the builder reported. The store is counted after the build,
  so an ingest replacing a day in between can make them differ honestly: worth a look, not a
  reason to withhold the file.
- `workbook_reconciles` (billing, blocking): `reconcile_workbook` finds nothing wrong with the
  workbook's arithmetic. A workbook that does not add up is never delivered: the run fails, the
  audit log says why and the check lists the problems.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import dagster as dg
from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from report_platform.domain.rate_card import RateCard
from report_platform.reports.builders import ExportSpec
from report_platform.reports.builders.billing import reconcile_workbook
from report_platform.reports.builders.usage import record_filter, require_workspace, where_sql
from report_platform.store.duck import reader
from report_platform.store.partitions import Store

ROWS_CHECK = "rows_match_store"
RECONCILE_CHECK = "workbook_reconciles"

# The table each CSV type exports one row of per record.
RECORD_TABLES = {
    "voice_usage": "voice_calls",
    "sms_usage": "sms_messages",
    "aegis_interaction": "aegis_transactions",
}
PROBLEMS_SHOWN = 5


@dataclass(frozen=True)
class ExportFile:
    """One file an export run built: what it was asked for and what the builder reported."""

    scheduled_at: datetime
    spec: ExportSpec
    path: Path
    rows: int


def check_specs(report_type: str, asset: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    rows_what = (
        "lines on its workspace tabs as the builder reported"
        if report_type == "billing"
        else ("records as the usage store holds for its period and scope")
    )
    specs = [dg.AssetCheckSpec(ROWS_CHECK, asset=asset, description=f"Each file holds as many {rows_what}.")]
    if report_type == "billing":
        specs.append(
            dg.AssetCheckSpec(
                RECONCILE_CHECK,
                asset=asset,
                blocking=True,
                description="Each workbook's arithmetic reconciles (summary Totals = Quantity x Rate, workspace tabs "
                "sum to the summary, taxes on their base); a workbook that does not is not delivered.",
            )
        )
    return specs


def store_records(store: Store, spec: ExportSpec) -> int:
    """The records the store holds for a CSV export's period and scope, filtered as its builder filters."""
    extra_where, params = record_filter(spec)
    sql = f"SELECT count(*) FROM {RECORD_TABLES[spec.type]} AS t {where_sql(extra_where)}"
    params.update(workspace=require_workspace(spec), start=spec.start_utc, end=spec.end_utc)
    con = reader(store, threads=2)
    try:
        return int(con.sql(sql, params=params).fetchall()[0][0])
    finally:
        con.close()


def workbook_lines(path: Path) -> int | None:
    """Lines on a billing workbook's workspace tabs (every tab after the summary, header excluded);
    None when the file is not a readable workbook."""
    try:
        wb = load_workbook(path, read_only=True)
    except (OSError, zipfile.BadZipFile, InvalidFileException, KeyError):
        return None
    try:
        return sum(max(sum(1 for _ in ws.iter_rows(values_only=True)) - 1, 0) for ws in wb.worksheets[1:])
    finally:
        wb.close()


def rows_check(store: Store, files: list[ExportFile]) -> dg.AssetCheckResult:
    billing = bool(files) and files[0].spec.type == "billing"
    counted = [(f, workbook_lines(f.path) if billing else store_records(store, f.spec)) for f in files]
    wrong = [(f, n) for f, n in counted if n != f.rows]
    what = "lines in the workbook" if billing else "records in the store"
    if wrong:
        shown = "; ".join(
            f"{f.scheduled_at.isoformat()}: {f.rows:,} reported, " + ("unreadable" if n is None else f"{n:,} {what}")
            for f, n in wrong
        )
        description = f"{len(wrong)} of {len(files)} file(s) differ: {shown}"
    else:
        description = f"{len(files)} file(s), each with as many rows as {what}"
    records = [
        dg.TableRecord({"scheduled_at": f.scheduled_at.isoformat(), "file_rows": f.rows, "expected_rows": n})
        for f, n in counted
    ]
    return dg.AssetCheckResult(
        check_name=ROWS_CHECK,
        passed=not wrong,
        description=description,
        metadata={
            "file_rows": dg.MetadataValue.int(sum(f.rows for f in files)),
            "expected_rows": dg.MetadataValue.int(sum(n or 0 for _, n in counted)),
            "counted_from": "workbook" if billing else "store",
            "files": dg.MetadataValue.table(records, schema=_ROWS_SCHEMA),
        },
    )


_ROWS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("scheduled_at", "string"),
        dg.TableColumn("file_rows", "int"),
        dg.TableColumn("expected_rows", "int"),
    ]
)


def reconcile_problems(files: list[ExportFile], rate_card: RateCard | None) -> dict[datetime, list[str]]:
    """Each workbook's reconciliation problems, for the files that have any."""
    found = {f.scheduled_at: reconcile_workbook(f.path, rate_card) for f in files}
    return {at: problems for at, problems in found.items() if problems}


def reconcile_check(files: list[ExportFile], problems: dict[datetime, list[str]]) -> dg.AssetCheckResult:
    listed = [p for found in problems.values() for p in found]
    if listed:
        more = f" (and {len(listed) - PROBLEMS_SHOWN} more)" if len(listed) > PROBLEMS_SHOWN else ""
        description = f"{len(problems)} of {len(files)} workbook(s) do not reconcile, not delivered: " + (
            "; ".join(listed[:PROBLEMS_SHOWN]) + more
        )
    else:
        description = f"{len(files)} workbook(s) reconcile"
    return dg.AssetCheckResult(
        check_name=RECONCILE_CHECK,
        passed=not listed,
        description=description,
        metadata={
            "problem_count": dg.MetadataValue.int(len(listed)),
            "problems": dg.MetadataValue.json({at.isoformat(): found for at, found in problems.items()}),
        },
    )


def summary_of(problems: list[str]) -> str:
    """A workbook's problems in one line, for the audit log."""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"the workbook does not reconcile: {problems[0]}{more}"
