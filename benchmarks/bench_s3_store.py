"""A report build from the usage store on S3 against the same build from local disk.

One run generates the same SMS days (same seed) into a local store and into a store under an S3
prefix served by moto on 127.0.0.1 (its own process, as an S3 endpoint would be), then builds the
same SMS CSV from each, rounds alternating so machine noise hits both:

  (a) the whole stored period (`--days` days of `--day-rows` rows);
  (b) one day of it, which on S3 opens only that day's file (the others are skipped by the
      dataset's day guarantees, not read).

The files must be byte-identical (same SHA-256); the ratio S3 / local of the median times is the
figure to read. moto keeps objects in memory and answers over loopback, so this measures the
S3 read path's own cost (listing, ranged GETs through pyarrow, Arrow hand-over to DuckDB), not a
network's latency or bandwidth.

    .venv/bin/python benchmarks/bench_s3_store.py [--days 4] [--day-rows 250000] [--rounds 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report_platform.domain.tenancy import DEMO_TENANCY, Organization, Tenancy  # noqa: E402
from report_platform.ingest.load import SourceSettings, ingest_day  # noqa: E402
from report_platform.reports.builders import ExportSpec, build_export  # noqa: E402
from report_platform.settings import S3Location  # noqa: E402
from report_platform_devservers.standins.s3 import moto_process  # noqa: E402

FIRST_DAY = date(2026, 3, 2)
WORKSPACE = "globex-main"
TENANCY = Tenancy((Organization("globex", "Globex Ltd", (DEMO_TENANCY.workspace(WORKSPACE),)),))
BUCKET = "bench-usage-store"


def spec(first: date, days: int) -> ExportSpec:
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return ExportSpec("sms_usage", WORKSPACE, None, "America/New_York", start, start + timedelta(days=days))


def fill(store: Path | S3Location, days: int, day_rows: int) -> float:
    t = time.perf_counter()
    for i in range(days):
        ingest_day(
            store, None, "sms_messages", FIRST_DAY + timedelta(days=i), TENANCY, SourceSettings(rows_per_day=day_rows)
        )
    return time.perf_counter() - t


def timed_build(store: Path | S3Location, export: ExportSpec, out: Path) -> tuple[float, int, str]:
    t = time.perf_counter()
    result = build_export(store, export, out, TENANCY, None)  # type: ignore[arg-type]
    seconds = time.perf_counter() - t
    out.unlink()
    return seconds, result.rows, result.sha256


def compare(local: Path, remote: S3Location, export: ExportSpec, work: Path, rounds: int) -> dict:
    times: dict[str, list[float]] = {"local": [], "s3": []}
    shas: dict[str, set[str]] = {"local": set(), "s3": set()}
    rows = 0
    for i in range(rounds):
        order = (("local", local), ("s3", remote)) if i % 2 == 0 else (("s3", remote), ("local", local))
        for name, store in order:
            seconds, rows, sha = timed_build(store, export, work / f"{name}.csv")
            times[name].append(seconds)
            shas[name].add(sha)
    if len(shas["local"] | shas["s3"]) != 1:
        raise SystemExit(f"the builds differ: {shas}")
    local_s, s3_s = statistics.median(times["local"]), statistics.median(times["s3"])
    return {"rows": rows, "local": local_s, "s3": s3_s, "ratio": s3_s / local_s, "all": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=4, help="days of SMS in the store")
    parser.add_argument("--day-rows", type=int, default=250_000, help="SMS rows per day")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    # moto accepts any credentials; these placeholders reach boto3's and pyarrow's chains.
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    work = Path(tempfile.mkdtemp(prefix="bench-s3-store-", dir=args.workdir))
    lines: list[str] = []
    try:
        with moto_process() as endpoint:
            import boto3

            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
            remote = S3Location(BUCKET, "usage", endpoint)
            local = work / "store"
            wrote_local = fill(local, args.days, args.day_rows)
            wrote_s3 = fill(remote, args.days, args.day_rows)
            print(f"ingest: local {wrote_local:.1f} s, s3 {wrote_s3:.1f} s", file=sys.stderr, flush=True)
            whole = compare(local, remote, spec(FIRST_DAY, args.days), work, args.rounds)
            print(f"whole period: {whole}", file=sys.stderr, flush=True)
            one_day = compare(local, remote, spec(FIRST_DAY + timedelta(days=1), 1), work, args.rounds)
            print(f"one day: {one_day}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines += [
        "| SMS CSV build | rows | local disk | S3 (moto, loopback) | ratio S3 / local |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, fig in ((f"whole store, {args.days} days", whole), ("one day of the store", one_day)):
        lines.append(
            f"| {label}, median of {args.rounds} | {fig['rows']:,} | {fig['local']:.2f} s | {fig['s3']:.2f} s "
            f"| {fig['ratio']:.2f}x |"
        )
    lines += [
        "",
        f"Ingest of the same {args.days} x {args.day_rows:,} SMS rows: local {wrote_local:.1f} s, "
        f"S3 {wrote_s3:.1f} s ({wrote_s3 / wrote_local:.2f}x).",
    ]
    print(f"\nUsage store on S3 vs local disk, {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
