"""A deployment whose usage store and archive are on S3 (moto's S3 server on loopback): ingest,
a report run that builds from the bucket and archives into it, a retry on a machine with no local
copy that sends the bucket's bytes without rebuilding, and the retention job pruning the bucket."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from report_platform.app import registry_service
from report_platform.ingest.runner import ingest_range
from report_platform.launch import launch_report_run
from report_platform.settings import Home, S3Location
from report_platform_devservers.standins.s3 import STANDIN_ACCESS_KEY, STANDIN_REGION, STANDIN_SECRET_KEY
from report_platform_tests.registry_setup import fresh_registry
from report_platform_tests.scheduling.conftest import OWNER, USER, _smtp_connection, sms_definition
from report_platform_tests.servers.fixtures import moto_server, s3_bucket, smtp_factory  # noqa: F401

NY = ZoneInfo("America/New_York")
SCHEDULED = datetime(2026, 3, 9, 6, 0, tzinfo=NY)
FILE = "Daily SMS usage_2026-03-08.csv"


@pytest.fixture
def s3_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_server, s3_bucket: str) -> Iterator[Home]:  # noqa: F811
    """A data folder whose store (`usage/`) and archive (`exports/`) are in one fresh bucket."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": STANDIN_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": STANDIN_SECRET_KEY,
        "AWS_DEFAULT_REGION": STANDIN_REGION,
        "REPORT_PLATFORM_HOME": str(tmp_path / "home"),
        "REPORT_PLATFORM_STORE_S3_BUCKET": s3_bucket,
        "REPORT_PLATFORM_STORE_S3_PREFIX": "usage",
        "REPORT_PLATFORM_STORE_S3_ENDPOINT_URL": moto_server.endpoint_url,
        "REPORT_PLATFORM_ARCHIVE_S3_BUCKET": s3_bucket,
        "REPORT_PLATFORM_ARCHIVE_S3_PREFIX": "exports",
        "REPORT_PLATFORM_ARCHIVE_S3_ENDPOINT_URL": moto_server.endpoint_url,
        "REPORT_PLATFORM_ROWS_PER_DAY": "400",
        "REPORT_PLATFORM_DAGSTER_URL": "http://127.0.0.1:9",  # no webserver: run in-process
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = Home.from_env().ensure()
    ingest_range(home, date(2026, 3, 7), date(2026, 3, 9))
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    home.connections.write_text(yaml.safe_dump({"smtp": {"default": _smtp_connection(9)}}))  # port 9: nobody listens
    with fresh_registry(home, [(OWNER, "acme", "owner"), (USER, "acme", "user")]):
        yield home


def _objects(moto_server, bucket: str, prefix: str) -> dict[str, bytes]:  # noqa: ANN001, F811
    client = moto_server.client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def test_a_run_builds_from_the_bucket_archives_into_it_and_a_retry_elsewhere_sends_the_bucket_bytes(
    s3_platform: Home,
    moto_server,  # noqa: F811
    s3_bucket: str,  # noqa: F811
    smtp_factory,  # noqa: F811
) -> None:
    assert isinstance(s3_platform.store, S3Location) and not list(s3_platform.root.rglob("*.parquet"))
    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, sms_definition())
    failed = launch_report_run(report_id, "sms_usage", SCHEDULED, trigger="schedule")
    assert failed.success is False  # built and archived, but the mail server is not there
    (run,) = service.audit_log(USER, report_id).runs
    assert run.status == "FAILED" and run.rows > 0
    run_folder = f"exports/{report_id}/2026/03/20260309T100000Z/"
    archived = _objects(moto_server, s3_bucket, run_folder)
    assert sorted(archived) == [run_folder + n for n in (FILE, FILE + ".sha256", "manifest.json")]
    digest = hashlib.sha256(archived[run_folder + FILE]).hexdigest()
    assert digest == run.sha256 and json.loads(archived[run_folder + "manifest.json"])["sha256"] == digest
    assert archived[run_folder + FILE].startswith(b"Timestamp,Status,From,To,Core Campaign")

    # Another machine: no local copy, and the store no longer holds the period, so a rebuild
    # would give another file. The retry must send what the bucket holds.
    shutil.rmtree(s3_platform.archive)
    client = moto_server.client()
    for key in _objects(moto_server, s3_bucket, "usage/sms_messages/"):
        client.delete_object(Bucket=s3_bucket, Key=key)
    server = smtp_factory(security="none")
    s3_platform.connections.write_text(yaml.safe_dump({"smtp": {"default": _smtp_connection(server.port)}}))
    retried = launch_report_run(report_id, "sms_usage", SCHEDULED, trigger="schedule")
    assert retried.success
    (mail,) = server.received
    (attachment,) = list(mail.message.iter_attachments())
    sent = attachment.get_content()
    sent = sent if isinstance(sent, bytes) else sent.encode()
    assert attachment.get_filename() == FILE and hashlib.sha256(sent).hexdigest() == digest
    assert (s3_platform.archive / report_id / "2026" / "03" / "20260309T100000Z" / FILE).read_bytes() == sent
    runs = service.audit_log(USER, report_id).runs
    assert [r.status for r in sorted(runs, key=lambda r: r.started_at)] == ["FAILED", "SUCCESS"]
    assert {r.sha256 for r in runs} == {digest}
    from dagster import DagsterEventType, DagsterInstance

    with DagsterInstance.get() as instance:
        (event,) = instance.all_logs(retried.dagster_run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    meta = event.asset_materialization.metadata
    assert meta["rebuilt"].value is False
    assert meta["archived_file"].value == f"s3://{s3_bucket}/{run_folder}{FILE}"


def test_the_retention_job_prunes_the_bucket(s3_platform: Home, moto_server, s3_bucket: str) -> None:  # noqa: F811
    from report_platform.definitions import build_definitions

    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, sms_definition())
    launch_report_run(report_id, "sms_usage", SCHEDULED, trigger="schedule")  # archived; delivery fails
    prefix = f"exports/{report_id}/"
    kept = _objects(moto_server, s3_bucket, prefix)
    assert len(kept) == 3
    job = build_definitions([], 0).resolve_job_def("archive_retention_job")
    assert job.execute_in_process().success
    assert sorted(_objects(moto_server, s3_bucket, prefix)) == sorted(kept)  # still young
    (key,) = [k for k in kept if k.endswith("manifest.json")]
    old = kept[key].replace(b'"built_at": "20', b'"built_at": "19')  # a century old
    moto_server.client().put_object(Bucket=s3_bucket, Key=key, Body=old)
    assert job.execute_in_process().success
    assert _objects(moto_server, s3_bucket, prefix) == {}
    assert not list((s3_platform.archive / report_id).rglob("*.csv"))  # nor this machine's copy
    assert _objects(moto_server, s3_bucket, "usage/sms_messages/")  # the store is not the archive
