"""Asset checks, evaluated through Dagster as the assets materialise: the quarantine rate of a
usage partition, an export's rows against the store, and a billing workbook that must reconcile
before it is delivered."""

import json
import shutil
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
import pytest
from openpyxl import load_workbook

from report_platform.app import definition_of, registry_service
from report_platform.domain.tenancy import DEMO_TENANCY
from report_platform.ingest.assets import UsageStoreResource, usage_assets
from report_platform.ingest.checks import QUARANTINE_CHECK
from report_platform.ingest.generator import generate
from report_platform.ingest.load import write_landing_day
from report_platform.launch import launch_report_run
from report_platform.reports import produce
from report_platform.reports.archive import archive_file, find_archived
from report_platform.reports.builders import aegis, billing, sms
from report_platform.scheduling.checks import RECONCILE_CHECK, ROWS_CHECK, store_records
from report_platform.settings import Home
from report_platform_tests.scheduling.conftest import OWNER, USER, sms_definition

NY = ZoneInfo("America/New_York")
DAY = date(2026, 3, 8)
SMS_TICK = datetime(2026, 3, 9, 6, 0, tzinfo=NY)
BILLING_TICK = datetime(2026, 4, 1, 8, 0, tzinfo=NY)  # bills March, which holds the store's week


def _usage(name: str) -> list[dg.AssetsDefinition]:
    return [a for a in usage_assets if dg.AssetKey(name) in a.keys]


def _voice_landing(home: Home, good: int, bad: int) -> None:
    rows = generate("voice_calls", DEMO_TENANCY, DAY, 2_000, seed=3)["voice_calls"].head(good + bad)
    assert rows.height == good + bad
    rows = rows.with_columns(pl.col("occurred_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.f%:z")).cast(pl.String)
    refused = rows.tail(bad).with_columns(status=pl.lit("exploded"))
    path = home.landing / "voice_calls" / f"{DAY}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.concat([rows.head(good), refused]).write_csv(path)


def _check(result: dg.ExecuteInProcessResult, asset: str, name: str) -> dg.AssetCheckEvaluation:
    (found,) = [
        e for e in result.get_asset_check_evaluations() if e.asset_key == dg.AssetKey(asset) and e.check_name == name
    ]
    return found


@pytest.mark.parametrize(
    ("good", "bad", "passed", "severity"),
    [
        (100, 0, True, dg.AssetCheckSeverity.WARN),  # a passed check keeps its declared severity
        (97, 3, False, dg.AssetCheckSeverity.WARN),
        (8, 2, False, dg.AssetCheckSeverity.ERROR),
    ],
)
def test_a_usage_partition_reports_its_quarantine_rate_as_a_check(home, good, bad, passed, severity):
    _voice_landing(home, good, bad)
    resource = UsageStoreResource(home=str(home.root), source="landing")
    result = dg.materialize(_usage("voice_calls"), partition_key=str(DAY), resources={"usage_store": resource})
    assert result.success  # never blocking: the loaded rows are right either way
    check = _check(result, "voice_calls", QUARANTINE_CHECK)
    assert (check.passed, check.severity) == (passed, severity)
    meta = check.metadata
    assert (meta["loaded_rows"].value, meta["quarantined_rows"].value) == (good, bad)
    assert meta["quarantine_rate"].value == pytest.approx(bad / (good + bad))
    assert (meta["warn_above"].value, meta["error_above"].value) == (0.01, 0.10)
    assert meta["origin"].value.startswith("landing:")
    assert f"{bad:,} of {good + bad:,} landing rows quarantined" in check.description
    (materialization,) = result.get_asset_materialization_events()
    assert materialization.materialization.metadata["dagster/row_count"].value == good
    assert materialization.materialization.partition == str(DAY)
    assert check.target_materialization_data.run_id == result.run_id


def test_aegis_rates_are_per_table_when_only_events_were_quarantined(home):
    write_landing_day(home.landing, "aegis_transactions", DAY, DEMO_TENANCY, 50, seed=5)
    events_path = home.landing / "aegis_events" / f"{DAY}.parquet"
    events = pl.read_parquet(events_path)
    orphans = events.head(30).with_columns(transaction_id=pl.lit("no-such-transaction"))
    pl.concat([events, orphans]).write_parquet(events_path)
    resource = UsageStoreResource(home=str(home.root), source="landing")
    result = dg.materialize(_usage("aegis_transactions"), partition_key=str(DAY), resources={"usage_store": resource})
    assert result.success
    transactions = _check(result, "aegis_transactions", QUARANTINE_CHECK)
    event_check = _check(result, "aegis_events", QUARANTINE_CHECK)
    assert transactions.passed and transactions.metadata["quarantined_rows"].value == 0
    assert not event_check.passed and event_check.metadata["quarantined_rows"].value == 30
    assert event_check.metadata["loaded_rows"].value == events.height
    assert event_check.metadata["quarantined_rows_of_source"].value == 30
    column_schema = {
        e.materialization.asset_key.path[0]: e.materialization.metadata["dagster/column_schema"].value
        for e in result.get_asset_materialization_events()
    }
    assert [c.name for c in column_schema["aegis_events"].columns][:3] == ["transaction_id", "workspace_id", "seq"]
    assert column_schema["aegis_events"].columns[2].type == "INTEGER"


def _run_checks(instance: dg.DagsterInstance, run_id: str) -> dict[str, dg.AssetCheckEvaluation]:
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return {e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data for e in events}


def _materialization(instance: dg.DagsterInstance, run_id: str) -> dg.AssetMaterialization:
    (event,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    return event.asset_materialization


def test_a_report_run_checks_its_rows_against_the_store(platform, smtp, instance):
    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, sms_definition())
    launched = launch_report_run(report_id, "sms_usage", SMS_TICK, trigger="schedule")
    assert launched.success and len(smtp.received) == 1
    (run,) = service.audit_log(USER, report_id).runs
    check = _run_checks(instance, launched.dagster_run_id)[ROWS_CHECK]
    assert check.passed and check.asset_key == dg.AssetKey("sms_usage_export")
    assert check.metadata["file_rows"].value == check.metadata["expected_rows"].value == run.rows > 0
    assert check.metadata["counted_from"].value == "store"
    meta = _materialization(instance, launched.dagster_run_id).metadata
    assert meta["dagster/row_count"].value == run.rows
    assert [c.name for c in meta["dagster/column_schema"].value.columns] == list(sms.HEADERS)


def test_the_rows_check_counts_with_the_aegis_workflow_filter(platform, smtp, instance):
    service = registry_service(Home.from_env())
    definition = sms_definition(type="aegis_interaction", filters={"workflows": ["inbound-screening"]})
    report_id = service.create_report(OWNER, definition)
    launched = launch_report_run(report_id, "aegis_interaction", SMS_TICK, trigger="schedule")
    assert launched.success
    check = _run_checks(instance, launched.dagster_run_id)[ROWS_CHECK]
    assert check.passed and check.metadata["expected_rows"].value > 0
    period = produce.resolve(definition_of(service.system.report_for_run(report_id).definition), SMS_TICK)
    unfiltered = produce.ExportSpec("aegis_interaction", "acme-east", None, "UTC", period.start_utc, period.end_utc)
    assert store_records(platform.store, unfiltered) > check.metadata["expected_rows"].value  # the filter counts
    meta = _materialization(instance, launched.dagster_run_id).metadata
    assert [c.name for c in meta["dagster/column_schema"].value.columns] == list(aegis.HEADERS)


def _prearchive(home: Home, report_id: str, at: datetime) -> produce.Prepared:
    """Build and archive the tick's file the way a report run does, without running it."""
    definition = definition_of(registry_service(Home.from_env()).system.report_for_run(report_id).definition)
    return produce.prepare(home, report_id, definition, at)


def test_a_failed_rows_check_does_not_withhold_the_file(platform, smtp, instance):
    report_id = registry_service(Home.from_env()).create_report(OWNER, sms_definition())
    prepared = _prearchive(platform, report_id, SMS_TICK)
    manifest = prepared.archived.folder / "manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "rows": data["rows"] + 1}))  # the archive disagrees with the store
    launched = launch_report_run(report_id, "sms_usage", SMS_TICK, trigger="schedule")
    assert launched.success and len(smtp.received) == 1
    check = _run_checks(instance, launched.dagster_run_id)[ROWS_CHECK]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR and not check.blocking
    assert f"{data['rows'] + 1:,} reported, {data['rows']:,} records in the store" in check.description


def _billing_definition() -> dict:
    definition = sms_definition(
        name="Monthly billing",
        type="billing",
        organization="acme",
        schedule={"timezone": "America/New_York", "frequency": "monthly", "day_of_month": 1, "time_of_day": "08:00:00"},
        period={"kind": "previous_month"},
        filename_pattern="billing_{{PeriodStart}}.xlsx",
    )
    del definition["workspace"]
    return definition


def test_a_billing_run_delivers_a_workbook_that_reconciles(platform, smtp, instance):
    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, _billing_definition())
    launched = launch_report_run(report_id, "billing", BILLING_TICK, trigger="schedule")
    assert launched.success and len(smtp.received) == 1
    checks = _run_checks(instance, launched.dagster_run_id)
    assert checks[RECONCILE_CHECK].passed and checks[RECONCILE_CHECK].blocking
    assert checks[RECONCILE_CHECK].metadata["problem_count"].value == 0
    (run,) = service.audit_log(USER, report_id).runs
    rows = checks[ROWS_CHECK]
    assert rows.passed and rows.metadata["counted_from"].value == "workbook"
    assert rows.metadata["expected_rows"].value == rows.metadata["file_rows"].value == run.rows > 0
    meta = _materialization(instance, launched.dagster_run_id).metadata
    assert [c.name for c in meta["dagster/column_schema"].value.columns] == list(billing.HEADERS)
    assert meta["dagster/row_count"].value == run.rows


def _break_a_summary_total(home: Home, report_id: str, prepared: produce.Prepared, tmp: Path) -> None:
    """Replace the tick's archived workbook with one whose first summary Total is a cent off, as
    an earlier, faulty build would have left it (checksum and manifest consistent with it)."""
    edited = tmp / prepared.archived.path.name
    shutil.copyfile(prepared.archived.path, edited)
    wb = load_workbook(edited)
    cell = wb[billing.SUMMARY_TAB].cell(row=2, column=5)
    cell.value = float(cell.value) + 0.01
    wb.save(edited)
    archive_file(
        home.archive,
        report_id,
        BILLING_TICK,
        edited,
        retention_days=30,
        rows=prepared.rows,
        period_start=prepared.period.start_utc.isoformat(),
        period_end=prepared.period.end_utc.isoformat(),
        content_type=prepared.archived.content_type,
    )


def test_a_billing_workbook_that_does_not_reconcile_is_not_delivered(platform, smtp, instance, tmp_path):
    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, _billing_definition())
    _break_a_summary_total(platform, report_id, _prearchive(platform, report_id, BILLING_TICK), tmp_path)

    launched = launch_report_run(report_id, "billing", BILLING_TICK, trigger="schedule")
    assert launched.success is False and smtp.received == []
    check = _run_checks(instance, launched.dagster_run_id)[RECONCILE_CHECK]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR and check.blocking
    (problems,) = check.metadata["problems"].value.values()
    assert any(p.startswith(f"{billing.SUMMARY_TAB} row 2 ") and "Total" in p for p in problems), problems
    assert check.metadata["problem_count"].value == len(problems)
    (run,) = service.audit_log(USER, report_id).runs
    assert run.status == "FAILED" and run.delivered_to in (None, [])
    assert run.error.startswith(f"not delivered: the workbook does not reconcile: {billing.SUMMARY_TAB} row 2 ")
    (failure,) = instance.all_logs(launched.dagster_run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    assert (
        "does not reconcile, nothing delivered" in failure.dagster_event.step_failure_data.user_failure_data.description
    )
    # The refused workbook is set aside, so the next run builds the file again and delivers it.
    assert find_archived(platform.archive, report_id, BILLING_TICK) is None
    assert len(list((platform.archive / report_id).rglob("*.rejected-*/manifest.json"))) == 1
    again = launch_report_run(report_id, "billing", BILLING_TICK, trigger="schedule")
    assert again.success and len(smtp.received) == 1
    assert _run_checks(instance, again.dagster_run_id)[RECONCILE_CHECK].passed
