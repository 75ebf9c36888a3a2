"""Upload a file to S3 (or an S3-compatible store) and prove the stored bytes by checksum."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import posixpath
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config
from dagster_aws.s3 import S3Resource
from s3transfer.utils import ChunksizeAdjuster

from report_platform.delivery.artifact import Artifact, Receipt, utc_now
from report_platform.delivery.connections import S3Connection, read_secret
from report_platform.delivery.errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)

log = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 8 * 1024 * 1024
MULTIPART_CHUNKSIZE = 8 * 1024 * 1024
_READ = 1024 * 1024
_PART_WORKERS = 4

_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
    "502",
    "504",
}


class DeliveryS3Resource(S3Resource):
    """dagster-aws's S3 resource with the client settings delivery needs.

    The addressing style is configurable (S3-compatible stores often need `path`), and only the
    checksums we ask for are sent: some S3-compatible stores reject boto3's default CRC32.
    """

    addressing_style: str = "auto"
    # "s3v4" for presigned links: botocore still presigns SigV2 for some regions, whose links
    # have no upper bound on their lifetime.
    signature_version: str | None = None

    def get_client(self) -> Any:
        extra = {"signature_version": self.signature_version} if self.signature_version else {}
        config = Config(
            **extra,
            # botocore counts `max_attempts` as retries; `total_max_attempts` includes the first try.
            retries={"total_max_attempts": self.max_attempts, "mode": "standard"},
            s3={"addressing_style": self.addressing_style},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return boto3.session.Session(profile_name=self.profile_name).client(
            "s3",
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            use_ssl=self.use_ssl,
            verify=self.verify,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            config=config,
        )


def s3_resource(
    conn: S3Connection, connection_name: str, *, signature_version: str | None = None
) -> DeliveryS3Resource:
    """The dagster-aws resource for a named connection; keys come from the env or the AWS chain."""
    label = f"s3 connection {connection_name!r}"
    keys: dict[str, Any] = {}
    if conn.access_key_id_env and conn.secret_access_key_env:
        keys["aws_access_key_id"] = read_secret(conn.access_key_id_env, field="access_key_id_env", connection=label)
        keys["aws_secret_access_key"] = read_secret(
            conn.secret_access_key_env, field="secret_access_key_env", connection=label
        )
        if conn.session_token_env:
            keys["aws_session_token"] = read_secret(conn.session_token_env, field="session_token_env", connection=label)
    return DeliveryS3Resource(
        region_name=conn.region,
        endpoint_url=conn.endpoint_url,
        verify=conn.ca_file if conn.ca_file else None,
        max_attempts=conn.sdk_max_attempts,
        addressing_style=conn.addressing_style,
        signature_version=signature_version,
        **keys,
    )


def make_client(conn: S3Connection, connection_name: str, *, signature_version: str | None = None) -> Any:
    """A boto3 S3 client for a named connection, made by the dagster-aws resource."""
    return s3_resource(conn, connection_name, signature_version=signature_version).get_client()


def object_key(prefix: str | None, filename: str) -> str:
    """`prefix` + file name; a prefix without a trailing slash still acts as a folder."""
    prefix = (prefix or "").lstrip("/")
    if not prefix:
        return filename
    return posixpath.join(prefix, filename) if not prefix.endswith("/") else prefix + filename


def expected_sha256_checksum(artifact: Artifact, threshold: int, chunksize: int) -> str:
    """The `ChecksumSHA256` S3 stores for this upload, in S3's base64 form.

    Single PUT: SHA-256 of the whole file. Multipart: SHA-256 of the concatenated part
    digests, followed by `-<parts>` (S3's "composite" checksum). The part size is the one
    s3transfer uses after its own adjustment for very large files.
    """
    if artifact.size < threshold:
        return base64.b64encode(bytes.fromhex(artifact.sha256)).decode()
    part_size = ChunksizeAdjuster().adjust_chunksize(chunksize, artifact.size)
    digests = []
    with artifact.path.open("rb") as handle:
        while True:
            part = hashlib.sha256()
            remaining = part_size
            while remaining:
                chunk = handle.read(min(_READ, remaining))
                if not chunk:
                    break
                part.update(chunk)
                remaining -= len(chunk)
            if remaining == part_size:
                break
            digests.append(part.digest())
            if remaining:
                break
    combined = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()
    return f"{combined}-{len(digests)}"


def _same_checksum(stored: str, expected: str) -> bool:
    # moto omits the "-<parts>" suffix that real S3 adds to composite checksums.
    stored_value, _, stored_parts = stored.partition("-")
    expected_value, _, expected_parts = expected.partition("-")
    if stored_value != expected_value:
        return False
    return not stored_parts or stored_parts == expected_parts


def classify_client_error(exc: Exception, *, bucket: str, key: str, label: str) -> DeliveryError:
    """S3 failures: throttling and 5xx are transient; missing bucket, access denied are not."""
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        return ConfigurationError(
            f"{label}: no AWS credentials found (set access_key_id_env/secret_access_key_env "
            "or configure the standard AWS chain)",
            destination="s3",
        )
    if isinstance(
        exc,
        botocore.exceptions.EndpointConnectionError
        | botocore.exceptions.ConnectionClosedError
        | botocore.exceptions.ReadTimeoutError
        | botocore.exceptions.ConnectTimeoutError
        | botocore.exceptions.ConnectionError
        | ConnectionError
        | TimeoutError,
    ):
        return TransientDeliveryError(f"{label}: connection problem ({exc})", destination="s3")
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code == "NoSuchBucket" or (code == "404" and not key):
            return PermanentDeliveryError(
                f"{label}: bucket {bucket!r} does not exist (create it or fix the destination)",
                destination="s3",
            )
        if code in ("AccessDenied", "AllAccessDisabled", "403"):
            return PermanentDeliveryError(
                f"{label}: access denied writing s3://{bucket}/{key}; the credentials need "
                "s3:PutObject (and kms:GenerateDataKey for SSE-KMS)",
                destination="s3",
            )
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
            return PermanentDeliveryError(f"{label}: the AWS credentials were rejected ({code})", destination="s3")
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientDeliveryError(f"{label}: S3 asked us to retry ({code or status})", destination="s3")
        return PermanentDeliveryError(
            f"{label}: S3 refused s3://{bucket}/{key} ({code}: {error.get('Message', '')})",
            destination="s3",
        )
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return TransientDeliveryError(f"{label}: {exc}", destination="s3")
    return TransientDeliveryError(f"{label}: {type(exc).__name__}: {exc}", destination="s3")


def upload(
    artifact: Artifact,
    *,
    client: Any,
    bucket: str,
    key: str,
    connection_name: str = "s3",
    server_side_encryption: str | None = None,
    kms_key_id: str | None = None,
    multipart_threshold: int = MULTIPART_THRESHOLD,
    multipart_chunksize: int = MULTIPART_CHUNKSIZE,
    on_sent: Callable[[], None] | None = None,
) -> Receipt:
    """Upload with a conditional write and a SHA-256 checksum, then verify what S3 stored.

    `If-None-Match: *` makes S3 refuse to replace an object that already exists (412), so a retry
    never creates a second version. A 412 is then answered by comparing the stored object's
    SHA-256 with the file's: the same bytes mean "already delivered"; other bytes are a conflict
    that is reported, never overwritten. Takes any boto3 S3 client (dagster-aws's too).
    """
    label = f"s3 connection {connection_name!r}"
    args: dict[str, Any] = {
        "ContentType": artifact.content_type,
        # The whole-file SHA-256 travels with the object: S3's own checksum is per part.
        "Metadata": {"sha256": artifact.sha256},
    }
    if server_side_encryption:
        args["ServerSideEncryption"] = server_side_encryption
    if kms_key_id:
        args["SSEKMSKeyId"] = kms_key_id
        args.setdefault("ServerSideEncryption", "aws:kms")
    already_there = False
    aborted = 0
    try:
        try:
            if artifact.size < multipart_threshold:
                _put_single(client, artifact, bucket, key, args)
            else:
                aborted = abort_unfinished_uploads(client, bucket, key)
                _put_multipart(client, artifact, bucket, key, args, multipart_chunksize)
        except botocore.exceptions.ClientError as exc:
            if not _precondition_failed(exc):
                raise
            already_there = True
            _check_existing_is_ours(client, artifact, bucket, key, label)
        if on_sent is not None:
            on_sent()
        head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise classify_client_error(exc, bucket=bucket, key=key, label=label) from None

    stored_size = int(head.get("ContentLength", -1))
    if stored_size != artifact.size:
        raise TransientDeliveryError(
            f"{label}: s3://{bucket}/{key} holds {stored_size} bytes, expected {artifact.size}",
            destination="s3",
        )
    expected = expected_sha256_checksum(artifact, multipart_threshold, multipart_chunksize)
    stored = head.get("ChecksumSHA256")
    if stored and not already_there:
        verified_by = "ChecksumSHA256"
        if not _same_checksum(stored, expected):
            raise TransientDeliveryError(
                f"{label}: checksum mismatch for s3://{bucket}/{key}: stored {stored}, expected {expected}",
                destination="s3",
            )
    else:
        # Some S3-compatible stores drop additional checksums, and an object found in place may
        # have been written with another part size: read it back instead.
        verified_by = "download"
        actual = _download_sha256(client, bucket, key, label)
        if actual != artifact.sha256:
            raise PermanentDeliveryError(
                f"{label}: s3://{bucket}/{key} read back with SHA-256 {actual}, expected {artifact.sha256}",
                destination="s3",
            )
    extra: dict[str, Any] = {
        "bucket": bucket,
        "connection": connection_name,
        "etag": head.get("ETag", "").strip('"'),
        "checksum_sha256": stored or expected,
        "verified_by": verified_by,
        "multipart": artifact.size >= multipart_threshold,
        "already_present": already_there,
    }
    if aborted:
        extra["aborted_unfinished_uploads"] = aborted
    for field_name, head_name in (
        ("version_id", "VersionId"),
        ("server_side_encryption", "ServerSideEncryption"),
        ("kms_key_id", "SSEKMSKeyId"),
    ):
        if head.get(head_name):
            extra[field_name] = head[head_name]
    return Receipt(
        destination="s3",
        target=f"s3://{bucket}/{key}",
        location=key,
        size=artifact.size,
        sha256=artifact.sha256,
        delivered_at=utc_now(),
        extra=extra,
    )


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _put_single(client: Any, artifact: Artifact, bucket: str, key: str, args: dict[str, Any]) -> None:
    with artifact.path.open("rb") as body:
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            IfNoneMatch="*",
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=_b64(bytes.fromhex(artifact.sha256)),
            **args,
        )


def abort_unfinished_uploads(client: Any, bucket: str, key: str) -> int:
    """Abort the multipart uploads of `key` that an interrupted attempt left open; returns how many.

    A worker killed mid-upload cannot abort its own, and S3 keeps (and bills) the parts it sent
    until someone does. The ledger lets one worker at a time deliver a file, so an open upload of
    the same key is stale; were it another run's live upload of the same key, that run's attempt
    fails and its retry meets the conditional write. A store that does not let us list uploads
    (no `s3:ListBucketMultipartUploads`) keeps them for its lifecycle rule to remove.
    """
    try:
        pages = client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key)
        stale = [u["UploadId"] for page in pages for u in page.get("Uploads", []) if u["Key"] == key]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        log.info("could not list unfinished uploads of s3://%s/%s: %s", bucket, key, exc)
        return 0
    aborted = 0
    for upload_id in stale:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            aborted += 1
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            log.warning("could not abort the unfinished upload %s of s3://%s/%s: %s", upload_id, bucket, key, exc)
    if aborted:
        log.warning(
            "aborted %d unfinished multipart upload(s) of s3://%s/%s left by an interrupted attempt",
            aborted,
            bucket,
            key,
        )
    return aborted


def _put_multipart(
    client: Any, artifact: Artifact, bucket: str, key: str, args: dict[str, Any], chunksize: int
) -> None:
    """A multipart upload whose completion is conditional; parts go up four at a time."""
    part_size = ChunksizeAdjuster().adjust_chunksize(chunksize, artifact.size)
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256", **args)["UploadId"]

    def put_part(number: int, data: bytes) -> dict[str, Any]:
        checksum = _b64(hashlib.sha256(data).digest())
        answer = client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )
        return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}

    parts: list[dict[str, Any]] = []
    try:
        with artifact.path.open("rb") as handle, ThreadPoolExecutor(max_workers=_PART_WORKERS) as pool:
            in_flight: list[Future[dict[str, Any]]] = []
            number = 0
            while data := handle.read(part_size):
                number += 1
                in_flight.append(pool.submit(put_part, number, data))
                # Memory stays at a few parts whatever the file's size.
                if len(in_flight) >= _PART_WORKERS:
                    parts.append(in_flight.pop(0).result())
            parts.extend(f.result() for f in in_flight)
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
        )
    except BaseException:
        # If the abort fails too, the bucket's lifecycle rule for incomplete uploads is the backstop.
        with contextlib.suppress(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


def _precondition_failed(exc: botocore.exceptions.ClientError) -> bool:
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return status == 412 or exc.response.get("Error", {}).get("Code") == "PreconditionFailed"


def _check_existing_is_ours(client: Any, artifact: Artifact, bucket: str, key: str, label: str) -> None:
    head = client.head_object(Bucket=bucket, Key=key)
    stored = (head.get("Metadata") or {}).get("sha256")
    if stored == artifact.sha256 and int(head.get("ContentLength", -1)) == artifact.size:
        return
    raise PermanentDeliveryError(
        f"{label}: s3://{bucket}/{key} already holds a different object "
        f"({head.get('ContentLength')} bytes, SHA-256 {stored or 'not recorded'}); it was not overwritten. "
        "Remove it, or change the prefix or filename pattern, to deliver this file there",
        destination="s3",
    )


def _download_sha256(client: Any, bucket: str, key: str, label: str) -> str:
    digest = hashlib.sha256()
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in iter(lambda: body.read(_READ), b""):
            digest.update(chunk)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise classify_client_error(exc, bucket=bucket, key=key, label=label) from None
    return digest.hexdigest()
