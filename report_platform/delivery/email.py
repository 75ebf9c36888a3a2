"""Send a file as an e-mail attachment over SMTP (STARTTLS, implicit TLS or plain)."""

from __future__ import annotations

import logging
import smtplib
import ssl
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from report_platform.delivery.addresses import address_problem, clean_header
from report_platform.delivery.artifact import Artifact, Receipt, utc_now
from report_platform.delivery.connections import SmtpConnection, read_secret
from report_platform.delivery.errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)

log = logging.getLogger(__name__)


def parse_address(raw: str, field: str) -> Address:
    """One plain e-mail address (`a@b.example`), refusing anything that could smuggle headers."""
    text = raw.strip()
    problem = address_problem(text)
    if problem is not None:
        raise ConfigurationError(f"{field}: {raw!r} {problem}")
    return Address(addr_spec=text)


def encoded_size(raw_size: int) -> int:
    """Bytes an attachment takes after base64 MIME encoding (76-character lines plus CRLF)."""
    b64 = 4 * ((raw_size + 2) // 3)
    lines = (b64 + 75) // 76
    return b64 + 2 * lines


def zip_into(artifact: Artifact, archive: Path) -> Path:
    """`archive`: a zip holding the file under its own name (how an attachment over the limit goes)."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        zf.write(artifact.path, arcname=artifact.filename)
    return archive


@dataclass(frozen=True)
class DownloadLink:
    """A time-limited link to a file too large to attach, mailed instead of the file."""

    url: str
    expires_at: datetime
    filename: str
    size: int
    sha256: str
    target: str  # s3://bucket/key
    original_bytes: int  # after MIME encoding, as the limit counts
    zipped_bytes: int
    limit: int

    def to_dict(self) -> dict[str, Any]:
        # Never the URL: it is a bearer credential for its lifetime, and receipts reach the audit log.
        return {
            "target": self.target,
            "filename": self.filename,
            "bytes": self.size,
            "sha256": self.sha256,
            "expires_at": self.expires_at.isoformat(),
        }

    def notice(self) -> str:
        return (
            f"The file {self.filename} ({self.size:,} bytes) is too large to attach "
            f"(the limit is {self.limit:,} bytes). Download it here until "
            f"{self.expires_at:%Y-%m-%d %H:%M} UTC, when the link expires:\n\n{self.url}\n\n"
            f"SHA-256: {self.sha256}\n"
        )


def build_message(
    *,
    from_address: str,
    to: Sequence[str],
    cc: Sequence[str],
    subject: str,
    body: str,
    attachment: Path | None,
    attachment_name: str,
    content_type: str,
    message_id: str,
) -> EmailMessage:
    """The MIME message. BCC is never a header: those addresses go in the envelope only."""
    msg = EmailMessage()
    msg["From"] = parse_address(from_address, "from_address")
    msg["To"] = [parse_address(a, "to") for a in to]
    if cc:
        msg["Cc"] = [parse_address(a, "cc") for a in cc]
    msg["Subject"] = clean_header(subject)
    msg["Date"] = format_datetime(utc_now())
    msg["Message-ID"] = message_id
    msg.set_content(body or "")
    if attachment is None:
        return msg
    maintype, _, subtype = content_type.partition("/")
    msg.add_attachment(
        attachment.read_bytes(),
        maintype=maintype or "application",
        subtype=subtype or "octet-stream",
        filename=clean_header(attachment_name),
    )
    return msg


def ssl_context(conn: SmtpConnection) -> ssl.SSLContext:
    if conn.ca_file:
        return ssl.create_default_context(cafile=conn.ca_file)
    return ssl.create_default_context()


@dataclass
class MailProgress:
    """Carried across attempts of one delivery: who has the message, who refused it and how.

    An attempt sends only to the addresses still pending, so an address that accepted is never
    mailed twice, and one refused with a 4xx is retried alone.
    """

    accepted: set[str] = field(default_factory=set)
    refused_permanently: dict[str, str] = field(default_factory=dict)
    refused_for_now: dict[str, str] = field(default_factory=dict)

    def outcomes(self) -> dict[str, str]:
        result = {address: "accepted" for address in self.accepted}
        result.update(self.refused_for_now)
        result.update(self.refused_permanently)
        return result


def send(
    artifact: Artifact,
    *,
    connection_name: str,
    connection: SmtpConnection,
    to: Sequence[str],
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    subject: str,
    body: str = "",
    message_id: str | None = None,
    progress: MailProgress | None = None,
    on_accepted: Callable[[list[str]], None] | None = None,
    download: DownloadLink | None = None,
    prezipped: Path | None = None,
) -> Receipt:
    """Mail the file as an attachment (zipped if over the limit) to every address still pending.

    With `download`, the mail carries that link (and its expiry) in the body instead of the file.
    `prezipped` is the file already zipped by `zip_into` (the caller needed its size), attached
    instead of zipping it again.

    `message_id` should be stable for one delivery, so a recipient's mail system can tell a resend
    from a new message. A 250 to the message means delivered: an error at QUIT changes nothing.
    Refusals: 4xx raise `TransientDeliveryError` (the caller retries; only those addresses are
    sent to again), 5xx raise `PermanentDeliveryError` naming each address; both after the
    accepted addresses are recorded in `progress` and reported to `on_accepted`.
    """
    label = f"smtp connection {connection_name!r}"
    if not to:
        raise ConfigurationError("an e-mail destination needs at least one 'to' address")
    progress = progress if progress is not None else MailProgress()
    recipients = list(
        dict.fromkeys(
            str(parse_address(a, field).addr_spec)
            for field, group in (("to", to), ("cc", cc), ("bcc", bcc))
            for a in group
        )
    )
    pending = [a for a in recipients if a not in progress.accepted and a not in progress.refused_permanently]
    sender = parse_address(connection.from_address, "from_address").addr_spec
    password = None
    if connection.username:
        assert connection.password_env is not None
        password = read_secret(connection.password_env, field="password_env", connection=label)

    limit = connection.max_attachment_bytes
    domain = sender.rpartition("@")[2]
    message_id = message_id or make_msgid(domain=domain)
    with tempfile.TemporaryDirectory(prefix="mail-attachment-") as scratch:
        attachment, name, content_type = artifact.path, artifact.filename, artifact.content_type
        zipped = False
        if download is not None:
            attachment, name, zipped = None, download.filename, True
            body = f"{body.rstrip()}\n\n{download.notice()}" if body.strip() else download.notice()
        elif encoded_size(artifact.size) > limit:
            attachment = prezipped or zip_into(artifact, Path(scratch) / f"{artifact.filename}.zip")
            name, content_type, zipped = f"{artifact.filename}.zip", "application/zip", True
            zipped_size = attachment.stat().st_size
            if encoded_size(zipped_size) > limit:
                raise PermanentDeliveryError(
                    f"{label}: attachment {artifact.filename} is {encoded_size(artifact.size)} "
                    f"bytes after MIME encoding and {encoded_size(zipped_size)} bytes even "
                    f"zipped, over the limit of {limit} bytes (max_attachment_bytes); "
                    "nothing was sent. Set large_files on the destination to mail a download "
                    "link instead, deliver this report by SFTP or S3, or raise the limit "
                    "if the mail server accepts larger messages.",
                    destination="email",
                )
        attachment_bytes = encoded_size(attachment.stat().st_size) if attachment is not None else 0
        if pending:
            msg = build_message(
                from_address=sender,
                to=to,
                cc=cc,
                subject=subject,
                body=body,
                attachment=attachment,
                attachment_name=name,
                content_type=content_type,
                message_id=message_id,
            )
            refused = _transmit(msg, sender, pending, connection, password, label)
            newly_accepted = [a for a in pending if a not in refused]
            progress.accepted.update(newly_accepted)
            progress.refused_for_now = {}
            for address, (code, reply) in refused.items():
                text = f"refused {code} {reply}".strip()
                if 400 <= code < 500:
                    progress.refused_for_now[address] = text
                else:
                    progress.refused_permanently[address] = text
            if newly_accepted and on_accepted is not None:
                on_accepted(newly_accepted)
    where = f"{connection.host}:{connection.port}"
    if progress.refused_for_now:
        raise TransientDeliveryError(
            f"{label}: {where} refused {_listing(progress.refused_for_now)} for now"
            + (f" and {_listing(progress.refused_permanently)}" if progress.refused_permanently else "")
            + (f"; {len(progress.accepted)} recipient(s) have the message" if progress.accepted else ""),
            destination="email",
        )
    if progress.refused_permanently:
        raise PermanentDeliveryError(
            f"{label}: {where} refused {_listing(progress.refused_permanently)}"
            + (
                f"; {len(progress.accepted)} other recipient(s) have the message and will not get it twice"
                if progress.accepted
                else "; nobody received the message"
            ),
            destination="email",
        )

    extra: dict[str, object] = {
        "connection": connection_name,
        "message_id": message_id,
        "attachment": name,
        "attachment_bytes": attachment_bytes,
        "zipped": zipped,
        "recipients": len(recipients),
        "bcc_count": len(bcc),
        "outcomes": progress.outcomes(),
    }
    target = "mailto:" + ",".join(str(a) for a in to)
    if cc:
        target += "?cc=" + ",".join(str(a) for a in cc)
    return Receipt(
        destination="email",
        target=target,
        location=message_id,
        size=artifact.size,
        sha256=artifact.sha256,
        delivered_at=utc_now(),
        extra=extra,
    )


def _listing(refusals: dict[str, str]) -> str:
    return ", ".join(f"{address} ({reply})" for address, reply in sorted(refusals.items()))


def stable_message_id(delivery_key: str, from_address: str) -> str:
    """The Message-ID of one delivery: the same on every attempt and every run retry."""
    domain = parse_address(from_address, "from_address").addr_spec.rpartition("@")[2]
    return f"<report.{delivery_key[:32]}@{domain}>"


def connect(conn: SmtpConnection) -> smtplib.SMTP:
    """An SMTP session with the connection's server: implicit TLS for `ssl` (STARTTLS comes after EHLO)."""
    if conn.security == "ssl":
        return smtplib.SMTP_SSL(conn.host, conn.port, timeout=conn.timeout, context=ssl_context(conn))
    return smtplib.SMTP(conn.host, conn.port, timeout=conn.timeout)


def _quit_quietly(smtp: smtplib.SMTP, where: str) -> None:
    # Once the server has answered 250 to the message it is delivered; a 421 or a dropped
    # connection at QUIT says nothing about the message, so it must never trigger a resend.
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError) as exc:
        log.info("%s: QUIT failed after the exchange (%s); ignored", where, exc or type(exc).__name__)
    finally:
        smtp.close()


def _transmit(
    msg: EmailMessage,
    sender: str,
    recipients: list[str],
    conn: SmtpConnection,
    password: str | None,
    label: str,
) -> dict[str, tuple[int, str]]:
    """Send `msg` to `recipients`; return the refused ones (address -> code, reply)."""
    where = f"{conn.host}:{conn.port}"
    try:
        smtp = connect(conn)
    except (smtplib.SMTPException, OSError) as exc:
        raise _classify(exc, label, where, conn) from None
    try:
        smtp.ehlo()
        if conn.security == "starttls":
            smtp.starttls(context=ssl_context(conn))
            smtp.ehlo()
        if conn.username:
            smtp.login(conn.username, password or "")
        refused = smtp.send_message(msg, from_addr=sender, to_addrs=recipients)
    except smtplib.SMTPRecipientsRefused as exc:
        # Nobody accepted: every address comes back with its own code, like a partial refusal.
        refused = exc.recipients
    except (smtplib.SMTPException, OSError) as exc:
        smtp.close()
        raise _classify(exc, label, where, conn) from None
    _quit_quietly(smtp, where)
    return {
        addr: (int(code), text.decode(errors="replace") if isinstance(text, bytes) else str(text))
        for addr, (code, text) in refused.items()
    }


def _classify(exc: BaseException, label: str, where: str, conn: SmtpConnection) -> DeliveryError:
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return PermanentDeliveryError(
            f"{label}: {where} rejected the login of {conn.username!r} ({exc.smtp_code}); "
            "check the password variable named by password_env",
            destination="email",
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentDeliveryError(
            f"{label}: {where} does not support what the connection asks for ({exc}); check security and username",
            destination="email",
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_code(exc.smtp_code, exc.smtp_error, label, where)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentDeliveryError(
            f"{label}: the TLS certificate of {where} is not trusted ({exc.verify_message}); "
            "set ca_file for a private CA",
            destination="email",
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected | smtplib.SMTPConnectError | OSError):
        return TransientDeliveryError(
            f"{label}: connection to {where} failed ({exc or type(exc).__name__})",
            destination="email",
        )
    return TransientDeliveryError(f"{label}: {where}: {exc}", destination="email")


def _by_code(code: int, text: bytes | str, label: str, where: str) -> DeliveryError:
    reply = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    cls = TransientDeliveryError if 400 <= code < 500 else PermanentDeliveryError
    return cls(f"{label}: {where} answered {code} {reply}", destination="email")


def send_notice(*, connection_name: str, connection: SmtpConnection, to: Sequence[str], subject: str, body: str) -> str:
    """A plain text mail with no attachment (e.g. "your report failed"); returns its Message-ID."""
    label = f"smtp connection {connection_name!r}"
    sender = parse_address(connection.from_address, "from_address").addr_spec
    password = None
    if connection.username:
        assert connection.password_env is not None
        password = read_secret(connection.password_env, field="password_env", connection=label)
    msg = EmailMessage()
    msg["From"] = parse_address(connection.from_address, "from_address")
    msg["To"] = [parse_address(a, "to") for a in to]
    msg["Subject"] = clean_header(subject)
    msg["Date"] = format_datetime(utc_now())
    message_id = make_msgid(domain=sender.rpartition("@")[2])
    msg["Message-ID"] = message_id
    msg.set_content(body)
    recipients = [str(parse_address(a, "to").addr_spec) for a in to]
    refused = _transmit(msg, sender, recipients, connection, password, label)
    if refused:
        reasons = {address: f"{code} {reply}" for address, (code, reply) in refused.items()}
        cls = TransientDeliveryError if all(400 <= c < 500 for c, _ in refused.values()) else PermanentDeliveryError
        if len(refused) == len(recipients):
            raise cls(f"{label}: the notice was refused for {_listing(reasons)}", destination="email")
        log.warning("%s: the notice was refused for %s", label, _listing(reasons))
    return message_id
