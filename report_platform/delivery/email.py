"""Send a file as an e-mail attachment over SMTP (STARTTLS, implicit TLS or plain)."""

from __future__ import annotations

import re
import smtplib
import ssl
import tempfile
import unicodedata
import zipfile
from collections.abc import Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from report_platform.delivery.artifact import Artifact, Receipt, utc_now
from report_platform.delivery.connections import SmtpConnection, read_secret
from report_platform.delivery.errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)

_ENCODED_WORD_MARKERS = re.compile(r"=\?|\?=")
_SPACES = re.compile(r"\s+")


def clean_header(value: str) -> str:
    """A header value that cannot start a new header line.

    Python's email package may still let a crafted value inject headers (CPython gh-121650,
    CVE-2024-6923), so line breaks, control characters and RFC 2047 encoded-word markers are
    removed here rather than trusted to the serializer.
    """
    chars = []
    for ch in value:
        category = unicodedata.category(ch)
        # Cc/Zl/Zp cover CR, LF, NUL, NEL (U+0085) and U+2028/U+2029 line separators.
        chars.append(" " if category in ("Cc", "Zl", "Zp") else ch)
    text = "".join(chars)
    while True:
        stripped = _ENCODED_WORD_MARKERS.sub("", text)
        if stripped == text:
            break
        text = stripped
    return _SPACES.sub(" ", text).strip()


def parse_address(raw: str, field: str) -> Address:
    """One plain e-mail address (`a@b.example`), refusing anything that could smuggle headers."""
    text = raw.strip()
    if not text or any(unicodedata.category(ch) == "Cc" for ch in text) or "," in text:
        raise ConfigurationError(f"{field}: {raw!r} is not a single e-mail address")
    if text.count("@") != 1 or any(c in text for c in ' <>"()[];:'):
        raise ConfigurationError(f"{field}: {raw!r} is not a plain address like name@example.com")
    local, domain = text.split("@")
    if not local or not domain or "." not in domain.strip("."):
        raise ConfigurationError(f"{field}: {raw!r} is not a plain address like name@example.com")
    return Address(addr_spec=text)


def encoded_size(raw_size: int) -> int:
    """Bytes an attachment takes after base64 MIME encoding (76-character lines plus CRLF)."""
    b64 = 4 * ((raw_size + 2) // 3)
    lines = (b64 + 75) // 76
    return b64 + 2 * lines


def _zip(artifact: Artifact, directory: Path) -> Path:
    archive = directory / f"{artifact.filename}.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        zf.write(artifact.path, arcname=artifact.filename)
    return archive


def build_message(
    *,
    from_address: str,
    to: Sequence[str],
    cc: Sequence[str],
    subject: str,
    body: str,
    attachment: Path,
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
    maintype, _, subtype = content_type.partition("/")
    msg.add_attachment(
        attachment.read_bytes(),
        maintype=maintype or "application",
        subtype=subtype or "octet-stream",
        filename=clean_header(attachment_name),
    )
    return msg


def _ssl_context(conn: SmtpConnection) -> ssl.SSLContext:
    if conn.ca_file:
        return ssl.create_default_context(cafile=conn.ca_file)
    return ssl.create_default_context()


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
) -> Receipt:
    """Mail the file as an attachment, zipped if it is over the limit; return the receipt."""
    label = f"smtp connection {connection_name!r}"
    if not to:
        raise ConfigurationError("an e-mail destination needs at least one 'to' address")
    recipients = [
        str(parse_address(a, field).addr_spec) for field, group in (("to", to), ("cc", cc), ("bcc", bcc)) for a in group
    ]
    sender = parse_address(connection.from_address, "from_address").addr_spec
    password = None
    if connection.username:
        assert connection.password_env is not None
        password = read_secret(connection.password_env, field="password_env", connection=label)

    limit = connection.max_attachment_bytes
    with tempfile.TemporaryDirectory(prefix="mail-attachment-") as scratch:
        attachment, name, content_type = artifact.path, artifact.filename, artifact.content_type
        zipped = False
        if encoded_size(artifact.size) > limit:
            attachment = _zip(artifact, Path(scratch))
            name, content_type, zipped = f"{artifact.filename}.zip", "application/zip", True
            zipped_size = attachment.stat().st_size
            if encoded_size(zipped_size) > limit:
                raise PermanentDeliveryError(
                    f"{label}: attachment {artifact.filename} is {encoded_size(artifact.size)} "
                    f"bytes after MIME encoding and {encoded_size(zipped_size)} bytes even "
                    f"zipped, over the limit of {limit} bytes (max_attachment_bytes); "
                    "nothing was sent. Deliver this report by SFTP or S3, or raise the limit "
                    "if the mail server accepts larger messages.",
                    destination="email",
                )
        domain = sender.rpartition("@")[2]
        message_id = make_msgid(domain=domain)
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
        attachment_bytes = encoded_size(attachment.stat().st_size)
        refused = _transmit(msg, sender, recipients, connection, password, label)

    extra: dict[str, object] = {
        "connection": connection_name,
        "message_id": message_id,
        "attachment": name,
        "attachment_bytes": attachment_bytes,
        "zipped": zipped,
        "recipients": len(recipients),
        "bcc_count": len(bcc),
    }
    if refused:
        extra["refused"] = refused
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


def _transmit(
    msg: EmailMessage,
    sender: str,
    recipients: list[str],
    conn: SmtpConnection,
    password: str | None,
    label: str,
) -> dict[str, str]:
    where = f"{conn.host}:{conn.port}"
    try:
        if conn.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                conn.host, conn.port, timeout=conn.timeout, context=_ssl_context(conn)
            )
        else:
            smtp = smtplib.SMTP(conn.host, conn.port, timeout=conn.timeout)
        with smtp:
            smtp.ehlo()
            if conn.security == "starttls":
                smtp.starttls(context=_ssl_context(conn))
                smtp.ehlo()
            if conn.username:
                smtp.login(conn.username, password or "")
            refused = smtp.send_message(msg, from_addr=sender, to_addrs=recipients)
    except smtplib.SMTPAuthenticationError as exc:
        raise PermanentDeliveryError(
            f"{label}: {where} rejected the login of {conn.username!r} ({exc.smtp_code}); "
            "check the password variable named by password_env",
            destination="email",
        ) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise PermanentDeliveryError(
            f"{label}: {where} does not support what the connection asks for ({exc}); check security and username",
            destination="email",
        ) from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = {addr: code for addr, (code, _msg) in exc.recipients.items()}
        error_class = TransientDeliveryError if all(400 <= c < 500 for c in codes.values()) else PermanentDeliveryError
        raise error_class(f"{label}: {where} refused every recipient ({codes})", destination="email") from None
    except smtplib.SMTPResponseException as exc:
        raise _by_code(exc.smtp_code, exc.smtp_error, label, where) from None
    except ssl.SSLCertVerificationError as exc:
        raise PermanentDeliveryError(
            f"{label}: the TLS certificate of {where} is not trusted ({exc.verify_message}); "
            "set ca_file for a private CA",
            destination="email",
        ) from None
    except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError) as exc:
        raise TransientDeliveryError(
            f"{label}: connection to {where} failed ({exc or type(exc).__name__})",
            destination="email",
        ) from None
    except smtplib.SMTPException as exc:
        raise TransientDeliveryError(f"{label}: {where}: {exc}", destination="email") from None
    return {addr: f"{code} {text.decode(errors='replace')}" for addr, (code, text) in refused.items()}


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
    _transmit(msg, sender, recipients, connection, password, label)
    return message_id
