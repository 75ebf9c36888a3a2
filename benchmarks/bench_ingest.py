"""Ingestion of one day from the landing zone, beside DuckDB's own bulk load.

Both sides read the same landing files in the same run: ours validates every row (types, day,
workspace, enumerations, duplicate ids), quarantines bad ones and writes the day's Parquet
partitions atomically; DuckDB's is `CREATE TABLE … AS SELECT * FROM read_csv/read_parquet(file)`
into a database file for each landing file, with no validation. Rounds alternate so machine noise
hits every side.

`--source aegis_transactions` lands `--rows` transactions and their events (5-40 each) and adds a
third side: our ingest without rendering the day's `aegis_interactions` (the ingest as it was
before that table), so its cost shows beside the rest.

    .venv/bin/python benchmarks/bench_ingest.py [--rows 1000000] [--rounds 3] [--format csv]
        [--source sms_messages|aegis_transactions]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from contextlib import nullcontext
from datetime import date
from pathlib import Path
from unittest import mock

import duckdb

from report_platform.domain.tenancy import DEMO_TENANCY
from report_platform.ingest import load
from report_platform.ingest.generator import SOURCE_SHARE
from report_platform.ingest.load import SourceSettings, ingest_day, write_landing_day

DAY = date(2026, 3, 8)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the source's table (transactions)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--format", choices=["csv", "parquet", "jsonl"], default="csv")
    parser.add_argument("--source", choices=["sms_messages", "aegis_transactions"], default="sms_messages")
    args = parser.parse_args()
    aegis = args.source == "aegis_transactions"
    rows_per_day = math.ceil(args.rows / SOURCE_SHARE[args.source])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        landing = root / "landing"
        paths = write_landing_day(landing, args.source, DAY, DEMO_TENANCY, rows_per_day, seed=1, fmt=args.format)
        size_mb = sum(p.stat().st_size for p in paths) / 1e6
        sides = {"ours": [], "without": [], "duckdb": []} if aegis else {"ours": [], "duckdb": []}
        # CPU seconds of this process (all its threads) beside the wall clock: on a loaded machine
        # they move far less than the wall clock does.
        cpu: dict[str, list[float]] = {side: [] for side in sides}
        loaded: dict[str, int] = {}
        print(f"load average at start: {load_average()}", flush=True)
        for r in range(args.rounds):
            for side in sides:
                t, c = time.perf_counter(), time.process_time()
                if side == "duckdb":
                    db = root / f"bulk{r}.duckdb"
                    con = duckdb.connect(str(db))
                    reader = {"csv": "read_csv", "parquet": "read_parquet", "jsonl": "read_json"}[args.format]
                    for i, path in enumerate(paths):
                        con.execute(f"CREATE TABLE t{i} AS SELECT * FROM {reader}('{path}')")
                    con.close()
                    sides[side].append(time.perf_counter() - t)
                    cpu[side].append(time.process_time() - c)
                    db.unlink()
                    continue
                with mock.patch.object(load, "_derive_interactions") if side == "without" else nullcontext():
                    result = ingest_day(
                        root / "store", landing, args.source, DAY, DEMO_TENANCY, SourceSettings(mode="landing")
                    )
                sides[side].append(time.perf_counter() - t)
                cpu[side].append(time.process_time() - c)
                assert result.quarantined == 0
                loaded = result.rows
        medians = {side: statistics.median(times) for side, times in sides.items()}
        cpus = {side: statistics.median(times) for side, times in cpu.items()}
        rows = loaded[args.source]
        files = " + ".join(p.parent.name for p in paths)
        events = f", {loaded['aegis_events']:,} events" if aegis else ""
        print(
            f"## Ingestion: {rows:,} {args.source} rows{events}, landing "
            f"{args.format} ({files}, {size_mb:.0f} MB), {args.rounds} rounds, median; load average {load_average()}"
        )
        print("| what | seconds | rows/s | CPU seconds |")
        print("|---|---|---|---|")
        o, d = medians["ours"], medians["duckdb"]
        label = "validate + quarantine + atomic partitions" + (" + render aegis_interactions" if aegis else "")
        print(f"| report-platform ingest ({label}) | {o:.2f} | {rows / o:,.0f} | {cpus['ours']:.2f} |")
        if aegis:
            w = medians["without"]
            print(f"| same without rendering aegis_interactions | {w:.2f} | {rows / w:,.0f} | {cpus['without']:.2f} |")
        print(
            f"| DuckDB CREATE TABLE AS SELECT * FROM {args.format} (no validation) | {d:.2f} | {rows / d:,.0f} "
            f"| {cpus['duckdb']:.2f} |"
        )
        print(f"| ratio ours / DuckDB (rows/s) | {d / o:.2f}× | | |")
        if aegis:
            print(f"| ratio with / without rendering | {o / w:.2f}× | | {cpus['ours'] / cpus['without']:.2f}× |")
        for side, times in sides.items():
            print(f"{side}: {', '.join(f'{x:.2f}' for x in times)} s; CPU {', '.join(f'{x:.2f}' for x in cpu[side])} s")


if __name__ == "__main__":
    main()
