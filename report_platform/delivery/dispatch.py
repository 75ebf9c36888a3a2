"""`deliver()`: one file to one destination, once: claimed in the ledger, sent with retries, confirmed."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import posixpath
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from report_platform import redaction
from report_platform.delivery import email as email_delivery
from report_platform.delivery import pgp
from report_platform.delivery import sftp as sftp_delivery
from report_platform.delivery.artifact import Artifact, Receipt, utc_now
from report_platform.delivery.connections import Connections
from report_platform.delivery.destinations import (
    CONNECTION_KIND_BY_TYPE,
    Destination,
    EmailDestination,
    S3Destination,
    SftpDestination,
    parse_destination,
)
from report_platform.delivery.errors import DeliveryError
from report_platform.delivery.ledger import Claim, DeliveryIdentity, DeliveryLedger, confirm_or_explain
from report_platform.delivery.manifest import write_manifest
from report_platform.delivery.retry import deliver_with_retries
from report_platform.durable import replace_durably

log = logging.getLogger(__name__)


def planned_target(dest: Destination, artifact: Artifact, connections: Connections) -> str:
    """The receipt's `target` for this delivery, known before anything is sent."""
    if isinstance(dest, EmailDestination):
        target = "mailto:" + ",".join(dest.to)
        return target + ("?cc=" + ",".join(dest.cc) if dest.cc else "")
    if isinstance(dest, SftpDestination):
        conn = connections.get_sftp(dest.connection)
        final = posixpath.join(sftp_delivery.remote_folder(conn, dest.remote_dir), artifact.filename)
        return f"sftp://{dest.connection}{final if final.startswith('/') else '/' + final}"
    from report_platform.delivery import s3 as s3_delivery  # boto3 and dagster-aws: only S3 runs load them

    return f"s3://{dest.bucket}/{s3_delivery.object_key(dest.prefix, artifact.filename)}"


def identity_for(
    dest: Destination,
    artifact: Artifact,
    connections: Connections,
    scope: str,
    *,
    key_fingerprints: Sequence[str] = (),
) -> DeliveryIdentity:
    """The ledger identity: the run, where to (connection, endpoint, target, recipients), which bytes.

    An encrypted delivery is identified by its plaintext's SHA-256 and the recipients' key
    fingerprints (`openpgp:<fpr>`), since its ciphertext differs every time it is made.
    """
    target = planned_target(dest, artifact, connections)
    recipients: tuple[str, ...] = tuple(sorted(f"openpgp:{fpr}" for fpr in key_fingerprints))
    if isinstance(dest, EmailDestination):
        smtp = connections.get_smtp(dest.connection)
        endpoint = f"smtp://{smtp.host}:{smtp.port}"
        recipients = tuple(a.strip().lower() for a in (*dest.to, *dest.cc, *dest.bcc))
    elif isinstance(dest, SftpDestination):
        sftp = connections.get_sftp(dest.connection)
        endpoint = f"sftp://{sftp.host}:{sftp.port}"
    else:
        s3 = connections.get_s3(dest.connection)
        endpoint = s3.endpoint_url or f"aws:{s3.region or 'default'}"
    return DeliveryIdentity(
        scope=scope,
        destination=dest.type,
        connection=dest.connection,
        endpoint=endpoint,
        target=target,
        recipients=recipients,
        sha256=artifact.sha256,
    )


def deliver(
    artifact: Artifact,
    destination: dict[str, Any],
    connections: Connections,
    *,
    subject: str | None = None,
    body: str | None = None,
    ledger: DeliveryLedger | None = None,
    scope: str | None = None,
    organization: str | None = None,
    worker: str | None = None,
    attempts: int = 4,
    base_delay: float = 2.0,
    max_delay: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    s3_client: Any = None,
    manifest: Mapping[str, Any] | None = None,
) -> Receipt:
    """Deliver `artifact` to `destination` exactly once per `scope` (the report run).

    With a `ledger`, the delivery is claimed before anything is sent: a confirmed earlier delivery
    is returned with `extra["reused"] = True` instead of sending again, and a concurrent worker's
    live claim is waited for. Transient failures are retried with backoff, sending only what is
    still missing (for e-mail: the recipients that have not accepted the message yet). The
    outcome is recorded; if the confirmation itself cannot be recorded the call fails loudly and
    a later retry does not send again. `s3_client` overrides the client built from the connection
    (e.g. one from dagster-aws's `S3Resource`). With `organization`, the connection must be one
    that organisation may use (checked when the report was saved, and again here: the file may
    have changed since).

    A file destination with `encrypt_to` receives `<file>.pgp`, encrypted once per delivery to
    those OpenPGP keys; the receipt keeps the report file's size and SHA-256 and describes the
    ciphertext under `extra["encryption"]`.

    A file destination with `manifest: true` then gets `<delivered file>.manifest.json`
    (delivery/manifest.py): `manifest` holds the run's facts for it. It describes the file as
    delivered (the ciphertext when encrypted, with the plaintext's size and SHA-256 beside), is
    itself sent in clear (it holds no rows), and is delivered only after the file is confirmed, as
    a delivery of its own in the same ledger and scope, so a retry sends it at most once and never
    loses it: a run that failed between the two resends only the manifest. Its receipt is in
    `extra["manifest"]`.
    """
    dest = parse_destination(destination)
    options = _Sending(
        connections, ledger, scope, organization, worker, attempts, base_delay, max_delay, sleep, s3_client
    )
    receipt = _deliver_one(artifact, dest, options, subject=subject, body=body)
    if isinstance(dest, EmailDestination) or not dest.manifest:
        return receipt
    delivered = _as_delivered(artifact, receipt)
    with tempfile.TemporaryDirectory(prefix="report-manifest-") as folder:
        marker = write_manifest(Path(folder), manifest or {}, delivered, artifact)
        # Same scope and destination without the flags: the manifest's own ledger row (its target
        # and SHA-256 differ from the file's), no manifest of the manifest, and no encryption.
        try:
            manifest_receipt = _deliver_one(
                marker, dest.model_copy(update={"manifest": False, "encrypt_to": []}), options, subject=None, body=None
            )
        except DeliveryError as exc:
            # Same class, so retries treat it alike; the message says which of the two failed.
            raise type(exc)(
                f"{delivered.filename} was delivered to {receipt.target}, but its manifest {marker.filename} "
                f"was not: {exc}",
                destination=exc.destination,
            ) from None
    described = {
        "target": manifest_receipt.target,
        "location": manifest_receipt.location,
        "size": manifest_receipt.size,
        "sha256": manifest_receipt.sha256,
        "reused": bool(manifest_receipt.extra.get("reused")),
    }
    return dataclasses.replace(receipt, extra={**receipt.extra, "manifest": described})


def _as_delivered(artifact: Artifact, receipt: Receipt) -> Artifact:
    """The file as it arrived: the ciphertext's name, size and SHA-256 when it was encrypted."""
    encryption = receipt.extra.get("encryption")
    if not isinstance(encryption, dict):
        return artifact
    return dataclasses.replace(
        artifact,
        filename=artifact.filename + pgp.PGP_SUFFIX,
        sha256=encryption["ciphertext_sha256"],
        size=encryption["ciphertext_bytes"],
        content_type="application/pgp-encrypted",
    )


@dataclasses.dataclass(frozen=True)
class _Sending:
    """How one `deliver` call sends: the same for the file, its manifest and a large file's upload."""

    connections: Connections
    ledger: DeliveryLedger | None
    scope: str | None
    organization: str | None
    worker: str | None
    attempts: int
    base_delay: float
    max_delay: float
    sleep: Callable[[float], None]
    s3_client: Any


def _deliver_one(
    artifact: Artifact, dest: Destination, options: _Sending, *, subject: str | None, body: str | None
) -> Receipt:
    connections, ledger, organization = options.connections, options.ledger, options.organization
    worker = options.worker
    attempts, base_delay, max_delay, sleep = options.attempts, options.base_delay, options.max_delay, options.sleep
    large_files = dest.large_files if isinstance(dest, EmailDestination) else None
    if organization is not None:
        connections.require_allowed(CONNECTION_KIND_BY_TYPE[dest.type], dest.connection, organization)
        if large_files is not None:
            connections.require_allowed("s3", large_files.connection, organization)
    keys = dest.encrypt_to if isinstance(dest, SftpDestination | S3Destination) else []
    # Checked again here: a key valid when the report was saved may have expired since.
    fingerprints = [k.fingerprint for k in pgp.check_keys(keys)] if keys else []
    named = dataclasses.replace(artifact, filename=artifact.filename + pgp.PGP_SUFFIX) if keys else artifact
    scope = options.scope or str(artifact.path.resolve())
    identity = identity_for(dest, named, connections, scope, key_fingerprints=fingerprints)
    claim = ledger.claim(identity, worker=worker) if ledger is not None else None
    if claim is not None and claim.reused is not None:
        previous = claim.reused
        log.info("%s already delivered to %s; not sending again", artifact.filename, previous.target)
        return dataclasses.replace(previous, extra={**previous.extra, "reused": True})

    def on_sent(accepted: list[str] | None = None) -> None:
        if ledger is None or claim is None:
            return
        try:
            ledger.mark_sent(claim, accepted or ())
        except (SQLAlchemyError, OSError) as exc:
            # Not fatal by itself: the confirmation below is the record that counts, and it
            # reports loudly if the ledger cannot be written.
            log.warning("could not record that %s was sent: %s", identity.target, exc)

    progress = email_delivery.MailProgress(accepted=set(claim.accepted) if claim else set())
    attempt_count = 0
    encrypted: pgp.Encrypted | None = None
    download: email_delivery.DownloadLink | None = None
    zipped: Artifact | None = None  # made once: what the mail attaches, or what the link serves

    def attempt() -> Receipt:
        nonlocal attempt_count
        attempt_count += 1
        return send()

    send: Callable[[], Receipt]

    with ledger.heartbeat(claim) if ledger is not None and claim is not None else contextlib.nullcontext():
        try:
            to_send = artifact
            if keys:
                encrypted = encrypted_once(artifact, keys, identity.key)
                to_send = Artifact(
                    path=encrypted.path,
                    filename=named.filename,
                    sha256=encrypted.ciphertext_sha256,
                    size=encrypted.ciphertext_bytes,
                    content_type="application/pgp-encrypted",
                )
            if large_files is not None:
                smtp = connections.get_smtp(dest.connection)
                if email_delivery.encoded_size(artifact.size) > smtp.max_attachment_bytes:
                    zipped = _zipped_once(artifact, identity.key)
                    download = _large_file_link(artifact, zipped, dest, options, identity.key)
            send = _sender(
                dest,
                to_send,
                connections,
                subject=subject,
                body=body,
                s3_client=options.s3_client,
                message_id_key=identity.key,
                progress=progress,
                on_sent=on_sent,
                download=download,
                zipped=zipped,
            )
            receipt = deliver_with_retries(
                attempt, attempts=attempts, base_delay=base_delay, max_delay=max_delay, sleep=sleep
            )
        except Exception as exc:
            if ledger is not None and claim is not None:
                _record_failure(ledger, claim, exc, progress.outcomes())
            raise
        extra = {**receipt.extra, "attempts": attempt_count, "ledger_attempt": claim.attempt if claim else 1}
        if encrypted is not None:
            # The receipt's size and SHA-256 stay the report file's (the archive's and the audit
            # log's); what was sent is described under "encryption".
            extra["encryption"] = encrypted.to_dict()
            receipt = dataclasses.replace(receipt, size=artifact.size, sha256=artifact.sha256)
        if download is not None:
            extra["large_file"] = download.to_dict()
        receipt = dataclasses.replace(receipt, extra=extra)
        if ledger is not None and claim is not None:
            confirm_or_explain(ledger, claim, receipt, lambda: f"{artifact.filename} to {identity.target}")
    return receipt


def _record_failure(ledger: DeliveryLedger, claim: Claim, exc: Exception, outcomes: dict[str, str]) -> None:
    try:
        text = redaction.redact(str(exc)).strip()
        ledger.fail(claim, text.splitlines()[0] if text else type(exc).__name__, outcomes)
    except Exception as record_exc:  # noqa: BLE001 - the delivery error is the one to raise
        log.error("could not record the failed delivery in the ledger: %s", record_exc)


def _sender(
    dest: Destination,
    artifact: Artifact,
    connections: Connections,
    *,
    subject: str | None,
    body: str | None,
    s3_client: Any,
    message_id_key: str,
    progress: email_delivery.MailProgress,
    on_sent: Callable[..., None],
    download: email_delivery.DownloadLink | None = None,
    zipped: Artifact | None = None,
) -> Callable[[], Receipt]:
    if isinstance(dest, EmailDestination):
        smtp = connections.get_smtp(dest.connection)
        message_id = email_delivery.stable_message_id(message_id_key, smtp.from_address)
        return lambda: email_delivery.send(
            artifact,
            connection_name=dest.connection,
            connection=smtp,
            to=dest.to,
            cc=dest.cc,
            bcc=dest.bcc,
            subject=subject if subject is not None else artifact.filename,
            body=body or "",
            message_id=message_id,
            progress=progress,
            on_accepted=on_sent,
            download=download,
            prezipped=zipped.path if zipped is not None else None,
        )
    if isinstance(dest, SftpDestination):
        sftp = connections.get_sftp(dest.connection)
        state = sftp_delivery.SftpAttemptState()
        return lambda: sftp_delivery.upload(
            artifact,
            connection_name=dest.connection,
            connection=sftp,
            remote_dir=dest.remote_dir,
            create_dirs=dest.create_dirs,
            state=state,
            on_sent=on_sent,
        )
    from report_platform.delivery import s3 as s3_delivery  # boto3 and dagster-aws: only S3 runs load them

    s3_conn = connections.get_s3(dest.connection)
    client = s3_client if s3_client is not None else s3_delivery.make_client(s3_conn, dest.connection)
    key = s3_delivery.object_key(dest.prefix, artifact.filename)
    return lambda: s3_delivery.upload(
        artifact,
        client=client,
        bucket=dest.bucket,
        key=key,
        connection_name=dest.connection,
        server_side_encryption=dest.server_side_encryption,
        kms_key_id=dest.kms_key_id,
        on_sent=on_sent,
    )


def delivered_checksums(receipt: Receipt) -> dict[str, Any]:
    """The report file's SHA-256 and size and, when it was encrypted, the ciphertext's.

    For a manifest or an audit entry: `{"sha256", "bytes"}` plus `{"ciphertext_sha256",
    "ciphertext_bytes", "encrypted_to"}` for an OpenPGP-encrypted delivery.
    """
    checksums: dict[str, Any] = {"sha256": receipt.sha256, "bytes": receipt.size}
    encryption = receipt.extra.get("encryption")
    if isinstance(encryption, dict):
        checksums |= {
            "ciphertext_sha256": encryption["ciphertext_sha256"],
            "ciphertext_bytes": encryption["ciphertext_bytes"],
            "encrypted_to": list(encryption["recipients"]),
        }
    return checksums


def _cache_path(artifact: Artifact, delivery_key: str, suffix: str) -> Path:
    # Beside the archived file, named by the delivery: a run's retries find it, another run or
    # another set of keys does not. It goes when the archive's retention removes the run's folder.
    return artifact.path.parent / f".{artifact.filename}.{delivery_key[:16]}{suffix}"


def encrypted_once(artifact: Artifact, keys: Sequence[str], delivery_key: str) -> pgp.Encrypted:
    """The ciphertext of `artifact` for this delivery, made once and kept for its retries.

    OpenPGP encryption is randomised, so encrypting again would give different bytes under the
    same name; keeping the first ciphertext makes a retry resend (or find in place) exactly what
    an earlier attempt may already have delivered.
    """
    cached = _cache_path(artifact, delivery_key, pgp.PGP_SUFFIX)
    if cached.exists():
        log.info("reusing the ciphertext made for an earlier attempt of this delivery (%s)", cached.name)
        fingerprints = tuple(k.fingerprint for k in pgp.check_keys(keys))
    else:
        fingerprints = pgp.encrypt_file(artifact.path, cached, keys)
        artifact.kept(cached)
    made = Artifact.from_path(cached, filename=artifact.filename + pgp.PGP_SUFFIX)
    return pgp.Encrypted(
        path=cached,
        plaintext_sha256=artifact.sha256,
        plaintext_bytes=artifact.size,
        ciphertext_sha256=made.sha256,
        ciphertext_bytes=made.size,
        recipients=fingerprints,
    )


def _zipped_once(artifact: Artifact, delivery_key: str) -> Artifact:
    cached = _cache_path(artifact, delivery_key, ".zip")
    if not cached.exists():
        partial = cached.with_name(cached.name + ".part")
        email_delivery.zip_into(artifact, partial)
        replace_durably(partial, cached)
        artifact.kept(cached)
    return Artifact.from_path(cached, filename=artifact.filename + ".zip", content_type="application/zip")


def _large_file_link(
    artifact: Artifact, zipped: Artifact, dest: EmailDestination, sending: _Sending, delivery_key: str
) -> email_delivery.DownloadLink | None:
    """Upload a file too large to attach even zipped (`zipped`) to the destination's `large_files`
    bucket.

    None when the zipped file fits (the mail attaches it as usual). The upload is a delivery of
    its own (conditional put, ledger, retries) under a folder named by the e-mail's delivery,
    so a retry finds the same object; the link is signed afresh for each mail.
    """
    assert dest.large_files is not None
    limit = sending.connections.get_smtp(dest.connection).max_attachment_bytes
    if email_delivery.encoded_size(zipped.size) <= limit:
        return None
    from report_platform.delivery import s3 as s3_delivery  # boto3 and dagster-aws: only S3 uploads load them

    options = dest.large_files
    prefix = s3_delivery.object_key(options.prefix, delivery_key[:16]) + "/"
    bucket = parse_destination(
        {"type": "s3", "connection": options.connection, "bucket": options.bucket, "prefix": prefix}
    )
    # The e-mail's own S3 client override is not the large-files bucket's.
    receipt = _deliver_one(zipped, bucket, dataclasses.replace(sending, s3_client=None), subject=None, body=None)
    client = s3_delivery.make_client(
        sending.connections.get_s3(options.connection), options.connection, signature_version="s3v4"
    )
    expires_at = utc_now() + timedelta(seconds=options.expires_seconds)
    url = client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": options.bucket,
            "Key": receipt.location,
            "ResponseContentDisposition": 'attachment; filename="{}"'.format(zipped.filename.replace('"', "'")),
        },
        ExpiresIn=options.expires_seconds,
    )
    log.info(
        "%s is %d bytes zipped, over the attachment limit of %d; mailing a link to %s",
        artifact.filename,
        zipped.size,
        limit,
        receipt.target,
    )
    return email_delivery.DownloadLink(
        url=url,
        expires_at=expires_at,
        filename=zipped.filename,
        size=zipped.size,
        sha256=zipped.sha256,
        target=receipt.target,
        original_bytes=email_delivery.encoded_size(artifact.size),
        zipped_bytes=email_delivery.encoded_size(zipped.size),
        limit=limit,
    )
