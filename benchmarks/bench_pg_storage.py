"""Report runs on Dagster's PostgreSQL storage: dagster-postgres as shipped vs `PooledPostgresStorage`.

    .venv/bin/python benchmarks/bench_pg_storage.py [--runs 10] [--rows 20000] [--rounds 2]

Both variants run side by side, alternating round by round, on one real PostgreSQL server (Debian's,
started here with the tests' helper) with a Dagster database each. Each run is a real report run
(`sms_usage`, ~`--rows` rows, SFTP to OpenSSH sshd on loopback) created as a schedule tick creates
it and launched as the run queue launches it (`instance.launch_run`, ForkRunLauncher), one at a time.
Measured per run: the run worker's CPU (sampled from /proc, plus its share of the fork server's),
PostgreSQL's CPU (the postmaster's reaped backends plus the live ones, from /proc), the
connections PostgreSQL accepted (`pg_stat_database.sessions`), and this process's CPU creating and
launching the run (what the daemon spends). Every run must end SUCCESS with its file at the server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import bench_run_overhead as overhead  # noqa: E402
import bench_scale as scale  # noqa: E402

VARIANTS = {
    "dagster-postgres as shipped (`storage: postgres`, one connection per statement)": None,
    "`PooledPostgresStorage` (one kept connection per storage and process)": "pooled",
}


def sessions(server, database: str) -> int:  # noqa: ANN001
    import psycopg

    with psycopg.connect(host=server.host, port=server.port, user=server.user, dbname="postgres") as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,)).fetchone()[0]


def storage_config(server, database: str, variant: str | None) -> dict:  # noqa: ANN001
    db = {"hostname": server.host, "port": server.port, "username": server.user, "password": "", "db_name": database}
    if variant is None:
        # psycopg2 named: with SQLAlchemy 2.1's default driver (psycopg 3) dagster-postgres cannot
        # write an event at all (see report_platform/scheduling/pg_storage.py, driver_url).
        return {"postgres": {"postgres_db": db | {"scheme": "postgresql+psycopg2"}}}
    return {
        "custom": {
            "module": "report_platform.scheduling.pg_storage",
            "class": "PooledPostgresStorage",
            "config": {"postgres_db": db},
        }
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per variant and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--workspace", default="acme-east")
    args = parser.parse_args()

    from report_platform_devservers.standins import SshdStandin
    from report_platform_tests.servers.postgres import running_postgres

    work = Path(tempfile.mkdtemp(prefix="bench-pg-storage-"))
    home = scale.new_home(work / "home")
    _, expected, _ = scale.prepare_usage(home, args.workspace, args.rows)
    per_variant = args.runs * args.rounds + 1
    ids = iter(scale.add_reports(home, iter(overhead.named("pg", per_variant * len(VARIANTS), args.workspace)))[0])
    os.environ["REPORT_PLATFORM_HOME"] = str(home.root)
    print(
        f"## PostgreSQL storage per run ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs)"
    )
    figures: dict[str, dict[str, list[float]]] = {name: {} for name in VARIANTS}
    problems: list[str] = []
    done: dict[str, list] = {}
    with running_postgres() as server, SshdStandin(root_dir=work / "sftp-root", workdir=work / "sshd") as sftp:
        scale.write_connections(home, sftp)
        os.environ[scale.SFTP_KEY_VARIABLE] = str(sftp.client_key_path)
        env = dict(os.environ)
        setups = {}
        for i, (name, variant) in enumerate(VARIANTS.items()):
            database = f"dagster_{i}"
            server.create_database(database)
            folder = scale.dagster_home(work / f"dagster-{i}")
            config = yaml.safe_load((folder / "dagster.yaml").read_text()) or {}
            config["storage"] = storage_config(server, database, variant)
            config["run_launcher"] = {"module": "report_platform.scheduling.fork_launcher", "class": "ForkRunLauncher"}
            (folder / "dagster.yaml").write_text(yaml.safe_dump(config))
            os.environ["DAGSTER_HOME"] = str(folder)
            runs = overhead.Runs(env | {"DAGSTER_HOME": str(folder)}, overhead.PLATFORM)
            launched = overhead.LauncherRuns(runs)
            warm = next(ids)  # the first launch starts the fork server: paid once, not per run
            launched.execute(warm, runs.create(warm))
            setups[name] = (folder, database, runs, launched)
        for _round in range(args.rounds):
            for name, (folder, database, runs, launched) in setups.items():
                os.environ["DAGSTER_HOME"] = str(folder)
                out = figures[name]
                # PostgreSQL's CPU and connections are taken over the round's runs and shared out:
                # a backend's CPU reaches the postmaster only when it has ended and been reaped.
                s0, p0 = sessions(server, database), server.cpu_seconds()
                for _ in range(args.runs):
                    report_id = next(ids)
                    c0 = overhead.cpu_self()
                    run_id = runs.create(report_id)
                    (worker,) = launched.measured([(report_id, run_id)])
                    out.setdefault("worker", []).append(worker.cpu_s)
                    out.setdefault("launcher", []).append(overhead.cpu_self() - c0)
                    done.setdefault(name, []).append(worker)
                time.sleep(1.0)  # the last worker's connections close after its run is marked done
                out.setdefault("postgres", []).append((server.cpu_seconds() - p0) / args.runs)
                out.setdefault("sessions", []).append((sessions(server, database) - s0 - 1) / args.runs)
        for name, (folder, _, runs, _) in setups.items():
            # Run SUCCESS, one materialisation, audit SUCCESS, the file once at the server.
            os.environ["DAGSTER_HOME"] = str(folder)
            problems += overhead.check(home, sftp.root_dir, done[name], expected)
            runs.instance.dispose()

    print(
        f"\n{args.runs} runs x {args.rounds} rounds per variant, one at a time; mean per run (min-max; "
        "for PostgreSQL, of the rounds' means):\n"
    )
    print("| variant | connections opened | PostgreSQL CPU | run worker CPU | create + launch CPU | total CPU |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, out in figures.items():
        total = statistics.fmean(out["postgres"]) + statistics.fmean(out["worker"]) + statistics.fmean(out["launcher"])

        def cell(values: list[float], digits: int = 2) -> str:
            return f"{statistics.fmean(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"

        print(
            f"| {name} | {cell(out['sessions'], 0)} | {cell(out['postgres'])} s | {cell(out['worker'])} s "
            f"| {cell(out['launcher'])} s | {total:.2f} s |"
        )
    print(f"\nload average at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for p in problems[:10]:
        print(f"    {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
