"""A backfill of an hourly report builds every tick of its date in one materialisation; the
materialisation shows each file it built, not only the last."""

import json
from datetime import date
from pathlib import Path

import dagster as dg

from report_platform.app import registry_service
from report_platform.delivery.request import DeliveryRequest
from report_platform.resources import deployment_resources
from report_platform.scheduling.exports import TAG_SCHEDULED, ensure_report_partition, partition_key
from report_platform.settings import Home
from report_platform_tests.scheduling.conftest import OWNER, USER, sms_definition

BACKFILLED = date(2026, 3, 6)
TICKS = 24  # an ordinary UTC day
BACKFILL_TAGS = {"dagster/backfill": "bf02"}  # and no scheduled-at tag: every tick of the date


def _hourly_definition() -> dict:
    return sms_definition(
        name="Hourly SMS usage",
        schedule={"timezone": "UTC", "frequency": "hourly", "time_of_day": "00:30:00"},
        # Overlapping windows: every hour's file differs, even after a quiet hour.
        period={"kind": "rolling_window", "lookback": "24h"},
        filename_pattern="{{ReportName}}_{{PeriodStart}}.csv",
    )


class _Kept(dg.IOManager):
    """Keeps what the asset hands to delivery, instead of delivering it."""

    def __init__(self) -> None:
        self.outputs: list = []

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        self.outputs.append(obj)

    def load_input(self, context: dg.InputContext) -> object:
        raise NotImplementedError


def _backfill(instance: dg.DagsterInstance, report_id: str, **resources) -> dg.ExecuteInProcessResult:
    from report_platform.definitions import build_definitions

    ensure_report_partition(instance, "sms_usage", report_id)
    job = build_definitions([], 0).resolve_job_def("sms_usage_report_job")
    return job.execute_in_process(
        instance=instance,
        resources={**deployment_resources(), **resources},
        partition_key=str(partition_key(report_id, BACKFILLED)),
        tags=BACKFILL_TAGS,
        raise_on_error=False,
    )


def _files(result: dg.ExecuteInProcessResult) -> tuple[list[dict], dict]:
    (event,) = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    return [record.data for record in meta["files"].value.records], meta


def test_a_backfilled_hourly_date_lists_every_file_it_built_with_totals(platform, instance):
    report_id = registry_service(Home.from_env()).create_report(OWNER, _hourly_definition())
    kept = _Kept()
    result = _backfill(instance, report_id, delivery_io_manager=kept)
    assert result.success
    assert TAG_SCHEDULED not in instance.get_run_by_id(result.run_id).tags
    (requests,) = kept.outputs
    assert len(requests) == TICKS and all(isinstance(r, DeliveryRequest) for r in requests)

    files, meta = _files(result)
    assert len(files) == TICKS
    assert len({f["sha256"] for f in files}) == TICKS
    assert [f["sha256"] for f in files] == [r.artifact.sha256 for r in requests]  # in tick order
    for built in files:
        archived = Path(built["archived_file"])
        manifest = json.loads((archived.parent / "manifest.json").read_text())
        assert (manifest["sha256"], manifest["bytes"], manifest["rows"]) == (
            built["sha256"],
            built["bytes"],
            built["rows"],
        )
        assert archived.is_relative_to(platform.archive / report_id) and archived.stat().st_size == built["bytes"]
        assert built["period_end"] == built["scheduled_at"] and built["rebuilt"] is True
    assert [f["scheduled_at"][11:16] for f in files] == [f"{h:02d}:30" for h in range(TICKS)]
    assert meta["file_count"].value == TICKS
    assert meta["rows"].value == sum(f["rows"] for f in files) == sum(r.extra["rows"] for r in requests)
    assert meta["dagster/row_count"].value == meta["rows"].value > 0
    assert meta["total_bytes"].value == sum(f["bytes"] for f in files)
    assert "sha256" not in meta  # no single file stands for the materialisation


def test_a_backfilled_hourly_date_delivers_every_file_and_the_audit_log_has_each(platform, smtp, instance):
    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, _hourly_definition())
    result = _backfill(instance, report_id)
    runs = service.audit_log(USER, report_id).runs
    assert [r.status for r in runs] == ["SUCCESS"] * TICKS, [r.error for r in runs if r.error]
    assert result.success and len(smtp.received) == TICKS
    files, _ = _files(result)
    (materialization,) = result.asset_materializations_for_node("sms_usage_export")
    delivered = materialization.metadata["deliveries"].value
    assert len(delivered) == TICKS and {d["sha256"] for d in delivered} == {f["sha256"] for f in files}
    by_tick = {r.scheduled_at.isoformat(): r for r in runs}
    assert {(f["sha256"], f["rows"], f["bytes"]) for f in files} == {
        (by_tick[f["scheduled_at"]].sha256, by_tick[f["scheduled_at"]].rows, by_tick[f["scheduled_at"]].bytes)
        for f in files
    }
