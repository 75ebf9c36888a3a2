"""Every file the full run delivered (full_run.py) holds its own organisation's rows and all of
them: each file is taken from where it arrived (the SFTP server's folders, the bucket, the mails'
attachments), parsed, and its rows looked up in the usage store with DuckDB, as the exports read
it. Each row must be a record of the report's workspace, and the file must hold as many rows as
the store has for that workspace and the run's period. The other organisation has rows in the
same period, so a file that mixed tenants would be caught.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import UTC, datetime

import duckdb
import psycopg
import pytest

from report_platform.domain.tenancy import load_tenancy
from report_platform.store.duck import reader
from report_platform_tests.security.full_run import ORGANIZATION, REPORTS, FullRun

# Each report's destinations (full_run._definition): how many copies of its file were delivered.
COPIES = {"acme_sms": 3, "acme_broken": 0, "globex_aegis": 3, "acme_aegis": 2, "globex_sms": 2}


@pytest.fixture(scope="module")
def store(full_run: FullRun) -> duckdb.DuckDBPyConnection:
    return reader(full_run.home.store)


def _periods(full_run: FullRun) -> dict[str, tuple[datetime, datetime]]:
    """The resolved period [start, end) of each report's successful run, from the audit log."""
    server = full_run.postgres
    with psycopg.connect(
        host=server.host, port=server.port, user=server.user, dbname=full_run.databases["registry"]
    ) as conn:
        rows = conn.execute("SELECT report_id, period_start, period_end FROM report_runs WHERE status = 'SUCCESS'")
        return {report_id: (start, end) for report_id, start, end in rows}


def _report_of(file_name: str) -> str:
    (key,) = [key for key in REPORTS if file_name.startswith(f"Security {key.replace('_', ' ')}_")]
    return key


def _workspaces_of_aegis_rows(store: duckdb.DuckDBPyConnection, rows: list[dict[str, str]]) -> list[str]:
    """The stored workspace of each exported transaction, found by its id."""
    ids = [row["Id"] for row in rows]
    found = dict(
        store.execute(
            "SELECT transaction_id, workspace_id FROM aegis_transactions WHERE list_contains($ids, transaction_id)",
            {"ids": ids},
        ).fetchall()
    )
    assert len(found) == len(set(ids)) == len(ids), "an exported transaction is not in the store, or is there twice"
    return [found[i] for i in ids]


def _workspaces_of_sms_rows(
    store: duckdb.DuckDBPyConnection, rows: list[dict[str, str]], period: tuple[datetime, datetime]
) -> list[str]:
    """The stored workspace of each exported message, found by its instant and numbers (the export
    has no message id); every workspace's messages of the period are candidates."""
    stored = store.execute(
        "SELECT occurred_at, from_number, to_number, workspace_id FROM sms_messages "
        "WHERE occurred_at >= $start AND occurred_at < $end",
        {"start": period[0], "end": period[1]},
    ).fetchall()
    by_key: dict[tuple[datetime, str, str], list[str]] = {}
    for occurred, sender, recipient, workspace in stored:
        by_key.setdefault((occurred.astimezone(UTC), sender, recipient), []).append(workspace)
    workspaces = []
    for row in rows:
        key = (datetime.fromisoformat(row["Timestamp"]).astimezone(UTC), row["From"], row["To"])
        (workspace,) = set(by_key.get(key, ["not in the store"]))
        workspaces.append(workspace)
    return workspaces


def _stored_count(
    store: duckdb.DuckDBPyConnection, table: str, workspace: str, period: tuple[datetime, datetime]
) -> int:
    (count,) = store.execute(
        f"SELECT count(*) FROM {table} WHERE workspace_id = $ws AND occurred_at >= $start AND occurred_at < $end",
        {"ws": workspace, "start": period[0], "end": period[1]},
    ).fetchone()
    return count


def test_every_delivered_file_holds_all_of_its_organisations_rows_and_no_other(
    full_run: FullRun, store: duckdb.DuckDBPyConnection
) -> None:
    periods = _periods(full_run)
    tenancy = load_tenancy(full_run.home.root)
    organization_of = {w.id: o.id for o in tenancy.organizations for w in o.workspaces}
    delivered = full_run.delivered_files()
    assert Counter(_report_of(name) for _, name, _ in delivered) == +Counter(COPIES)
    for where, name, data in delivered:
        key = _report_of(name)
        workspace = REPORTS[key]["workspace"]
        org = ORGANIZATION[workspace]
        assert org in where, f"{name} of {org} was delivered to {where}"
        period = periods[full_run.reports[key]]
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
        rows = list(csv.DictReader(io.StringIO(text)))
        if REPORTS[key]["type"] == "aegis_interaction":
            table, workspaces = "aegis_transactions", _workspaces_of_aegis_rows(store, rows)
        else:
            table, workspaces = "sms_messages", _workspaces_of_sms_rows(store, rows, period)
        assert {organization_of.get(w, w) for w in workspaces} == {org}, f"{where}: {name}"
        assert set(workspaces) == {workspace}, f"{where}: {name}"
        assert len(rows) == _stored_count(store, table, workspace, period) > 0, f"{where}: {name}"
        other = next(w for w, o in ORGANIZATION.items() if o != org)
        assert _stored_count(store, table, other, period) > 0  # a mixed file would have had rows to take


def test_each_organisations_files_went_only_to_its_own_connections(full_run: FullRun) -> None:
    """SFTP folders and bucket prefixes are per organisation; mails go to the organisation's address."""
    for where, name, _ in full_run.delivered_files():
        org = ORGANIZATION[REPORTS[_report_of(name)]["workspace"]]
        assert where in (f"sftp {org}", f"s3 {org}", f"mail to ops@{org}.example"), (where, name)
    destinations = json.dumps(full_run.smtp.received and [m.rcpt_tos for m in full_run.smtp.received])
    assert "globex" in destinations and "acme" in destinations
