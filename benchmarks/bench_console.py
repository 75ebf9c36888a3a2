"""The console under a full organisation: the Scheduled Tasks page and `GET /api/v1/reports`
with 1,000 reports, beside a static file served by the same server.

    .venv/bin/python benchmarks/bench_console.py [--reports 1000] [--requests 200] [--keep DIR]

A data folder with `--reports` varied reports (every type, timezone, frequency and destination,
the registry of `bench_scale.py`) in one organisation, and `report-platform console` serving it on
a free port on 127.0.0.1: the real uvicorn process, as `make run` starts it. One client on a
keep-alive connection asks, in turn and `--requests` times each, for the static stylesheet
(`/static/console.css`, the floor: the server's own cost of an answer), the list API (an API token)
and the list page (a browser's session cookie), each as a browser does (`Accept-Encoding: gzip`).
Reported: p50/p95/max in milliseconds, bytes on the wire, and each median over the static file's.
Interleaving the three keeps a noisy neighbour's slowdown out of the ratios.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_scale  # noqa: E402  (the registry contents and helpers of the scale benchmark)

PASSWORD = "bench-console-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(root: Path, reports: int) -> tuple[Any, str]:
    """The data folder with `reports` reports of acme; an API token of their Owner."""
    from report_platform.app import sign_in_store
    from report_platform.settings import PlatformSettings

    home = bench_scale.new_home(root)
    _, seconds = bench_scale.add_reports(home, (_in_acme(bench_scale.mixed_definition(i)) for i in range(reports)))
    print(f"registered {reports} reports in {seconds:.1f} s", file=sys.stderr)
    store = sign_in_store(home, PlatformSettings(home=root))
    store.set_password(bench_scale.OWNER, PASSWORD)
    return home, store.issue_token(bench_scale.OWNER, "bench").token


def _in_acme(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition in one of acme's workspaces: the list is one organisation's."""
    if definition.get("workspace", "acme").startswith("globex"):
        definition["workspace"] = "acme-east"
    return definition


def serve(root: Path, port: int) -> subprocess.Popen[str]:
    env = dict(os.environ) | {
        "REPORT_PLATFORM_HOME": str(root),
        "REPORT_PLATFORM_DAGSTER_URL": "http://127.0.0.1:9",  # nothing to launch runs on
    }
    env.pop("REPORT_PLATFORM_REGISTRY_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "report_platform.cli.main", "console", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"the console exited: {process.stderr.read() if process.stderr else ''}") from None
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the console did not start within 120 s")


def sign_in(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"email": bench_scale.OWNER, "password": PASSWORD})
    connection.request("POST", "/api/v1/session", body=body, headers={"Content-Type": "application/json"})
    answer = connection.getresponse()
    answer.read()
    if answer.status != 200:
        raise SystemExit(f"sign-in refused: {answer.status}")
    return answer.getheader("Set-Cookie", "").split(";")[0]


def measure(port: int, token: str, cookie: str, requests: int, reports: int) -> dict[str, dict[str, float]]:
    targets = {
        "static file /static/console.css": ("/static/console.css", {}),
        "GET /api/v1/reports": ("/api/v1/reports", {"Authorization": f"Bearer {token}"}),
        "Scheduled Tasks page /": ("/", {"Cookie": cookie}),
    }
    times: dict[str, list[float]] = {name: [] for name in targets}
    sizes: dict[str, int] = {}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for i in range(requests + 5):
        for name, (path, headers) in targets.items():
            started = time.perf_counter()
            connection.request("GET", path, headers={"Accept-Encoding": "gzip", **headers})
            answer = connection.getresponse()
            body = answer.read()
            elapsed = time.perf_counter() - started
            if answer.status != 200:
                raise SystemExit(f"{path} answered {answer.status}")
            if i >= 5:  # the first rounds warm the server's caches and the connection
                times[name].append(elapsed * 1000)
            sizes[name] = len(body)
    connection.request("GET", "/api/v1/reports", headers={"Authorization": f"Bearer {token}"})
    rows = json.loads(connection.getresponse().read())
    if len(rows) != reports:
        raise SystemExit(f"the list holds {len(rows)} reports, not {reports}")
    results = {}
    for name, values in times.items():
        values.sort()
        results[name] = {
            "p50": statistics.median(values),
            "p95": values[int(0.95 * (len(values) - 1))],
            "max": values[-1],
            "bytes": sizes[name],
        }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="Keep the data folder here instead of deleting it.")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-console-")) if args.keep is None else args.keep
    root.mkdir(parents=True, exist_ok=True)
    process = None
    try:
        _, token = prepare(root, args.reports)
        port = free_port()
        process = serve(root, port)
        results = measure(port, token, sign_in(port), args.requests, args.reports)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=60)
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    floor = results["static file /static/console.css"]["p50"]
    print(f"## Console with {args.reports:,} reports\n")
    print(
        f"`.venv/bin/python benchmarks/bench_console.py --reports {args.reports} --requests {args.requests}` "
        f"— one keep-alive client, the three requests interleaved, {args.requests} each, gzip accepted:\n"
    )
    print("| request | p50 ms | p95 ms | max ms | bytes on the wire | p50 / static file |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r['p50']:.1f} | {r['p95']:.1f} | {r['max']:.1f} | {r['bytes']:,} | {r['p50'] / floor:.1f}× |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
