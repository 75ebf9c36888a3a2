"""`deliver()`: one file to one destination, once — ledger first, retries, then the receipt."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import posixpath
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from report_platform.delivery import email as email_delivery
from report_platform.delivery import s3 as s3_delivery
from report_platform.delivery import sftp as sftp_delivery
from report_platform.delivery.artifact import Artifact, Receipt
from report_platform.delivery.connections import Connections
from report_platform.delivery.errors import ConfigurationError
from report_platform.delivery.ledger import Ledger, delivery_key
from report_platform.delivery.retry import deliver_with_retries

log = logging.getLogger(__name__)


class _Destination(BaseModel):
    # Report definitions carry more (templates, ...) than delivery needs; ignore the rest.
    model_config = ConfigDict(extra="ignore", frozen=True)


class EmailDestination(_Destination):
    type: Literal["email"]
    to: list[str] = Field(min_length=1)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    connection: str | None = None


class SftpDestination(_Destination):
    type: Literal["sftp"]
    connection: str
    remote_dir: str
    create_dirs: bool = False


class S3Destination(_Destination):
    type: Literal["s3"]
    connection: str
    bucket: str = Field(min_length=3)
    prefix: str = ""
    server_side_encryption: Literal["AES256", "aws:kms", "aws:kms:dsse"] | None = None
    kms_key_id: str | None = None


Destination = Annotated[EmailDestination | SftpDestination | S3Destination, Field(discriminator="type")]
_DESTINATION = TypeAdapter(Destination)


def parse_destination(destination: dict[str, Any]) -> Destination:
    """Validate a report's destination dict, with a message a person understands."""
    try:
        return _DESTINATION.validate_python(destination)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'destination'}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"invalid destination: {problems}") from None


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


def key_for(dest: Destination, artifact: Artifact, connections: Connections) -> str:
    """The ledger key: destination type + target + the file's SHA-256."""
    target = planned_target(dest, artifact, connections)
    if isinstance(dest, EmailDestination) and dest.bcc:
        # BCC addresses are not part of the visible target, but a changed BCC list is a
        # different delivery.
        digest = hashlib.sha256(",".join(sorted(dest.bcc)).encode()).hexdigest()[:12]
        target = f"{target}#bcc-{digest}"
    return delivery_key(dest.type, target, artifact.sha256)


def deliver(
    artifact: Artifact,
    destination: dict[str, Any],
    connections: Connections,
    *,
    subject: str | None = None,
    body: str | None = None,
    ledger: Ledger | None = None,
    attempts: int = 4,
    base_delay: float = 2.0,
    max_delay: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    s3_client: Any = None,
) -> Receipt:
    """Deliver `artifact` to `destination` unless the ledger already confirms it.

    Transient failures are retried with backoff; the receipt is recorded in the ledger. A
    receipt taken from the ledger carries `extra["reused"] = True`. `s3_client` overrides the
    client built from the connection (e.g. one from dagster-aws's `S3Resource`).
    """
    dest = parse_destination(destination)
    key = key_for(dest, artifact, connections)
    if ledger is not None:
        previous = ledger.confirmed(key)
        if previous is not None:
            log.info("%s already delivered to %s; not sending again", artifact.filename, previous.target)
            return dataclasses.replace(previous, extra={**previous.extra, "reused": True})

    attempt_count = 0
    send = _sender(dest, artifact, connections, subject=subject, body=body, s3_client=s3_client)

    def attempt() -> Receipt:
        nonlocal attempt_count
        attempt_count += 1
        return send()

    receipt = deliver_with_retries(attempt, attempts=attempts, base_delay=base_delay, max_delay=max_delay, sleep=sleep)
    receipt = dataclasses.replace(receipt, extra={**receipt.extra, "attempts": attempt_count})
    if ledger is not None:
        ledger.record(key, receipt)
    return receipt


def _sender(
    dest: Destination,
    artifact: Artifact,
    connections: Connections,
    *,
    subject: str | None,
    body: str | None,
    s3_client: Any,
) -> Callable[[], Receipt]:
    if isinstance(dest, EmailDestination):
        name = dest.connection or "default"
        smtp = connections.get_smtp(name)
        return lambda: email_delivery.send(
            artifact,
            connection_name=name,
            connection=smtp,
            to=dest.to,
            cc=dest.cc,
            bcc=dest.bcc,
            subject=subject if subject is not None else artifact.filename,
            body=body or "",
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
    )
