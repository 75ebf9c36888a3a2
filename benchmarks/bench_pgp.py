"""OpenPGP encryption: our path (python-gnupg feeding gpg, `pgp.encrypt_file`) against `gpg --encrypt`
on the same file, side by side in one run. Markdown on stdout.

    python benchmarks/bench_pgp.py [--mb 500] [--repeat 3]

The file is CSV-like text (report files compress, and gpg compresses by default in both paths).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from report_platform.delivery import pgp  # noqa: E402


def _key(work: Path) -> tuple[Path, str]:
    home = work / "keyhome"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--homedir", str(home), "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run(
        [*gpg, "--quick-gen-key", "Bench <bench@example.com>", "future-default", "default", "never"],
        check=True,
        capture_output=True,
    )
    public = subprocess.run([*gpg, "--armor", "--export", "bench@example.com"], check=True, capture_output=True).stdout
    return home, public.decode()


def _data(path: Path, megabytes: int) -> None:
    line = b"2026-11-28T06:00:00-05:00,Delivered,+15551234567,+15557654321,Acme East Sales Line,,Hello there,1,0.0025\n"
    block = line * (1024 * 1024 // len(line) + 1)
    rng = os.urandom  # a little noise so the compressor has real work
    with path.open("wb") as out:
        for _ in range(megabytes):
            out.write(block[: 1024 * 1024 - 16] + rng(8).hex().encode())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-pgp-"))
    try:
        home, public = _key(work)
        source = work / "report.csv"
        _data(source, args.mb)
        ours: list[float] = []
        baseline: list[float] = []
        for round_ in range(args.repeat):
            out = work / f"ours-{round_}.pgp"
            t = time.perf_counter()
            pgp.encrypt_file(source, out, [public])
            ours.append(time.perf_counter() - t)
            out.unlink()
            out = work / f"gpg-{round_}.pgp"
            t = time.perf_counter()
            subprocess.run(
                [
                    "gpg",
                    "--batch",
                    "--homedir",
                    str(home),
                    "--trust-model",
                    "always",
                    "--encrypt",
                    "--recipient",
                    "bench@example.com",
                    "--output",
                    str(out),
                    str(source),
                ],
                check=True,
                capture_output=True,
            )
            baseline.append(time.perf_counter() - t)
            out.unlink()
        mine, theirs = statistics.median(ours), statistics.median(baseline)
        print(f"## OpenPGP encryption of {args.mb} MB (median of {args.repeat})\n")
        print("| path | seconds | MB/s |\n|---|---:|---:|")
        ours_label = "ours: pgp.encrypt_file (python-gnupg -> gpg stdin, temp GNUPGHOME, key check)"
        print(f"| {ours_label} | {mine:.2f} | {args.mb / mine:.0f} |")
        print(f"| baseline: gpg --encrypt FILE (keyring ready) | {theirs:.2f} | {args.mb / theirs:.0f} |")
        print(f"\nratio ours / gpg: **{mine / theirs:.2f}**")
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(work / "keyhome"), "--kill", "all"], capture_output=True, check=False
        )
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
