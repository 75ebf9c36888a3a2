"""The service layer on SQLite and on a real PostgreSQL: lifecycle, history, folders, runs."""

from __future__ import annotations

import re
import threading
from datetime import UTC, date, datetime

import pytest

from report_platform.registry.errors import (
    BadRequest,
    Conflict,
    DefinitionError,
    NotFound,
    PermissionDenied,
    UnknownUser,
)
from report_platform.registry.service import ReportService
from report_platform_tests.registry.conftest import (
    ADMIN,
    EAST_USER,
    GLOBEX_OWNER,
    OWNER,
    UNKNOWN,
    USER,
    billing_definition,
    count,
    definition,
    snapshot,
)


def test_create_stores_the_whole_definition_and_a_stable_id(service: ReportService) -> None:
    report_id = service.create_report(OWNER, definition(folder="SMS"))

    assert re.fullmatch(r"rpt_[a-z2-7]{10}", report_id)
    view = service.get_report(ADMIN, report_id)
    assert (view.name, view.type, view.status, view.folder) == (
        "Daily SMS usage",
        "sms_usage",
        "enabled",
        "SMS",
    )
    assert (view.organization, view.workspace) == ("acme", "acme-east")
    assert view.definition["schedule"]["time_of_day"] == "06:00:00"
    assert view.definition["folder"] == "SMS" and view.definition["status"] == "enabled"
    assert view.created_by == OWNER and view.created_at.tzinfo is not None
    # The folder named in the definition was created for it.
    assert [(f.name, f.reports) for f in service.list_folders(OWNER)] == [("SMS", 1)]


def test_create_logs_every_field_as_new(service: ReportService) -> None:
    report_id = service.create_report(OWNER, definition())

    [change] = service.audit_log(OWNER, report_id).changes
    assert (change.action, change.by) == ("create", OWNER)
    assert change.diff["schedule.time_of_day"] == {"old": None, "new": "06:00:00"}
    assert change.diff["name"] == {"old": None, "new": "Daily SMS usage"}
    assert change.diff["status"] == {"old": None, "new": "enabled"}


def test_update_records_a_field_level_diff_with_nested_paths(service: ReportService) -> None:
    report_id = service.create_report(OWNER, definition())
    changed = definition()
    changed["schedule"]["time_of_day"] = "07:30:00"
    changed["destination"]["to"] = ["ops@example.com", "cfo@example.com"]

    diff = service.update_report(OWNER, report_id, changed)

    assert diff == {
        "destination.to": {
            "old": ["ops@example.com"],
            "new": ["ops@example.com", "cfo@example.com"],
        },
        "schedule.time_of_day": {"old": "06:00:00", "new": "07:30:00"},
    }
    latest = service.audit_log(ADMIN, report_id).changes[0]
    assert (latest.action, latest.by, latest.diff) == ("update", OWNER, diff)
    assert service.get_report(OWNER, report_id).definition["schedule"]["time_of_day"] == "07:30:00"


def test_update_with_the_same_definition_logs_nothing(service: ReportService, engine) -> None:
    report_id = service.create_report(OWNER, definition())
    before = snapshot(engine)

    assert service.update_report(OWNER, report_id, definition()) == {}
    assert snapshot(engine) == before


def test_update_without_status_keeps_a_paused_report_paused(service: ReportService) -> None:
    report_id = service.create_report(OWNER, definition(folder="SMS"))
    service.pause(OWNER, report_id)

    service.update_report(OWNER, report_id, definition(status=None, folder=None, name="Renamed"))
    view = service.get_report(OWNER, report_id)
    assert (view.name, view.status, view.folder) == ("Renamed", "disabled", "SMS")

    diff = service.update_report(OWNER, report_id, definition(name="Renamed", status="enabled"))
    assert diff == {"status": {"old": "disabled", "new": "enabled"}}


def test_pause_and_resume_are_logged_once(service: ReportService) -> None:
    report_id = service.create_report(OWNER, definition())

    assert service.pause(OWNER, report_id) is True
    assert service.pause(OWNER, report_id) is False  # already paused: nothing to log
    assert service.get_report(USER, report_id).status == "disabled"
    assert service.resume(OWNER, report_id) is True

    actions = [(c.action, c.diff) for c in service.audit_log(OWNER, report_id).changes]
    assert actions[:2] == [
        ("resume", {"status": {"old": "disabled", "new": "enabled"}}),
        ("pause", {"status": {"old": "enabled", "new": "disabled"}}),
    ]
    assert len(actions) == 3


def test_deleted_report_is_gone_but_its_audit_log_stays_readable(service: ReportService, clock) -> None:
    report_id = service.create_report(OWNER, definition())
    run_id = service.system.record_run_start(report_id, trigger="schedule", dagster_run_id="dg-1")
    service.system.record_run_finish(run_id, status="SUCCESS", rows=3, bytes=120)

    service.delete(OWNER, report_id)

    with pytest.raises(NotFound):
        service.get_report(OWNER, report_id)
    assert service.list_reports(OWNER) == []
    with pytest.raises(NotFound):
        service.pause(OWNER, report_id)
    log = service.audit_log(USER, report_id)
    assert log.report.deleted_at == clock.now
    assert [c.action for c in log.changes] == ["delete", "create"]
    assert [(r.id, r.status, r.rows) for r in log.runs] == [(run_id, "SUCCESS", 3)]
    assert service.system.report_for_run(report_id).deleted_at == clock.now
    assert [v.id for v in service.system.scheduled_reports()] == []


def test_move_between_folders(service: ReportService) -> None:
    report_id = service.create_report(OWNER, definition())
    service.create_folder(OWNER, "Voice")

    assert service.move_report(OWNER, report_id, "Voice") is True
    assert service.move_report(OWNER, report_id, "Voice") is False
    assert [r.id for r in service.list_reports(USER, folder="Voice")] == [report_id]
    assert service.move_report(OWNER, report_id, None) is True
    assert service.get_report(OWNER, report_id).folder is None
    with pytest.raises(NotFound, match="no folder 'Nope' in acme"):
        service.move_report(OWNER, report_id, "Nope")

    moves = [c.diff for c in service.audit_log(OWNER, report_id).changes if c.action == "move"]
    assert moves == [
        {"folder": {"old": "Voice", "new": None}},
        {"folder": {"old": None, "new": "Voice"}},
    ]


def test_folder_lifecycle(service: ReportService, engine) -> None:
    service.create_folder(OWNER, "SMS")
    with pytest.raises(Conflict, match="already exists"):
        service.create_folder(OWNER, "SMS")
    report_id = service.create_report(OWNER, definition(folder="SMS"))

    service.rename_folder(OWNER, "SMS", "Messaging")
    assert service.get_report(OWNER, report_id).folder == "Messaging"
    service.create_folder(OWNER, "Voice")
    with pytest.raises(Conflict):
        service.rename_folder(OWNER, "Voice", "Messaging")

    before = snapshot(engine)
    with pytest.raises(Conflict, match="still holds 1 report; move or delete them first"):
        service.delete_folder(OWNER, "Messaging")
    assert snapshot(engine) == before

    service.delete_folder(OWNER, "Voice")
    service.delete(OWNER, report_id)
    service.delete_folder(OWNER, "Messaging")  # only a deleted report was left in it
    assert service.list_folders(OWNER) == []
    assert service.audit_log(OWNER, report_id).report.folder is None


def test_same_folder_name_in_two_organisations(service: ReportService) -> None:
    service.create_folder(OWNER, "SMS")
    service.create_folder(GLOBEX_OWNER, "SMS")
    assert [f.organization for f in service.list_folders(OWNER)] == ["acme"]


@pytest.mark.parametrize(
    "where",
    [
        {"destination": {"type": "sftp", "connection": "x", "remote_dir": "/", "password": "p"}},
        {"filters": {"api_token": "abc"}},
        {"Secret": "x"},
        {"description": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc"},
        {"destination": {"type": "s3", "connection": "c", "bucket": "b", "private-key": "k"}},
    ],
)
def test_definitions_with_secrets_are_refused(service: ReportService, engine, where) -> None:
    before = snapshot(engine)
    with pytest.raises(DefinitionError, match="must not hold secrets"):
        service.create_report(OWNER, definition(**where))
    assert snapshot(engine) == before


def test_invalid_definition_is_refused_with_the_validators_message(service: ReportService, engine) -> None:
    bad = definition()
    bad["schedule"]["time_of_day"] = "6am"
    before = snapshot(engine)
    with pytest.raises(DefinitionError, match="time_of_day: must be HH:MM:SS"):
        service.create_report(OWNER, bad)
    assert snapshot(engine) == before


def test_definition_must_stay_in_the_actors_organisation(service: ReportService) -> None:
    with pytest.raises(PermissionDenied, match="not credentialed for workspace 'globex-main'"):
        service.create_report(OWNER, definition(workspace="globex-main"))
    with pytest.raises(PermissionDenied, match="known workspaces: acme-east, acme-labs"):
        service.create_report(OWNER, definition(workspace="acme-nowhere"))
    with pytest.raises(PermissionDenied, match="no credentials in organisation 'globex'"):
        service.create_report(OWNER, billing_definition("globex"))

    report_id = service.create_report(OWNER, definition())
    with pytest.raises(PermissionDenied):
        service.update_report(OWNER, report_id, definition(workspace="globex-main"))
    # Moving between workspaces of the same organisation is an ordinary edit.
    diff = service.update_report(OWNER, report_id, definition(workspace="acme-west"))
    assert diff == {"workspace": {"old": "acme-east", "new": "acme-west"}}


def test_organisation_billing_is_visible_only_to_org_wide_credentials(
    service: ReportService,
) -> None:
    report_id = service.create_report(OWNER, billing_definition())

    assert service.get_report(ADMIN, report_id).workspace is None
    assert [r.id for r in service.list_reports(USER)] == [report_id]
    assert service.list_reports(EAST_USER) == []
    with pytest.raises(NotFound):
        service.get_report(EAST_USER, report_id)


def test_list_rows_show_schedule_in_words_next_and_last_run(service: ReportService, clock) -> None:
    daily = service.create_report(OWNER, definition(folder="SMS"))
    paused = service.create_report(OWNER, definition(name="Another SMS report"))
    service.pause(OWNER, paused)
    first = service.system.record_run_start(daily, trigger="schedule")
    service.system.record_run_finish(first, status="FAILED", error="SMTP refused")
    started = clock.now = datetime(2025, 3, 5, 12, 0, 5, tzinfo=UTC)
    second = service.system.record_run_start(daily, trigger="retry", attempt=2)
    service.system.record_run_finish(second, status="SUCCESS")

    rows = {r.id: r for r in service.list_reports(EAST_USER)}

    row = rows[daily]
    assert (row.name, row.type, row.folder, row.status) == (
        "Daily SMS usage",
        "sms_usage",
        "SMS",
        "enabled",
    )
    assert row.schedule == "Daily at 06:00 America/New_York"
    # The clock says 2025-03-05 12:00 UTC = 07:00 in New York: next is tomorrow 06:00 EST.
    assert row.next_run == datetime(2025, 3, 6, 11, 0, tzinfo=UTC)
    assert (row.last_run, row.last_status) == (started, "SUCCESS")
    assert (rows[paused].next_run, rows[paused].last_run, rows[paused].last_status) == (
        None,
        None,
        None,
    )
    assert [r.id for r in service.list_reports(OWNER)] == [daily, paused]  # folders first
    assert rows[daily].to_dict()["next_run"] == "2025-03-06T06:00:00-05:00"


def test_schedule_words_and_next_run_are_injectable(registry_url: str) -> None:
    from report_platform.registry.db import init_registry
    from report_platform_tests.registry.conftest import seed

    factory = init_registry(registry_url)
    svc = ReportService(
        factory,
        validate=lambda d: {**d, "validated": True},
        describe=lambda schedule: f"every day at {schedule['time_of_day']}",
        next_run=lambda schedule, after: datetime(2030, 1, 1, tzinfo=UTC),
    )
    try:
        seed(svc)
        report_id = svc.create_report(OWNER, definition())
        [row] = svc.list_reports(OWNER)
        assert (row.schedule, row.next_run) == (
            "every day at 06:00:00",
            datetime(2030, 1, 1, tzinfo=UTC),
        )
        assert svc.get_report(OWNER, report_id).definition["validated"] is True
    finally:
        svc.engine.dispose()


def test_unknown_folder_filter_is_not_found(service: ReportService) -> None:
    with pytest.raises(NotFound, match="no folder 'Nope'"):
        service.list_reports(OWNER, folder="Nope")


def test_run_now_queues_a_run_that_the_scheduler_then_records(service: ReportService) -> None:
    report_id = service.create_report(OWNER, definition())
    service.pause(OWNER, report_id)  # pausing stops the schedule, not manual runs

    request = service.request_run_now(OWNER, report_id, date(2025, 2, 1), date(2025, 2, 3))

    assert (request.report_id, request.trigger, request.requested_by) == (
        report_id,
        "run_now",
        OWNER,
    )
    [queued] = service.audit_log(OWNER, report_id).runs
    assert (queued.id, queued.status) == (request.run_id, "QUEUED")
    assert (queued.requested_period_start, queued.requested_period_end) == (
        date(2025, 2, 1),
        date(2025, 2, 3),
    )

    period = (datetime(2025, 2, 1, 5, tzinfo=UTC), datetime(2025, 2, 4, 5, tzinfo=UTC))
    service.system.record_run_start(
        report_id,
        trigger="run_now",
        run_id=request.run_id,
        dagster_run_id="dg-42",
        period_start=period[0],
        period_end=period[1],
    )
    receipt = {"type": "email", "message_id": "<m1@x>", "to": ["ops@example.com"]}
    service.system.record_run_finish(
        request.run_id,
        status="SUCCESS",
        rows=10,
        bytes=2048,
        sha256="ab" * 32,
        delivered_to=[receipt],
    )
    service.system.record_owner_notified(request.run_id)

    [run] = service.audit_log(ADMIN, report_id).runs
    assert (run.status, run.dagster_run_id, run.rows, run.bytes) == ("SUCCESS", "dg-42", 10, 2048)
    assert (run.period_start, run.period_end) == period
    assert run.delivered_to == [receipt] and run.sha256 == "ab" * 32
    assert run.started_at and run.finished_at and run.notified_owner_at
    assert run.to_dict()["period_start"] == "2025-02-01T05:00:00+00:00"


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (date(2025, 2, 3), date(2025, 2, 1), "is after period end"),
        (date(2025, 2, 3), None, "give both"),
    ],
)
def test_run_now_rejects_a_malformed_period(service: ReportService, start, end, message) -> None:
    report_id = service.create_report(OWNER, definition())
    with pytest.raises(BadRequest, match=message):
        service.request_run_now(OWNER, report_id, start, end)


def test_scheduler_sees_paused_reports_and_a_growing_revision(service: ReportService) -> None:
    start = service.system.revision()
    report_id = service.create_report(OWNER, definition())
    service.pause(OWNER, report_id)

    [view] = service.system.scheduled_reports()
    assert (view.id, view.status) == (report_id, "disabled")
    assert service.system.revision() > start
    assert service.system.report_for_run("rpt_doesnotexist") is None


def test_unknown_user_is_told_how_to_register(service: ReportService) -> None:
    with pytest.raises(UnknownUser, match="unknown user 'nobody@acme.example'.*users add"):
        service.list_reports(UNKNOWN)


def test_emails_are_case_insensitive(service: ReportService) -> None:
    report_id = service.create_report("Owner@ACME.example", definition())
    assert service.get_report(" owner@acme.example ", report_id).created_by == OWNER


def test_add_user_rules(service: ReportService, engine) -> None:
    with pytest.raises(BadRequest, match="Owner is credentialed organisation-wide"):
        service.add_user("o2@acme.example", "acme", "owner", ["acme-east"])
    with pytest.raises(BadRequest, match="is not a plain address like name@example.com"):
        service.add_user("nobody", "acme", "user")
    with pytest.raises(BadRequest, match="role must be owner, admin or user"):
        service.add_user("x@acme.example", "acme", "boss")
    before = snapshot(engine)
    with pytest.raises(PermissionDenied, match="is an Admin in acme: only an Owner may manage"):
        service.add_user("x@acme.example", "acme", "owner", actor=ADMIN)
    assert snapshot(engine) == before

    # Adding again replaces role and workspace limits.
    service.add_user(EAST_USER, "acme", "admin", actor=OWNER)
    cred = service.principal(EAST_USER).credentials["acme"]
    assert (cred.role.value, cred.org_wide) == ("admin", True)
    assert count(engine, "users") == 5


def test_a_user_in_two_organisations_sees_both(service: ReportService) -> None:
    service.add_user(ADMIN, "globex", "user")
    mine = service.create_report(OWNER, definition())
    theirs = service.create_report(GLOBEX_OWNER, definition(workspace="globex-main", name="Globex SMS"))
    assert {r.id for r in service.list_reports(ADMIN)} == {mine, theirs}
    assert [r.id for r in service.list_reports(ADMIN, organization="globex")] == [theirs]
    with pytest.raises(BadRequest, match="several organisations"):
        service.create_folder(ADMIN, "X")


def test_two_sessions_updating_one_report_lose_nothing(service: ReportService) -> None:
    report_id = service.create_report(OWNER, definition())
    # None of them the definition's own 06:00: an edit to the value already there changes nothing
    # and records nothing, so whichever thread came first with it would leave no update behind.
    times = [f"0{h}:30:00" for h in range(1, 9)]
    errors: list[BaseException] = []

    def edit(time_of_day: str) -> None:
        changed = definition()
        changed["schedule"]["time_of_day"] = time_of_day
        try:
            service.update_report(OWNER, report_id, changed)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=edit, args=(t,)) for t in times]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    updates = [c for c in reversed(service.audit_log(OWNER, report_id).changes)]
    updates = [c.diff["schedule.time_of_day"] for c in updates if c.action == "update"]
    # Each edit saw the previous one's result: the diffs chain without gaps.
    chain = ["06:00:00"] + [u["new"] for u in updates]
    assert [u["old"] for u in updates] == chain[:-1]
    assert sorted(u["new"] for u in updates) == sorted(times)
    final = service.get_report(OWNER, report_id).definition["schedule"]["time_of_day"]
    assert final == chain[-1]


def test_run_times_must_be_timezone_aware(service: ReportService) -> None:
    report_id = service.create_report(OWNER, definition())
    with pytest.raises(BadRequest, match="scheduled_at must carry a UTC offset"):
        service.system.record_run_start(report_id, trigger="schedule", scheduled_at=datetime(2025, 3, 5, 6))


def test_show_keeps_the_definitions_field_order(service: ReportService) -> None:
    report_id = service.create_report(OWNER, definition(folder="SMS"))
    keys = list(service.get_report(OWNER, report_id).definition)
    assert keys[:4] == ["name", "type", "workspace", "schedule"]
    assert list(service.get_report(OWNER, report_id).definition["schedule"]) == [
        "timezone",
        "frequency",
        "time_of_day",
    ]


def test_a_dagster_run_reported_twice_is_one_audit_row(service: ReportService) -> None:
    report_id = service.create_report(OWNER, definition())
    first = service.system.record_run_start(report_id, trigger="schedule", dagster_run_id="dg-7")
    again = service.system.record_run_start(report_id, trigger="schedule", dagster_run_id="dg-7")
    retry = service.system.record_run_start(report_id, trigger="retry", dagster_run_id="dg-8", attempt=2)

    assert first == again != retry
    assert [(r.dagster_run_id, r.attempt) for r in service.audit_log(OWNER, report_id).runs] == [
        ("dg-8", 2),
        ("dg-7", 1),
    ]


def test_registering_the_tenancy_again_reads_twice_and_writes_nothing(service: ReportService, engine) -> None:
    """Every process opening the registry registers the tenancy, each run worker included."""
    from sqlalchemy import event

    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        statements.append(statement.split(None, 1)[0].upper())

    tenancy = [("acme", "Acme", ["acme-east", "acme-west", "acme-labs"]), ("globex", "Globex", ["globex-main"])]
    event.listen(engine, "before_cursor_execute", seen)
    try:
        service.register_tenancy(tenancy)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    # (SQLite's engine also says BEGIN IMMEDIATE: its transactions take the write lock up front.)
    assert [s for s in statements if s != "BEGIN"] == ["SELECT", "SELECT"]
    before = snapshot(engine)

    # A new name, a new workspace and a new organisation are written; the rest stays as it was.
    service.register_tenancy(
        [
            ("acme", "Acme Corp", ["acme-east", "acme-west", "acme-labs", "acme-north"]),
            ("globex", "Globex", ["globex-main"]),
            ("initech", None, ["initech-hq"]),
        ]
    )
    after = snapshot(engine)
    assert dict((row[0], row[1]) for row in after["organizations"]) == {
        "acme": "Acme Corp",
        "globex": "Globex",
        "initech": "initech",
    }
    assert {row[0] for row in after["workspaces"]} == {row[0] for row in before["workspaces"]} | {
        "acme-north",
        "initech-hq",
    }
    # A workspace of another organisation is refused, as registering one organisation refuses it.
    with pytest.raises(Conflict, match="globex-main"):
        service.register_tenancy([("acme", "Acme Corp", ["globex-main"])])
