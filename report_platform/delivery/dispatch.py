"""`deliver()`: one file to one destination, once: claimed in the ledger, sent with retries, confirmed."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import posixpath
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from report_platform import redaction
from report_platform.delivery import email as email_delivery
from report_platform.delivery import s3 as s3_delivery
from report_platform.delivery import sftp as sftp_delivery
from report_platform.delivery.artifact import Artifact, Receipt
from report_platform.delivery.connections import Connections
from report_platform.delivery.destinations import (
    CONNECTION_KIND_BY_TYPE,
    Destination,
    EmailDestination,
    SftpDestination,
    parse_destination,
)
from report_platform.delivery.errors import DeliveryError
from report_platform.delivery.ledger import Claim, DeliveryIdentity, DeliveryLedger, confirm_or_explain
from report_platform.delivery.manifest import write_manifest
from report_platform.delivery.retry import deliver_with_retries

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
    return f"s3://{dest.bucket}/{s3_delivery.object_key(dest.prefix, artifact.filename)}"


def identity_for(dest: Destination, artifact: Artifact, connections: Connections, scope: str) -> DeliveryIdentity:
    """The ledger identity: the run, where to (connection, endpoint, target, recipients), which bytes."""
    target = planned_target(dest, artifact, connections)
    recipients: tuple[str, ...] = ()
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

    A file destination with `manifest: true` then gets `<file>.manifest.json` (delivery/manifest.py):
    `manifest` holds the run's facts for it. It is delivered only after the file is confirmed, as a
    delivery of its own in the same ledger and scope, so a retry sends it at most once and never
    loses it: a run that failed between the two resends only the manifest. Its receipt is in
    `extra["manifest"]`.
    """
    dest = parse_destination(destination)
    options = dict(
        connections=connections,
        ledger=ledger,
        scope=scope,
        organization=organization,
        worker=worker,
        attempts=attempts,
        base_delay=base_delay,
        max_delay=max_delay,
        sleep=sleep,
        s3_client=s3_client,
    )
    receipt = _deliver_one(artifact, dest, subject=subject, body=body, **options)
    if isinstance(dest, EmailDestination) or not dest.manifest:
        return receipt
    with tempfile.TemporaryDirectory(prefix="report-manifest-") as folder:
        marker = write_manifest(Path(folder), manifest or {}, artifact)
        # Same scope and destination without the flag: the manifest's own ledger row (its target
        # and SHA-256 differ from the file's), and no manifest of the manifest.
        try:
            manifest_receipt = _deliver_one(
                marker, dest.model_copy(update={"manifest": False}), subject=None, body=None, **options
            )
        except DeliveryError as exc:
            # Same class, so retries treat it alike; the message says which of the two failed.
            raise type(exc)(
                f"{artifact.filename} was delivered to {receipt.target}, but its manifest {marker.filename} "
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


def _deliver_one(
    artifact: Artifact,
    dest: Destination,
    *,
    connections: Connections,
    subject: str | None,
    body: str | None,
    ledger: DeliveryLedger | None,
    scope: str | None,
    organization: str | None,
    worker: str | None,
    attempts: int,
    base_delay: float,
    max_delay: float,
    sleep: Callable[[float], None],
    s3_client: Any,
) -> Receipt:
    if organization is not None:
        connections.require_allowed(CONNECTION_KIND_BY_TYPE[dest.type], dest.connection, organization)
    identity = identity_for(dest, artifact, connections, scope or str(artifact.path.resolve()))
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
    send = _sender(
        dest,
        artifact,
        connections,
        subject=subject,
        body=body,
        s3_client=s3_client,
        message_id_key=identity.key,
        progress=progress,
        on_sent=on_sent,
    )
    attempt_count = 0

    def attempt() -> Receipt:
        nonlocal attempt_count
        attempt_count += 1
        return send()

    with ledger.heartbeat(claim) if ledger is not None and claim is not None else contextlib.nullcontext():
        try:
            receipt = deliver_with_retries(
                attempt, attempts=attempts, base_delay=base_delay, max_delay=max_delay, sleep=sleep
            )
        except Exception as exc:
            if ledger is not None and claim is not None:
                _record_failure(ledger, claim, exc, progress.outcomes())
            raise
        receipt = dataclasses.replace(
            receipt, extra={**receipt.extra, "attempts": attempt_count, "ledger_attempt": claim.attempt if claim else 1}
        )
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
