"""After the full run (full_run.py), no secret is anywhere a person, a log or a copy of the data
can reach: in either database, Dagster's event log and compute logs, any run's config and tags,
what Dagster's UI shows of the instance and the run workers, the audit log, the data folder, the
output of any process started, or any HTTP answer the console gave.

Each secret is looked for as it is, URL-encoded, base64 and, for the private key, line by line
(leaks.py). Each test also checks that what it searched is what it claims to be, so an empty
search cannot pass.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from report_platform.resources import deployment_resources
from report_platform.scheduling.fork_launcher import TAG_RUN_WORKER
from report_platform.settings import PlatformSettings
from report_platform_tests.security.full_run import REPORTS, FullRun
from report_platform_tests.security.leaks import leaks

WRONG_PASSWORD_REFUSED = "rejected the login of 'reports' (535)"
# By design the sign-in answer sets the session token as its cookie; no other answer may hold it.
SIGN_IN = "/api/v1/session"


@pytest.fixture(scope="module")
def dagster_runs(full_run: FullRun) -> Iterator[list[tuple[dg.DagsterRun, list[dg.EventLogEntry]]]]:
    """Every run of the instance, with every record of its event log."""
    with full_run.environment(), dg.DagsterInstance.get() as instance:
        yield [(run, instance.all_logs(run.run_id)) for run in instance.get_runs()]


def _database_rows(full_run: FullRun) -> dict[str, str]:
    """Every row of every table of the registry's database, as JSON, by table."""
    server = full_run.postgres
    with psycopg.connect(
        host=server.host, port=server.port, user=server.user, dbname=full_run.databases["registry"]
    ) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return {
            table: "\n".join(json.dumps(row[0]) for row in conn.execute(f'SELECT row_to_json(t) FROM "{table}" t'))
            for table in tables
        }


def _files(folder: Path) -> Iterator[tuple[Path, bytes]]:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            yield path, path.read_bytes()


def test_the_run_used_every_destination_and_failed_where_the_password_was_wrong(full_run: FullRun) -> None:
    rows = _database_rows(full_run)["report_runs"]
    runs = [json.loads(line) for line in rows.splitlines()]
    statuses = {run["report_id"]: run["status"] for run in runs}
    assert statuses == {full_run.reports[key]: "FAILED" if key == "acme_broken" else "SUCCESS" for key in REPORTS}, runs
    (failed,) = [run for run in runs if run["status"] == "FAILED"]
    assert WRONG_PASSWORD_REFUSED in failed["error"]
    delivered = {entry["type"] for run in runs for entry in run["destinations"] if entry["status"] == "delivered"}
    assert delivered == {"email", "sftp", "s3"}
    assert {run["trigger"] for run in runs} == {"schedule", "run_now"}
    assert len(full_run.secrets) == 11


def test_a_dump_of_the_registry_and_ledger_database_holds_no_secret(full_run: FullRun) -> None:
    dump = full_run.pg_dump("registry")
    assert "COPY public.delivery_ledger" in dump and "COPY public.api_tokens" in dump
    assert all(report_id in dump for report_id in full_run.reports.values())
    assert WRONG_PASSWORD_REFUSED in dump
    assert leaks(dump, full_run.secret_values()) == []


def test_a_dump_of_dagsters_database_holds_no_secret(full_run: FullRun, dagster_runs) -> None:  # noqa: ANN001
    dump = full_run.pg_dump("dagster")
    assert "COPY public.event_logs" in dump
    assert all(run.run_id in dump for run, _ in dagster_runs)
    assert leaks(dump, full_run.secret_values()) == []


def test_the_audit_log_holds_no_secret_in_its_rows_or_through_the_api(full_run: FullRun) -> None:
    rows = _database_rows(full_run)
    assert {"report_runs", "report_changes", "delivery_ledger", "auth_events", "api_tokens"} <= set(rows)
    for table, text in rows.items():
        assert leaks(text, full_run.secret_values()) == [], table
    path = f"/api/v1/reports/{full_run.reports['acme_broken']}/audit-log"
    (answer,) = [a for a in full_run.answers if urllib.parse.urlsplit(a.url).path == path]
    (run,) = json.loads(answer.body)["runs"]
    assert WRONG_PASSWORD_REFUSED in run["error"]
    assert leaks(answer.text(), full_run.secret_values()) == []


def test_dagsters_event_log_of_every_run_holds_no_secret(full_run: FullRun, dagster_runs) -> None:  # noqa: ANN001
    assert len(dagster_runs) == len(REPORTS)
    failure_text = ""
    for run, records in dagster_runs:
        stored = "\n".join(dg.serialize_value(record) for record in records)
        assert leaks(stored, full_run.secret_values()) == [], run.run_id
        for record in records:
            event = record.dagster_event
            if event is not None and event.is_step_failure:
                failure_text += event.step_failure_data.error.to_string()
    # The failure's whole error (message, stack, causes) was searched, and it says why.
    assert WRONG_PASSWORD_REFUSED in failure_text


def test_dagsters_compute_logs_and_every_file_of_its_home_hold_no_secret(full_run: FullRun) -> None:
    files = list(_files(full_run.dagster_home))
    captured = {path: data for path, data in files if path.parent.name == "compute_logs" and path.suffix == ".err"}
    assert len(captured) >= 3, "the launched runs' compute logs were not written: nothing was searched"
    assert any(WRONG_PASSWORD_REFUSED.encode() in data for data in captured.values())
    for path, data in files:
        assert leaks(data, full_run.secret_values()) == [], path


def test_no_file_of_the_data_folder_holds_a_secret(full_run: FullRun) -> None:
    files = list(_files(full_run.home.root))
    names = {path.name for path, _ in files}
    assert "connections.yaml" in names and any(name.endswith(".csv") for name in names)
    for path, data in files:
        assert leaks(data, full_run.secret_values()) == [], path


def test_no_run_config_or_tag_holds_a_secret_and_the_tags_say_nothing_of_the_environment(
    full_run: FullRun,
    dagster_runs,  # noqa: ANN001
) -> None:
    known = {
        "dagster/partition",
        "dagster/partition/date",
        "dagster/partition/report",
        "dagster/partition_set",
        "dagster/failure_reason",
        "report_platform/report_id",
        "report_platform/scheduled_at",
        "report_platform/trigger",
        "report_platform/audit_run_id",
        "report_platform/period_start",
        "report_platform/period_end",
        TAG_RUN_WORKER,
    }
    environment = {value for name, value in full_run.env.items() if name.startswith(("SEC_", "REPORT_PLATFORM_"))}
    for run, _ in dagster_runs:
        assert run.run_config == {}
        assert set(run.tags) <= known, set(run.tags) - known
        assert not environment & set(run.tags.values())
        shown = json.dumps({"config": run.run_config, "tags": run.tags})
        assert leaks(shown, full_run.secret_values()) == [], run.run_id
        if TAG_RUN_WORKER in run.tags:  # the run worker: which process, never what it was given
            assert set(json.loads(run.tags[TAG_RUN_WORKER])) == {"pid", "start", "host", "via"}


def test_what_dagsters_ui_shows_of_the_instance_and_resources_holds_no_secret(full_run: FullRun) -> None:
    """The UI's Instance page shows `info_str()`; a resource page shows its configured values."""
    with full_run.environment(), dg.DagsterInstance.get() as instance:
        info = instance.info_str()
        settings = PlatformSettings()
    assert "ForkRunLauncher" in info
    assert leaks(info, full_run.secret_values()) == []
    registry = deployment_resources(settings)["registry"]
    # The registry's URL holds the database password: Dagster gets the variable's name, not its value.
    assert registry.registry_url == dg.EnvVar("REPORT_PLATFORM_REGISTRY_URL")
    shown = json.dumps({key: str(value) for key, value in deployment_resources(settings).items()})
    assert leaks(shown, full_run.secret_values()) == []


def test_no_process_started_wrote_a_secret_to_its_output(full_run: FullRun) -> None:
    labels = {output.label for output in full_run.outputs}
    assert {
        "report-platform console",
        "run launcher, fork server and run workers",
        "report-platform reports run-now",
        "report-platform connections test",
        "report-platform users add",
    } <= labels
    launcher = next(o for o in full_run.outputs if o.label.startswith("run launcher"))
    assert WRONG_PASSWORD_REFUSED in launcher.stderr  # the worker's failure, stack and all, was captured
    for output in full_run.outputs:
        assert leaks(output.stdout + output.stderr, full_run.secret_values()) == [], output.label
    # `users token` prints the new token, once, and nothing else on standard output.
    assert full_run.issued_token_output == full_run.secrets["API token"].value + "\n"


def test_no_http_answer_of_the_console_holds_a_secret(full_run: FullRun) -> None:
    answers = full_run.answers
    assert len(answers) > 40
    paths = {urllib.parse.urlsplit(answer.url).path for answer in answers}
    assert any(path.endswith("/audit-log") for path in paths) and any("connections" in path for path in paths)
    for answer in answers:
        signing_in = answer.method == "POST" and urllib.parse.urlsplit(answer.url).path == SIGN_IN
        searched = [s for s in full_run.secret_values() if not (signing_in and s.name == "session token")]
        assert leaks(answer.text(), searched) == [], f"{answer.method} {answer.url}"
    session = full_run.secrets["session token"].value
    assert any(session in a.text() for a in answers if urllib.parse.urlsplit(a.url).path == SIGN_IN)  # headers too
    refused = [a for a in answers if "relay-wrong-password/test" in a.url]
    assert refused and b"535" in refused[0].body
