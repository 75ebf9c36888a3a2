"""Ingestion of a 1 M-row SMS day from the landing zone, beside DuckDB's own bulk load.

Both sides read the same landing file in the same run: ours validates every row (types, day,
workspace, enumerations, duplicate ids), quarantines bad ones and writes the day's Parquet
partition atomically; DuckDB's is `CREATE TABLE … AS SELECT * FROM read_csv/read_parquet(file)`
into a database file, with no validation. Rounds alternate so machine noise hits both.

    .venv/bin/python benchmarks/bench_ingest.py [--rows 1000000] [--rounds 3] [--format csv]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb

from report_platform.domain.tenancy import DEMO_TENANCY
from report_platform.ingest.load import SourceSettings, ingest_day, write_landing_day

DAY = date(2026, 3, 8)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--format", choices=["csv", "parquet", "jsonl"], default="csv")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        landing = root / "landing"
        (path,) = write_landing_day(landing, "sms_messages", DAY, DEMO_TENANCY, args.rows, seed=1, fmt=args.format)
        size_mb = path.stat().st_size / 1e6
        ours, theirs = [], []
        for r in range(args.rounds):
            t = time.perf_counter()
            result = ingest_day(
                root / "store",
                landing,
                "sms_messages",
                DAY,
                DEMO_TENANCY,
                SourceSettings(mode="landing"),
            )
            ours.append(time.perf_counter() - t)
            assert result.rows["sms_messages"] == args.rows and result.quarantined == 0
            db = root / f"bulk{r}.duckdb"
            t = time.perf_counter()
            con = duckdb.connect(str(db))
            reader = {"csv": "read_csv", "parquet": "read_parquet", "jsonl": "read_json"}[args.format]
            con.execute(f"CREATE TABLE sms AS SELECT * FROM {reader}('{path}')")
            con.close()
            theirs.append(time.perf_counter() - t)
            db.unlink()
        o, d = statistics.median(ours), statistics.median(theirs)
        print(
            f"## Ingestion: {args.rows:,} SMS rows, landing {args.format} ({size_mb:.0f} MB), "
            f"{args.rounds} rounds, median"
        )
        print("| what | seconds | rows/s |")
        print("|---|---|---|")
        print(f"| report-platform ingest (validate + quarantine + atomic partition) | {o:.2f} | {args.rows / o:,.0f} |")
        print(
            f"| DuckDB CREATE TABLE AS SELECT * FROM {args.format} (no validation) | {d:.2f} | {args.rows / d:,.0f} |"
        )
        print(f"| ratio ours / DuckDB (rows/s) | {d / o:.2f}× | |")


if __name__ == "__main__":
    main()
