"""Per-run cost of a Dagster run worker, and a burst of reports due in the same minute.

    .venv/bin/python benchmarks/bench_run_overhead.py [--sizes 100,1000,10000] [--runs 3] [--rows 20000]
        [--burst 100] [--parallel 2] [--compare-multiprocess] [--cold] [--keep DIR]

Every run here is what Dagster's run launchers start: `python -m dagster api execute_run <args>`
(the DefaultRunLauncher's code server, the Docker and Kubernetes launchers all start this
command), for a run created in the Dagster instance the way a schedule tick creates it (tags,
partition, code origin). The worker loads the code location as Dagster reconstructs it, builds
one `sms_usage` report (~`--rows` rows) and delivers it to a real OpenSSH sshd on loopback.

Part 1, per-run overhead: for each registry size in `--sizes`, `--runs` runs one after the
other. CPU seconds of each run process (user + system, with its reaped children: a multiprocess
executor's step process counts) come from `wait4`. The report's own work is measured in this
warm process: the same kind of report built (`produce.prepare`) and delivered (`deliver`)
directly, without Dagster. Overhead = run process CPU - own work CPU. `--cold` also runs each
size with an empty bytecode cache that is never written (PYTHONDONTWRITEBYTECODE, as in a
container whose image has no `.pyc`); `--compare-multiprocess` also runs the report jobs with
Dagster's default multiprocess executor (benchmarks/_multiprocess_location.py).

Part 2, the burst: `--burst` reports due at 06:00, their runs created together (as one tick of
every schedule creates them), then executed `--parallel` run workers at a time. Checked: every
run SUCCESS with one materialisation, every audit row SUCCESS, every file on the SFTP server
once with the audited size and SHA-256. Physical limit = sum of each report's own build +
deliver wall time in a warm process (measured alone on samples, times the burst size) / cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import bench_scale as scale  # noqa: E402

PLATFORM = ("report_platform.definitions", "report_platform_location")
MULTIPROCESS = ("_multiprocess_location", "defs")


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Worker:
    report_id: str
    run_id: str
    wall_s: float
    cpu_s: float
    returncode: int
    stderr: str
    finished_at: float


class Runs:
    """Creates runs in the Dagster instance as a schedule tick does, and starts their workers."""

    def __init__(self, env: dict[str, str], location: tuple[str, str]) -> None:
        import dagster as dg
        from dagster._core.definitions.reconstruct import ReconstructableRepository

        self.env = env
        self.instance = dg.DagsterInstance.get()
        module, attribute = location
        directory = str(HERE if module.startswith("_") else ROOT)
        repository = ReconstructableRepository.for_module(module, attribute, working_directory=directory)
        self.recon_job = repository.get_reconstructable_job("sms_usage_report_job")
        self.job = self.recon_job.get_definition()

    def create(self, report_id: str) -> str:
        from report_platform.scheduling.exports import (
            TAG_REPORT,
            TAG_SCHEDULED,
            TAG_TRIGGER,
            ensure_report_partition,
            partition_key,
        )

        ensure_report_partition(self.instance, "sms_usage", report_id)
        key = partition_key(report_id, scale.SCHEDULED_AT.date())
        tags = {
            TAG_REPORT: report_id,
            TAG_SCHEDULED: scale.SCHEDULED_AT.isoformat(),
            TAG_TRIGGER: "schedule",
            "dagster/partition": str(key),
            "dagster/partition/report": report_id,
            "dagster/partition/date": key.keys_by_dimension["date"],
        }
        run = self.instance.create_run_for_job(
            job_def=self.job, run_config={}, tags=tags, job_code_origin=self.recon_job.get_python_origin()
        )
        return run.run_id

    def execute(self, report_id: str, run_id: str, env: dict[str, str] | None = None) -> Worker:
        from dagster._grpc.types import ExecuteRunArgs
        from dagster_shared.serdes import serialize_value

        args = ExecuteRunArgs(
            job_origin=self.recon_job.get_python_origin(),
            run_id=run_id,
            instance_ref=self.instance.get_ref(),
            set_exit_code_on_failure=True,
        )
        command = [sys.executable, "-m", "dagster", "api", "execute_run", serialize_value(args)]
        with tempfile.TemporaryFile() as err:
            started = time.perf_counter()
            process = subprocess.Popen(command, cwd=ROOT, env=env or self.env, stdout=subprocess.DEVNULL, stderr=err)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            finished = time.perf_counter()
            err.seek(0)
            text = err.read().decode(errors="replace")
        cpu = usage.ru_utime + usage.ru_stime
        return Worker(report_id, run_id, finished - started, cpu, process.returncode, text, finished)


FORK_SERVER = """
import json, os, resource, sys, time
# Preloaded once: what every run worker imports and loads, as a run worker loads it.
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.api import execute_run
import report_platform.definitions
recon_job = ReconstructableRepository.for_module(
    "report_platform.definitions", "report_platform_location", working_directory=os.getcwd()
).get_reconstructable_job("sms_usage_report_job")
recon_job.get_definition()
print("ready", flush=True)
for line in sys.stdin:
    run_id = line.strip()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        # The child opens its own instance and registry connections: none were opened before the fork.
        code = 1
        try:
            with dg.DagsterInstance.get() as instance:
                result = execute_run(recon_job, instance.get_run_by_id(run_id), instance)
                code = 0 if result.success else 1
        finally:
            os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    cpu = usage.ru_utime + usage.ru_stime
    code = os.waitstatus_to_exitcode(status)
    print(json.dumps({"cpu": cpu, "wall": time.perf_counter() - started, "code": code}), flush=True)
"""


class ForkServer:
    """An experiment: run workers forked from one process that preloaded the code location."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", FORK_SERVER],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"

    def execute(self, report_id: str, run_id: str) -> Worker:
        import json

        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(run_id + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        return Worker(report_id, run_id, answer["wall"], answer["cpu"], answer["code"], "", time.perf_counter())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait()


def _proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux /proc; its reaped children included)."""
    from report_platform.processes import cpu_seconds, stat_fields

    fields = stat_fields(pid)
    return None if fields is None else cpu_seconds(fields)


class LauncherRuns:
    """Runs launched as the daemon launches them: `instance.launch_run`, through ForkRunLauncher.

    A forked worker is not our child (the fork server double-forks it), so its CPU cannot come
    from `wait4`: it is sampled from /proc every 10 ms while it lives, the last sample kept (the
    worker's last few milliseconds after it may be missed). The fork server's own CPU is sampled
    before and after, and its share per run added to each run's figure."""

    def __init__(self, runs: Runs) -> None:
        self.runs = runs
        self.instance = runs.instance
        self.warm = False

    def server_cpu(self) -> float:
        (status,) = self.instance.run_launcher.fork_server_status()
        return _proc_cpu(int(status["pid"])) or 0.0

    def measured(self, pairs: list[tuple[str, str]], parallel: int = 1) -> list[Worker]:
        """Runs launched `parallel` at a time; each run's CPU includes its share of the server's."""
        before = self.server_cpu()
        if parallel == 1:
            workers = [self.execute(*pair) for pair in pairs]
        else:
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                workers = list(pool.map(lambda pair: self.execute(*pair), pairs))
        share = (self.server_cpu() - before) / len(pairs)
        for w in workers:
            w.cpu_s += share
        return workers

    def execute(self, report_id: str, run_id: str) -> Worker:
        from report_platform.scheduling.fork_launcher import WorkerHandle

        started = time.perf_counter()
        self.instance.launch_run(run_id, workspace=None)
        handle = WorkerHandle.of(self.instance.get_run_by_id(run_id))
        assert handle is not None
        cpu = 0.0
        while (sample := _proc_cpu(handle.pid)) is not None and handle.is_alive():
            cpu = sample
            time.sleep(0.01)
        finished = time.perf_counter()
        run = self.instance.get_run_by_id(run_id)
        code = 0 if run is not None and run.is_success else 1
        label = "" if handle.via == "fork" else f"launched as a fresh process, not forked ({handle.via})"
        return Worker(report_id, run_id, finished - started, cpu, code, label, finished)


def own_work(home: Any, report_id: str, scheduled_at: datetime = scale.SCHEDULED_AT) -> tuple[float, float]:
    """Wall and CPU seconds of building and delivering the report here, without Dagster, for the
    tick at `scheduled_at`. The report has one destination, of any type."""
    from report_platform.app import definition_of, registry_service
    from report_platform.delivery.connections import Connections
    from report_platform.delivery.dispatch import deliver
    from report_platform.delivery.ledger import DeliveryLedger
    from report_platform.reports import produce
    from report_platform.scheduling.requests import delivery_requests

    view = registry_service(home).system.report_for_run(report_id)
    definition = definition_of(view.definition)
    wall0, cpu0 = time.perf_counter(), cpu_self()
    prepared = produce.prepare(home, report_id, definition, scheduled_at)
    (request,) = delivery_requests(report_id, view.organization, definition, prepared)
    deliver(
        request.artifact,
        request.destination,
        Connections.load(home.connections),
        subject=request.subject,
        body=request.body,
        ledger=DeliveryLedger.open(home.registry_url),
        scope=request.scope or None,
        organization=request.organization,
        manifest=request.manifest,
    )
    return time.perf_counter() - wall0, cpu_self() - cpu0


def check(home: Any, sftp_root: Path, workers: list[Worker], expected_rows: int) -> list[str]:
    """Problems found: run status, one materialisation per run, audit row, the file at the server."""
    import dagster as dg

    from report_platform.app import registry_service

    service = registry_service(home)
    instance = dg.DagsterInstance.get()
    problems: list[str] = []
    for w in workers:
        run = instance.get_run_by_id(w.run_id)
        if run is None or run.status != dg.DagsterRunStatus.SUCCESS or w.returncode != 0:
            tail = (w.stderr.strip().splitlines() or [""])[-1][:200]
            problems.append(f"{w.report_id}: run {run.status if run else None}, exit {w.returncode}: {tail}")
            continue
        records = instance.get_records_for_run(w.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        if len(records) != 1:
            problems.append(f"{w.report_id}: {len(records)} materialisations")
        audit = service.audit_log(scale.OWNER, w.report_id).runs
        if len(audit) != 1 or audit[0].status != "SUCCESS" or audit[0].rows != expected_rows:
            problems.append(f"{w.report_id}: audit {[(a.status, a.rows) for a in audit]}")
            continue
        view = service.system.report_for_run(w.report_id)
        landed = list((sftp_root / "inbound").glob(f"{view.name}_*"))
        if not (
            len(landed) == 1
            and landed[0].stat().st_size == audit[0].bytes
            and scale.sha256_of(landed[0]) == audit[0].sha256
        ):
            problems.append(f"{w.report_id}: on the server {landed}")
    return problems


def named(prefix: str, count: int, workspace: str) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        definition = scale.burst_definition(i, workspace)
        definition["name"] = f"{prefix}-{i:04d}"
        out.append(definition)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="registered reports for part 1")
    parser.add_argument("--runs", type=int, default=3, help="runs per size in part 1")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=4, help="reports built and delivered in this process")
    parser.add_argument("--burst", type=int, default=100, help="reports due in the same minute (0: no burst)")
    parser.add_argument("--parallel", type=int, default=2, help="run workers at a time in the burst")
    parser.add_argument("--workspace", default="acme-east")
    parser.add_argument("--cold", action="store_true", help="also run with no bytecode cache")
    parser.add_argument("--compare-multiprocess", action="store_true")
    parser.add_argument("--fork", action="store_true", help="also run workers forked from a preloaded process")
    parser.add_argument(
        "--fork-launcher",
        action="store_true",
        help="also launch runs through ForkRunLauncher (instance.launch_run), and the burst that way",
    )
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    from report_platform_devservers.standins import SshdStandin

    work = Path(tempfile.mkdtemp(prefix="bench-overhead-")) if args.keep is None else args.keep.resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"## Run overhead and burst ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs)")
    home = scale.new_home(work / "home")
    rows_per_day, expected, _ = scale.prepare_usage(home, args.workspace, args.rows)
    variants_per_size = 1 + int(args.cold) + int(args.compare_multiprocess) + int(args.fork) + int(args.fork_launcher)
    per_size = 2 + args.runs * variants_per_size
    part1 = scale.add_reports(home, iter(named("single", per_size * len(sizes), args.workspace)))[0]
    samples = scale.add_reports(home, iter(named("sample", args.samples + 1, args.workspace)))[0]
    burst = scale.add_reports(home, iter(named("burst", args.burst, args.workspace)))[0]
    registered = len(part1) + len(samples) + len(burst)
    dagster_dir = scale.dagster_home(work / "dagster")
    if args.fork_launcher:
        with open(dagster_dir / "dagster.yaml", "a") as config:
            config.write(
                "\nrun_launcher:\n  module: report_platform.scheduling.fork_launcher\n  class: ForkRunLauncher\n"
            )
    os.environ["DAGSTER_HOME"] = str(dagster_dir)
    os.environ["REPORT_PLATFORM_HOME"] = str(home.root)
    with SshdStandin(root_dir=work / "sftp-root", workdir=work / "sshd") as server:
        scale.write_connections(home, server)
        os.environ[scale.SFTP_KEY_VARIABLE] = str(server.client_key_path)
        env = scale.environment(
            home.root, dagster_dir, work / "unused", **{scale.SFTP_KEY_VARIABLE: str(server.client_key_path)}
        )
        env.pop("PYTHONPYCACHEPREFIX")  # the virtualenv's compiled bytecode, as installed
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # and nothing written at run time, as in a container
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE)])
        cold_env = env | {"PYTHONPYCACHEPREFIX": str(work / "never-written")}
        own = [own_work(home, rid) for rid in samples][1:]  # the first warms this process up
        own_wall = statistics.fmean(w for w, _ in own)
        own_cpu = statistics.fmean(c for _, c in own)
        print(
            f"\nOwn work of one report ({expected:,} rows, SFTP), built and delivered in a warm process, "
            f"mean of {len(own)}: {own_wall:.2f} s wall, {own_cpu:.2f} s CPU\n"
        )
        platform_runs = Runs(env, PLATFORM)
        multi_runs = Runs(env, MULTIPROCESS) if args.compare_multiprocess else None
        forks = ForkServer(env) if args.fork else None
        launched = LauncherRuns(platform_runs) if args.fork_launcher else None
        workers: list[Worker] = []
        print("| registered reports | variant | run process CPU (mean, min-max) | overhead beyond own work | wall |")
        print("|---:|---|---:|---:|---:|")
        ids = iter(part1)
        for size in sizes:
            if size > registered:
                scale.add_reports(home, (scale.mixed_definition(i) for i in range(registered, size)))
                registered = size
            variants = [("in-process executor, first run (compiled bytecode)", platform_runs, env)]
            variants.append(("in-process executor (compiled bytecode)", platform_runs, env))
            if args.cold:
                variants.append(("in-process executor, no bytecode cache", platform_runs, cold_env))
            if multi_runs is not None:
                variants.append(("multiprocess executor (Dagster's default)", multi_runs, env))
            if forks is not None:
                variants.append(("forked from a preloaded process (experiment)", platform_runs, env))
            if launched is not None:
                variants.append(("ForkRunLauncher via instance.launch_run", platform_runs, env))
            for label, runs, run_env in variants:
                count = 1 if "first run" in label else args.runs
                chosen = [next(ids) for _ in range(count)]
                if label.startswith("forked") and forks is not None:
                    group = [forks.execute(rid, runs.create(rid)) for rid in chosen]
                elif label.startswith("ForkRunLauncher") and launched is not None:
                    if not launched.warm:  # the first launch starts the fork server: paid once, not per run
                        warm_id = next(ids)
                        launched.execute(warm_id, runs.create(warm_id))
                        launched.warm = True
                    group = launched.measured([(rid, runs.create(rid)) for rid in chosen])
                else:
                    group = [runs.execute(rid, runs.create(rid), run_env) for rid in chosen]
                workers.extend(group)
                cpus = [w.cpu_s for w in group]
                print(
                    f"| {registered:,} | {label} | {statistics.fmean(cpus):.2f} s ({min(cpus):.2f}-{max(cpus):.2f}) "
                    f"| {statistics.fmean(cpus) - own_cpu:.2f} s | {statistics.fmean(w.wall_s for w in group):.2f} s |",
                    flush=True,
                )
        problems = check(home, server.root_dir, workers, expected)
        print(
            f"\nPart 1 checks: {len(workers) - len({p.split(':')[0] for p in problems})} / {len(workers)} runs verified"
        )
        for p in problems[:10]:
            print(f"    {p}")
        if args.burst:
            problems += run_burst(args, home, server, platform_runs, burst, expected, own_wall, own_cpu, launched)
    if args.keep is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 1 if problems else 0


def run_burst(
    args,
    home,
    server,
    runs: Runs,
    ids: list[str],
    expected: int,
    own_wall: float,
    own_cpu: float,
    launched: LauncherRuns | None = None,
) -> list[str]:  # noqa: ANN001
    started = time.perf_counter()
    created = [(rid, runs.create(rid)) for rid in ids]  # one tick of every schedule
    if launched is not None:
        workers, how = launched.measured(created, args.parallel), "ForkRunLauncher"
    else:
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            workers = list(pool.map(lambda pair: runs.execute(*pair), created))
        how = "fresh `dagster api execute_run` processes"
    return _burst_figures(args, home, server, ids, expected, own_wall, own_cpu, started, workers, how)


def _burst_figures(
    args,
    home,
    server,
    ids: list[str],
    expected: int,
    own_wall: float,
    own_cpu: float,
    started: float,
    workers: list[Worker],
    how: str,
) -> list[str]:  # noqa: ANN001
    makespan = time.perf_counter() - started
    cores = os.cpu_count() or 1
    limit = own_wall * len(ids) / cores
    delays = sorted(w.finished_at - started for w in workers)
    cpu_sum = sum(w.cpu_s for w in workers)
    problems = check(home, server.root_dir, workers, expected)

    def q(p: float) -> float:
        return delays[min(len(delays) - 1, int(round(p * (len(delays) - 1))))]

    print(f"\n### Burst: {len(ids)} reports due at the same minute, {args.parallel} run workers at a time ({how})\n")
    print("| figure | value |\n|---|---:|")
    for name, value in [
        ("makespan (runs created to last delivery confirmed)", f"{makespan:.1f} s"),
        (f"physical limit (own work {own_wall:.2f} s x {len(ids)} / {cores} cores)", f"{limit:.1f} s"),
        ("**makespan / physical limit**", f"**{makespan / limit:.2f}**"),
        ("throughput", f"{len(ids) / makespan * 60:.1f} runs/min"),
        (
            "delay scheduled minute -> confirmed delivery, p50 / p95 / max",
            f"{q(0.5):.1f} / {q(0.95):.1f} / {delays[-1]:.1f} s",
        ),
        ("run process CPU, mean", f"{cpu_sum / len(workers):.2f} s (own work {own_cpu:.2f} s)"),
        ("makespan / (CPU sum / cores)", f"{makespan / (cpu_sum / cores):.2f}"),
        (
            "verified (run SUCCESS, 1 materialisation, audit SUCCESS, file once at the server)",
            f"{len(workers) - len({p.split(':')[0] for p in problems})} / {len(workers)}",
        ),
        ("load average at the end", " / ".join(f"{x:.1f}" for x in os.getloadavg())),
    ]:
        print(f"| {name} | {value} |")
    for p in problems[:10]:
        print(f"    {p}")
    return problems


if __name__ == "__main__":
    sys.exit(main())
