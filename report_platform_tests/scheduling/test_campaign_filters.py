"""Campaign filters end to end: the rows a filtered render holds, the names refused when saved, and
a campaign that leaves the tenancy after the report was saved."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
import pytest
import yaml
from click.testing import CliRunner

from report_platform.app import registry_service
from report_platform.cli.main import cli
from report_platform.delivery.connections import Connections
from report_platform.domain.tenancy import DEMO_TENANCY
from report_platform.launch import launch_report_run
from report_platform.scheduling.failures import record_failure
from report_platform.settings import Home
from report_platform_tests.scheduling.conftest import OWNER, USER, sms_definition

# previous_week at Wednesday 2026-03-11 06:00 New York: Monday 2 March 00:00 EST to Monday 9 March
# 00:00 EDT, written out here rather than asked of the code under test.
AT = "2026-03-11T06:00:00"
START_UTC = datetime(2026, 3, 2, 5, tzinfo=UTC)
END_UTC = datetime(2026, 3, 9, 4, tzinfo=UTC)
WEEKLY = {"period": {"kind": "previous_week"}, "filename_pattern": "{{ReportName}}_{{PeriodStart}}.csv"}


def _store_rows(store: Path, table: str, condition: pl.Expr) -> pl.DataFrame:
    """The table's rows of acme-east in the period, read straight from its Parquet files."""
    files = sorted(str(p) for p in (store / table).glob("*/*.parquet") if not p.name.startswith("."))
    period = (pl.col("occurred_at") >= START_UTC) & (pl.col("occurred_at") < END_UTC)
    return pl.scan_parquet(files).filter((pl.col("workspace_id") == "acme-east") & period & condition).collect()


def _render(tmp_path: Path, definition: dict) -> tuple[dict, list[dict[str, str]]]:
    """`reports render --file … --json`, and the CSV's records as the csv module reads them."""
    path = tmp_path / f"{len(list(tmp_path.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(definition))
    result = CliRunner().invoke(
        cli, ["reports", "render", "--file", str(path), "--at", AT, "--out", str(tmp_path / "out"), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    with open(summary["path"], newline="", encoding="utf-8") as fh:
        return summary, list(csv.DictReader(fh))


CASES = {
    "voice by Core campaign": (
        "voice_usage",
        {"campaigns": ["Acme East Sales Line", "Acme East BYOP Pool"]},
        "voice_calls",
        pl.col("campaign_name").is_in(["Acme East Sales Line", "Acme East BYOP Pool"]),
    ),
    "sms by Core campaign": (
        "sms_usage",
        {"core_campaigns": ["Acme East Callback"]},
        "sms_messages",
        pl.col("core_campaign") == "Acme East Callback",
    ),
    "sms by Engage campaign": (
        "sms_usage",
        {"engage_campaigns": ["Acme East Promotions"]},
        "sms_messages",
        pl.col("engage_campaign") == "Acme East Promotions",
    ),
    "sms by both": (
        "sms_usage",
        {"core_campaigns": ["Acme East Sales Line"], "engage_campaigns": ["Acme East Promotions"]},
        "sms_messages",
        (pl.col("core_campaign") == "Acme East Sales Line") | (pl.col("engage_campaign") == "Acme East Promotions"),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_filtered_render_holds_exactly_the_store_rows_of_its_campaigns(platform, tmp_path, case):
    report_type, filters, table, condition = CASES[case]
    summary, records = _render(tmp_path, sms_definition(type=report_type, filters=filters, **WEEKLY))
    assert summary["period_start"] == START_UTC.astimezone(ZoneInfo("America/New_York")).isoformat()
    expected = _store_rows(platform.store, table, condition)
    everything = _store_rows(platform.store, table, pl.lit(True))
    # The filter must select something and leave something out, or the comparison proves nothing.
    assert 0 < expected.height < everything.height
    assert summary["rows"] == len(records) == expected.height
    id_column = "call_id" if table == "voice_calls" else "message_id"
    assert expected[id_column].n_unique() == expected.height
    if report_type == "voice_usage":
        assert {r["Campaign"] for r in records} == set(expected["campaign_name"].unique())
    else:
        written = {(r["Core Campaign"] or None, r["Engage Campaign"] or None) for r in records}
        assert written == set(expected.select("core_campaign", "engage_campaign").iter_rows())


def test_an_unknown_campaign_is_refused_by_validate_and_create_with_the_known_names(platform, tmp_path):
    definition = sms_definition(
        type="voice_usage", filters={"campaigns": ["Acme East Sale Line"]}, filename_pattern="v.csv"
    )
    path = tmp_path / "voice.yaml"
    path.write_text(yaml.safe_dump(definition))
    expected = (
        f"error: {path}: filters.campaigns: unknown Core campaign 'Acme East Sale Line' in workspace 'acme-east'; "
        "did you mean 'Acme East Sales Line'? (known: Acme East BYOP Pool, Acme East Callback, Acme East Sales Line)"
    )
    for args in (["validate", str(path)], ["create", str(path), "--user", OWNER]):
        result = CliRunner().invoke(cli, ["reports", *args])
        assert result.exit_code == 1
        assert result.stderr.strip().splitlines() == [expected]
    assert registry_service(platform).list_reports(OWNER) == []
    sms = sms_definition(filters={"campaigns": ["Acme East Sales Line"]})
    path.write_text(yaml.safe_dump(sms))
    result = CliRunner().invoke(cli, ["reports", "validate", str(path)])
    assert result.exit_code == 1
    assert "filters.campaigns: sms_usage reports have no 'campaigns' filter; did you mean 'core_campaigns'?" in (
        result.stderr
    )


def test_a_campaign_removed_from_the_tenancy_fails_the_next_run_naming_it_and_tells_the_owner_once(
    platform, smtp, instance
):
    service = registry_service(Home.from_env())
    report_id = service.create_report(
        OWNER, sms_definition(filters={"core_campaigns": ["Acme East Callback"], "engage_campaigns": []})
    )
    # The deployment's tenancy now calls the campaign something else.
    tenancy = DEMO_TENANCY.to_dict()
    for workspace in tenancy["organizations"][0]["workspaces"]:
        for campaign in workspace["campaigns"]:
            if campaign["name"] == "Acme East Callback":
                campaign["name"] = "Acme East Call-back"
    (platform.root / "tenancy.yaml").write_text(yaml.safe_dump(tenancy))

    scheduled = datetime(2026, 3, 9, 6, 0, tzinfo=ZoneInfo("America/New_York"))
    launched = launch_report_run(report_id, "sms_usage", scheduled, trigger="schedule")
    assert launched.success is False
    (run,) = service.audit_log(USER, report_id).runs
    assert run.status == "FAILED"
    assert "filters.core_campaigns: Core campaign 'Acme East Callback' no longer in workspace 'acme-east'" in run.error
    assert "Acme East Call-back" in run.error  # the known names, so the owner sees what it became
    assert run.rows is None and not list(platform.archive.glob(f"{report_id}/**/*.csv"))
    dagster_run = instance.get_run_by_id(launched.dagster_run_id)
    assert record_failure(dagster_run, "step failed", service, Connections.from_env()) == [OWNER]
    assert record_failure(dagster_run, "step failed", service, Connections.from_env()) == []
    (notice,) = smtp.received
    assert "Core campaign 'Acme East Callback' no longer in workspace 'acme-east'" in notice.message.get_content()


def test_a_filtered_run_records_its_filter_in_the_audit_log_and_the_export_metadata(platform, smtp, instance):
    service = registry_service(Home.from_env())
    filters = {"core_campaigns": [], "engage_campaigns": ["Acme East Promotions"]}
    report_id = service.create_report(OWNER, sms_definition(filters=filters))
    scheduled = datetime(2026, 3, 9, 6, 0, tzinfo=ZoneInfo("America/New_York"))
    launched = launch_report_run(report_id, "sms_usage", scheduled, trigger="schedule")
    assert launched.success
    (run,) = service.audit_log(USER, report_id).runs
    assert run.status == "SUCCESS" and run.note == "filtered: Engage campaigns: Acme East Promotions"
    (mail,) = smtp.received
    (attachment,) = list(mail.message.iter_attachments())
    with_campaign = _store_rows(platform.store, "sms_messages", pl.col("engage_campaign") == "Acme East Promotions")
    start, end = datetime(2026, 3, 8, 5, tzinfo=UTC), datetime(2026, 3, 9, 4, tzinfo=UTC)
    expected = with_campaign.filter((pl.col("occurred_at") >= start) & (pl.col("occurred_at") < end)).height
    assert run.rows == expected > 0
    content = attachment.get_content()
    text = content if isinstance(content, str) else content.decode()
    records = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(records) == expected and {r["Engage Campaign"] for r in records} == {"Acme East Promotions"}
    (event,) = instance.all_logs(launched.dagster_run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    assert event.asset_materialization.metadata["filters"].value == "Engage campaigns: Acme East Promotions"
    assert service.get_report(USER, report_id).filters == "Engage campaigns: Acme East Promotions"
    row = next(r for r in service.list_reports(USER) if r.id == report_id)
    assert row.filters == "Engage campaigns: Acme East Promotions"
