"""Export builders against DuckDB's own CSV writer, and their peak memory as volume grows.

One run builds a store in a temporary folder with the synthetic generator (a one-workspace
tenancy, so every generated row belongs to the report's workspace) and measures:

  (a)/(b) our SMS CSV builder vs DuckDB `COPY (same query) TO csv` for `--rows` rows, rounds
          alternating so machine noise hits both; ratio of the medians (goal <= 1.1x);
  (c)     peak memory (VmHWM of a child process that only builds) for SMS reports of 1, 5 and
          10 day partitions of `--day-rows` rows each (goal < 1 GiB and flat with row count);
  (d)     Aegis with event details for `--aegis-transactions` transactions over `--aegis-days`
          days, rounds alternating: our builder reading the rendered `aegis_interactions`
          partitions; DuckDB `COPY (same query) TO csv` of each of the builder's window queries
          (ratio of the medians, goal <= 1.5x); and our builder on a copy of the store without
          `aegis_interactions`, which aggregates the events as exports did before that table.
          Then time and peak memory of a child process that only builds, with and without events.

    .venv/bin/python benchmarks/bench_exports.py [--rows 2000000] [--day-rows 1000000]
        [--memory-days 1,5,10] [--aegis-transactions 1000000] [--aegis-days 4] [--rounds 3]
        [--workdir DIR]

`--rows 0` skips the SMS comparison and `--memory-days ""` the SMS memory runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report_platform.domain.tenancy import DEMO_TENANCY, Organization, Tenancy  # noqa: E402
from report_platform.ingest.generator import SOURCE_SHARE  # noqa: E402
from report_platform.ingest.interactions import refresh_interactions_day  # noqa: E402
from report_platform.ingest.load import SourceSettings, ingest_day  # noqa: E402
from report_platform.reports.builders import ExportSpec, aegis, build_export  # noqa: E402
from report_platform.reports.builders.csv_writer import build_connection  # noqa: E402
from report_platform.reports.builders.sms import sms_query  # noqa: E402

FIRST_DAY = date(2026, 3, 2)
WORKSPACE = "globex-main"
TENANCY = Tenancy((Organization("globex", "Globex Ltd", (DEMO_TENANCY.workspace(WORKSPACE),)),))
GIB = 1 << 30


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def spec(type_: str, days: int, *, first: date = FIRST_DAY, events: bool = False) -> ExportSpec:
    start = day_start(first)
    return ExportSpec(
        type_,
        WORKSPACE,
        None,
        "America/New_York",
        start,
        start + timedelta(days=days),
        include_event_details=events,
    )


def generate(store: Path, source: str, days: int, rows_per_day: int, first: date) -> float:
    t = time.perf_counter()
    for i in range(days):
        ingest_day(
            store, None, source, first + timedelta(days=i), TENANCY, SourceSettings(rows_per_day=rows_per_day, seed=3)
        )
    return time.perf_counter() - t


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(args: argparse.Namespace) -> None:
    """Build one report and print its figures as JSON (run in a fresh process)."""
    first = date.fromisoformat(args.first)
    out = Path(args.out)
    t = time.perf_counter()
    result = build_export(
        Path(args.store), spec(args.child, args.days, first=first, events=args.events), out, TENANCY, None
    )  # type: ignore[arg-type]
    seconds = time.perf_counter() - t
    print(json.dumps({"rows": result.rows, "bytes": result.bytes, "seconds": seconds, "peak": peak_rss_bytes()}))
    out.unlink()


def run_child(store: Path, type_: str, days: int, first: date, out: Path, events: bool = False) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        type_,
        "--store",
        str(store),
        "--days",
        str(days),
        "--first",
        first.isoformat(),
        "--out",
        str(out),
    ]
    if events:
        cmd.append("--events")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"build of {type_} ({days} days) failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare_with_copy(store: Path, work: Path, rows: int, day_rows: int, rounds: int) -> dict:
    days = math.ceil(rows / day_rows)
    export = spec("sms_usage", days)
    ours, copy = [], []
    n_rows = 0
    for _ in range(rounds):
        out = work / "ours.csv"
        t = time.perf_counter()
        result = build_export(store, export, out, TENANCY, None)  # type: ignore[arg-type]
        ours.append(time.perf_counter() - t)
        n_rows, ours_bytes = result.rows, result.bytes
        out.unlink()
        target = work / "copy.csv"
        sql, params = sms_query(export)
        con, spill = build_connection(store)
        t = time.perf_counter()
        con.execute(f"COPY ({sql}) TO '{target}' (HEADER, DELIMITER ',')", params)
        copy.append(time.perf_counter() - t)
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
        copy_bytes = target.stat().st_size
        target.unlink()
    o, c = statistics.median(ours), statistics.median(copy)
    return {
        "rows": n_rows,
        "ours": o,
        "copy": c,
        "ratio": o / c,
        "ours_all": ours,
        "copy_all": copy,
        "ours_mb": ours_bytes / 1e6,
        "copy_mb": copy_bytes / 1e6,
    }


def aegis_window_queries(store: Path, export: ExportSpec) -> list[tuple[str, dict]]:
    """The builder's own (sql, params) per window of an Aegis CSV export."""
    _, queries = aegis.aegis_queries(store, export)
    con, spill = build_connection(store)
    try:
        return list(queries(con))
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def compare_aegis_with_copy(store: Path, work: Path, days: int, first: date, rounds: int) -> dict:
    """Rounds alternate: our build (rendered days), DuckDB COPY of the same window queries, our
    build of a store copy without `aegis_interactions` (the aggregation)."""
    export = spec("aegis_interaction", days, first=first, events=True)
    legacy = work / "legacy-store"
    for table in ("aegis_transactions", "aegis_events"):  # all the aggregation reads
        shutil.copytree(store / table, legacy / table)
    windows = aegis_window_queries(store, export)
    assert all("$interactions" in sql for sql, _ in windows), "a day is not rendered"
    ours, copy, old = [], [], []
    # CPU seconds of this process beside the wall clock (all three run here): steadier under load.
    cpu: dict[str, list[float]] = {"ours": [], "copy": [], "old": []}
    for _ in range(rounds):
        out = work / "aegis.csv"
        t, c = time.perf_counter(), time.process_time()
        result = build_export(store, export, out, TENANCY, None)  # type: ignore[arg-type]
        ours.append(time.perf_counter() - t)
        cpu["ours"].append(time.process_time() - c)
        ours_bytes, rows = result.bytes, result.rows
        out.unlink()

        con, spill = build_connection(store)
        copy_bytes = 0
        t, c = time.perf_counter(), time.process_time()
        for i, (sql, params) in enumerate(aegis_window_queries(store, export)):
            target = work / f"copy-{i}.csv"
            con.execute(f"COPY ({sql}) TO '{target}' (HEADER {str(i == 0).lower()}, DELIMITER ',')", params)
        copy.append(time.perf_counter() - t)
        cpu["copy"].append(time.process_time() - c)
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
        for part in work.glob("copy-*.csv"):
            copy_bytes += part.stat().st_size
            part.unlink()

        t, c = time.perf_counter(), time.process_time()
        before = build_export(legacy, export, out, TENANCY, None)  # type: ignore[arg-type]
        old.append(time.perf_counter() - t)
        cpu["old"].append(time.process_time() - c)
        assert (before.bytes, before.sha256) == (result.bytes, result.sha256), "the two paths differ"
        out.unlink()
    shutil.rmtree(legacy, ignore_errors=True)
    o, c, a = statistics.median(ours), statistics.median(copy), statistics.median(old)
    return {
        "rows": rows,
        "windows": len(windows),
        "ours": o,
        "copy": c,
        "old": a,
        "ratio": o / c,
        "ours_all": ours,
        "copy_all": copy,
        "old_all": old,
        "cpu": {side: statistics.median(times) for side, times in cpu.items()},
        "cpu_all": cpu,
        "ours_mb": ours_bytes / 1e6,
        "copy_mb": copy_bytes / 1e6,
    }


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000, help="SMS rows for the COPY comparison")
    parser.add_argument("--day-rows", type=int, default=1_000_000, help="SMS rows per generated day")
    parser.add_argument("--memory-days", default="1,5,10", help="day counts of the memory runs")
    parser.add_argument("--aegis-transactions", type=int, default=1_000_000)
    parser.add_argument("--aegis-days", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--store", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--days", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--first", default=FIRST_DAY.isoformat(), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--events", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    memory_days = [int(d) for d in args.memory_days.split(",") if d]
    sms_days = max([math.ceil(args.rows / args.day_rows) if args.rows else 0, *memory_days])
    work = Path(tempfile.mkdtemp(prefix="bench-exports-", dir=args.workdir))
    store = work / "store"
    lines = []
    print(f"load average at start: {load_average()}", file=sys.stderr, flush=True)
    try:
        if sms_days:
            gen = generate(store, "sms_messages", sms_days, args.day_rows, FIRST_DAY)
            print(f"generated {sms_days} x {args.day_rows:,} SMS rows in {gen:.0f} s", file=sys.stderr, flush=True)

        lines += [
            "| measurement | rows | ours | DuckDB COPY | ratio | goal |",
            "|---|---:|---:|---:|---:|---|",
        ]
        if args.rows:
            cmp = compare_with_copy(store, work, args.rows, args.day_rows, args.rounds)
            print(f"compare: {cmp}", file=sys.stderr, flush=True)
            lines.append(
                f"| SMS CSV, {cmp['ours_mb']:.0f} MB (COPY {cmp['copy_mb']:.0f} MB), median of {args.rounds} "
                f"| {cmp['rows']:,} | {cmp['ours']:.2f} s | {cmp['copy']:.2f} s | {cmp['ratio']:.2f}x | <= 1.1x |"
            )
        builds = [
            "",
            "| build (own process) | rows | time | peak memory (VmHWM) | goal |",
            "|---|---:|---:|---:|---|",
        ]
        for days in memory_days:
            fig = run_child(store, "sms_usage", days, FIRST_DAY, work / "mem.csv")
            print(f"sms {days} days: {fig}", file=sys.stderr, flush=True)
            builds.append(
                f"| SMS CSV, {days} day(s) | {fig['rows']:,} | {fig['seconds']:.1f} s "
                f"| {fig['peak'] / 2**20:.0f} MiB | < 1 GiB, flat |"
            )

        if args.aegis_transactions:
            per_day = math.ceil(args.aegis_transactions / args.aegis_days)
            rows_per_day = math.ceil(per_day / SOURCE_SHARE["aegis_transactions"])
            aegis_first = FIRST_DAY + timedelta(days=sms_days)
            gen = generate(store, "aegis_transactions", args.aegis_days, rows_per_day, aegis_first)
            t = time.perf_counter()
            for i in range(args.aegis_days):
                refresh_interactions_day(store, aegis_first + timedelta(days=i), force=True)
            render = time.perf_counter() - t
            print(
                f"ingested aegis in {gen:.1f} s, of which rendering aegis_interactions about {render:.1f} s "
                "(measured again on its own)",
                file=sys.stderr,
                flush=True,
            )
            cmp = compare_aegis_with_copy(store, work, args.aegis_days, aegis_first, args.rounds)
            print(f"aegis compare: {cmp}", file=sys.stderr, flush=True)
            cpu = cmp["cpu"]
            lines += [
                f"| Aegis CSV with event details, {cmp['ours_mb']:.0f} MB (COPY {cmp['copy_mb']:.0f} MB in "
                f"{cmp['windows']} window files), median of {args.rounds} | {cmp['rows']:,} | {cmp['ours']:.2f} s "
                f"| {cmp['copy']:.2f} s | {cmp['ratio']:.2f}x | <= 1.5x |",
                f"| same, CPU seconds of the process | {cmp['rows']:,} | {cpu['ours']:.2f} s | {cpu['copy']:.2f} s "
                f"| {cpu['ours'] / cpu['copy']:.2f}x | |",
                f"| same export aggregating the events (store without aegis_interactions) | {cmp['rows']:,} "
                f"| {cmp['old']:.2f} s (CPU {cpu['old']:.2f} s) | {cmp['copy']:.2f} s "
                f"| {cmp['old'] / cmp['copy']:.2f}x | |",
            ]
            for events in (False, True):
                fig = run_child(
                    store, "aegis_interaction", args.aegis_days, aegis_first, work / "aegis.csv", events=events
                )
                print(f"aegis events={events}: {fig}", file=sys.stderr, flush=True)
                label = "with event details" if events else "without event details"
                builds.append(
                    f"| Aegis CSV {label}, {fig['bytes'] / 1e6:.0f} MB | {fig['rows']:,} transactions "
                    f"| {fig['seconds']:.1f} s | {fig['peak'] / 2**20:.0f} MiB | < 1 GiB |"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at end: {load_average()}", file=sys.stderr, flush=True)
    print(f"\nExports, {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load_average()}\n")
    print("\n".join(lines + builds))


if __name__ == "__main__":
    main()
