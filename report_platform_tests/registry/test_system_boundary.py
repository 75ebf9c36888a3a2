"""No text a person types can act as the scheduler, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.orm import sessionmaker

from report_platform.registry.errors import BadRequest, UnknownUser
from report_platform.registry.models import Membership, User
from report_platform.registry.run_log import RunLog
from report_platform.registry.service import ReportService
from report_platform_tests.registry.conftest import ADMIN, OWNER, definition, snapshot

SYSTEM_LIKE = ["system", "SYSTEM", " System ", "system\n", "\tsystem", "", "nobody"]


def person_actions(report_id: str) -> dict[str, Any]:
    """Every kind of person-facing entry point, each acting as the given actor."""
    return {
        "principal": lambda s, a: s.principal(a),
        "list_reports": lambda s, a: s.list_reports(a),
        "get_report": lambda s, a: s.get_report(a, report_id),
        "audit_log": lambda s, a: s.audit_log(a, report_id),
        "create_report": lambda s, a: s.create_report(a, definition(name="Another")),
        "pause": lambda s, a: s.pause(a, report_id),
        "delete": lambda s, a: s.delete(a, report_id),
        "request_run_now": lambda s, a: s.request_run_now(a, report_id),
        "backfill_target": lambda s, a: s.backfill_target(a, report_id),
        "create_folder": lambda s, a: s.create_folder(a, "SMS", organization="acme"),
        "add_user": lambda s, a: s.add_user("new@acme.example", "acme", "user", actor=a),
    }


@pytest.mark.parametrize("actor", SYSTEM_LIKE)
def test_system_like_text_names_no_person(service: ReportService, engine, actor: str) -> None:
    report_id = service.create_report(OWNER, definition())
    before = snapshot(engine)
    for name, action in person_actions(report_id).items():
        with pytest.raises(UnknownUser, match="registered e-mail address"):
            action(service, actor)
            pytest.fail(f"{name} accepted {actor!r}")
    assert snapshot(engine) == before


def test_a_system_row_written_into_the_users_table_still_names_nobody(service: ReportService, clock) -> None:
    report_id = service.create_report(OWNER, definition())
    with sessionmaker(service.engine).begin() as s:
        user = User(email="system", display_name="system", created_at=clock.now)
        s.add(user)
        s.flush()
        s.add(Membership(user_id=user.id, organization_id="acme", role="owner"))

    for action in person_actions(report_id).values():
        with pytest.raises(UnknownUser):
            action(service, "system")


@pytest.mark.parametrize("email", ["system", "System", " SYSTEM "])
def test_no_one_can_be_registered_as_the_system(service: ReportService, engine, email: str) -> None:
    before = snapshot(engine)
    with pytest.raises(BadRequest, match="is not a plain address like name@example.com"):
        service.add_user(email, "acme", "owner")
    assert snapshot(engine) == before


def test_the_scheduler_records_a_run_through_its_own_side(service: ReportService, clock) -> None:
    report_id = service.create_report(OWNER, definition())
    scheduled = datetime(2025, 3, 5, 11, tzinfo=UTC)

    run_id = service.system.record_run_start(
        report_id, trigger="schedule", dagster_run_id="dg-1", scheduled_at=scheduled
    )
    service.system.record_run_finish(run_id, status="FAILED", error="SMTP refused")
    service.system.record_owner_notified(run_id)

    [run] = service.audit_log(ADMIN, report_id).runs
    assert (run.id, run.status, run.error, run.requested_by) == (run_id, "FAILED", "SMTP refused", None)
    assert (run.scheduled_at, run.notified_owner_at) == (scheduled, clock.now)
    assert [r.id for r in service.system.runs_for_dagster_run("dg-1")] == [run_id]


def test_the_system_side_reads_reports_with_the_services_clock_and_schedule_functions(service: ReportService) -> None:
    report_id = service.create_report(OWNER, definition())
    paused = service.create_report(OWNER, definition(name="Paused"))
    service.pause(OWNER, paused)

    assert service.system.report_for_run(report_id) == service.get_report(OWNER, report_id)
    assert [(v.id, v.status) for v in service.system.scheduled_reports()] == sorted(
        [(report_id, "enabled"), (paused, "disabled")]
    )
    assert {spec[0] for spec in service.system.schedule_specs()} == {report_id, paused}


def test_no_system_operation_takes_an_acting_user() -> None:
    operations = {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(RunLog, inspect.isfunction)
        if not name.startswith("_") and name in vars(RunLog)
    }
    assert set(operations) == {
        "scheduled_reports",
        "schedule_specs",
        "report_for_run",
        "revision",
        "record_run_start",
        "runs_for_dagster_run",
        "record_run_finish",
        "record_owner_notified",
        "record_final_failure",
        "record_tick",
        "record_missed",
        "never_ticked",
        "missed_unnotified",
    }
    for name, signature in operations.items():
        assert "actor" not in signature.parameters, name


def test_the_person_facing_service_has_no_run_log_operations(service: ReportService) -> None:
    """Whatever a person's surface passes as the actor, it cannot write or read run records as
    the scheduler: those operations exist only on `service.system`."""
    run_log = {name for name in vars(RunLog) if not name.startswith("_")}
    assert run_log and not run_log & {name for name in dir(ReportService) if not name.startswith("_")} - {"system"}
