"""Periods a person chooses (run now, custom ranges) are checked before anything is recorded."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

import report_platform.cli.reports  # noqa: F401  (registers the `reports` group on `cli`)
from report_platform.cli.main import cli
from report_platform.registry.errors import BadRequest
from report_platform.registry.service import ReportService
from report_platform.reports.definition import DefinitionError, parse_definition
from report_platform.reports.periods import period_for_dates
from report_platform.settings import Home
from report_platform_tests.registry_setup import fresh_registry
from report_platform_tests.samples import sms_definition

OWNER = "owner@acme.example"
USER = "user@acme.example"


@pytest.fixture
def service(home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ReportService]:
    """A fresh registry with an Owner and a User of acme, its own Dagster instance, no webserver."""
    smtp = {"host": "127.0.0.1", "port": 9, "security": "none", "from_address": "reports@acme.example"}
    home.connections.write_text(yaml.safe_dump({"smtp": {"default": {**smtp, "organizations": ["acme"]}}}))
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("REPORT_PLATFORM_DAGSTER_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("REPORT_PLATFORM_MAX_PERIOD_DAYS", raising=False)
    with fresh_registry(home, [(OWNER, "acme", "owner"), (USER, "acme", "user")]) as svc:
        yield svc


@pytest.fixture
def report_id(service: ReportService) -> str:
    return service.create_report(OWNER, sms_definition())


def _run_now(report_id: str, start: str, end: str, user: str = OWNER) -> Result:
    args = ["reports", "run-now", report_id, "--user", user, "--period-start", start, "--period-end", end]
    result = CliRunner().invoke(cli, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        pytest.param(
            "0001-01-01",
            "9999-12-31",
            "error: period start: must be between 1970-01-01 and 2999-12-31, got 0001-01-01",
            id="the whole calendar",
        ),
        pytest.param(
            "2999-12-30",
            "9999-12-31",
            "error: period end: must be between 1970-01-01 and 2999-12-31, got 9999-12-31",
            id="the calendar's last day",
        ),
        pytest.param(
            "2025-01-01",
            "2026-01-02",
            "error: period end: a period may be at most 366 days long (REPORT_PLATFORM_MAX_PERIOD_DAYS), "
            "got 367 days from 2025-01-01 to 2026-01-02",
            id="367 days",
        ),
        pytest.param(
            "2026-03-02", "2026-03-01", "error: period start 2026-03-02 is after period end 2026-03-01", id="reversed"
        ),
    ],
)
def test_a_refused_run_now_period_records_nothing(
    service: ReportService, report_id: str, start: str, end: str, message: str
) -> None:
    result = _run_now(report_id, start, end)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [message]
    assert service.audit_log(OWNER, report_id).runs == []


def test_a_user_is_refused_run_now_for_their_role_before_the_period(service: ReportService, report_id: str) -> None:
    result = _run_now(report_id, "0001-01-01", "9999-12-31", user=USER)
    assert result.exit_code == 1 and "only an Owner" in result.stderr
    assert service.audit_log(OWNER, report_id).runs == []


def test_a_run_now_period_of_366_days_is_queued(service: ReportService, report_id: str) -> None:
    request = service.request_run_now(OWNER, report_id, date(2025, 1, 1), date(2026, 1, 1))
    [queued] = service.audit_log(OWNER, report_id).runs
    assert (queued.id, queued.status) == (request.run_id, "QUEUED")


def test_the_period_limit_follows_its_setting(
    service: ReportService, report_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPORT_PLATFORM_MAX_PERIOD_DAYS", "30")
    with pytest.raises(BadRequest, match="at most 30 days long"):
        service.request_run_now(OWNER, report_id, date(2026, 1, 1), date(2026, 1, 31))
    monkeypatch.setenv("REPORT_PLATFORM_MAX_PERIOD_DAYS", "800")
    service.request_run_now(OWNER, report_id, date(2025, 1, 1), date(2026, 2, 4))
    monkeypatch.setenv("REPORT_PLATFORM_MAX_PERIOD_DAYS", "a year")
    with pytest.raises(BadRequest, match="REPORT_PLATFORM_MAX_PERIOD_DAYS must be a whole number of days"):
        service.request_run_now(OWNER, report_id, date(2026, 1, 1), date(2026, 1, 2))
    assert len(service.audit_log(OWNER, report_id).runs) == 1


def test_a_run_that_cannot_be_launched_is_recorded_failed_with_the_reason(
    service: ReportService, report_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken_dagster_home"
    broken.mkdir()
    (broken / "dagster.yaml").write_text("run_storage: [not, a, mapping]\n")
    monkeypatch.setenv("DAGSTER_HOME", str(broken))
    result = _run_now(report_id, "2026-03-01", "2026-03-01")
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: the run could not be launched: ")
    [run] = service.audit_log(OWNER, report_id).runs
    assert run.status == "FAILED" and run.finished_at is not None
    assert run.error and run.error in line


def test_a_run_whose_stored_definition_no_longer_passes_is_recorded_failed_with_the_reason(
    service: ReportService, monkeypatch: pytest.MonkeyPatch
) -> None:
    report_id = service.create_report(OWNER, _custom_range("2025-03-01", "2025-12-31"))
    # The limit lowered after the report was saved: its stored range no longer passes at run time.
    monkeypatch.setenv("REPORT_PLATFORM_MAX_PERIOD_DAYS", "30")
    result = CliRunner().invoke(cli, ["reports", "run-now", report_id, "--user", OWNER])
    reason = (
        "the run could not be launched: period.end: a period may be at most 30 days long "
        "(REPORT_PLATFORM_MAX_PERIOD_DAYS), got 306 days from 2025-03-01 to 2025-12-31"
    )
    assert (result.exit_code, result.stderr.splitlines()) == (1, [f"error: {reason}"])
    [run] = service.audit_log(OWNER, report_id).runs
    assert (run.status, run.error) == ("FAILED", reason) and run.finished_at is not None


def _custom_range(start: str, end: str) -> dict:
    return sms_definition(period={"kind": "custom_range", "start": start, "end": end})


def test_a_custom_range_of_366_days_is_accepted() -> None:
    assert parse_definition(_custom_range("2028-01-01", "2028-12-31")).period.kind == "custom_range"


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (
            "2025-01-01",
            "2026-01-02",
            "period.end: a period may be at most 366 days long (REPORT_PLATFORM_MAX_PERIOD_DAYS), "
            "got 367 days from 2025-01-01 to 2026-01-02",
        ),
        ("0001-01-01", "0001-01-02", "period.start: must be between 1970-01-01 and 2999-12-31, got 0001-01-01"),
        ("9999-12-31", "9999-12-31", "period.start: must be between 1970-01-01 and 2999-12-31, got 9999-12-31"),
    ],
)
def test_a_custom_range_outside_the_bounds_is_refused(start: str, end: str, message: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(_custom_range(start, end))
    assert caught.value.errors == [message]


def test_the_custom_range_limit_follows_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPORT_PLATFORM_MAX_PERIOD_DAYS", "730")
    assert parse_definition(_custom_range("2025-01-01", "2026-12-31")).period.kind == "custom_range"
    monkeypatch.setenv("REPORT_PLATFORM_MAX_PERIOD_DAYS", "7")
    with pytest.raises(DefinitionError, match="at most 7 days long"):
        parse_definition(_custom_range("2026-01-01", "2026-01-08"))


def test_a_period_at_the_end_of_the_calendar_is_a_clear_error_not_an_overflow() -> None:
    with pytest.raises(ValueError, match="lies outside the dates the calendar can hold"):
        period_for_dates(date(9999, 12, 31), date(9999, 12, 31), "UTC")
    with pytest.raises(ValueError, match="lies outside the dates the calendar can hold"):
        period_for_dates(date(1, 1, 1), date(1, 1, 1), "Asia/Tokyo")
