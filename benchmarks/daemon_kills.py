"""The daemon SIGKILLed around schedule ticks, repeated: the round of the production tests, N times.

    .venv/bin/python benchmarks/daemon_kills.py [--repetitions 10] [--out FILE]

One production deployment (report_platform/deployment.py: code server, webserver, daemon and
console as separate process groups; Dagster's storage and the registry on a real PostgreSQL; the
usage store and archive in moto's S3; aiosmtpd on loopback), as `report_platform_tests/production`
starts it. Each repetition is the round of `report_platform_tests/production/daemon_kills.py`,
with reports of its own: the daemon killed 3 s before a tick, 0.5 s after it, and as soon as the
tick's run exists; stopped across a fourth tick; and a fifth report created while it is stopped.
A round takes about five minutes: the kills need ticks a minute apart.

Each tick must make one Dagster run (SUCCESS), one audit row, one delivered mail and one Dagster
tick; the fifth report's time must be one MISSED row, no run, one notice and no delivery.

Prints a Markdown table (and writes it to --out); exits 1 if any repetition misses its target.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report_platform_tests.production.daemon_kills import (  # noqa: E402
    HANDLES,
    UNSEEN,
    kill_around_ticks,
    settle_kills,
    state_of,
    tick_problems,
    unseen_problems,
)
from report_platform_tests.production.harness import started_production  # noqa: E402
from report_platform_tests.servers.postgres import running_postgres  # noqa: E402

WHAT = {
    "before_the_minute": "killed 3 s before the tick's minute",
    "just_after_the_minute": "killed 0.5 s after the tick's minute",
    "run_queued": "killed as soon as the tick's run exists",
    "down_across_the_tick": "stopped across the tick",
    UNSEEN: "report created while stopped, due in the outage",
}
TARGET = {
    **dict.fromkeys(HANDLES, "1 run SUCCESS, 1 audit row, 1 mail, 1 tick"),
    UNSEEN: "1 MISSED row, no run, 1 notice, no delivery",
}


# How long a round's ticks get to reach their outcome: a kill may cost the run a monitoring cycle
# and a retry, and a busy machine slows every step.
SETTLE_SECONDS = 900.0


def run_rounds(
    repetitions: int, work: Path, report: Callable[[dict[str, list[list[str]]]], None]
) -> dict[str, list[list[str]]]:
    """handle -> each repetition's problems ([] when it met its target); `report` is given the
    figures after every round."""
    found: dict[str, list[list[str]]] = defaultdict(list)
    with running_postgres("unused") as postgres, started_production(postgres, work / "production") as production:
        for round_no in range(1, repetitions + 1):
            label = f" (round {round_no:02d})"
            try:
                kills = kill_around_ticks(production, label, settle=None)
            except AssertionError as exc:  # the kills could not be played out: counts against all
                for handle in (*HANDLES, UNSEEN):
                    found[handle].append([f"round not played: {str(exc).splitlines()[0][:200]}"])
                continue
            with contextlib.suppress(AssertionError):  # each tick below says what it has
                settle_kills(production, kills, SETTLE_SECONDS)
            for handle in HANDLES:
                try:
                    found[handle].append(tick_problems(production, kills, handle))
                except AssertionError:
                    state = state_of(production, kills, handle)
                    found[handle].append([f"no outcome after {SETTLE_SECONDS:.0f} s: {state}"])
            found[UNSEEN].append(unseen_problems(production, kills))
            print(f"round {round_no}: {sum(bool(p[-1]) for p in found.values())} problem(s)", file=sys.stderr)
            report(found)
    return found


def render(found: dict[str, list[list[str]]], repetitions: int, seconds: float) -> str:
    lines = [
        f"## Daemon kills around schedule ticks: {repetitions} repetitions",
        "",
        f"`.venv/bin/python benchmarks/daemon_kills.py --repetitions {repetitions}` on {platform.node()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {seconds / 60:.0f} min.",
        "",
        "| point | target | met | problems |",
        "|---|---|---:|---|",
    ]
    for handle in (*HANDLES, UNSEEN):
        rounds = found.get(handle, [])
        met = sum(1 for problems in rounds if not problems)
        seen = "; ".join(sorted({p for problems in rounds for p in problems}))[:400] or "none"
        lines.append(f"| {WHAT[handle]} | {TARGET[handle]} | {met} of {len(rounds)} | {seen} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    started = time.monotonic()

    def report(found: dict[str, list[list[str]]]) -> None:
        if args.out:  # after every round: a long run that is stopped still leaves its figures
            args.out.write_text(render(found, args.repetitions, time.monotonic() - started))

    with tempfile.TemporaryDirectory(prefix="daemon-kills-") as work:
        found = run_rounds(args.repetitions, Path(work), report)
    table = render(found, args.repetitions, time.monotonic() - started)
    print(table)
    if args.out:
        args.out.write_text(table)
    return 0 if all(not p for rounds in found.values() for p in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
