"""A day's billing always matches the usage the store holds, even when one source of the day fails."""

import hashlib
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from report_platform.domain.tenancy import DEMO_TENANCY
from report_platform.ingest.assets import UsageStoreResource, usage_assets
from report_platform.ingest.generator import generate
from report_platform.ingest.runner import ingest_range
from report_platform.settings import Home
from report_platform.store.duck import reader
from report_platform.store.partitions import partition_path
from report_platform.store.schema import SMS_MESSAGES

DAY = date(2026, 3, 8)
ROOT = Path(__file__).resolve().parents[2]
UNREADABLE_CSV = b'message_id,workspace_id\n"x\xff\xfe,1\n'  # not UTF-8


def _report_platform(home: Home, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "report_platform.cli.main", *args],
        cwd=ROOT,
        env={**os.environ, "REPORT_PLATFORM_HOME": str(home.root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _calls_billed_and_made(home: Home) -> tuple[int, int]:
    con = reader(home.store)
    billed = con.execute(
        "select coalesce(sum(quantity), 0)::bigint from billing_line_items where type = 'Calls' and day = ?", [DAY]
    ).fetchone()[0]
    made = con.execute("select count(*) from voice_calls where occurred_at::date = ?", [DAY]).fetchone()[0]
    return billed, made


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _land_one_voice_call_and_a_broken_sms_file(home: Home) -> Path:
    """The provider replaces the day's voice file with a single call and sends an unreadable SMS file."""
    call = generate("voice_calls", DEMO_TENANCY, DAY, 50, seed=5)["voice_calls"].head(1)
    voice = home.landing / "voice_calls" / f"{DAY}.csv"
    voice.parent.mkdir(parents=True, exist_ok=True)
    call.with_columns(pl.col("occurred_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.f%:z")).write_csv(voice)
    sms = home.landing / "sms_messages" / f"{DAY}.csv"
    sms.parent.mkdir(parents=True, exist_ok=True)
    sms.write_bytes(UNREADABLE_CSV)
    return sms


def test_cli_ingest_failing_on_one_source_leaves_billing_matching_the_stored_calls(home):
    ingest_range(home, DAY, DAY)
    assert _calls_billed_and_made(home) == (800, 800)
    sms_partition = partition_path(home.store, SMS_MESSAGES, DAY)
    sms_before = _digest(sms_partition)
    broken = _land_one_voice_call_and_a_broken_sms_file(home)

    failed = _report_platform(home, "ingest", "--start", str(DAY), "--end", str(DAY), "--json")

    assert failed.returncode == 1
    error = failed.stderr.strip().splitlines()
    assert len(error) == 1 and str(broken) in error[0] and "Traceback" not in failed.stderr, failed.stderr
    billed, made = _calls_billed_and_made(home)
    assert made == 1 and billed == made
    assert _digest(sms_partition) == sms_before  # the failed source keeps its previous partition
    assert not list(sms_partition.parent.glob(".tmp-*"))


def test_dagster_run_with_a_failed_usage_asset_leaves_billing_matching_the_stored_calls(home):
    ingest_range(home, DAY, DAY)
    assert _calls_billed_and_made(home) == (800, 800)
    broken = _land_one_voice_call_and_a_broken_sms_file(home)

    resource = {"usage_store": UsageStoreResource(home=str(home.root))}
    run = dg.materialize(usage_assets, partition_key=str(DAY), resources=resource, raise_on_error=False)

    assert not run.success
    failures = [e for e in run.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["sms_messages"]
    assert str(broken) in failures[0].step_failure_data.user_failure_data.description
    # Dagster skips billing_line_items because an upstream step failed: the store must already agree.
    materialized = {e.asset_key.path[0] for e in run.get_asset_materialization_events()}
    assert "billing_line_items" not in materialized and "voice_calls" in materialized
    billed, made = _calls_billed_and_made(home)
    assert made == 1 and billed == made
