"""Campaign filters: a filtered SMS export reads only its campaigns' rows and costs in proportion.

One run builds a store of `--rows` SMS messages (`--day-rows` per day, one-workspace tenancy, so
every row belongs to the report's workspace) and, for an unfiltered export and exports filtered by
one Engage campaign, one Core campaign and both:

  - the rows the Parquet scan hands on (DuckDB's JSON profile of the export's query: the
    TABLE_SCAN's `rows_scanned`), against the rows of the period and the matching rows counted
    with a separate query;
  - the build time of the whole export (`build_export`, CSV written), median of `--rounds` rounds,
    the cases alternating within each round so machine noise hits them all; the ratio to the
    unfiltered build beside the ratio of the rows.

An OR across the two SMS campaign columns is not a single-column filter, so DuckDB evaluates it
after the scan: the "both" row shows what that costs.

    .venv/bin/python benchmarks/bench_campaign_filters.py [--rows 2000000] [--day-rows 1000000]
        [--rounds 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report_platform.domain.tenancy import DEMO_TENANCY, Organization, Tenancy  # noqa: E402
from report_platform.ingest.load import SourceSettings, ingest_day  # noqa: E402
from report_platform.reports.builders import ExportSpec, build_export  # noqa: E402
from report_platform.reports.builders.sms import sms_query  # noqa: E402
from report_platform.store.duck import reader  # noqa: E402

FIRST_DAY = date(2026, 3, 2)
WORKSPACE = "globex-main"
TENANCY = Tenancy((Organization("globex", "Globex Ltd", (DEMO_TENANCY.workspace(WORKSPACE),)),))
ENGAGE = "Globex Main Promotions"
CORE = "Globex Main Sales Line"
CASES = {
    "unfiltered": {},
    f"engage_campaigns: [{ENGAGE}]": {"engage_campaigns": (ENGAGE,)},
    f"core_campaigns: [{CORE}]": {"core_campaigns": (CORE,)},
    "both (OR of two columns)": {"engage_campaigns": (ENGAGE,), "core_campaigns": (CORE,)},
}


def base_spec(days: int) -> ExportSpec:
    start = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC)
    return ExportSpec("sms_usage", WORKSPACE, None, "America/New_York", start, start + timedelta(days=days))


def scanned(store: Path, spec: ExportSpec, work: Path) -> dict:
    """Rows the Parquet scan passed on for the export's query, from DuckDB's JSON profile."""
    sql, params = sms_query(spec)
    profile = work / "profile.json"
    con = reader(store, threads=2)
    try:
        con.execute("SET enable_profiling = 'json'")
        con.execute(f"SET profiling_output = '{profile}'")
        con.sql(f"SELECT count(*) FROM ({sql})", params=params).fetchall()
        con.execute("SET enable_profiling = 'no_output'")
    finally:
        con.close()
    tree = json.loads(profile.read_text())
    scans = []

    def walk(node: dict) -> None:
        if node.get("type") == "TABLE_SCAN":
            scans.append(node)
        for child in node.get("children", []):
            walk(child)

    for node in tree.get("operator", tree.get("children", [])):
        walk(node)
    filters = []
    for s in scans:
        found = s.get("extra_info", {}).get("Filters", [])
        filters += [f for f in ([found] if isinstance(found, str) else found) if "campaign" in f]
    return {
        "rows_scanned": sum(int(s.get("rows_scanned", s.get("operator_cardinality", 0))) for s in scans),
        "filters": "; ".join(filters).replace("|", "\\|"),
    }


def matching(store: Path, spec: ExportSpec, condition: str, params: dict) -> int:
    """The period's rows that match, counted with a query of its own (not the builder's)."""
    con = reader(store, threads=2)
    try:
        return con.sql(
            "SELECT count(*) FROM sms_messages WHERE workspace_id = $w AND occurred_at >= $s AND occurred_at < $e"
            + condition,
            params={"w": WORKSPACE, "s": spec.start_utc, "e": spec.end_utc, **params},
        ).fetchall()[0][0]
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000, help="SMS rows in the store")
    parser.add_argument("--day-rows", type=int, default=1_000_000, help="SMS rows per generated day")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    days = math.ceil(args.rows / args.day_rows)
    work = Path(tempfile.mkdtemp(prefix="bench-campaigns-", dir=args.workdir))
    store = work / "store"
    try:
        t = time.perf_counter()
        for i in range(days):
            ingest_day(
                store,
                None,
                "sms_messages",
                FIRST_DAY + timedelta(days=i),
                TENANCY,
                SourceSettings(rows_per_day=args.day_rows, seed=3),
            )
        print(f"generated {days} x {args.day_rows:,} SMS rows in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        spec = base_spec(days)
        specs = {name: replace(spec, **filters) for name, filters in CASES.items()}
        conditions = {
            "unfiltered": ("", {}),
            f"engage_campaigns: [{ENGAGE}]": (" AND engage_campaign = $g", {"g": ENGAGE}),
            f"core_campaigns: [{CORE}]": (" AND core_campaign = $c", {"c": CORE}),
            "both (OR of two columns)": (" AND (engage_campaign = $g OR core_campaign = $c)", {"g": ENGAGE, "c": CORE}),
        }
        times: dict[str, list[float]] = {name: [] for name in CASES}
        rows: dict[str, int] = {}
        for _ in range(args.rounds):
            for name, case in specs.items():
                out = work / "out.csv"
                t = time.perf_counter()
                result = build_export(store, case, out, TENANCY, None)  # type: ignore[arg-type]
                times[name].append(time.perf_counter() - t)
                rows[name] = result.rows
                out.unlink()
        total = rows["unfiltered"]
        base = statistics.median(times["unfiltered"])
        lines = [
            f"SMS export of {total:,} rows ({days} day(s) of {args.day_rows:,}), median of {args.rounds} rounds",
            "",
            "| export | rows written | rows matching (own count) | rows the scan passed on | share of rows "
            "| build time | time vs unfiltered | campaign filter in the Parquet scan |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for name, case in specs.items():
            expected = matching(store, case, *conditions[name])
            if rows[name] != expected:
                raise SystemExit(f"{name}: {rows[name]:,} rows written, {expected:,} match")
            scan = scanned(store, case, work)
            median = statistics.median(times[name])
            lines.append(
                f"| {name} | {rows[name]:,} | {expected:,} | {scan['rows_scanned']:,} | {rows[name] / total:.1%} "
                f"| {median:.2f} s | {median / base:.2f}x | {scan['filters'] or 'none'} |"
            )
            print(f"{name}: {times[name]} {scan}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nCampaign filters, {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
