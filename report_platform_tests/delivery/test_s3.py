from __future__ import annotations

import base64
import hashlib

import pytest

from report_platform.delivery import (
    Connections,
    DeliveryLedger,
    PermanentDeliveryError,
    S3Connection,
    TransientDeliveryError,
    deliver,
)
from report_platform.delivery import s3 as s3_delivery
from report_platform_devservers.standins import MotoStandin
from report_platform_devservers.standins.s3 import STANDIN_ACCESS_KEY, STANDIN_SECRET_KEY


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_AWS_KEY_ID", STANDIN_ACCESS_KEY)
    monkeypatch.setenv("TEST_AWS_SECRET", STANDIN_SECRET_KEY)


def _connections(endpoint_url: str, sdk_max_attempts: int = 1) -> Connections:
    return Connections(
        s3={
            "reports-aws": S3Connection(
                region="us-east-1",
                endpoint_url=endpoint_url,
                access_key_id_env="TEST_AWS_KEY_ID",
                secret_access_key_env="TEST_AWS_SECRET",
                sdk_max_attempts=sdk_max_attempts,
                organizations=("acme",),
            )
        }
    )


def _dest(bucket: str, prefix: str = "pcid/sms/", **extra: object) -> dict[str, object]:
    return {"type": "s3", "connection": "reports-aws", "bucket": bucket, "prefix": prefix} | extra


def _stored(moto_server: MotoStandin, bucket: str, key: str) -> tuple[bytes, dict]:
    client = moto_server.client()
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    return body, head


def test_single_part_upload_stores_bytes_and_sha256_checksum(moto_server, s3_bucket, s3_env, make_artifact):
    artifact = make_artifact("sms_2026-11-28.csv", size=200_000)
    receipt = deliver(artifact, _dest(s3_bucket), _connections(moto_server.endpoint_url))

    body, head = _stored(moto_server, s3_bucket, "pcid/sms/sms_2026-11-28.csv")
    assert body == artifact.path.read_bytes()
    whole_file = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert head["ChecksumSHA256"] == whole_file
    assert head["Metadata"]["sha256"] == artifact.sha256
    assert head["ContentType"] == "text/csv"
    assert receipt.target == f"s3://{s3_bucket}/pcid/sms/sms_2026-11-28.csv"
    assert receipt.location == "pcid/sms/sms_2026-11-28.csv"
    assert receipt.extra["checksum_sha256"] == whole_file
    assert receipt.extra["multipart"] is False


def test_multipart_upload_checksum_is_the_composite_of_part_digests(moto_server, s3_bucket, s3_env, make_artifact):
    artifact = make_artifact("big.csv", size=20 * 1024 * 1024 + 123)
    receipt = deliver(artifact, _dest(s3_bucket, prefix="big"), _connections(moto_server.endpoint_url))

    body, head = _stored(moto_server, s3_bucket, "big/big.csv")
    assert body == artifact.path.read_bytes()
    part = 8 * 1024 * 1024
    digests = b"".join(hashlib.sha256(body[i : i + part]).digest() for i in range(0, len(body), part))
    composite = base64.b64encode(hashlib.sha256(digests).digest()).decode()
    assert head["ChecksumSHA256"].split("-")[0] == composite
    assert receipt.extra["multipart"] is True
    assert head["ETag"].strip('"').endswith("-3")


def test_a_multipart_upload_left_open_under_the_key_is_aborted_and_reported(
    moto_server, s3_bucket, s3_env, make_artifact
):
    # A worker killed mid multipart upload cannot abort it: S3 keeps its parts (and bills them)
    # until someone does. The next delivery of the same key does; another key's upload stays.
    client = moto_server.client()
    key = "big/big.csv"
    stale = client.create_multipart_upload(Bucket=s3_bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=s3_bucket, Key=key, UploadId=stale, PartNumber=1, Body=b"x" * 1024)
    other = client.create_multipart_upload(Bucket=s3_bucket, Key=key + ".other")["UploadId"]
    artifact = make_artifact("big.csv", size=9 * 1024 * 1024)

    receipt = deliver(artifact, _dest(s3_bucket, prefix="big"), _connections(moto_server.endpoint_url))

    uploads = client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [(key + ".other", other)]
    assert receipt.extra["aborted_unfinished_uploads"] == 1
    assert _stored(moto_server, s3_bucket, key)[0] == artifact.path.read_bytes()


def test_expected_checksum_detects_a_different_file(make_artifact):
    artifact = make_artifact("x.bin", size=9 * 1024 * 1024)
    other = make_artifact("y.bin", size=9 * 1024 * 1024)
    mb8 = 8 * 1024 * 1024
    a = s3_delivery.expected_sha256_checksum(artifact, mb8, mb8)
    b = s3_delivery.expected_sha256_checksum(other, mb8, mb8)
    assert a.endswith("-2") and a != b
    assert not s3_delivery._same_checksum(b.split("-")[0], a)
    assert s3_delivery._same_checksum(a.split("-")[0], a)
    assert not s3_delivery._same_checksum(a.split("-")[0] + "-3", a)


def test_server_side_encryption_is_requested_and_recorded(moto_server, s3_bucket, s3_env, make_artifact):
    artifact = make_artifact()
    receipt = deliver(
        artifact,
        _dest(s3_bucket, server_side_encryption="AES256"),
        _connections(moto_server.endpoint_url),
    )
    _, head = _stored(moto_server, s3_bucket, f"pcid/sms/{artifact.filename}")
    assert head["ServerSideEncryption"] == "AES256"
    assert receipt.extra["server_side_encryption"] == "AES256"


def test_missing_bucket_is_permanent_and_named(moto_server, s3_env, make_artifact):
    sleeps: list[float] = []
    with pytest.raises(PermanentDeliveryError, match="bucket 'no-such-bucket-here' does not exist"):
        deliver(
            make_artifact(),
            _dest("no-such-bucket-here"),
            _connections(moto_server.endpoint_url),
            sleep=sleeps.append,
        )
    assert sleeps == []


def test_slow_down_answers_are_retried_until_the_upload_succeeds(
    moto_server, s3_bucket, s3_env, s3_fault_proxy, make_artifact
):
    # botocore makes 2 attempts per request here; 3 refusals force our own retry as well.
    s3_fault_proxy.fail_next(3)
    artifact = make_artifact()
    sleeps: list[float] = []
    receipt = deliver(
        artifact,
        _dest(s3_bucket),
        _connections(s3_fault_proxy.url, sdk_max_attempts=2),
        sleep=sleeps.append,
    )
    body, _ = _stored(moto_server, s3_bucket, f"pcid/sms/{artifact.filename}")
    assert body == artifact.path.read_bytes()
    assert [r.answered for r in s3_fault_proxy.requests[:4]] == [503, 503, 503, 200]
    assert receipt.extra["attempts"] == 2
    assert len(sleeps) == 1


def test_throttling_that_never_ends_is_a_transient_failure(
    moto_server, s3_bucket, s3_env, s3_fault_proxy, make_artifact
):
    s3_fault_proxy.fail_next(100)
    with pytest.raises(TransientDeliveryError, match="SlowDown"):
        deliver(
            make_artifact(),
            _dest(s3_bucket),
            _connections(s3_fault_proxy.url),
            attempts=2,
            sleep=lambda s: None,
        )


def test_confirmed_delivery_is_not_uploaded_again(
    moto_server, s3_bucket, s3_env, s3_fault_proxy, make_artifact, tmp_path
):
    artifact = make_artifact()
    ledger = DeliveryLedger.open(f"sqlite:///{tmp_path / 'registry.db'}")
    conns = _connections(s3_fault_proxy.url)
    first = deliver(artifact, _dest(s3_bucket), conns, ledger=ledger)
    assert len(s3_fault_proxy.puts()) == 1
    seen = len(s3_fault_proxy.requests)

    second = deliver(artifact, _dest(s3_bucket), conns, ledger=ledger)

    assert len(s3_fault_proxy.requests) == seen, "the server was contacted again"
    assert second.extra["reused"] is True
    assert second.location == first.location
    assert second.delivered_at == first.delivered_at


def test_works_with_a_client_from_elsewhere(moto_server, s3_bucket, make_artifact):
    # dagster-aws's S3Resource hands out a plain boto3 client; upload() takes any.
    artifact = make_artifact()
    receipt = s3_delivery.upload(artifact, client=moto_server.client(), bucket=s3_bucket, key="k.csv")
    assert receipt.target == f"s3://{s3_bucket}/k.csv"


@pytest.mark.parametrize(
    ("prefix", "key"),
    [("", "f.csv"), ("a/b/", "a/b/f.csv"), ("a/b", "a/b/f.csv"), ("/a/", "a/f.csv")],
)
def test_object_key(prefix, key):
    assert s3_delivery.object_key(prefix, "f.csv") == key


def _lying_checksum(method, path, status, headers, body):
    # S3 says it holds other bytes than were sent: the stored checksum is not the file's.
    if method == "HEAD":
        wrong = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()
        headers = [(k, wrong if k.lower() == "x-amz-checksum-sha256" else v) for k, v in headers]
    return status, headers, body


def test_a_stored_checksum_that_differs_from_the_file_fails_the_attempt(
    s3_bucket, s3_env, s3_fault_proxy, make_artifact
):
    s3_fault_proxy.rewrite(_lying_checksum)
    with pytest.raises(TransientDeliveryError, match="checksum mismatch"):
        deliver(make_artifact(), _dest(s3_bucket), _connections(s3_fault_proxy.url), attempts=1)


def test_after_a_checksum_mismatch_the_retry_proves_the_object_by_reading_it_back(
    s3_bucket, s3_env, s3_fault_proxy, make_artifact
):
    s3_fault_proxy.rewrite(_lying_checksum)
    receipt = deliver(make_artifact(), _dest(s3_bucket), _connections(s3_fault_proxy.url), sleep=lambda s: None)
    # The conditional retry finds the object in place (412) and reads it back: the bytes are right.
    assert (receipt.extra["already_present"], receipt.extra["verified_by"]) == (True, "download")


def test_an_object_that_reads_back_different_from_the_file_fails_for_good(
    s3_bucket, s3_env, s3_fault_proxy, make_artifact
):
    def corrupt(method, path, status, headers, body):
        status, headers, body = _lying_checksum(method, path, status, headers, body)
        if method == "GET" and body:
            body = bytes([body[0] ^ 1]) + body[1:]
        return status, headers, body

    s3_fault_proxy.rewrite(corrupt)
    with pytest.raises(PermanentDeliveryError, match="read back with SHA-256"):
        deliver(make_artifact(), _dest(s3_bucket), _connections(s3_fault_proxy.url), sleep=lambda s: None)
