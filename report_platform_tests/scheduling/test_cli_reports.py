"""`report-platform reports|users|folders` as a person runs them (real processes)."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest
import yaml

from report_platform_tests.scheduling.conftest import sms_definition

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def rp(platform):
    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "report_platform.cli.main", *args],
            cwd=ROOT,
            env={**os.environ},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if ok:
            assert result.returncode == 0, result.stderr
        else:
            assert result.returncode != 0
            assert result.stderr.startswith("error:") and "Traceback" not in result.stderr, result.stderr
        return result

    return run


def _write(tmp_path: Path, name: str, definition: dict) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(definition))
    return str(path)


def test_validate_names_every_problem_and_accepts_a_good_file(rp, tmp_path):
    good = _write(tmp_path, "good.yaml", sms_definition())
    assert "valid sms_usage report" in rp("reports", "validate", good).stdout
    bad = sms_definition(
        workspace="acme-north", schedule={"timezone": "Mars/Olympus", "frequency": "daily", "time_of_day": "6am"}
    )
    result = rp("reports", "validate", _write(tmp_path, "bad.yaml", bad), ok=False)
    lines = result.stderr.strip().splitlines()
    assert any("schedule.timezone" in line and "Mars/Olympus" in line for line in lines)
    assert any("schedule.time_of_day" in line and "6am" in line for line in lines)
    assert any("workspace" in line and "acme-north" in line for line in lines)


def test_render_builds_each_type_with_the_period_of_the_scheduled_time(rp, tmp_path):
    out = tmp_path / "out"

    def render(definition: dict, at: str) -> dict:
        """`reports render --file … --json` of a definition written to a file."""
        path = _write(tmp_path, f"{len(list(tmp_path.glob('*.yaml')))}.yaml", definition)
        return json.loads(rp("reports", "render", "--file", path, "--at", at, "--out", str(out), "--json").stdout)

    sms = render(sms_definition(), "2026-03-09T06:00:00")
    assert sms["period_start"] == "2026-03-08T00:00:00-05:00" and sms["period_end"] == "2026-03-09T00:00:00-04:00"
    rows = list(csv.reader(io.StringIO(Path(sms["path"]).read_text(encoding="utf-8"), newline="")))
    assert len(rows) - 1 == sms["rows"] > 0
    voice = sms_definition(
        type="voice_usage", filename_pattern="voice_{{PeriodStart}}.csv", period={"kind": "previous_week"}
    )
    week = render(voice, "2026-03-11T06:00:00-04:00")
    assert week["period_start"] == "2026-03-02T00:00:00-05:00" and week["period_end"] == "2026-03-09T00:00:00-04:00"
    aegis = sms_definition(
        type="aegis_interaction",
        filename_pattern="a.csv",
        filters={"workflows": ["inbound-screening"], "include_event_details": True},
    )
    a = render(aegis, "2026-03-09T06:00:00")
    with open(a["path"], newline="", encoding="utf-8") as fh:
        records = list(csv.DictReader(fh))
    assert records and {r["Workflow"] for r in records} == {"inbound-screening"}
    assert json.loads(records[0]["Events"])[0]["type"] == "transaction.received"
    billing = {
        k: v
        for k, v in sms_definition(type="billing", filename_pattern="bill_{{PeriodStart}}.xlsx").items()
        if k != "workspace"
    }
    billing.update(organization="acme", period={"kind": "custom_range", "start": "2026-03-02", "end": "2026-03-08"})
    b = render(billing, "2026-03-09T06:00:00")
    book = openpyxl.load_workbook(b["path"])
    assert book.sheetnames[0] == "Billing Summary"
    assert sorted(book.sheetnames[1:]) == ["Acme East", "Acme Labs", "Acme West"]


def test_the_report_lifecycle_through_the_cli_with_roles_enforced(rp, tmp_path, smtp):
    definition = _write(tmp_path, "d.yaml", sms_definition(folder="SMS"))
    refused = rp("reports", "create", definition, "--user", "user@acme.example", ok=False)
    assert "only an Owner" in refused.stderr
    report_id = rp("reports", "create", definition, "--user", "owner@acme.example").stdout.strip()
    listed = json.loads(rp("reports", "list", "--user", "user@acme.example", "--json").stdout)
    assert [(r["id"], r["folder"], r["status"], r["schedule"]) for r in listed] == [
        (report_id, "SMS", "enabled", "Daily at 06:00 America/New_York")
    ]
    assert rp("reports", "pause", report_id, "--user", "user@acme.example", ok=False).stderr.count("\n") == 1
    rp("reports", "pause", report_id, "--user", "owner@acme.example")
    assert (
        json.loads(rp("reports", "show", report_id, "--user", "owner@acme.example", "--json").stdout)["status"]
        == "disabled"
    )
    rp("reports", "resume", report_id, "--user", "owner@acme.example")
    ran = json.loads(rp("reports", "run-now", report_id, "--user", "owner@acme.example", "--json").stdout)
    assert ran["success"] is True and ran["launched"] == "in-process"
    assert len(smtp.received) == 1
    rp("reports", "delete", report_id, "--user", "owner@acme.example")
    log = json.loads(rp("reports", "audit-log", report_id, "--user", "user@acme.example", "--json").stdout)
    assert [r["status"] for r in log["runs"]] == ["SUCCESS"]
    assert [c["action"] for c in log["changes"]] == ["delete", "resume", "pause", "create"]
    assert json.loads(rp("reports", "list", "--user", "owner@acme.example", "--json").stdout) == []


def test_folders_through_the_cli(rp, tmp_path):
    rp("folders", "create", "Billing", "--user", "owner@acme.example")
    rp("folders", "rename", "Billing", "Finance", "--user", "owner@acme.example")
    listed = json.loads(rp("folders", "list", "--user", "user@acme.example", "--json").stdout)
    assert [f["name"] for f in listed] == ["Finance"]
    assert "only an Owner" in rp("folders", "delete", "Finance", "--user", "user@acme.example", ok=False).stderr
    rp("folders", "delete", "Finance", "--user", "owner@acme.example")


def test_render_writes_the_chosen_format_and_validate_names_a_wrong_one(rp, tmp_path):
    import gzip

    import polars as pl

    out = tmp_path / "out"
    rendered = {}
    for file_format, ext in (("csv", ".csv"), ("csv.gz", ".csv.gz"), ("parquet", ".parquet")):
        # No filename_pattern: the default one follows the format.
        path = _write(tmp_path, f"{ext}.yaml", {**sms_definition(filename_pattern=None), "format": file_format})
        result = rp("reports", "render", "--file", path, "--at", "2026-03-09T06:00:00", "--out", str(out), "--json")
        rendered[file_format] = json.loads(result.stdout)
        assert rendered[file_format]["path"].endswith(ext)
    csv_bytes = Path(rendered["csv"]["path"]).read_bytes()
    assert gzip.decompress(Path(rendered["csv.gz"]["path"]).read_bytes()) == csv_bytes
    frame = pl.read_parquet(rendered["parquet"]["path"])
    assert frame.height == rendered["parquet"]["rows"] == rendered["csv"]["rows"] > 0
    assert frame.schema["Timestamp"] == pl.Datetime("us", "America/New_York")

    bad = _write(tmp_path, "bad.yaml", {**sms_definition(), "format": "parquet"})
    result = rp("reports", "validate", bad, ok=False)
    assert "filename_pattern: must end with '.parquet' for a sms_usage report in format parquet" in result.stderr
    billing = _write(
        tmp_path, "billing.yaml", {**sms_definition(type="billing", filename_pattern="b.xlsx"), "format": "csv"}
    )
    assert (
        "format: a billing report cannot be written as csv; it is only xlsx"
        in rp("reports", "validate", billing, ok=False).stderr
    )
