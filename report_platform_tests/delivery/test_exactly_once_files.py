"""SFTP and S3 deliveries stay single copies across retries and crashes; renames reach the disk."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from report_platform.delivery import Connections, PermanentDeliveryError, deliver
from report_platform.delivery import s3 as s3_delivery
from report_platform.reports.archive import archive_file
from report_platform_tests.delivery.conftest import standin_s3, standin_sftp


@pytest.fixture
def s3_conns(moto_server, monkeypatch) -> Connections:
    return Connections(s3={"reports-aws": standin_s3(moto_server.endpoint_url, monkeypatch)})


def _s3_dest(bucket: str) -> dict[str, object]:
    return {"type": "s3", "connection": "reports-aws", "bucket": bucket, "prefix": "daily/"}


def _versions(moto_server, bucket: str, key: str) -> int:
    answer = moto_server.client().list_object_versions(Bucket=bucket, Prefix=key)
    return len(answer.get("Versions", []))


@pytest.mark.parametrize("size", [100_000, 11 * 1024 * 1024], ids=["single-put", "multipart"])
def test_s3_retry_after_a_lost_confirmation_creates_no_second_version(
    moto_server, s3_bucket, s3_conns, make_artifact, size
):
    client = moto_server.client()
    client.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    artifact = make_artifact(size=size)
    # No ledger: as if the first run's confirmation was never written and a retry sends again.
    deliver(artifact, _s3_dest(s3_bucket), s3_conns)
    again = deliver(artifact, _s3_dest(s3_bucket), s3_conns)
    assert _versions(moto_server, s3_bucket, "daily/report.csv") == 1
    assert again.extra["already_present"] is True


def test_s3_delivery_never_replaces_a_different_object_at_its_key(moto_server, s3_bucket, s3_conns, make_artifact):
    client = moto_server.client()
    client.put_object(Bucket=s3_bucket, Key="daily/report.csv", Body=b"somebody else's file")
    with pytest.raises(PermanentDeliveryError, match="already holds a different object"):
        deliver(make_artifact(), _s3_dest(s3_bucket), s3_conns, attempts=1)
    assert client.get_object(Bucket=s3_bucket, Key="daily/report.csv")["Body"].read() == b"somebody else's file"


def test_s3_upload_found_in_place_is_verified_by_reading_it_back(moto_server, s3_bucket, make_artifact):
    artifact = make_artifact()
    client = moto_server.client()
    s3_delivery.upload(artifact, client=client, bucket=s3_bucket, key="k.csv")
    receipt = s3_delivery.upload(artifact, client=client, bucket=s3_bucket, key="k.csv")
    assert (receipt.extra["already_present"], receipt.extra["verified_by"]) == (True, "download")


def test_stale_part_files_of_the_same_target_are_removed_by_a_later_attempt(sshd_shared, make_artifact, monkeypatch):
    folder = sshd_shared.root_dir / "stale-parts"
    folder.mkdir()
    # Left by a worker that was killed mid-upload, in another process: only the listing knows.
    (folder / ".report.csv.part-0123456789ab").write_bytes(b"half a file")
    (folder / ".other.csv.part-0123456789ab").write_bytes(b"another report's upload")
    conn = standin_sftp(sshd_shared, monkeypatch)
    artifact = make_artifact()
    deliver(artifact, {"type": "sftp", "connection": "p", "remote_dir": str(folder)}, Connections(sftp={"p": conn}))
    assert sorted(p.name for p in folder.iterdir()) == [".other.csv.part-0123456789ab", "report.csv"]


def test_archiving_fsyncs_the_folder_after_each_rename(tmp_path, monkeypatch):
    synced_folders: list[int] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            synced_folders.append(info.st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    built = tmp_path / "built.csv"
    built.write_bytes(b"a,b\n1,2\n")
    archived = archive_file(
        tmp_path / "archive", "rpt_1", datetime(2026, 12, 1, 6, tzinfo=UTC), built, retention_days=7
    )
    folder = Path(archived.path).parent
    # The file, its .sha256 and the manifest: three renames, each followed by a folder fsync.
    assert synced_folders.count(folder.stat().st_ino) >= 3
