"""Test a named connection before a report relies on it: secrets, reachability, identity, login, write.

Each check is a `Step` (name, passed, detail). The first failure ends the test with a specific
reason (wrong password, unknown or changed host key, connection refused, bucket missing, access
denied...). Every detail goes through redaction and server replies at login are never quoted, so
no secret is ever shown, even by a server that echoes what it was sent.
"""

from __future__ import annotations

import contextlib
import secrets
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from report_platform.delivery.connections import (
    CONNECTION_KINDS,
    ConnectionKind,
    Connections,
    S3Connection,
    SftpConnection,
    SmtpConnection,
    read_secret,
)
from report_platform.delivery.errors import DeliveryError
from report_platform.redaction import redact

PROBE_PREFIX = ".rp-connection-test-"


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.name}: {self.detail}"


@dataclass
class ProbeResult:
    connection: str
    kind: str
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "kind": self.kind,
            "ok": self.ok,
            "steps": [{"step": s.name, "ok": s.ok, "detail": s.detail} for s in self.steps],
        }


class _Failed(Exception):
    pass


class _Steps:
    def __init__(self, result: ProbeResult) -> None:
        self.result = result

    def passed(self, name: str, detail: str) -> None:
        self.result.steps.append(Step(name, True, redact(detail)))

    def failed(self, name: str, detail: str) -> _Failed:
        self.result.steps.append(Step(name, False, redact(detail)))
        return _Failed()

    def run(self, name: str, action: Callable[[], str], explain: Callable[[BaseException], str]) -> None:
        try:
            detail = action()
        except Exception as exc:  # noqa: BLE001 - every failure becomes the step's reason
            raise self.failed(name, explain(exc)) from None
        self.passed(name, detail)


def kind_of(connections: Connections, name: str, kind: str | None = None) -> ConnectionKind:
    """The kind of connection `name`; `kind` settles a name used by more than one kind."""
    kinds = [k for k in CONNECTION_KINDS if name in connections.table(k) and (kind is None or k == kind)]
    if not kinds:
        known = ", ".join(f"{k}:{n}" for k in CONNECTION_KINDS for n in sorted(connections.table(k))) or "none"
        raise DeliveryError(f"no connection named {name!r} in connections.yaml (known: {known})")
    if len(kinds) > 1:
        raise DeliveryError(f"{name!r} names a connection of each of {', '.join(kinds)}; choose one with --kind")
    return kinds[0]


def check_connection(
    connections: Connections,
    name: str,
    *,
    kind: str | None = None,
    remote_dir: str | None = None,
    bucket: str | None = None,
    prefix: str = "",
    send_to: str | None = None,
) -> ProbeResult:
    """Run every check of connection `name`, stopping at the first that fails."""
    found = kind_of(connections, name, kind)
    result = ProbeResult(connection=name, kind=found)
    steps = _Steps(result)
    try:
        if found == "smtp":
            _smtp(steps, name, connections.get_smtp(name), send_to)
        elif found == "sftp":
            _sftp(steps, name, connections.get_sftp(name), remote_dir)
        else:
            _s3(steps, name, connections.get_s3(name), bucket, prefix)
    except _Failed:
        pass
    return result


def _secrets(steps: _Steps, label: str, fields: dict[str, str | None]) -> dict[str, str]:
    values: dict[str, str] = {}
    for field_name, variable in fields.items():
        if not variable:
            continue
        try:
            values[field_name] = read_secret(variable, field=field_name, connection=label)
        except DeliveryError as exc:
            raise steps.failed("secrets", str(exc)) from None
    named = ", ".join(v for v in fields.values() if v)
    steps.passed("secrets", f"read {named}" if named else "none needed")
    return values


def _tcp(steps: _Steps, host: str, port: int, timeout: float) -> None:
    def connect() -> str:
        with socket.create_connection((host, port), timeout=timeout):
            return f"{host}:{port} reachable"

    def explain(exc: BaseException) -> str:
        if isinstance(exc, ConnectionRefusedError):
            return f"connection refused by {host}:{port} (nothing listens there, or a firewall refuses)"
        if isinstance(exc, socket.timeout | TimeoutError):
            return f"no answer from {host}:{port} within {timeout:g} s"
        if isinstance(exc, socket.gaierror):
            return f"host name {host!r} does not resolve"
        return f"cannot reach {host}:{port} ({exc})"

    steps.run("connect", connect, explain)


def _smtp(steps: _Steps, name: str, conn: SmtpConnection, send_to: str | None) -> None:
    from report_platform.delivery import email as email_delivery

    label = f"smtp connection {name!r}"
    password = _secrets(steps, label, {"password_env": conn.password_env}).get("password_env")
    _tcp(steps, conn.host, conn.port, conn.timeout)
    context = email_delivery.ssl_context(conn)
    holder: dict[str, smtplib.SMTP] = {}

    def tls_explain(exc: BaseException) -> str:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"the certificate of {conn.host}:{conn.port} is not trusted ({exc.verify_message}); set ca_file"
        return f"TLS failed ({type(exc).__name__}: {exc})"

    def greet() -> str:
        holder["smtp"] = email_delivery.connect(conn)  # as a delivery connects
        code, reply = holder["smtp"].ehlo()
        if code != 250:
            raise smtplib.SMTPResponseException(code, reply)
        return f"{code} {reply.decode(errors='replace').splitlines()[0]}" + (
            " (implicit TLS)" if conn.security == "ssl" else ""
        )

    try:
        steps.run("EHLO", greet, tls_explain if conn.security == "ssl" else (lambda e: f"EHLO failed ({e})"))
        smtp = holder["smtp"]
        if conn.security == "starttls":

            def starttls() -> str:
                smtp.starttls(context=context)
                smtp.ehlo()
                return "certificate verified"

            steps.run("STARTTLS", starttls, tls_explain)
        if conn.username:

            def login() -> str:
                smtp.login(conn.username or "", password or "")
                return f"logged in as {conn.username!r}"

            def login_explain(exc: BaseException) -> str:
                # Never the server's text: some servers quote the credentials they were sent.
                if isinstance(exc, smtplib.SMTPAuthenticationError):
                    who = conn.username
                    return f"wrong user name or password for {who!r} ({exc.smtp_code}); check {conn.password_env}"
                if isinstance(exc, smtplib.SMTPNotSupportedError):
                    return "the server offers no AUTH here (check security: starttls / ssl)"
                return f"login failed ({type(exc).__name__})"

            steps.run("AUTH", login, login_explain)
        if send_to:

            def send() -> str:
                refused = smtp.sendmail(
                    conn.from_address,
                    [send_to],
                    (
                        f"From: {conn.from_address}\r\nTo: {send_to}\r\n"
                        "Subject: Report Platform connection test\r\n\r\n"
                        f"This message tests the connection {name!r}. No action is needed.\r\n"
                    ).encode(),
                )
                if refused:
                    raise smtplib.SMTPRecipientsRefused(refused)
                return f"test message accepted for {send_to}"

            steps.run("send", send, lambda e: f"the server refused the test message ({e})")
    finally:
        if "smtp" in holder:
            try:
                holder["smtp"].quit()
            except (smtplib.SMTPException, OSError):
                holder["smtp"].close()


def _sftp(steps: _Steps, name: str, conn: SftpConnection, remote_dir: str | None) -> None:
    import paramiko

    from report_platform.delivery import sftp as sftp_delivery

    label = f"sftp connection {name!r}"
    _secrets(
        steps,
        label,
        {
            "private_key_env": conn.private_key_env,
            "private_key_file_env": conn.private_key_file_env,
            "private_key_passphrase_env": conn.private_key_passphrase_env,
            "password_env": conn.password_env,
        },
    )
    _tcp(steps, conn.host, conn.port, conn.timeout)
    try:
        client = sftp_delivery.connect(conn, name)
    except DeliveryError as exc:
        text = str(exc)
        if "HOST KEY CHANGED" in text or "host key is unknown" in text:
            raise steps.failed("host key", text.removeprefix(f"{label}: ")) from None
        if "authentication" in text:
            steps.passed("host key", "matches the pinned key")
            raise steps.failed("login", text.removeprefix(f"{label}: ")) from None
        raise steps.failed("SSH", text.removeprefix(f"{label}: ")) from None
    try:
        transport = client.get_transport()
        assert transport is not None
        server_key = transport.get_remote_server_key()
        steps.passed("host key", f"matches the pinned {server_key.get_name()} key")
        steps.passed("login", f"as {conn.username!r}")
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        folder = sftp_delivery.remote_folder(conn, remote_dir or ".")
        probe = f"{folder.rstrip('/')}/{PROBE_PREFIX}{secrets.token_hex(4)}"

        def explain(exc: BaseException) -> str:
            if isinstance(exc, PermissionError):
                return f"permission denied in {folder}"
            if isinstance(exc, FileNotFoundError):
                return f"folder {folder} does not exist"
            return f"{type(exc).__name__}: {exc}"

        def write() -> str:
            with sftp.open(probe + ".part", "wb") as handle:
                handle.write(b"report-platform connection test\n")
            return f"wrote {probe}.part"

        def rename() -> str:
            sftp.posix_rename(probe + ".part", probe)
            return f"renamed onto {probe}"

        def remove() -> str:
            sftp.remove(probe)
            return f"removed {probe}"

        try:
            steps.run("write", write, explain)
            steps.run("rename", rename, explain)
            steps.run("remove", remove, explain)
        finally:
            for leftover in (probe + ".part", probe):
                with contextlib.suppress(OSError):
                    sftp.remove(leftover)
    finally:
        client.close()


def _s3(steps: _Steps, name: str, conn: S3Connection, bucket: str | None, prefix: str) -> None:
    import botocore.exceptions

    from report_platform.delivery import s3 as s3_delivery

    label = f"s3 connection {name!r}"
    _secrets(
        steps,
        label,
        {
            "access_key_id_env": conn.access_key_id_env,
            "secret_access_key_env": conn.secret_access_key_env,
            "session_token_env": conn.session_token_env,
        },
    )
    if not bucket:
        raise steps.failed("bucket", "give the bucket to test with --bucket (and optionally --prefix)")
    key = s3_delivery.object_key(prefix, PROBE_PREFIX + secrets.token_hex(4))
    client = s3_delivery.make_client(conn, name)
    where = conn.endpoint_url or f"AWS {conn.region or 'default region'}"

    def explain(exc: BaseException) -> str:
        if isinstance(exc, botocore.exceptions.ClientError) and exc.operation_name == "HeadBucket":
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket"):
                return f"bucket {bucket!r} does not exist at {where}"
            if code in ("403", "AccessDenied"):
                return f"access denied to bucket {bucket!r} (wrong keys, or no s3:ListBucket on it)"
        reason = s3_delivery.classify_client_error(exc, bucket=bucket or "", key=key, label=label)
        return str(reason).removeprefix(f"{label}: ")

    def reach() -> str:
        client.head_bucket(Bucket=bucket)
        return f"{bucket} at {where}"

    def put() -> str:
        client.put_object(Bucket=bucket, Key=key, Body=b"report-platform connection test\n", IfNoneMatch="*")
        return f"wrote s3://{bucket}/{key}"

    def head() -> str:
        size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
        return f"read back {size} bytes"

    def delete() -> str:
        client.delete_object(Bucket=bucket, Key=key)
        return f"deleted s3://{bucket}/{key}"

    steps.run("bucket", reach, explain)
    try:
        steps.run("put", put, explain)
        steps.run("head", head, explain)
        steps.run("delete", delete, explain)
    except _Failed:
        with contextlib.suppress(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            client.delete_object(Bucket=bucket, Key=key)
        raise
