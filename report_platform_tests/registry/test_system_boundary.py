"""No text a person types can act as the scheduler, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import sessionmaker

from report_platform.registry.errors import BadRequest, UnknownUser
from report_platform.registry.models import Membership, User
from report_platform.registry.service import ReportService
from report_platform_tests.registry.conftest import OWNER, definition, snapshot

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
    with pytest.raises(BadRequest, match="not an e-mail address"):
        service.add_user(email, "acme", "owner")
    assert snapshot(engine) == before
