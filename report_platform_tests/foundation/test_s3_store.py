"""The usage store under an S3 prefix (moto's S3 server on loopback): ingest, readers, pruning
by day, whole partitions only, and one-line errors that carry no secret."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from report_platform.ingest.runner import ingest_range
from report_platform.settings import Home, S3Location
from report_platform.store import s3 as store_s3
from report_platform.store.duck import reader
from report_platform.store.partitions import partition_days, read_partition, write_partition
from report_platform.store.query import ReadOnlyQueryError, run_read_only
from report_platform.store.schema import SMS_MESSAGES, VOICE_CALLS
from report_platform_devservers.standins.s3 import STANDIN_ACCESS_KEY, STANDIN_REGION, STANDIN_SECRET_KEY, moto_process
from report_platform_tests.servers.fixtures import moto_server, s3_bucket  # noqa: F401

FIRST, LAST = date(2026, 3, 2), date(2026, 3, 4)
SECRET = "s3cr3t-that-must-never-show"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", STANDIN_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", STANDIN_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", STANDIN_REGION)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3_home(home: Home, aws, moto_server, s3_bucket, monkeypatch: pytest.MonkeyPatch) -> Home:  # noqa: ANN001, F811
    """The test's data folder with the store under `usage/` in a fresh bucket."""
    monkeypatch.setenv("REPORT_PLATFORM_STORE_S3_BUCKET", s3_bucket)
    monkeypatch.setenv("REPORT_PLATFORM_STORE_S3_PREFIX", "usage")
    monkeypatch.setenv("REPORT_PLATFORM_STORE_S3_ENDPOINT_URL", moto_server.endpoint_url)
    monkeypatch.setenv("REPORT_PLATFORM_ROWS_PER_DAY", "300")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return Home.from_env().ensure()


def _keys(moto_server, bucket: str, prefix: str = "") -> list[str]:  # noqa: ANN001, F811
    pages = moto_server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_ingest_writes_the_store_to_s3_and_readers_read_it_there(s3_home: Home, moto_server, s3_bucket):  # noqa: F811
    assert isinstance(s3_home.store, S3Location)
    ingest_range(s3_home, FIRST, LAST)
    # Nothing of the store is on local disk: no partitions, no catalog file.
    assert not list(s3_home.root.rglob("*.parquet")) and not s3_home.catalog.exists()
    keys = _keys(moto_server, s3_bucket, "usage/voice_calls/")
    assert len(keys) == 3 and all(k.startswith("usage/voice_calls/day=2026-03-0") for k in keys)
    assert partition_days(s3_home.store, VOICE_CALLS) == [FIRST, date(2026, 3, 3), LAST]
    expected = sum(
        read_partition(s3_home.store, VOICE_CALLS, d).height for d in partition_days(s3_home.store, VOICE_CALLS)
    )
    assert expected > 0
    con = reader(s3_home.store, threads=2)
    try:
        assert con.execute("SELECT count(*) FROM voice_calls").fetchone() == (expected,)
        assert con.execute("SELECT count(*) FROM billing_line_items").fetchone()[0] > 0
        assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)
    finally:
        con.close()
    # `report-platform sql` reads the same tables, with DuckDB itself still unable to open anything.
    result = run_read_only(s3_home.store, "SELECT count(*) AS n FROM voice_calls")
    assert result.rows == [(expected,)]
    with pytest.raises(ReadOnlyQueryError, match="disabled"):
        run_read_only(s3_home.store, f"SELECT * FROM read_parquet('s3://{s3_bucket}/usage/voice_calls/*/*')")


def test_the_sql_command_reads_the_store_on_s3(s3_home: Home):
    ingest_range(s3_home, FIRST, FIRST)
    out = subprocess.run(
        [sys.executable, "-m", "report_platform.cli.main", "sql", "--json", "SELECT count(*) AS n FROM sms_messages"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert f'"n": {read_partition(s3_home.store, SMS_MESSAGES, FIRST).height}' in out.stdout


def test_a_query_for_some_days_opens_only_those_days_files(s3_home: Home, moto_server, s3_bucket):  # noqa: F811
    ingest_range(s3_home, FIRST, LAST)
    con = reader(s3_home.store, threads=2)
    try:
        # The other days' files go away after the reader listed them: a query that opened them would fail.
        for key in _keys(moto_server, s3_bucket, "usage/sms_messages/"):
            if "day=2026-03-03" not in key:
                moto_server.client().delete_object(Bucket=s3_bucket, Key=key)
        start = datetime(2026, 3, 3, tzinfo=UTC)
        sql = (
            "SELECT count(*) FROM sms_messages AS t "
            "WHERE t.workspace_id = $w AND t.occurred_at >= $start AND t.occurred_at < $end"
        )
        workspace = read_partition(s3_home.store, SMS_MESSAGES, date(2026, 3, 3))["workspace_id"][0]
        counted = con.execute(sql, {"w": workspace, "start": start, "end": start + timedelta(days=1)}).fetchone()[0]
        assert counted > 0
        with pytest.raises(Exception, match="(?i)does not exist|not found|no such"):
            con.execute("SELECT count(*) FROM sms_messages").fetchall()
    finally:
        con.close()


def test_a_reader_sees_only_whole_partitions(aws, moto_server, s3_bucket, monkeypatch):  # noqa: ANN001, F811
    store = S3Location(s3_bucket, "p", moto_server.endpoint_url)
    day = date(2026, 3, 5)

    def frame(n: int) -> pl.DataFrame:
        rows = pl.DataFrame(
            {
                "call_id": [f"c{i}" for i in range(n)],
                "workspace_id": ["ws"] * n,
                "occurred_at": [datetime(2026, 3, 5, 1, tzinfo=UTC) + timedelta(seconds=i) for i in range(n)],
            }
        )
        missing = {c.name: pl.lit(None, c.dtype) for c in VOICE_CALLS.columns if c.name not in rows.columns}
        return rows.with_columns(**missing).select(VOICE_CALLS.names).cast(VOICE_CALLS.schema)

    def count(con) -> int:  # noqa: ANN001
        return con.execute("SELECT count(*) FROM voice_calls").fetchone()[0]

    write_partition(store, VOICE_CALLS, day, frame(10))
    # A new version on its way up (a multipart upload with a part sent and not completed) is not
    # part of the table: S3 shows an object only once all of it has arrived.
    client = moto_server.client()
    pending = store_s3.partition_key(store, VOICE_CALLS, day, "data")
    upload = client.create_multipart_upload(Bucket=s3_bucket, Key=pending)
    body = io.BytesIO()
    frame(50).write_parquet(body)
    client.upload_part(Bucket=s3_bucket, Key=pending, UploadId=upload["UploadId"], PartNumber=1, Body=body.getvalue())
    listed_before = reader(store)
    assert count(listed_before) == 10
    # A replacement is a new object: a reader that listed before it still reads the old version whole.
    write_partition(store, VOICE_CALLS, day, frame(20))
    assert count(listed_before) == 10
    listed_before.close()
    listed_after = reader(store)
    assert count(listed_after) == 20
    listed_after.close()
    assert len(_keys(moto_server, s3_bucket, "p/voice_calls/")) == 2  # the old version is kept for a while ...
    monkeypatch.setattr(store_s3, "SUPERSEDED_GRACE", timedelta(0))
    time.sleep(1.1)  # S3's LastModified counts whole seconds
    write_partition(store, VOICE_CALLS, day, frame(30))
    (only,) = _keys(moto_server, s3_bucket, "p/voice_calls/")  # ... and deleted by a later write
    assert read_partition(store, VOICE_CALLS, day).height == 30 and only.endswith(".parquet")
    client.abort_multipart_upload(Bucket=s3_bucket, Key=pending, UploadId=upload["UploadId"])


def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "report_platform.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_a_missing_bucket_is_one_line_naming_it(home: Home, moto_server):  # noqa: F811
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": STANDIN_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": STANDIN_REGION,
        "REPORT_PLATFORM_HOME": str(home.root),
        "REPORT_PLATFORM_STORE_S3_BUCKET": "no-such-bucket-here",
        "REPORT_PLATFORM_STORE_S3_ENDPOINT_URL": moto_server.endpoint_url,
        "REPORT_PLATFORM_ROWS_PER_DAY": "50",
    }
    for args in (
        ("ingest", "--json", "--start", "2026-03-02", "--end", "2026-03-02"),
        ("sql", "SELECT 1 FROM voice_calls"),
    ):
        out = _run_cli(*args, env=env)
        assert out.returncode == 1
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert "s3://no-such-bucket-here/" in lines[0] and "does not exist" in lines[0]
        assert SECRET not in out.stderr + out.stdout


@pytest.fixture
def moto_with_auth() -> Iterator[str]:
    """A moto S3 server of its own on loopback that checks credentials (it knows none, so every key is unknown)."""
    with moto_process({"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as url:
        yield url


def test_rejected_credentials_are_one_line_without_the_secret(home: Home, moto_with_auth: str):
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIAUNKNOWNKEY000000",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": STANDIN_REGION,
        "REPORT_PLATFORM_HOME": str(home.root),
        "REPORT_PLATFORM_STORE_S3_BUCKET": "usage-store",
        "REPORT_PLATFORM_STORE_S3_ENDPOINT_URL": moto_with_auth,
        "REPORT_PLATFORM_ROWS_PER_DAY": "50",
    }
    for args in (
        ("ingest", "--json", "--start", "2026-03-02", "--end", "2026-03-02"),
        ("sql", "SELECT 1 FROM voice_calls"),
    ):
        out = _run_cli(*args, env=env)
        assert out.returncode == 1
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert "s3://usage-store/" in lines[0] and "credentials were rejected (InvalidAccessKeyId)" in lines[0]
        assert SECRET not in out.stderr + out.stdout and "AKIAUNKNOWNKEY" not in out.stderr


def test_a_prefix_without_a_bucket_is_refused_naming_both_variables(monkeypatch):
    from report_platform.settings import SettingsError, current_settings

    monkeypatch.setenv("REPORT_PLATFORM_ARCHIVE_S3_PREFIX", "exports/")
    monkeypatch.delenv("REPORT_PLATFORM_ARCHIVE_S3_BUCKET", raising=False)
    with pytest.raises(
        SettingsError, match="REPORT_PLATFORM_ARCHIVE_S3_PREFIX is set but REPORT_PLATFORM_ARCHIVE_S3_BUCKET"
    ):
        current_settings()
    monkeypatch.setenv("REPORT_PLATFORM_ARCHIVE_S3_BUCKET", "Not_A_Bucket")
    with pytest.raises(SettingsError, match="REPORT_PLATFORM_ARCHIVE_S3_BUCKET must be an S3 bucket name"):
        current_settings()


def test_every_report_type_builds_the_same_file_from_s3_as_from_local_disk(s3_home: Home, tmp_path):
    from report_platform.domain.rate_card import load_rate_card
    from report_platform.domain.tenancy import load_tenancy
    from report_platform.reports.builders import ExportSpec, build_export

    local = Home(tmp_path / "local").ensure()
    ingest_range(local, FIRST, LAST)
    ingest_range(s3_home, FIRST, LAST)
    tenancy = load_tenancy(s3_home.root)
    workspace = next(iter(tenancy.workspaces()))
    start = datetime(2026, 3, 2, 5, tzinfo=UTC)
    for type_ in ("voice_usage", "sms_usage", "aegis_interaction", "billing"):
        scope = (None, workspace.organization_id) if type_ == "billing" else (workspace.id, None)
        spec = ExportSpec(type_, *scope, "America/New_York", start, start + timedelta(days=2))
        built = {}
        for name, home in (("local", local), ("s3", s3_home)):
            out = tmp_path / f"{name}-{type_}"
            built[name] = build_export(home.store, spec, out, tenancy, load_rate_card(home.rate_card))
        assert built["s3"].rows == built["local"].rows > 0, type_
        if type_ != "billing":  # a workbook's zip entries carry the time it was written
            assert built["s3"].sha256 == built["local"].sha256, type_
    # Aegis with each transaction's events: from the local store's aegis_interactions, and on S3
    # aggregated from the day's events partition; the same bytes.
    events = ExportSpec("aegis_interaction", workspace.id, None, "UTC", start, start + timedelta(days=2))
    with_events = {}
    for name, home in (("local", local), ("s3", s3_home)):
        with_events[name] = build_export(
            home.store,
            replace(events, include_event_details=True),
            tmp_path / f"{name}-events.csv",
            tenancy,
            load_rate_card(home.rate_card),
        )
    assert with_events["s3"].rows == with_events["local"].rows > 0
    assert with_events["s3"].sha256 == with_events["local"].sha256
    assert '""seq"":' in (tmp_path / "s3-events.csv").read_text()  # the events, CSV-quoted


def test_the_usage_assets_write_the_day_to_the_bucket_the_resource_names(home: Home, aws, moto_server, s3_bucket):  # noqa: F811
    import dagster as dg

    from report_platform.ingest.assets import UsageStoreResource, usage_assets

    resource = UsageStoreResource(
        home=str(home.root),
        rows_per_day=200,
        store_s3_bucket=s3_bucket,
        store_s3_prefix="usage/",
        store_s3_endpoint_url=moto_server.endpoint_url,
    )
    result = dg.materialize(usage_assets, partition_key=str(FIRST), resources={"usage_store": resource})
    assert result.success
    tables = {k.split("/")[1] for k in _keys(moto_server, s3_bucket, "usage/")}
    assert tables == {"voice_calls", "sms_messages", "aegis_transactions", "aegis_events", "billing_line_items"}
    paths = {
        e.asset_key.path[-1]: e.materialization.metadata["path"].value
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] != "aegis_interactions"  # kept in a local store only: no path here
    }
    assert paths["voice_calls"].startswith(f"s3://{s3_bucket}/usage/voice_calls/day={FIRST}/data.")
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    assert not list(home.root.rglob("*.parquet"))
