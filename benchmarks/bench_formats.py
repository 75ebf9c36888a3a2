"""Export formats against DuckDB's own writers, side by side in one run.

  (a) our SMS export to `parquet` vs DuckDB `COPY (same typed query) TO ... (FORMAT parquet)`
  (b) our SMS export to `csv.gz` vs DuckDB `COPY (same query) TO ... (HEADER, COMPRESSION gzip)`

Both sides read the same generated store with the same DuckDB settings (`build_connection`);
rounds alternate ours/theirs and the medians are compared. Prints Markdown.

    .venv/bin/python benchmarks/bench_formats.py [--rows 2000000] [--day-rows 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_exports import FIRST_DAY, TENANCY, generate, spec  # noqa: E402

from report_platform.reports.builders import build_export  # noqa: E402
from report_platform.reports.builders.csv_writer import build_connection  # noqa: E402
from report_platform.reports.builders.sms import sms_query  # noqa: E402

COPY_OPTIONS = {
    "parquet": "(FORMAT parquet, COMPRESSION snappy)",
    "csv.gz": "(HEADER, DELIMITER ',', COMPRESSION gzip)",
}


def compare(store: Path, work: Path, file_format: str, days: int, rounds: int) -> dict:
    export = spec("sms_usage", days)
    export = type(export)(**{**export.__dict__, "format": file_format})
    ext = ".parquet" if file_format == "parquet" else ".csv.gz"
    ours, theirs = [], []
    for _ in range(rounds):
        out = work / f"ours{ext}"
        t = time.perf_counter()
        result = build_export(store, export, out, TENANCY, None)  # type: ignore[arg-type]
        ours.append(time.perf_counter() - t)
        rows, ours_bytes = result.rows, result.bytes
        out.unlink()
        target = work / f"copy{ext}"
        sql, params = sms_query(export, file_format)
        con, spill = build_connection(store)
        t = time.perf_counter()
        con.execute(f"COPY ({sql}) TO '{target}' {COPY_OPTIONS[file_format]}", params)
        theirs.append(time.perf_counter() - t)
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
        copy_bytes = target.stat().st_size
        target.unlink()
    o, c = statistics.median(ours), statistics.median(theirs)
    return {
        "format": file_format,
        "rows": rows,
        "ours": o,
        "copy": c,
        "ratio": o / c,
        "ours_all": ours,
        "copy_all": theirs,
        "ours_mb": ours_bytes / 1e6,
        "copy_mb": copy_bytes / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000, help="SMS rows exported")
    parser.add_argument("--day-rows", type=int, default=1_000_000, help="SMS rows per generated day")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-formats-", dir=args.workdir))
    try:
        days = math.ceil(args.rows / args.day_rows)
        generated = generate(work / "store", "sms_messages", days, args.day_rows, FIRST_DAY)
        results = [compare(work / "store", work, f, days, args.rounds) for f in ("parquet", "csv.gz")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"## Export formats (SMS, {days} day(s) of {args.day_rows:,} rows generated in {generated:.0f} s)\n")
    print("| format | rows | ours | DuckDB COPY | ratio | goal | ours MB | COPY MB | rounds ours / COPY (s) |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---|")
    for r in results:
        goal = "<= 1.2x" if r["format"] == "parquet" else "(measured)"
        rounds = " / ".join(f"{a:.1f}" for a in r["ours_all"]) + " vs " + " / ".join(f"{b:.1f}" for b in r["copy_all"])
        print(
            f"| {r['format']} | {r['rows']:,} | {r['ours']:.1f} s | {r['copy']:.1f} s | {r['ratio']:.2f}x | {goal} "
            f"| {r['ours_mb']:.0f} | {r['copy_mb']:.0f} | {rounds} |"
        )


if __name__ == "__main__":
    main()
