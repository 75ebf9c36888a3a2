""" "Run now" to a confirmed delivery, with Dagster's daemon and webserver running as `make run` runs them.

    .venv/bin/python benchmarks/bench_run_now.py [--requests 20] [--cli-requests 5]
        [--dequeue-intervals file] [--keep DIR]

For each entry of `--dequeue-intervals` a deployment of its own is started the way `make run`
starts one (`report_platform_tests/ui/live.py`): a data folder with three days of demo usage and
the live tests' reports, the stand-in SMTP/SFTP/S3 servers on 127.0.0.1, `dagster dev -w
workspace.yaml` on a free port with `dagster.yaml` as its instance file (`file`: unchanged; a
number N: the same file with the QueuedRunCoordinator's `dequeue_interval_seconds: N`), and
`report-platform console` on a free port, with `REPORT_PLATFORM_DAGSTER_URL` pointing at the
webserver. The daemon's CPU is sampled over `--idle` seconds with nothing queued (what the run
queue's loop costs). Then, one after the other:

- a warm-up "run now" (the first launch starts the fork server; reported on its own line);
- `--requests` times `POST /api/v1/reports/{id}/run-now` with an API token, each timed from the
  POST to the audit log's SUCCESS for its audit run id (`GET …/audit-log` every 100 ms, at most
  120 s);
- `--cli-requests` times `report-platform reports run-now ID --user EMAIL`, timed from starting
  the command (a fresh interpreter) to the audit log's SUCCESS.

The report is the live tests' daily SMS usage report by e-mail (about 200 rows). Each run must
leave exactly one new message at the stand-in SMTP server. Where the time goes comes from the
Dagster run's own events: POST → run enqueued (the console's launch thread submits it over
GraphQL) → starting (the daemon's run queue dequeued it and hands it to the launcher) → started (the run
worker) → success, and when the audit log showed SUCCESS (the run's step records it, so it can
precede the run's end event). Everything is stopped at the end (process
groups), and the folder is deleted unless `--keep DIR`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report_platform_devservers.standins.net import free_port  # noqa: E402
from report_platform_tests.ui.live import BIN, OWNER, LivePlatform, wait_until  # noqa: E402

REPORT = "sms_email"
POLL_EVERY = 0.1
RUN_TIMEOUT = 120.0
# The daemon's run queue writes no event when it dequeues a run: the wait in the queue ends with
# RUN_STARTING, which the run coordinator writes as it hands the run to the launcher.
STEPS = ("enqueued", "starting", "started", "success", "audit")


@dataclass
class Timed:
    """One "run now": seconds from the request to each step (None where not seen)."""

    audit_run_id: str
    total: float | None = None
    status: str = "?"
    delivered: int = 0
    steps: dict[str, float | None] = field(default_factory=dict)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Console:
    """`report-platform console` of a live platform, spoken to with an API token."""

    def __init__(self, platform: LivePlatform) -> None:
        self.platform = platform
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        token = platform.cli("users", "token", OWNER, "--name", "bench")
        assert token.returncode == 0, token.stderr
        self.token = token.stdout.strip()
        platform._spawn(  # noqa: SLF001 - stopped with the platform's other process groups
            [str(BIN / "report-platform"), "console", "--host", "127.0.0.1", "--port", str(self.port)],
            platform.workdir / "console.log",
        )
        wait_until(lambda: self.get("/api/v1/reports") is not None, 120, f"the console answers on {self.url}", 0.5)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 - loopback
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return json.loads(answer.read())

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def run_now(self, report_id: str) -> str:
        return self._call("POST", f"/api/v1/reports/{report_id}/run-now", {})["audit_run_id"]

    def wait_for_outcome(self, report_id: str, audit_run_id: str) -> tuple[str, str | None, float]:
        """Poll the audit log until the run is SUCCESS or FAILED: status, Dagster run id, when seen."""
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            runs = self.get(f"/api/v1/reports/{report_id}/audit-log")["runs"]
            run = next((r for r in runs if r["id"] == audit_run_id), None)
            if run and run["status"] in ("SUCCESS", "FAILED", "SKIPPED"):
                return run["status"], run["dagster_run_id"], time.time()
            time.sleep(POLL_EVERY)
        return "TIMEOUT", None, time.time()


def dagster_steps(dagster_home: Path, run_id: str | None) -> dict[str, float]:
    """Epoch seconds of the run's lifecycle events in the instance's event log."""
    import dagster as dg
    from dagster._core.events import DagsterEventType

    wanted = {
        DagsterEventType.RUN_ENQUEUED: "enqueued",
        DagsterEventType.RUN_STARTING: "starting",
        DagsterEventType.RUN_START: "started",
        DagsterEventType.RUN_SUCCESS: "success",
    }
    if run_id is None:
        return {}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        records = instance.get_records_for_run(run_id, of_type=set(wanted)).records
        return {wanted[r.event_log_entry.dagster_event.event_type]: r.event_log_entry.timestamp for r in records}


def messages(platform: LivePlatform) -> int:
    return len(list(platform.mail_dir.glob("*.eml")))


def one_run(platform: LivePlatform, console: Console, report_id: str, via_cli: bool) -> Timed:
    before = messages(platform)
    started = time.time()
    if via_cli:
        done = platform.cli("reports", "run-now", report_id, "--user", OWNER, "--json")
        assert done.returncode == 0, done.stderr
        audit_run_id = json.loads(done.stdout)["audit_run_id"]
    else:
        audit_run_id = console.run_now(report_id)
    status, dagster_run_id, seen = console.wait_for_outcome(report_id, audit_run_id)
    timed = Timed(audit_run_id, total=seen - started if status == "SUCCESS" else None, status=status)
    # The stand-in saves a message before it answers 250, so it is there when the run succeeds.
    timed.delivered = messages(platform) - before
    events = dagster_steps(platform.dagster_home, dagster_run_id)
    timed.steps = {step: (events[step] - started) if step in events else None for step in STEPS[:-1]}
    timed.steps["audit"] = seen - started
    return timed


def instance_file(platform: LivePlatform, interval: str) -> None:
    """The deployment's dagster.yaml: the repository's, or with another dequeue interval."""
    if interval == "file":
        return
    path = platform.dagster_home / "dagster.yaml"
    config = yaml.safe_load(path.read_text())
    config["run_coordinator"] = {
        "module": "dagster._core.run_coordinator",
        "class": "QueuedRunCoordinator",
        "config": {"dequeue_interval_seconds": int(interval)},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def start_platform(workdir: Path, interval: str) -> LivePlatform:
    """`LivePlatform.start()`, with the instance file chosen before Dagster starts."""
    platform = LivePlatform.create(workdir, free_port())
    platform.home.mkdir(parents=True)
    platform.dagster_home.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", platform.dagster_home / "dagster.yaml")
    instance_file(platform, interval)
    try:
        platform._start_standins()  # noqa: SLF001 - the live tests' own setup, step by step
        span = platform._register(3, 200)  # noqa: SLF001
        platform._create_instance_storage()  # noqa: SLF001
        dagster = platform._launch_dagster()  # noqa: SLF001
        platform.cli_inline("ingest", *span)
        platform._wait_for_dagster(dagster)  # noqa: SLF001
    except BaseException:
        platform.stop()
        raise
    return platform


def configured_interval(platform: LivePlatform) -> int:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(platform.dagster_home)) as instance:
        return instance.run_coordinator.dequeue_interval_seconds  # type: ignore[attr-defined]


def daemon_cpu(platform: LivePlatform) -> float:
    """User + system CPU seconds of the deployment's daemon (`python -m dagster._daemon run`) so far."""
    from report_platform.processes import GROUP, cpu_seconds, pids, stat_fields

    groups = {p.pid for p in platform.processes}
    total = 0.0
    for pid in pids():
        fields = stat_fields(pid)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if fields and int(fields[GROUP]) in groups and b"dagster._daemon" in cmdline:
            total += cpu_seconds(fields, with_children=False)
    return total


def bench_variant(workdir: Path, interval: str, requests: int, cli_requests: int, idle: float) -> dict[str, Any]:
    started = time.monotonic()
    platform = start_platform(workdir, interval)
    try:
        boot = time.monotonic() - started
        # What the run queue's loop costs while nothing is queued: the daemon's CPU over a quiet spell.
        before = daemon_cpu(platform)
        time.sleep(idle)
        idle_cpu = (daemon_cpu(platform) - before) / idle
        console = Console(platform)
        report_id = platform.report_ids[REPORT]
        warmup = one_run(platform, console, report_id, via_cli=False)
        api = [one_run(platform, console, report_id, via_cli=False) for _ in range(requests)]
        cli = [one_run(platform, console, report_id, via_cli=True) for _ in range(cli_requests)]
        return {
            "interval": interval,
            "dequeue_interval_seconds": configured_interval(platform),
            "boot": boot,
            "idle_cpu": idle_cpu,
            "warmup": warmup,
            "api": api,
            "cli": cli,
        }
    except BaseException:
        print(platform.log_tail(), file=sys.stderr)
        raise
    finally:
        platform.stop()


def summary(label: str, runs: list[Timed]) -> list[str]:
    ok = [r.total for r in runs if r.total is not None]
    delivered = sum(1 for r in runs if r.status == "SUCCESS" and r.delivered == 1)
    if not ok:
        return [f"| {label} | 0 / {len(runs)} succeeded | | | | |"]
    return [
        f"| {label} | {pct(ok, 0.5):.2f} s | {pct(ok, 0.95):.2f} s | {max(ok):.2f} s | {min(ok):.2f} s"
        f" | {delivered} / {len(runs)} |"
    ]


def breakdown(label: str, runs: list[Timed]) -> str:
    """Median seconds spent between consecutive steps."""
    cells = []
    for i, step in enumerate(STEPS):
        gaps = []
        for r in runs:
            now = r.steps.get(step)
            before = 0.0 if i == 0 else r.steps.get(STEPS[i - 1])
            if now is not None and before is not None:
                gaps.append(now - before)
        cells.append(f"{statistics.median(gaps):.2f}" if gaps else "-")
    return f"| {label} | " + " | ".join(cells) + " |"


def report(results: list[dict[str, Any]], args: argparse.Namespace, load: tuple[str, str]) -> bool:
    print("## Run now to a confirmed delivery (daemon and webserver running)\n")
    print(f"`{' '.join(['benchmarks/bench_run_now.py', *sys.argv[1:]])}`; load average {load[0]} → {load[1]}\n")
    print("| variant | p50 | p95 | max | min | one e-mail each |")
    print("|---|---:|---:|---:|---:|---:|")
    ok = True
    for r in results:
        name = f"dequeue every {r['dequeue_interval_seconds']} s ({r['interval']})"
        print(*summary(f"{name}, API x{len(r['api'])}", r["api"]), sep="\n")
        if r["cli"]:
            print(*summary(f"{name}, CLI x{len(r['cli'])}", r["cli"]), sep="\n")
        w = r["warmup"]
        warm = f"{w.total:.2f} s" if w.total is not None else w.status
        print(f"| {name}, first run (starts the fork server) | {warm} | | | | {w.delivered} |")
        ok &= all(t.status == "SUCCESS" and t.delivered == 1 for t in [w, *r["api"], *r["cli"]])
    print("\nMedian seconds between steps: request → run enqueued (submitted) → starting (dequeued) →")
    print("started (worker running) → run SUCCESS → audit log seen SUCCESS (negative: seen before the run's end):\n")
    print("| variant | → enqueued | → starting | → started | → success | → audit SUCCESS |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        name = f"dequeue every {r['dequeue_interval_seconds']} s"
        print(breakdown(f"{name}, API", r["api"]))
        if r["cli"]:
            print(breakdown(f"{name}, CLI", r["cli"]))
    boots = ", ".join(f"{r['boot']:.0f} s" for r in results)
    print(f"\nDeployments started in {boots}.")
    for r in results:
        print(
            f"Daemon CPU while idle ({args.idle:.0f} s, no run queued), dequeue every "
            f"{r['dequeue_interval_seconds']} s: {r['idle_cpu'] * 100:.1f} % of a core."
        )
    print(f"\nAll runs SUCCESS with exactly one e-mail each: {'yes' if ok else 'NO'}")
    return ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="API run-now requests per variant")
    parser.add_argument("--cli-requests", type=int, default=5, help="CLI run-now commands per variant")
    parser.add_argument(
        "--dequeue-intervals",
        default="file",
        help="comma-separated: 'file' (dagster.yaml as it is) or seconds for the run queue's dequeue interval",
    )
    parser.add_argument("--idle", type=float, default=30.0, help="seconds the daemon's idle CPU is sampled")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 200 or not 0 <= args.cli_requests <= 50 or not 0 < args.idle <= 600:
        parser.error("--requests must be 1-200, --cli-requests 0-50 and --idle 0-600")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-run-now-"))
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    try:
        results = []
        for i, interval in enumerate(args.dequeue_intervals.split(",")):
            print(f"variant {interval}: starting a deployment", file=sys.stderr, flush=True)
            results.append(bench_variant(work / f"v{i}", interval.strip(), args.requests, args.cli_requests, args.idle))
        load_after = " ".join(f"{x:.1f}" for x in os.getloadavg())
        return 0 if report(results, args, (load_before, load_after)) else 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
