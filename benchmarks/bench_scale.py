"""Scale: code-location load with thousands of reports, and many reports due in the same minute.

    .venv/bin/python benchmarks/bench_scale.py [--reports 3000] [--concurrent 200] [--rows 100000]
        [--workers 6] [--singles 5] [--load-counts 0,1000] [--load-repeats 3] [--workspace acme-east]
        [--skip-load] [--skip-runs] [--no-warmup] [--keep DIR] [--pycache DIR]

Part 1, code-location load: a registry with 0, 1,000 and `--reports` reports (every type, eight
timezones, hourly/daily/weekly/monthly, e-mail/SFTP/S3). For each size a fresh interpreter
imports `report_platform.definitions` and reports, step by step, wall-clock and CPU seconds:
`import dagster`, the platform modules, building the schedules from the registry (the module
body: `report_schedules()` and `dg.Definitions(...)`), resolving the repository (jobs, schedules,
asset graph), and the repository snapshot a code server hands to the webserver and daemon. The
whole process is also timed from outside, and so is `dagster definitions validate -m
report_platform.definitions`. Goal: the code location loads in under 3 s at 3,000 reports.

Part 2, a burst: `--concurrent` sms_usage reports, all due at the same minute (daily 06:00 UTC,
previous day), each over ~`--rows` rows of one workspace, delivered to a real OpenSSH sshd on
127.0.0.1. The registry also holds `--reports` minus `--concurrent` other reports, so every run
loads a code location of that size. Each run is a fresh process calling `launch_report_run(...,
prefer_webserver=False)` against one shared SQLite Dagster instance (as Dagster's default run
launcher does: one process per run), `--workers` at a time. A warm-up run fills the bytecode
cache, then `--singles` runs go one by one to give the single-run time. Checked afterwards: every
audit-log run SUCCESS with the expected rows, every file on the SFTP server with the audited size
and SHA-256, every Dagster run SUCCESS, no "lock" in any run's output. Prints the makespan,
makespan / (runs x mean single-run time), and the runs' CPU seconds (CPU time stays meaningful
on a shared, busy machine; wall-clock does not).

Child processes share a bytecode cache of their own (`--pycache`, default in the work folder).
Everything lives in a temporary folder that is deleted afterwards (unless `--keep DIR`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OWNER = "owner@acme.example"
SFTP_CONNECTION = "scale-sftp"
SFTP_KEY_VARIABLE = "BENCH_SCALE_SFTP_KEY_FILE"
USAGE_DAY = date(2025, 6, 10)  # the burst's reporting period (a UTC day)
SCHEDULED_AT = datetime(2025, 6, 11, 6, 0, tzinfo=UTC)  # when all burst reports are due
TYPES = ("sms_usage", "voice_usage", "aegis_interaction", "billing")
TIMEZONES = (
    "UTC",
    "America/New_York",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Asia/Kolkata",
)
WORKSPACES = ("acme-east", "acme-west", "acme-labs", "globex-main")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# Runs in a fresh interpreter: each step of loading the code location, timed separately, as
# wall-clock and CPU seconds of this process (CPU time does not grow when the machine is busy).
LOAD_PROBE = """
import json, resource, time
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
marks = [(time.perf_counter(), cpu())]
def mark():
    marks.append((time.perf_counter(), cpu()))
import dagster as dg
mark()
import report_platform.ingest.assets, report_platform.scheduling.report_io_manager
import report_platform.scheduling.exports, report_platform.scheduling.schedules
import report_platform.scheduling.sensors
mark()
from report_platform.definitions import defs
mark()
repo = defs.get_repository_def()
mark()
from dagster._core.remote_representation.external_data import RepositorySnap
snap = RepositorySnap.from_def(repo)
mark()
from report_platform.app import registry_service
from report_platform.scheduling.schedules import report_schedules
from report_platform.settings import Home
again, _ = report_schedules(registry_service(Home.from_env()))
mark()
steps = ["import_dagster", "import_platform", "build", "resolve", "snapshot", "schedules_again"]
out = {}
for i, name in enumerate(steps):
    out[name] = marks[i + 1][0] - marks[i][0]
    out[name + "_cpu"] = marks[i + 1][1] - marks[i][1]
out |= {"process_cpu": marks[-2][1], "schedules": len(repo.schedule_defs), "report_schedules": len(again)}
print(json.dumps(out))
"""


# ---------------------------------------------------------------------------------------------
# Registry contents


def mixed_definition(i: int) -> dict[str, Any]:
    """The i-th report of a varied registry: every type, timezone, frequency and destination."""
    kind = TYPES[i % len(TYPES)]
    tz = TIMEZONES[(i // 4) % len(TIMEZONES)]
    frequency = ("hourly", "daily", "weekly", "monthly")[(i // 3) % 4]
    minute, hour = (i * 7) % 60, (i * 5) % 24
    schedule: dict[str, Any] = {"timezone": tz, "frequency": frequency}
    if frequency == "hourly":
        schedule["time_of_day"] = f"00:{minute:02d}:00"
        period: dict[str, Any] = {"kind": "rolling_window", "lookback": f"{1 + i % 12}h"}
    elif frequency == "daily":
        schedule["time_of_day"] = f"{hour:02d}:{minute:02d}:00"
        period = {"kind": "previous_day"}
    elif frequency == "weekly":
        schedule |= {"time_of_day": f"{hour:02d}:{minute:02d}:00", "day_of_week": WEEKDAYS[i % 7]}
        period = {"kind": "previous_week"}
    else:
        schedule |= {"time_of_day": f"{hour:02d}:{minute:02d}:00", "day_of_month": 1 + i % 31}
        period = {"kind": "previous_month"}
    ext = "xlsx" if kind == "billing" else "csv"
    destination: dict[str, Any] = [
        {"type": "email", "to": [f"ops{i % 17}@acme.example"], "subject_template": "{{ReportName}} - {{Date}}"},
        {"type": "sftp", "connection": SFTP_CONNECTION, "remote_dir": f"/inbound/r{i % 50}", "create_dirs": True},
        {"type": "s3", "connection": "scale-s3", "bucket": "acme-reports", "prefix": f"scale/{kind}/"},
    ][i % 3]
    definition: dict[str, Any] = {
        "name": f"Scale {kind} {i:05d}",
        "type": kind,
        "folder": f"Scale {i % 10}",
        "schedule": schedule,
        "period": period,
        "destination": destination,
        "filename_pattern": "{{ReportName}}_{{PeriodStart}}_{{PeriodEnd}}." + ext,
    }
    if kind == "billing" and i % 8 == 3:
        definition["organization"] = "acme"
    else:
        definition["workspace"] = WORKSPACES[i % len(WORKSPACES)]
    if kind == "aegis_interaction":
        definition["filters"] = {"workflows": [], "include_event_details": i % 2 == 0}
    return definition


def burst_definition(i: int, workspace: str) -> dict[str, Any]:
    """A report due at 06:00 UTC every day over the previous day, delivered by SFTP."""
    return {
        "name": f"burst-{i:04d}",
        "type": "sms_usage",
        "workspace": workspace,
        "schedule": {"timezone": "UTC", "frequency": "daily", "time_of_day": "06:00:00"},
        "period": {"kind": "previous_day"},
        "destination": {"type": "sftp", "connection": SFTP_CONNECTION, "remote_dir": "/inbound", "create_dirs": True},
        "filename_pattern": "{{ReportName}}_{{PeriodStart}}.csv",
    }


def new_home(root: Path, registry_url: str | None = None) -> Any:
    """A data folder with the demo tenancy registered and an Owner of both organisations; the
    registry in `registry_url` when given, else in the folder."""
    from report_platform.app import registry_service
    from report_platform.settings import Home

    home = Home(root.resolve(), registry_url).ensure()
    write_connections(home, None)  # saving a report needs the connections it names
    service = registry_service(home)
    service.add_user(OWNER, "acme", "owner")
    service.add_user(OWNER, "globex", "owner")
    return home


def add_reports(home: Any, definitions: Iterator[dict[str, Any]]) -> tuple[list[str], float]:
    """Create the reports through the service; their ids and the seconds it took."""
    from report_platform.app import registry_service

    service = registry_service(home)
    started = time.perf_counter()
    ids = [service.create_report(OWNER, d) for d in definitions]
    return ids, time.perf_counter() - started


def environment(home_root: Path, dagster_home: Path, pycache: Path, **extra: str) -> dict[str, str]:
    """The child processes' environment. They share a bytecode cache of their own in `pycache` (a
    deployment has compiled `.pyc` files; a sandbox with PYTHONDONTWRITEBYTECODE would otherwise
    compile all of Dagster in every process), so the virtualenv is not written to."""
    env = dict(os.environ)
    env.pop("REPORT_PLATFORM_REGISTRY_URL", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env |= {
        "PYTHONPYCACHEPREFIX": str(pycache),
        "REPORT_PLATFORM_HOME": str(home_root),
        "DAGSTER_HOME": str(dagster_home),
        # Nothing listens there: "run now" must not find a webserver to submit to.
        "REPORT_PLATFORM_DAGSTER_URL": "http://127.0.0.1:9",
        "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        **extra,
    }
    return env


def dagster_home(path: Path, config: Path = ROOT / "dagster.yaml") -> Path:
    """A Dagster instance folder with the project's dagster.yaml (as `make run` sets it up), or
    with `config` as its dagster.yaml."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(config, path / "dagster.yaml")
    return path


# ---------------------------------------------------------------------------------------------
# Part 1: code-location load


@dataclass
class LoadFigures:
    reports: int
    create_s: float
    process_s: list[float] = field(default_factory=list)
    probes: list[dict[str, float]] = field(default_factory=list)
    validate_s: float | None = None
    validate_ok: bool | None = None
    validate_note: str = ""

    def median(self, key: str) -> float:
        return statistics.median(p[key] for p in self.probes)


def probe_load(env: dict[str, str]) -> tuple[float, dict[str, float]]:
    """Wall-clock seconds of the probe process up to its snapshot, and its step figures."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", LOAD_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"loading the code location failed:\n{result.stderr[-3000:]}")
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    return elapsed - probe["schedules_again"], probe


def dagster_validate(env: dict[str, str]) -> tuple[float, bool, str]:
    dagster = Path(sys.executable).with_name("dagster")
    started = time.perf_counter()
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "report_platform.definitions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    text = (result.stdout + result.stderr).strip().splitlines()
    return elapsed, result.returncode == 0, (text[-1] if text else "")[:160]


def bench_load(work: Path, counts: Sequence[int], repeats: int, pycache: Path) -> tuple[list[LoadFigures], float]:
    home = new_home(work / "load-home")
    env = environment(home.root, dagster_home(work / "load-dagster"), pycache)
    figures: list[LoadFigures] = []
    registered = 0
    cold_s, _ = probe_load(env)  # fills the bytecode cache; later processes start warm
    print(f"  first process, empty bytecode cache: {cold_s:.2f} s", file=sys.stderr, flush=True)
    for count in sorted(set(counts)):
        _, create_s = add_reports(home, (mixed_definition(i) for i in range(registered, count)))
        registered = count
        row = LoadFigures(count, create_s)
        for _ in range(repeats):
            elapsed, probe = probe_load(env)
            row.process_s.append(elapsed)
            row.probes.append(probe)
        row.validate_s, row.validate_ok, row.validate_note = dagster_validate(env)
        figures.append(row)
        print(
            f"  {count} reports: process {statistics.median(row.process_s):.2f} s, "
            f"registry+schedules {row.median('build'):.2f} s, validate {row.validate_s:.2f} s",
            file=sys.stderr,
            flush=True,
        )
    return figures, cold_s


def print_load(figures: list[LoadFigures], cold_s: float, repeats: int) -> None:
    print(f"\n### Code-location load (median of {repeats} fresh processes; wall-clock, CPU in brackets)\n")
    print(
        "| reports | schedules | whole process | `import dagster` | platform modules | registry + schedules "
        "+ `Definitions()` | resolve repository | snapshot | `report_schedules()` again | "
        "`dagster definitions validate` |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for f in figures:

        def cell(step: str, f: LoadFigures = f) -> str:
            return f"{f.median(step):.2f} s ({f.median(step + '_cpu'):.2f})"

        validate = f"{f.validate_s:.2f} s ({'ok' if f.validate_ok else 'FAILED: ' + f.validate_note})"
        steps = " | ".join(cell(s) for s in ("import_dagster", "import_platform", "build", "resolve", "snapshot"))
        print(
            f"| {f.reports:,} | {int(f.median('schedules')):,} "
            f"| {statistics.median(f.process_s):.2f} s ({f.median('process_cpu'):.2f}) "
            f"| {steps} | {cell('schedules_again')} | {validate} |"
        )
    last = figures[-1]
    steps = ("build", "resolve", "snapshot")
    after_wall, after_cpu = (sum(last.median(s + k) for s in steps) for k in ("", "_cpu"))
    print(
        f"\nAt {last.reports:,} reports: registry + schedules + resolution + snapshot {after_wall:.2f} s "
        f"({after_cpu:.2f} s CPU); whole process {statistics.median(last.process_s):.2f} s "
        f"({last.median('process_cpu'):.2f} s CPU); goal < 3 s. "
        "'Whole process' is interpreter start to snapshot, timed from outside. "
        f"Creating the reports through the service took {sum(f.create_s for f in figures):.1f} s. "
        f"The very first process, with an empty bytecode cache, took {cold_s:.2f} s. "
        f"Load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}."
    )


# ---------------------------------------------------------------------------------------------
# Part 2: a burst of runs due in the same minute


@dataclass
class RunOutcome:
    report_id: str
    wall_s: float
    returncode: int
    info: dict[str, Any]
    stderr: str


def run_worker(argv: list[str]) -> int:
    """`--worker REPORT_ID TYPE SCHEDULED_AT`: one report run, as a run process of its own."""
    report_id, report_type, scheduled = argv
    t0 = time.perf_counter()
    from report_platform.launch import launch_report_run

    t1 = time.perf_counter()
    from report_platform.definitions import run_definitions

    run_definitions()  # timed: the code location's load, as a run worker loads it

    t2 = time.perf_counter()
    launched = launch_report_run(
        report_id, report_type, datetime.fromisoformat(scheduled), trigger="schedule", prefer_webserver=False
    )
    t3 = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    info = {
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "run_id": launched.dagster_run_id,
        "success": launched.success,
        "imports_s": t1 - t0,
        "load_s": t2 - t1,
        "run_s": t3 - t2,
    }
    print(json.dumps(info))
    return 0 if launched.success else 1


def launch_one(report_id: str, env: dict[str, str]) -> RunOutcome:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", report_id, "sms_usage", SCHEDULED_AT.isoformat()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    info: dict[str, Any] = {}
    for line in reversed(result.stdout.strip().splitlines()):
        if line.startswith("{"):
            info = json.loads(line)
            break
    return RunOutcome(report_id, wall, result.returncode, info, result.stderr)


def workspace_share(workspace: str) -> float:
    """The share of a day's rows the generator gives `workspace` (weights over all workspaces)."""
    from report_platform.domain.tenancy import load_tenancy

    workspaces = list(load_tenancy().workspaces())
    return next(w.weight for w in workspaces if w.id == workspace) / sum(w.weight for w in workspaces)


def prepare_usage(home: Any, workspace: str, rows: int) -> tuple[int, int, float]:
    """Ingest one UTC day of SMS so `workspace` has ~`rows`; (rows_per_day, its rows, seconds)."""
    import polars as pl

    from report_platform.domain.tenancy import load_tenancy
    from report_platform.ingest.load import SourceSettings, ingest_day
    from report_platform.store.duck import ensure_catalog

    rows_per_day = math.ceil(rows / workspace_share(workspace))
    started = time.perf_counter()
    ensure_catalog(home.store, home.catalog)
    result = ingest_day(
        home.store, None, "sms_messages", USAGE_DAY, load_tenancy(home.root), SourceSettings(rows_per_day=rows_per_day)
    )
    seconds = time.perf_counter() - started
    frame = pl.read_parquet(result.paths["sms_messages"], columns=["workspace_id"])
    return rows_per_day, frame.filter(pl.col("workspace_id") == workspace).height, seconds


def write_connections(home: Any, server: Any | None) -> None:
    """The connections the reports name, for both organisations; SFTP points at `server` once it runs
    (before that, at a port nothing listens on). Only the SFTP one is ever delivered through."""
    import yaml

    sftp: dict[str, Any] = {"host": "127.0.0.1", "port": 9, "username": "bench", "host_key": "ssh-ed25519 AAAA"}
    if server is not None:
        sftp = {
            "host": server.host,
            "port": server.port,
            "username": server.username,
            "host_key": server.host_key,
            "base_dir": str(server.root_dir),
        }
    everyone = {"organizations": ["*"]}
    home.connections.write_text(
        yaml.safe_dump(
            {
                "smtp": {
                    "default": {"host": "127.0.0.1", "port": 9, "from_address": "reports@acme.example"} | everyone
                },
                "sftp": {SFTP_CONNECTION: sftp | {"private_key_file_env": SFTP_KEY_VARIABLE} | everyone},
                "s3": {"scale-s3": {"region": "us-east-1"} | everyone},
            }
        )
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Checked:
    audit_success: int = 0
    rows_ok: int = 0
    files_ok: int = 0
    dagster_success: int = 0
    lock_lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rows_seen: list[int] = field(default_factory=list)
    bytes_seen: list[int] = field(default_factory=list)


def check_runs(home: Any, sftp_root: Path, outcomes: list[RunOutcome], expected_rows: int) -> Checked:
    import dagster as dg

    from report_platform.app import registry_service

    service = registry_service(home)
    instance = dg.DagsterInstance.get()
    checked = Checked()
    for outcome in outcomes:
        for line in outcome.stderr.splitlines():
            if "lock" in line.lower():
                checked.lock_lines.append(f"{outcome.report_id}: {line.strip()[:200]}")
        if outcome.returncode != 0:
            tail = outcome.stderr.strip().splitlines()[-1:] or ["(no output)"]
            checked.problems.append(f"{outcome.report_id}: worker exit {outcome.returncode}: {tail[0][:300]}")
        run_id = outcome.info.get("run_id")
        dagster_run = instance.get_run_by_id(run_id) if run_id else None
        if dagster_run is not None and dagster_run.status == dg.DagsterRunStatus.SUCCESS:
            checked.dagster_success += 1
        runs = service.audit_log(OWNER, outcome.report_id).runs
        if not runs:
            checked.problems.append(f"{outcome.report_id}: no run in the audit log")
            continue
        run = runs[0]
        if run.status != "SUCCESS":
            checked.problems.append(f"{outcome.report_id}: audit status {run.status}: {run.error}")
            continue
        checked.audit_success += 1
        checked.rows_seen.append(run.rows or 0)
        checked.bytes_seen.append(run.bytes or 0)
        if run.rows == expected_rows:
            checked.rows_ok += 1
        else:
            checked.problems.append(f"{outcome.report_id}: {run.rows} rows, expected {expected_rows}")
        view = service.system.report_for_run(outcome.report_id)
        landed = list((sftp_root / "inbound").glob(f"{view.name}_*")) if view else []
        if len(landed) == 1 and landed[0].stat().st_size == run.bytes and sha256_of(landed[0]) == run.sha256:
            checked.files_ok += 1
        else:
            checked.problems.append(f"{outcome.report_id}: file on the server missing or different: {landed}")
    return checked


def run_many(report_ids: Sequence[str], env: dict[str, str], workers: int) -> tuple[list[RunOutcome], float]:
    started = time.perf_counter()
    outcomes: list[RunOutcome] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for outcome in pool.map(lambda rid: launch_one(rid, env), report_ids):
            outcomes.append(outcome)
            if len(report_ids) > 1 and (len(outcomes) % 10 == 0 or outcome.returncode):
                print(
                    f"    {len(outcomes)}/{len(report_ids)} runs done after {time.perf_counter() - started:.0f} s"
                    f" (last: exit {outcome.returncode}, {outcome.wall_s:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    return outcomes, time.perf_counter() - started


def bench_runs(work: Path, args: argparse.Namespace) -> bool:
    """Part 2; True when every run succeeded and was delivered intact without lock errors."""
    from report_platform_devservers.standins import SshdStandin

    home = new_home(work / "runs-home")
    rows_per_day, expected, ingest_s = prepare_usage(home, args.workspace, args.rows)
    print(
        f"  usage: {rows_per_day:,} SMS rows on {USAGE_DAY}, {expected:,} in {args.workspace} ({ingest_s:.1f} s)",
        file=sys.stderr,
        flush=True,
    )
    # One warm-up run fills the bytecode cache, then singles run alone, then the burst.
    warmups = 0 if args.no_warmup else 1
    total = warmups + args.singles + args.concurrent
    burst_ids, burst_create_s = add_reports(home, (burst_definition(i, args.workspace) for i in range(total)))
    background = max(0, args.reports - args.concurrent)
    _, background_s = add_reports(home, (mixed_definition(i) for i in range(background)))
    print(
        f"  registry: {total} burst reports ({burst_create_s:.1f} s) + {background} others ({background_s:.1f} s)",
        file=sys.stderr,
        flush=True,
    )
    warmup_ids, burst_ids = burst_ids[:warmups], burst_ids[warmups:]
    single_ids, concurrent_ids = burst_ids[: args.singles], burst_ids[args.singles :]
    dagster_dir = dagster_home(work / "runs-dagster")
    with SshdStandin(root_dir=work / "sftp-root", workdir=work / "sshd") as server:
        write_connections(home, server)
        env = environment(
            home.root, dagster_dir, args.pycache or work / "pycache", **{SFTP_KEY_VARIABLE: str(server.client_key_path)}
        )
        os.environ["DAGSTER_HOME"] = str(dagster_dir)
        warmup = [launch_one(report_id, env) for report_id in warmup_ids]
        for run in warmup:
            print(f"  warm-up run (empty bytecode cache): {run.wall_s:.2f} s", file=sys.stderr, flush=True)
        singles: list[RunOutcome] = []
        for report_id in single_ids:
            singles.extend(run_many([report_id], env, 1)[0])
            print(f"  single run: {singles[-1].wall_s:.2f} s (exit {singles[-1].returncode})", file=sys.stderr)
        print(f"  burst: {len(concurrent_ids)} runs, {args.workers} at a time ...", file=sys.stderr, flush=True)
        outcomes, makespan = run_many(concurrent_ids, env, args.workers)
        checked = check_runs(home, server.root_dir, [*warmup, *singles, *outcomes], expected)
        sshd_errors = [line for line in server.log_text().splitlines() if "error" in line.lower()]
    print_runs(args, expected, singles, outcomes, makespan, checked, sshd_errors, len(warmup))
    return not (checked.problems or checked.lock_lines)


def print_runs(
    args: argparse.Namespace,
    expected: int,
    singles: list[RunOutcome],
    outcomes: list[RunOutcome],
    makespan: float,
    checked: Checked,
    sshd_errors: list[str],
    warmups: int,
) -> None:
    def mean(values: Sequence[float]) -> float:
        return statistics.fmean(values) if values else float("nan")

    single = mean([o.wall_s for o in singles])
    n = len(outcomes)
    checked_runs = n + len(singles) + warmups
    estimated_sum = single * n
    measured_sum = sum(o.wall_s for o in outcomes)
    phases = ("imports_s", "load_s", "run_s")
    print(
        f"\n### {n} reports due in the same minute ({expected:,} rows each, SFTP on loopback, "
        f"{args.workers} run processes at a time, {args.reports:,} reports registered)\n"
    )
    print("| | process (wall) | imports | code-location load | `launch_report_run` | process CPU |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, group in (("single run, alone (mean)", singles), ("run in the burst (mean)", outcomes)):
        cells = " | ".join(f"{mean([o.info.get(p, math.nan) for o in group]):.2f} s" for p in phases)
        cpu = mean([o.info.get("cpu_s", math.nan) for o in group])
        print(f"| {label} | {mean([o.wall_s for o in group]):.2f} s | {cells} | {cpu:.2f} s |")
    cpu_sum = sum(o.info.get("cpu_s", 0.0) for o in outcomes)
    cores = os.cpu_count() or 1
    print("\n| figure | value |\n|---|---:|")
    rows_seen = checked.rows_seen or [0]
    figures = [
        ("makespan (first launch to last run finished)", f"{makespan:.1f} s"),
        (f"sum of single-run times (mean of {len(singles)} alone x {n})", f"{estimated_sum:.1f} s"),
        ("makespan / sum of single-run times", f"{makespan / estimated_sum:.3f}" if singles else "n/a"),
        ("sum of the burst runs' own process times", f"{measured_sum:.1f} s"),
        ("throughput", f"{n / makespan * 60:.1f} runs/min" if makespan else "n/a"),
        ("CPU seconds of the burst runs (sum)", f"{cpu_sum:.1f} s"),
        (f"makespan / (that CPU sum / {cores} cores)", f"{makespan / (cpu_sum / cores):.2f}" if cpu_sum else "n/a"),
        ("load average at the end (1 / 5 / 15 min)", " / ".join(f"{x:.1f}" for x in os.getloadavg())),
        ("audit log SUCCESS", f"{checked.audit_success} / {checked_runs}"),
        (f"rows = {expected:,}", f"{checked.rows_ok} / {checked_runs}"),
        ("rows per file (min / max)", f"{min(rows_seen):,} / {max(rows_seen):,}"),
        ("bytes per file (mean)", f"{mean(checked.bytes_seen):,.0f}"),
        ("file on the SFTP server, size and SHA-256 as audited", f"{checked.files_ok} / {checked_runs}"),
        ("Dagster run SUCCESS", f"{checked.dagster_success} / {checked_runs}"),
        ("lines mentioning 'lock' in run output", f"{len(checked.lock_lines)}"),
        ("sshd log lines mentioning 'error'", f"{len(sshd_errors)}"),
    ]
    for name, value in figures:
        print(f"| {name} | {value} |")
    for line in (checked.problems + checked.lock_lines + sshd_errors)[:20]:
        print(f"\n    {line}", end="")
    if checked.problems or checked.lock_lines:
        print()


# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reports", type=int, default=3000, help="reports registered (load test's largest size)")
    parser.add_argument("--load-counts", default="0,1000", help="smaller registry sizes to load too")
    parser.add_argument("--load-repeats", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=200, help="reports due in the same minute")
    parser.add_argument("--rows", type=int, default=100_000, help="rows in each burst report's period")
    parser.add_argument("--workspace", default="acme-east")
    parser.add_argument("--workers", type=int, default=6, help="run processes at a time")
    parser.add_argument("--singles", type=int, default=5, help="runs timed alone first")
    parser.add_argument("--no-warmup", action="store_true", help="no warm-up run before the single runs")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-runs", action="store_true")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument(
        "--pycache", type=Path, help="bytecode cache of the child processes (default: in the work folder)"
    )
    return parser.parse_args(argv)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return run_worker(sys.argv[2:])
    args = parse_args()

    print(
        f"## Scale ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, dagster {_dagster_version()})"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-scale-")) if args.keep is None else args.keep.resolve()
    work.mkdir(parents=True, exist_ok=True)
    ok = True
    try:
        if not args.skip_load:
            counts = [int(c) for c in args.load_counts.split(",") if c.strip()] + [args.reports]
            figures, cold_s = bench_load(work, counts, args.load_repeats, args.pycache or work / "pycache")
            print_load(figures, cold_s, args.load_repeats)
        if not args.skip_runs:
            ok = bench_runs(work, args)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    return 0 if ok else 1


def _dagster_version() -> str:
    from importlib.metadata import version

    return version("dagster")


if __name__ == "__main__":
    sys.exit(main())
