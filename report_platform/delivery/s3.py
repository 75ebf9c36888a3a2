"""Upload a file to S3 (or an S3-compatible store) and prove the stored bytes by checksum."""

from __future__ import annotations

import base64
import hashlib
import posixpath
from typing import Any

import boto3
import botocore.exceptions
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
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

MULTIPART_THRESHOLD = 8 * 1024 * 1024
MULTIPART_CHUNKSIZE = 8 * 1024 * 1024
_READ = 1024 * 1024

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

    def get_client(self) -> Any:
        config = Config(
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
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


def s3_resource(conn: S3Connection, connection_name: str) -> DeliveryS3Resource:
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
        **keys,
    )


def make_client(conn: S3Connection, connection_name: str) -> Any:
    """A boto3 S3 client for a named connection, made by the dagster-aws resource."""
    return s3_resource(conn, connection_name).get_client()


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
) -> Receipt:
    """Upload with a SHA-256 checksum and verify what S3 stored against the local file.

    Takes any boto3 S3 client, so dagster-aws's `S3Resource.get_client()` works too.
    """
    label = f"s3 connection {connection_name!r}"
    extra_args: dict[str, Any] = {
        "ChecksumAlgorithm": "SHA256",
        "ContentType": artifact.content_type,
        # The whole-file SHA-256 travels with the object: S3's own checksum is per part.
        "Metadata": {"sha256": artifact.sha256},
    }
    if server_side_encryption:
        extra_args["ServerSideEncryption"] = server_side_encryption
    if kms_key_id:
        extra_args["SSEKMSKeyId"] = kms_key_id
        extra_args.setdefault("ServerSideEncryption", "aws:kms")
    config = TransferConfig(
        multipart_threshold=multipart_threshold,
        multipart_chunksize=multipart_chunksize,
        max_concurrency=4,
    )
    try:
        client.upload_file(str(artifact.path), bucket, key, ExtraArgs=extra_args, Config=config)
        head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except S3UploadFailedError as exc:
        cause = exc.__cause__ or exc.__context__ or exc
        raise classify_client_error(cause, bucket=bucket, key=key, label=label) from None
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
    if stored:
        verified_by = "ChecksumSHA256"
        if not _same_checksum(stored, expected):
            raise TransientDeliveryError(
                f"{label}: checksum mismatch for s3://{bucket}/{key}: stored {stored}, expected {expected}",
                destination="s3",
            )
    else:
        # Some S3-compatible stores drop additional checksums: read the object back instead.
        verified_by = "download"
        actual = _download_sha256(client, bucket, key, label)
        if actual != artifact.sha256:
            raise TransientDeliveryError(
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
    }
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


def _download_sha256(client: Any, bucket: str, key: str, label: str) -> str:
    digest = hashlib.sha256()
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in iter(lambda: body.read(_READ), b""):
            digest.update(chunk)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise classify_client_error(exc, bucket=bucket, key=key, label=label) from None
    return digest.hexdigest()
