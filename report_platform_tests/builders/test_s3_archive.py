"""The archive under an S3 prefix (moto's S3 server on loopback): the same layout and promises as
the local archive, with each machine's `archive/` folder only a cache of the bucket."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from report_platform.reports import archive as archive_module
from report_platform.reports.archive import S3Archive, open_archive
from report_platform.settings import S3Location
from report_platform.store.s3 import StorageError
from report_platform_devservers.standins.s3 import STANDIN_ACCESS_KEY, STANDIN_REGION, STANDIN_SECRET_KEY
from report_platform_tests.servers.fixtures import moto_server, s3_bucket  # noqa: F401

AT = datetime(2026, 3, 8, 6, 0, tzinfo=ZoneInfo("America/New_York"))
RUN = "exports/rep-1/2026/03/20260308T100000Z"


@pytest.fixture(autouse=True)
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", STANDIN_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", STANDIN_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", STANDIN_REGION)


@pytest.fixture
def location(moto_server, s3_bucket: str) -> S3Location:  # noqa: ANN001, F811
    return S3Location(s3_bucket, "exports", moto_server.endpoint_url)


def built(tmp_path: Path, data: bytes = b"a,b\r\n1,2\r\n", name: str = "Daily SMS_2026-03-07.csv") -> Path:
    path = tmp_path / "build" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _keys(moto_server, bucket: str) -> list[str]:  # noqa: ANN001, F811
    return sorted(o["Key"] for o in moto_server.client().list_objects_v2(Bucket=bucket).get("Contents", []))


def _body(moto_server, bucket: str, key: str) -> bytes:  # noqa: ANN001, F811
    return moto_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def test_a_built_file_goes_to_the_bucket_with_its_checksum_and_manifest(tmp_path, location, moto_server):  # noqa: F811
    data = b"x" * 5000
    archive = open_archive(tmp_path / "cache", location)
    assert isinstance(archive, S3Archive)
    archived = archive.put("rep-1", AT, built(tmp_path, data), retention_days=30, rows=7, content_type="text/csv")
    name = "Daily SMS_2026-03-07.csv"
    assert _keys(moto_server, location.bucket) == [f"{RUN}/{name}", f"{RUN}/{name}.sha256", f"{RUN}/manifest.json"]
    assert archived.location == f"s3://{location.bucket}/{RUN}/{name}"
    digest = hashlib.sha256(data).hexdigest()
    assert (
        archived.sha256 == digest
        and hashlib.sha256(_body(moto_server, location.bucket, f"{RUN}/{name}")).hexdigest() == digest
    )
    head = moto_server.client().head_object(Bucket=location.bucket, Key=f"{RUN}/{name}", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(digest)).decode()
    assert head["Metadata"] == {"sha256": digest} and head["ContentType"] == "text/csv"
    assert _body(moto_server, location.bucket, f"{RUN}/{name}.sha256") == f"{digest}  {name}\n".encode()
    manifest = json.loads(_body(moto_server, location.bucket, f"{RUN}/manifest.json"))
    assert (manifest["sha256"], manifest["bytes"], manifest["rows"], manifest["retention_days"]) == (
        digest,
        5000,
        7,
        30,
    )
    # Checks and delivery read the local copy, which is the archived bytes.
    assert archived.path.read_bytes() == data and archive.verify(archived)


def test_a_retry_on_another_machine_reads_the_file_from_the_bucket(tmp_path, location, moto_server):  # noqa: F811
    data = b"id,n\r\n" + b"r,1\r\n" * 1000
    first = open_archive(tmp_path / "machine-a", location).put("rep-1", AT, built(tmp_path, data), retention_days=None)
    other = open_archive(tmp_path / "machine-b", location)
    found = other.find("rep-1", AT.astimezone(UTC))
    assert found is not None and other.verify(found)
    assert found.path.is_relative_to(tmp_path / "machine-b") and found.path.read_bytes() == data
    assert (found.sha256, found.size, found.location) == (first.sha256, first.size, first.location)
    assert other.find("rep-1", AT + timedelta(days=1)) is None
    # A local copy that is not the archived one is replaced by the bucket's bytes.
    found.path.write_bytes(b"tampered" + data[8:])
    again = other.find("rep-1", AT)
    assert again is not None and other.verify(again) and again.path.read_bytes() == data


def test_a_run_without_its_manifest_or_its_file_is_not_archived(tmp_path, location, moto_server):  # noqa: F811
    archive = open_archive(tmp_path / "cache", location)
    archived = archive.put("rep-1", AT, built(tmp_path), retention_days=None)
    client = moto_server.client()
    client.delete_object(Bucket=location.bucket, Key=f"{RUN}/{archived.path.name}")
    assert archive.find("rep-1", AT) is None  # the cached copy does not stand in for the bucket
    archive.put("rep-1", AT, built(tmp_path), retention_days=None)
    client.delete_object(Bucket=location.bucket, Key=f"{RUN}/manifest.json")  # as if archiving stopped before the end
    assert archive.find("rep-1", AT) is None


def test_retention_prunes_old_runs_from_the_bucket_and_the_cache(tmp_path, location, moto_server):  # noqa: F811
    now = datetime(2026, 6, 1, tzinfo=UTC)
    archive = open_archive(tmp_path / "cache", location)
    old = archive.put("rep-1", AT, built(tmp_path), retention_days=None, built_at=now - timedelta(days=91))
    recent = archive.put(
        "rep-1", AT + timedelta(days=1), built(tmp_path), retention_days=None, built_at=now - timedelta(days=89)
    )
    short = archive.put("rep-2", AT, built(tmp_path), retention_days=7, built_at=now - timedelta(days=8))
    removed = archive.prune(90, now=now)
    assert removed == [
        f"s3://{location.bucket}/{RUN}",
        f"s3://{location.bucket}/exports/rep-2/2026/03/20260308T100000Z",
    ]
    left = _keys(moto_server, location.bucket)
    assert left and all(k.startswith("exports/rep-1/2026/03/20260309T100000Z/") for k in left)
    assert not old.folder.exists() and not short.folder.exists() and recent.path.exists()
    assert archive.find("rep-1", AT) is None and archive.find("rep-1", AT + timedelta(days=1)) is not None


def test_a_refused_file_is_set_aside_so_that_a_retry_rebuilds_it(tmp_path, location, moto_server):  # noqa: F811
    archive = open_archive(tmp_path / "cache", location)
    archived = archive.put("rep-1", AT, built(tmp_path), retention_days=None)
    aside = archive.set_aside(archived, "0123456789abcdef")
    assert aside == f"s3://{location.bucket}/{RUN}.rejected-01234567"
    assert archive.find("rep-1", AT) is None
    assert all(k.startswith(f"{RUN}.rejected-01234567/") for k in _keys(moto_server, location.bucket))
    assert len(_keys(moto_server, location.bucket)) == 3  # with its manifest: retention still prunes it


def test_a_large_file_goes_up_in_parts_and_is_still_checked_whole(tmp_path, location, moto_server, monkeypatch):  # noqa: F811
    monkeypatch.setattr(archive_module, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(archive_module, "MULTIPART_CHUNKSIZE", 5 * 1024 * 1024)
    data = bytes(range(256)) * (11 * 4096)  # 11 MiB: three parts
    archive = open_archive(tmp_path / "cache", location)
    archived = archive.put("rep-1", AT, built(tmp_path, data), retention_days=None)
    body = _body(moto_server, location.bucket, f"{RUN}/{archived.path.name}")
    assert hashlib.sha256(body).hexdigest() == archived.sha256 == hashlib.sha256(data).hexdigest()
    fresh = open_archive(tmp_path / "other", location).find("rep-1", AT)
    assert fresh is not None and fresh.path.read_bytes() == data


def test_a_missing_bucket_is_one_line_naming_it(tmp_path, moto_server):  # noqa: F811
    archive = open_archive(tmp_path / "cache", S3Location("no-such-archive", "x", moto_server.endpoint_url))
    with pytest.raises(StorageError) as caught:
        archive.put("rep-1", AT, built(tmp_path), retention_days=None)
    message = str(caught.value)
    assert message == "writing to the archive s3://no-such-archive/x/: the bucket 'no-such-archive' does not exist"
    with pytest.raises(StorageError, match="does not exist"):
        archive.prune()


def test_an_upload_whose_stored_checksum_differs_fails_before_anything_uses_it(tmp_path, location, monkeypatch):
    # As if the bucket stored other bytes than were sent: the stored checksum does not match.
    monkeypatch.setattr(archive_module, "_expected_checksum", lambda path, size, sha256: "not-the-stored-checksum")
    archive = open_archive(tmp_path / "cache", location)
    with pytest.raises(archive_module.ArchiveError, match="does not hold the archived bytes after the upload"):
        archive.put("rep-1", AT, built(tmp_path), retention_days=None)
    assert archive.find("rep-1", AT) is None  # no manifest was written: the run is not archived
