"""`make bench`: every benchmark in turn; their Markdown goes to stdout and bench-out/latest.md.

Benchmarks compare against a baseline measured side by side in the same run (the machines are
shared and noisy), so read the ratios first. Copy the figures into BENCHMARKS.md with the date.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = [
    ["benchmarks/bench_ingest.py"],
    ["benchmarks/bench_exports.py"],
    ["benchmarks/bench_formats.py"],
    ["benchmarks/bench_s3_store.py"],
    ["benchmarks/bench_manifest_polling.py"],
    ["benchmarks/bench_campaign_filters.py"],
    ["benchmarks/bench_sftp.py"],
    ["benchmarks/bench_pgp.py"],
    ["benchmarks/bench_scale.py"],
    ["benchmarks/bench_run_overhead.py", "--cold", "--compare-multiprocess", "--burst", "200"],
    ["benchmarks/bench_pg_storage.py"],
    ["benchmarks/bench_burst.py", "--reports", "1000", "--storage", "postgres"],
    ["benchmarks/bench_console.py"],
    ["benchmarks/bench_run_now.py", "--dequeue-intervals", "5,file"],
    ["benchmarks/fault_matrix.py"],
    ["benchmarks/process_faults.py"],
    ["benchmarks/daemon_kills.py", "--repetitions", "10"],
    ["benchmarks/bench_production_load.py"],
]


def main() -> int:
    out = ROOT / "bench-out"
    out.mkdir(exist_ok=True)
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    header = (
        f"# Benchmarks {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
        f"Machine: {platform.node()}, {platform.machine()}, {cpu}, {__import__('os').cpu_count()} cores, "
        f"Python {platform.python_version()}\n"
    )
    parts = [header]
    failed = 0
    for bench in BENCHES:
        if not (ROOT / bench[0]).exists():
            continue
        print(f"== {' '.join(bench)}", flush=True)
        t = time.time()
        result = subprocess.run([sys.executable, *bench], cwd=ROOT, capture_output=True, text=True)
        print(result.stdout, flush=True)
        if result.returncode != 0:
            failed += 1
            print(result.stderr[-3000:], file=sys.stderr)
        parts.append(
            f"\n<!-- {' '.join(bench)}: {time.time() - t:.0f} s, exit {result.returncode} -->\n{result.stdout}"
        )
    (out / "latest.md").write_text("\n".join(parts))
    print(f"wrote {out / 'latest.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
