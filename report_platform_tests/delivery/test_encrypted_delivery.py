"""`encrypt_to`: files delivered to SFTP and S3 as OpenPGP ciphertext, decrypted with gpg by the test."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from report_platform.delivery import (
    ConfigurationError,
    Connections,
    DeliveryLedger,
    TransientDeliveryError,
    deliver,
)
from report_platform.delivery.dispatch import delivered_checksums
from report_platform_devservers.standins import MotoStandin, SshdStandin
from report_platform_tests.delivery.conftest import standin_s3, standin_sftp
from report_platform_tests.delivery.pgp_keys import decrypt


def _connections(sshd: SshdStandin, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Connections:
    return Connections(
        sftp={"partner-sftp": standin_sftp(sshd, monkeypatch, timeout=10)},
        s3={"reports-aws": standin_s3(s3_endpoint, monkeypatch, sdk_max_attempts=1)},
    )


def test_sftp_delivery_is_ciphertext_that_the_recipient_decrypts(
    sshd_shared, moto_server, monkeypatch, pgp_keys, make_artifact
):
    target = sshd_shared.root_dir / "encrypted-sftp"
    target.mkdir()
    artifact = make_artifact(
        "usage.csv", data=b"Timestamp,From,To\n" + b"2026-11-28T06:00:00-05:00,+1555,+1666\n" * 5000
    )
    dest = {
        "type": "sftp",
        "connection": "partner-sftp",
        "remote_dir": str(target),
        "encrypt_to": [pgp_keys["alice"].public],
    }

    receipt = deliver(artifact, dest, _connections(sshd_shared, moto_server.endpoint_url, monkeypatch))

    assert sorted(p.name for p in target.iterdir()) == ["usage.csv.pgp"]  # no plaintext, no partial file
    delivered = (target / "usage.csv.pgp").read_bytes()
    assert b"Timestamp" not in delivered
    assert decrypt(pgp_keys["alice"], delivered) == artifact.path.read_bytes()
    assert receipt.location.endswith("/usage.csv.pgp")
    assert delivered_checksums(receipt) == {
        "sha256": artifact.sha256,
        "bytes": artifact.size,
        "ciphertext_sha256": hashlib.sha256(delivered).hexdigest(),
        "ciphertext_bytes": len(delivered),
        "encrypted_to": [pgp_keys["alice"].fingerprint],
    }


def test_s3_delivery_encrypted_to_two_recipients_decrypts_for_both(
    sshd_shared, moto_server, s3_bucket, monkeypatch, pgp_keys, make_artifact
):
    artifact = make_artifact("usage.csv", size=300_000)
    dest = {
        "type": "s3",
        "connection": "reports-aws",
        "bucket": s3_bucket,
        "prefix": "in/",
        "encrypt_to": [pgp_keys["alice"].public, pgp_keys["bob"].public],
    }

    receipt = deliver(artifact, dest, _connections(sshd_shared, moto_server.endpoint_url, monkeypatch))

    client = moto_server.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == ["in/usage.csv.pgp"]
    stored = client.get_object(Bucket=s3_bucket, Key="in/usage.csv.pgp")
    ciphertext = stored["Body"].read()
    assert decrypt(pgp_keys["alice"], ciphertext) == artifact.path.read_bytes()
    assert decrypt(pgp_keys["bob"], ciphertext) == artifact.path.read_bytes()
    assert stored["Metadata"]["sha256"] == hashlib.sha256(ciphertext).hexdigest()
    assert receipt.extra["encryption"]["recipients"] == [pgp_keys["alice"].fingerprint, pgp_keys["bob"].fingerprint]
    assert receipt.sha256 == artifact.sha256


def test_a_run_retry_after_a_lost_answer_finds_the_same_ciphertext_in_place(
    sshd_shared,
    moto_server: MotoStandin,
    s3_bucket,
    monkeypatch,
    pgp_keys,
    make_artifact,
    s3_fault_proxy,
    tmp_path: Path,
):
    """S3 stores the object but its answer is lost: the retry must not make (or refuse) a second ciphertext."""
    artifact = make_artifact("usage.csv", size=50_000)
    dest = _encrypted_s3(s3_bucket, pgp_keys)
    conns = _connections(sshd_shared, s3_fault_proxy.url, monkeypatch)
    ledger = DeliveryLedger.open(f"sqlite:///{tmp_path / 'registry.db'}")
    _lose_first_put_answer(s3_fault_proxy)
    with pytest.raises(TransientDeliveryError):
        deliver(artifact, dest, conns, ledger=ledger, scope="rpt_1/20261128", attempts=1, sleep=lambda s: None)
    s3_fault_proxy.rewrite(None)
    client = moto_server.client()
    first = client.get_object(Bucket=s3_bucket, Key="in/usage.csv.pgp")["Body"].read()

    receipt = deliver(artifact, dest, conns, ledger=ledger, scope="rpt_1/20261128", sleep=lambda s: None)

    assert receipt.extra["already_present"] is True
    assert receipt.extra["encryption"]["ciphertext_sha256"] == hashlib.sha256(first).hexdigest()
    versions = client.list_object_versions(Bucket=s3_bucket).get("Versions", [])
    assert [v["Key"] for v in versions] == ["in/usage.csv.pgp"]
    assert client.get_object(Bucket=s3_bucket, Key="in/usage.csv.pgp")["Body"].read() == first
    assert decrypt(pgp_keys["alice"], first) == artifact.path.read_bytes()


def _encrypted_s3(bucket: str, pgp_keys) -> dict:  # noqa: ANN001
    return {
        "type": "s3",
        "connection": "reports-aws",
        "bucket": bucket,
        "prefix": "in/",
        "encrypt_to": [pgp_keys["alice"].public],
    }


def _lose_first_put_answer(proxy) -> None:  # noqa: ANN001
    """S3 stores the first PUT, but its answer becomes 503 SlowDown on the way back."""
    lost = {"done": False}

    def rewrite(method, path, status, headers, body):  # noqa: ANN001, ANN202
        if method == "PUT" and status == 200 and not lost["done"]:
            lost["done"] = True
            return 503, [("Content-Type", "application/xml")], b"<Error><Code>SlowDown</Code></Error>"
        return status, headers, body

    proxy.rewrite(rewrite)


def test_an_expired_key_fails_the_delivery_before_anything_is_sent(
    sshd_shared, moto_server, s3_bucket, monkeypatch, pgp_keys, make_artifact
):
    dest = {
        "type": "s3",
        "connection": "reports-aws",
        "bucket": s3_bucket,
        "encrypt_to": [pgp_keys["alice"].public, pgp_keys["expired"].public],
    }
    with pytest.raises(ConfigurationError) as caught:
        deliver(make_artifact(), dest, _connections(sshd_shared, moto_server.endpoint_url, monkeypatch))
    assert (
        f"key 2 of 2: key {pgp_keys['expired'].fingerprint} (Old <old@partner.example>) expired on 2020-01-02"
        in str(caught.value)
    )
    assert "Contents" not in moto_server.client().list_objects_v2(Bucket=s3_bucket)


def test_a_run_retry_on_another_machine_sends_the_ciphertext_kept_in_the_s3_archive(
    sshd_shared,
    moto_server: MotoStandin,
    s3_bucket,
    monkeypatch,
    pgp_keys,
    s3_fault_proxy,
    tmp_path: Path,
):
    """As above, but the retry runs where the archive's local copy (and the ciphertext beside it)
    never was: the archive on S3 must bring back the same ciphertext, not let it be made anew."""
    import os
    from datetime import UTC, datetime

    from report_platform.delivery import Artifact
    from report_platform.reports.archive import open_archive
    from report_platform.settings import S3Location

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "standin-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "standin-secret-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    moto_server.create_bucket(archive_bucket := s3_bucket + "-archive")
    where = S3Location(archive_bucket, "exports", moto_server.endpoint_url)
    at = datetime(2026, 11, 28, 11, tzinfo=UTC)
    source = tmp_path / "build" / "usage.csv"
    source.parent.mkdir()
    source.write_bytes(os.urandom(50_000))

    def artifact_on(machine: str) -> Artifact:
        archive = open_archive(tmp_path / machine, where)
        archived = archive.find("rpt_1", at) or archive.put("rpt_1", at, source, retention_days=None)
        assert archive.verify(archived)
        return Artifact(archived.path, archived.path.name, archived.sha256, archived.size, "text/csv", archived.keep)

    dest = _encrypted_s3(s3_bucket, pgp_keys)
    conns = _connections(sshd_shared, s3_fault_proxy.url, monkeypatch)
    ledger = DeliveryLedger.open(f"sqlite:///{tmp_path / 'registry.db'}")
    _lose_first_put_answer(s3_fault_proxy)
    with pytest.raises(TransientDeliveryError):
        deliver(artifact_on("machine-a"), dest, conns, ledger=ledger, scope="rpt_1/20261128", attempts=1)
    s3_fault_proxy.rewrite(None)
    first = moto_server.client().get_object(Bucket=s3_bucket, Key="in/usage.csv.pgp")["Body"].read()

    retried = artifact_on("machine-b")
    receipt = deliver(retried, dest, conns, ledger=ledger, scope="rpt_1/20261128", sleep=lambda s: None)

    assert receipt.extra["already_present"] is True
    assert receipt.extra["encryption"]["ciphertext_sha256"] == hashlib.sha256(first).hexdigest()
    assert decrypt(pgp_keys["alice"], first) == source.read_bytes()
