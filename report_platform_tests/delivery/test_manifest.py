"""`manifest: true` on SFTP and S3: `<file>.manifest.json` after the confirmed file, once per run."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from report_platform.delivery import (
    Artifact,
    Connections,
    DeliveryError,
    DeliveryLedger,
    deliver,
)
from report_platform.delivery.manifest import manifest_document
from report_platform_tests.delivery.conftest import standin_s3, standin_sftp
from report_platform_tests.delivery.pgp_keys import decrypt, make_key, remove

SCOPE = "rpt_manifest/20261128T110000Z"
FIELDS = {
    "report_id": "rpt_manifest",
    "run_id": SCOPE,
    "period": {"start": "2026-11-27T00:00:00-05:00", "end": "2026-11-28T00:00:00-05:00"},
    "rows": 1234,
    "format": "csv",
    "columns": [{"name": "Timestamp", "type": "timestamp"}, {"name": "From", "type": "string"}],
}
# Large enough that the upload takes a while (S3: multipart), small enough for a fast suite.
POLLED_SIZE = 24 * 1024 * 1024


@pytest.fixture
def sftp(sshd_shared, monkeypatch) -> tuple[Connections, Path]:
    folder = sshd_shared.root_dir / f"manifest-{time.monotonic_ns()}"
    folder.mkdir()
    return Connections(sftp={"partner-sftp": standin_sftp(sshd_shared, monkeypatch)}), folder


@pytest.fixture
def s3(moto_server, monkeypatch) -> Connections:
    return Connections(s3={"reports-aws": standin_s3(moto_server.endpoint_url, monkeypatch)})


@pytest.fixture
def ledger(tmp_path: Path) -> DeliveryLedger:
    return DeliveryLedger.open(f"sqlite:///{tmp_path / 'registry.db'}")


def _sftp_dest(folder: Path, manifest: bool = True) -> dict[str, Any]:
    return {"type": "sftp", "connection": "partner-sftp", "remote_dir": str(folder), "manifest": manifest}


def _s3_dest(bucket: str) -> dict[str, Any]:
    return {"type": "s3", "connection": "reports-aws", "bucket": bucket, "prefix": "daily/", "manifest": True}


def _check_manifest(document: dict[str, Any], artifact: Artifact) -> None:
    assert document["file"] == artifact.filename
    assert (document["bytes"], document["sha256"]) == (artifact.size, artifact.sha256)
    assert document["content_type"] == artifact.content_type
    for key, value in FIELDS.items():
        assert document[key] == value
    assert "plaintext_sha256" not in document  # delivered as built


def test_sftp_manifest_follows_the_file_and_describes_it(sftp, make_artifact, ledger) -> None:
    connections, folder = sftp
    artifact = make_artifact()
    receipt = deliver(
        artifact, _sftp_dest(folder), connections, ledger=ledger, scope=SCOPE, manifest=FIELDS, organization="acme"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["report.csv", "report.csv.manifest.json"]
    document = json.loads((folder / "report.csv.manifest.json").read_text())
    _check_manifest(document, artifact)
    assert receipt.extra["manifest"]["target"].endswith("/report.csv.manifest.json")
    assert receipt.extra["manifest"]["reused"] is False
    # The file's and the manifest's deliveries are both confirmed in the ledger.
    assert sorted((row.target.rsplit("/", 1)[1], row.state) for row in ledger.rows()) == [
        ("report.csv", "confirmed"),
        ("report.csv.manifest.json", "confirmed"),
    ]


def test_sftp_retry_sends_neither_the_file_nor_the_manifest_again(sftp, make_artifact, ledger) -> None:
    connections, folder = sftp
    artifact = make_artifact()
    deliver(artifact, _sftp_dest(folder), connections, ledger=ledger, scope=SCOPE, manifest=FIELDS)
    inodes = {p.name: p.stat().st_ino for p in folder.iterdir()}
    again = deliver(artifact, _sftp_dest(folder), connections, ledger=ledger, scope=SCOPE, manifest=FIELDS)
    assert again.extra["reused"] is True and again.extra["manifest"]["reused"] is True
    # A re-upload would have renamed a new file onto each name.
    assert {p.name: p.stat().st_ino for p in folder.iterdir()} == inodes
    assert len(ledger.rows()) == 2


def test_a_failed_manifest_is_sent_by_the_retry_without_resending_the_file(sftp, make_artifact, ledger) -> None:
    connections, folder = sftp
    artifact = make_artifact()
    # A folder in the way of the manifest's rename: the file arrives, its manifest cannot.
    (folder / "report.csv.manifest.json").mkdir()
    with pytest.raises(
        DeliveryError, match=r"report\.csv was delivered to .*, but its manifest report\.csv\.manifest\.json was not"
    ):
        deliver(artifact, _sftp_dest(folder), connections, ledger=ledger, scope=SCOPE, manifest=FIELDS, attempts=1)
    assert (folder / "report.csv").read_bytes() == artifact.path.read_bytes()
    file_inode = (folder / "report.csv").stat().st_ino
    (folder / "report.csv.manifest.json").rmdir()

    receipt = deliver(artifact, _sftp_dest(folder), connections, ledger=ledger, scope=SCOPE, manifest=FIELDS)
    assert receipt.extra["reused"] is True  # the file: from the ledger, not sent again
    assert (folder / "report.csv").stat().st_ino == file_inode
    _check_manifest(json.loads((folder / "report.csv.manifest.json").read_text()), artifact)
    assert sorted(p.name for p in folder.iterdir()) == ["report.csv", "report.csv.manifest.json"]


def test_no_manifest_unless_asked(sftp, make_artifact) -> None:
    connections, folder = sftp
    receipt = deliver(make_artifact(), _sftp_dest(folder, manifest=False), connections, manifest=FIELDS)
    assert [p.name for p in folder.iterdir()] == ["report.csv"] and "manifest" not in receipt.extra


def test_s3_manifest_is_put_after_the_verified_object(moto_server, s3_bucket, s3, make_artifact, ledger) -> None:
    client = moto_server.client()
    client.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    artifact = make_artifact(size=9 * 1024 * 1024)  # multipart
    receipt = deliver(artifact, _s3_dest(s3_bucket), s3, ledger=ledger, scope=SCOPE, manifest=FIELDS)
    stored = client.get_object(Bucket=s3_bucket, Key="daily/report.csv.manifest.json")
    assert stored["ContentType"] == "application/json"
    _check_manifest(json.loads(stored["Body"].read()), artifact)
    assert receipt.extra["manifest"]["location"] == "daily/report.csv.manifest.json"

    # A retry with the ledger sends nothing; one without it (a lost confirmation) finds both in place.
    assert deliver(artifact, _s3_dest(s3_bucket), s3, ledger=ledger, scope=SCOPE, manifest=FIELDS).extra["reused"]
    deliver(artifact, _s3_dest(s3_bucket), s3, scope=SCOPE, manifest=FIELDS)
    versions = client.list_object_versions(Bucket=s3_bucket, Prefix="daily/")["Versions"]
    assert sorted(v["Key"] for v in versions) == ["daily/report.csv", "daily/report.csv.manifest.json"]


def test_the_manifest_carries_the_delivered_and_the_plaintext_checksums_when_they_differ(make_artifact) -> None:
    built = make_artifact(name="report.csv", data=b"a,b\r\n1,2\r\n")
    delivered = make_artifact(name="report.csv.pgp", data=b"-----BEGIN PGP MESSAGE-----...")
    document = json.loads(manifest_document(FIELDS, delivered, built))
    assert (document["file"], document["sha256"], document["bytes"]) == (
        "report.csv.pgp",
        delivered.sha256,
        delivered.size,
    )
    assert (document["plaintext_sha256"], document["plaintext_bytes"]) == (built.sha256, built.size)
    # The caller's fields never override the delivered file's facts.
    assert json.loads(manifest_document({**FIELDS, "sha256": "x"}, built))["sha256"] == built.sha256


def _poll(seen: Callable[[], bytes | None], read_file: Callable[[], bytes], stop: threading.Event, out: list) -> None:
    """Every 10 ms: once the manifest is there, the file it names must be complete."""
    while not stop.is_set():
        manifest = seen()
        if manifest is not None:
            document = json.loads(manifest)
            data = read_file()
            out.append((document, len(data), hashlib.sha256(data).hexdigest()))
            return
        time.sleep(0.01)


def _run_polled(deliver_it: Callable[[], object], seen, read_file) -> list:
    stop, out = threading.Event(), []
    reader = threading.Thread(target=_poll, args=(seen, read_file, stop, out))
    reader.start()
    try:
        deliver_it()
        reader.join(timeout=30)
    finally:
        stop.set()
        reader.join()
    return out


def test_a_reader_polling_sftp_never_sees_the_manifest_before_the_whole_file(sftp, make_artifact) -> None:
    connections, folder = sftp
    artifact = make_artifact(size=POLLED_SIZE)
    manifest_path, file_path = folder / "report.csv.manifest.json", folder / "report.csv"
    out = _run_polled(
        lambda: deliver(artifact, _sftp_dest(folder), connections, manifest=FIELDS),
        lambda: manifest_path.read_bytes() if manifest_path.exists() else None,
        file_path.read_bytes,
    )
    assert len(out) == 1, "the reader never saw the manifest"
    document, size, sha256 = out[0]
    assert (size, sha256) == (document["bytes"], document["sha256"]) == (artifact.size, artifact.sha256)


def test_a_reader_polling_the_bucket_never_sees_the_manifest_before_the_whole_object(
    moto_server, s3_bucket, s3, make_artifact
) -> None:
    client = moto_server.client()
    artifact = make_artifact(size=POLLED_SIZE)

    def seen() -> bytes | None:
        listed = client.list_objects_v2(Bucket=s3_bucket, Prefix="daily/report.csv.manifest.json")
        if not listed.get("KeyCount"):
            return None
        return client.get_object(Bucket=s3_bucket, Key="daily/report.csv.manifest.json")["Body"].read()

    out = _run_polled(
        lambda: deliver(artifact, _s3_dest(s3_bucket), s3, manifest=FIELDS),
        seen,
        lambda: client.get_object(Bucket=s3_bucket, Key="daily/report.csv")["Body"].read(),
    )
    assert len(out) == 1, "the reader never saw the manifest"
    document, size, sha256 = out[0]
    assert (size, sha256) == (document["bytes"], document["sha256"]) == (artifact.size, artifact.sha256)


def test_an_encrypted_file_gets_a_clear_manifest_of_the_ciphertext_with_the_plaintext_beside(
    sftp, make_artifact, ledger
) -> None:
    connections, folder = sftp
    artifact = make_artifact()
    key = make_key("Partner <partner@example.com>")
    try:
        destination = {**_sftp_dest(folder), "encrypt_to": [key.public]}
        receipt = deliver(artifact, destination, connections, ledger=ledger, scope=SCOPE, manifest=FIELDS)
        assert sorted(p.name for p in folder.iterdir()) == ["report.csv.pgp", "report.csv.pgp.manifest.json"]
        ciphertext = (folder / "report.csv.pgp").read_bytes()
        assert decrypt(key, ciphertext) == artifact.path.read_bytes()
        document = json.loads((folder / "report.csv.pgp.manifest.json").read_text())
        assert document["file"] == "report.csv.pgp"
        assert (document["bytes"], document["sha256"]) == (len(ciphertext), hashlib.sha256(ciphertext).hexdigest())
        assert (document["plaintext_bytes"], document["plaintext_sha256"]) == (artifact.size, artifact.sha256)
        assert document["rows"] == FIELDS["rows"]
        # A retry finds both confirmed: no second ciphertext, no second manifest.
        again = deliver(artifact, destination, connections, ledger=ledger, scope=SCOPE, manifest=FIELDS)
        assert again.extra["reused"] is True and again.extra["manifest"]["reused"] is True
        assert (folder / "report.csv.pgp").read_bytes() == ciphertext
        assert receipt.sha256 == artifact.sha256  # the receipt stays the built file's
    finally:
        remove(key)
