"""The scale benchmark's machinery at toy sizes: a varied registry loads into schedules, and a
burst of concurrent report runs is delivered over SFTP and checked (`benchmarks/bench_scale.py`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import ModuleType

import dagster as dg
import pytest

from report_platform_tests.scale.benchmark_module import load_benchmark


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("bench_scale")


@pytest.fixture
def clean_service_cache():  # noqa: ANN201
    from report_platform.app import _service

    _service.cache_clear()
    yield
    _service.cache_clear()


def test_a_varied_registry_becomes_one_schedule_per_timing(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_service_cache: None
) -> None:
    from report_platform.app import registry_service
    from report_platform.ingest.assets import usage_assets
    from report_platform.resources import deployment_resources
    from report_platform.scheduling.exports import export_assets, report_jobs
    from report_platform.scheduling.schedules import report_schedules
    from report_platform.scheduling.timings import timing_key, timing_of
    from report_platform.settings import Home

    home = bench.new_home(tmp_path / "home")
    monkeypatch.setenv("REPORT_PLATFORM_HOME", str(home.root))
    ids, _ = bench.add_reports(home, (bench.mixed_definition(i) for i in range(40)))
    service = registry_service(Home.from_env())
    schedules, _ = report_schedules(service)
    specs = service.system.schedule_specs()
    assert len(ids) == len(specs) == 40
    timings = {timing_key(timing_of(schedule)[0]) for _, _, _, schedule in specs}
    assert len(schedules) == len({s.name for s in schedules}) == len(timings)
    assert {s.execution_timezone for s in schedules} == set(bench.TIMEZONES)
    assert {s.job_name for s in schedules} == {"report_batch_job"}
    defs = dg.Definitions(
        assets=[*usage_assets, *export_assets],
        jobs=list(report_jobs.values()),
        schedules=schedules,
        resources=deployment_resources(),
    )
    assert len(defs.get_repository_def().schedule_defs) == len(timings)


@pytest.mark.skipif(not Path("/usr/sbin/sshd").exists(), reason="needs OpenSSH's sshd (openssh-server)")
def test_a_small_burst_is_delivered_and_checked(
    bench: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    clean_service_cache: None,
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "unused"))  # the burst sets its own; restored after
    # A bytecode cache shared across test sessions keeps the run processes' start-up short.
    pycache = Path(tempfile.gettempdir()) / "report-platform-bench-pycache"
    args = bench.parse_args(
        ["--reports", "6", "--concurrent", "2", "--workers", "2", "--singles", "1", "--rows", "800",
         "--no-warmup", "--pycache", str(pycache)]
    )  # fmt: skip
    assert bench.bench_runs(tmp_path, args) is True
    out = capsys.readouterr().out
    assert "| audit log SUCCESS | 3 / 3 |" in out
    assert "| file on the SFTP server, size and SHA-256 as audited | 3 / 3 |" in out
    assert "| Dagster run SUCCESS | 3 / 3 |" in out
    assert "| lines mentioning 'lock' in run output | 0 |" in out

    # The same registry (3 burst reports and 4 others) loads in a fresh process.
    env = bench.environment(tmp_path / "runs-home", tmp_path / "runs-dagster", pycache)
    _, probe = bench.probe_load(env)
    assert probe["report_schedules"] == 1 + 4  # the burst's 3 reports share their timing's schedule
    assert probe["schedules"] > probe["report_schedules"]
