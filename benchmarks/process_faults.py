"""Process faults, repeated: a real run worker SIGKILLed at a known point, N times per fault.

    .venv/bin/python benchmarks/process_faults.py [--repetitions 10] [--rows-per-day 660000] [--out FILE] [--only a,d1]

The faults are those of `report_platform_tests/faults/` (scenarios.py), on one platform: a data
folder with a usage store, a registry and a Dagster instance configured by the project's own
dagster.yaml. Every run is queued and launched by the run queue's daemon code with ForkRunLauncher;
after the kill, run monitoring fails the run, the failure sensor records it and Dagster's run
retries launch the retry (harness.py). The servers are real and listen on 127.0.0.1: an aiosmtpd
relay, OpenSSH's sshd, moto's S3 behind a proxy. Each repetition uses a report of its own (its own
ledger scope, archive folder, SFTP folder or bucket), and its copies are counted at the server.

Fault b uploads a weekly report of `--rows-per-day` SMS a day (660,000: about 200 MB); the others
use the last day of that week (about 25 MB) or, for a send cut off before its confirmation by
e-mail or S3, a small day. The delivery lease is 3 s (harness.LEASE_SECONDS) instead of 120 s, so
that a retry takes a dead worker's claim over after seconds.

Prints a Markdown table (and writes it to --out); exits 1 if any repetition misses its target.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report_platform_tests.faults import scenarios  # noqa: E402
from report_platform_tests.faults.harness import WEEK, Outcome, Store  # noqa: E402

KILLED = "is no longer running"
UNKNOWN = "never resent automatically"


@dataclass(frozen=True)
class Fault:
    """One fault, how to produce it, and what every repetition must show."""

    key: str
    title: str
    run: Callable[[scenarios.Rig], Outcome]
    copies: str  # where the one complete copy must be (at most one, anywhere)
    runs: tuple[str, ...]  # Dagster run statuses, first to last
    ledger: str  # the one ledger row's final state
    audit: tuple[str, ...]  # what each audit-log run's error must say, in order ("" for none)
    verdict: str
    extra: Callable[[Outcome], list[str]] = lambda outcome: []


def _receipt_says(key: str) -> Callable[[Outcome], list[str]]:
    def check(outcome: Outcome) -> list[str]:
        receipts = outcome.notes.get("receipts") or []
        if not receipts or not receipts[-1].get("extra", {}).get(key):
            return [f"the audit log's receipt does not say {key}"]
        return []

    return check


def _one_notice(outcome: Outcome) -> list[str]:
    count = outcome.notes.get("failure notices")
    return [] if count == 1 else [f"{count} failure notices to the owner, expected 1"]


def _mail_both(outcome: Outcome) -> list[str]:
    return [f"{n} copies {where}" for where, n in outcome.copies.items() if n != 1]


FAULTS = [
    Fault(
        "a",
        "worker SIGKILLed while building (frozen while its export's temporary file grows); SFTP",
        scenarios.killed_while_building,
        "sftp",
        ("FAILURE", "SUCCESS"),
        "confirmed",
        (KILLED, ""),
        "the retry built and delivered one copy; the partial build only under a temporary name",
    ),
    Fault(
        "b",
        "worker SIGKILLed mid SFTP upload (sshd frozen while the `.part-` file grows)",
        lambda rig: scenarios.killed_mid_sftp_upload(rig, period="previous_week"),
        "sftp",
        ("FAILURE", "SUCCESS"),
        "confirmed",
        (KILLED, ""),
        "no file under the final name until the retry; one file, right bytes, no `.part-` left",
    ),
    Fault(
        "c",
        "worker SIGKILLed mid S3 multipart upload (second part held, first stored)",
        scenarios.killed_mid_s3_multipart,
        "s3 versions",
        ("FAILURE", "SUCCESS"),
        "confirmed",
        (KILLED, ""),
        "no object until the retry; one version; the dead worker's upload aborted and reported",
        _receipt_says("aborted_unfinished_uploads"),
    ),
    Fault(
        "d1",
        "worker SIGKILLed after the relay accepted the mail, before the ledger recorded it",
        scenarios.killed_after_smtp_send,
        "mail to ops@example.com",
        ("FAILURE", "FAILURE", "FAILURE"),
        "unknown",
        (KILLED, UNKNOWN, UNKNOWN),
        "one copy, never resent; outcome unknown, loud; the owner told once",
        lambda outcome: _one_notice(outcome) + _mail_both(outcome),
    ),
    Fault(
        "d2",
        "worker SIGKILLed after the SFTP rename, before the ledger confirmed it",
        scenarios.killed_after_sftp_send,
        "sftp",
        ("FAILURE", "SUCCESS"),
        "confirmed",
        (KILLED, ""),
        "the retry took the claim over and confirmed; one file at the server",
    ),
    Fault(
        "d3",
        "worker SIGKILLed after S3 stored the object, before the ledger confirmed it",
        scenarios.killed_after_s3_send,
        "s3 versions",
        ("FAILURE", "SUCCESS"),
        "confirmed",
        (KILLED, ""),
        "the retry found the same bytes in place (412) and confirmed; one version",
        _receipt_says("already_present"),
    ),
]


def missed(fault: Fault, outcome: Outcome) -> list[str]:
    """Every way one repetition misses the fault's target; empty when it meets it."""
    problems = [f"fault not produced as intended: {what}" for what, seen in outcome.evidence.items() if not seen]
    if outcome.copies.get(fault.copies) != 1:
        problems.append(f"{outcome.copies.get(fault.copies)} copies {fault.copies}, expected 1")
    others = {where: n for where, n in outcome.copies.items() if where != fault.copies and not where.startswith("mail")}
    problems += [f"{n} {where}" for where, n in others.items() if n]
    problems += [f"{n} {where}" for where, n in outcome.leftovers.items() if n]
    if tuple(outcome.runs) != fault.runs:
        problems.append(f"runs {'/'.join(outcome.runs)}, expected {'/'.join(fault.runs)}")
    if outcome.ledger != [fault.ledger]:
        problems.append(f"ledger {outcome.ledger}, expected [{fault.ledger}]")
    said = [error for _, _, error in outcome.audit]
    if len(said) != len(fault.audit) or any(
        (want not in error) if want else bool(error) for want, error in zip(fault.audit, said, strict=False)
    ):
        problems.append(f"audit log {[(s, a, e[:80]) for s, a, e in outcome.audit]}")
    return problems + fault.extra(outcome)


@dataclass
class Row:
    fault: Fault
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # repetitions that raised instead of ending

    def violations(self) -> list[tuple[int, str]]:
        found = [(i + 1, problem) for i, outcome in enumerate(self.outcomes) for problem in missed(self.fault, outcome)]
        return found + [(0, error) for error in self.errors]


def run_faults(repetitions: int, workdir: Path, rows_per_day: int, only: set[str] | None = None) -> list[Row]:
    rows = [Row(fault) for fault in FAULTS if not only or fault.key in only]
    with scenarios.open_rig(workdir, Store(rows_per_day=rows_per_day, big_days=WEEK)) as rig:
        for row in rows:
            for index in range(repetitions):
                started = time.monotonic()
                try:
                    row.outcomes.append(row.fault.run(rig))
                except Exception as exc:  # noqa: BLE001 - a repetition that could not end is a miss
                    row.errors.append(f"repetition {index + 1}: {type(exc).__name__}: {exc}")
                print(
                    f"{row.fault.key} {index + 1}/{repetitions}: {time.monotonic() - started:.1f} s "
                    f"{'ok' if row.outcomes and not missed(row.fault, row.outcomes[-1]) else 'MISSED'}",
                    file=sys.stderr,
                    flush=True,
                )
    return rows


def _spread(values: list[int]) -> str:
    if not values:
        return "–"
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}–{high}"


def render(rows: list[Row], *, repetitions: int, seconds: float | None = None) -> str:
    lines = [
        "| # | fault | N | copies at the server per repetition: min–max (Σ) | leftovers | ledger final "
        "states | run outcomes (Dagster) | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        outcomes = row.outcomes
        places = sorted({where for o in outcomes for where in o.copies if where == row.fault.copies or "mail" in where})
        counts = {where: [o.copies.get(where, 0) for o in outcomes] for where in places}
        copies = "; ".join(f"{where}: {_spread(n)} (Σ {sum(n)})" for where, n in counts.items())
        leftovers = sum(
            sum(o.leftovers.values()) + sum(n for w, n in o.copies.items() if "wrong" in w or "other" in w)
            for o in outcomes
        )
        ledger = ", ".join(
            f"{state} ×{n}" for state, n in sorted(Counter(s for o in outcomes for s in o.ledger).items())
        )
        runs = ", ".join(f"{'→'.join(r)} ×{n}" for r, n in Counter(tuple(o.runs) for o in outcomes).items())
        violations = row.violations()
        verdict = row.fault.verdict if not violations else f"VIOLATED ({len(violations)}): {violations[0][1][:160]}"
        n = len(outcomes) + len(row.errors)
        lines.append(
            f"| {row.fault.key} | {row.fault.title} | {n} | {copies or '–'} | {leftovers} | {ledger or '–'} | "
            f"{runs or '–'} | {verdict} |"
        )
    lines += ["", "What the repetitions showed along the way:", ""]
    for row in rows:
        if not row.outcomes:
            continue
        took = [o.seconds for o in row.outcomes]
        line = (
            f"- {row.fault.key}: {statistics.median(took):.1f} s per repetition (median, launch to the last run's end)"
        )
        notes = _notes(row)
        lines.append(line + (f"; {notes}" if notes else ""))
    if seconds is not None:
        lines += ["", f"{repetitions} repetitions per fault in {seconds / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def _notes(row: Row) -> str:
    outcomes = row.outcomes
    key = row.fault.key
    if key == "a":
        sizes = [o.notes.get("partial bytes", 0) for o in outcomes]
        return f"the killed build's temporary file held {min(sizes) / 1e6:.1f}–{max(sizes) / 1e6:.1f} MB"
    if key == "b":
        at = [o.notes.get("part bytes at kill", 0) for o in outcomes]
        total = max((o.notes.get("file bytes", 0) for o in outcomes), default=0)
        return (
            f"file {total / 1e6:.0f} MB; the `.part-` file held {min(at) / 1e6:.1f}–{max(at) / 1e6:.1f} MB at the kill"
        )
    if key == "d2":
        logins = Counter(o.notes.get("logins by the retries") for o in outcomes)
        return "SFTP logins by the retry: " + ", ".join(f"{k} ×{n}" for k, n in sorted(logins.items()))
    return ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=10, help="repetitions per fault (default 10)")
    parser.add_argument(
        "--rows-per-day", type=int, default=660_000, help="SMS a day in the store's week (660,000: fault b's ~200 MB)"
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    parser.add_argument("--only", help="comma-separated faults, e.g. a,d1")
    parser.add_argument("--verbose", action="store_true", help="show Dagster's and the platform's log")
    args = parser.parse_args(argv)
    if args.repetitions < 1:
        parser.error("--repetitions must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.verbose:
        logging.disable(logging.WARNING)
    only = set(args.only.split(",")) if args.only else None
    load_before = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="process-faults-") as folder:
        rows = run_faults(args.repetitions, Path(folder), args.rows_per_day, only)
    seconds = time.monotonic() - started
    load_after = os.getloadavg()
    header = (
        f"Process faults: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end.\n\n"
    )
    text = header + render(rows, repetitions=args.repetitions, seconds=seconds)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 1 if any(row.violations() for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
