import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def rp(home, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "report_platform.cli.main", *args],
        cwd=ROOT,
        env={**os.environ, "REPORT_PLATFORM_HOME": str(home.root)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_demo_data_ingest_and_sql_end_to_end(home):
    made = rp(
        home,
        "demo-data",
        "--start",
        "2026-03-01",
        "--end",
        "2026-03-02",
        "--rows-per-day",
        "300",
        "--seed",
        "3",
    )
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (home.landing / "sms_messages").iterdir()) == [
        "2026-03-01.parquet",
        "2026-03-02.parquet",
    ]
    loaded = rp(home, "ingest", "--start", "2026-03-01", "--end", "2026-03-02")
    assert loaded.returncode == 0, loaded.stderr
    assert "ingest" in loaded.stderr and "quarantined" in loaded.stderr  # the progress bar and summary
    out = rp(
        home,
        "sql",
        "select count(*) as n, min(occurred_at)::date as first from sms_messages",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"n": 600, "first": "2026-03-01"}]
    acme = rp(
        home,
        "sql",
        "select distinct workspace_id from voice_calls where workspace_id like 'acme-%' order by 1",
        "--json",
    )
    assert [r["workspace_id"] for r in json.loads(acme.stdout)] == [
        "acme-east",
        "acme-labs",
        "acme-west",
    ]
    tables = rp(home, "sql", "select count(*) as n from billing_line_items", "--json")
    assert json.loads(tables.stdout)[0]["n"] > 0


def test_sql_refuses_writes_with_a_clear_message(home):
    for statement in [
        "create table x as select 1",
        "insert into sms_messages select * from sms_messages",
        "drop view sms_messages",
        "copy (select 1) to '/tmp/out.csv'",
        "select 1; delete from voice_calls",
    ]:
        result = rp(home, "sql", statement)
        assert result.returncode != 0
        assert result.stderr.startswith("error: the store is read-only here"), result.stderr
        assert "Traceback" not in result.stderr
    outside = rp(home, "sql", "select * from read_csv('/etc/passwd')")
    assert outside.returncode != 0 and "disabled" in outside.stderr


def test_bad_arguments_give_one_line_errors(home):
    for args in (
        ["ingest", "--start", "2026-02-30", "--end", "2026-03-01"],
        ["ingest", "--start", "2026-03-02", "--end", "2026-03-01"],
    ):
        result = rp(home, *args)
        assert result.returncode != 0
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error:")
