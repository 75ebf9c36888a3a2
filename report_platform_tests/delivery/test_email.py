from __future__ import annotations

import zipfile
from io import BytesIO

import pytest

from report_platform.delivery import (
    ConfigurationError,
    Connections,
    DeliveryLedger,
    PermanentDeliveryError,
    SmtpConnection,
    TransientDeliveryError,
    deliver,
)
from report_platform.delivery import email as email_delivery
from report_platform_devservers.standins import SmtpStandin
from report_platform_tests.delivery.conftest import SMTP_PASSWORD

TO = ["ops@example.com", "second@example.com"]
CC = ["cc@example.com"]
BCC = ["audit@example.com"]


def _connections(server: SmtpStandin, **overrides: object) -> Connections:
    fields: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "security": server.security,
        "from_address": "reports@acme.example",
        "ca_file": str(server.cert_file) if server.cert_file else None,
        "timeout": 10,
        "organizations": ["*"],
    }
    if server.users:
        fields |= {"username": "reports", "password_env": "TEST_SMTP_PASSWORD"}
    fields |= overrides
    return Connections(smtp={"default": SmtpConnection.model_validate(fields)})


@pytest.fixture
def smtp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", SMTP_PASSWORD)


def _dest(**extra: object) -> dict[str, object]:
    return {"type": "email", "to": TO, "cc": CC, "bcc": BCC} | extra


def _send(artifact, connections, subject="Daily SMS usage - 2026-11-28", **kwargs):
    return deliver(
        artifact,
        _dest(),
        connections,
        subject=subject,
        body="Report attached.",
        sleep=lambda s: None,
        **kwargs,
    )


def _attachment(message):
    parts = [p for p in message.iter_attachments()]
    assert len(parts) == 1
    return parts[0]


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_mail_arrives_with_attachment_headers_and_bcc_only_in_envelope(smtp_factory, smtp_env, make_artifact, security):
    server = smtp_factory(security=security, users={"reports": SMTP_PASSWORD})
    artifact = make_artifact("sms_2026-11-28.csv", data=b"Timestamp,Status\r\n2026,ok\r\n" * 50)

    receipt = _send(artifact, _connections(server))

    [mail] = server.received
    message = mail.message
    assert message["From"] == "reports@acme.example"
    assert message["To"] == ", ".join(TO)
    assert message["Cc"] == "cc@example.com"
    assert message["Bcc"] is None
    assert b"audit@example.com" not in mail.data
    assert message["Subject"] == "Daily SMS usage - 2026-11-28"
    assert sorted(mail.rcpt_tos) == sorted(TO + CC + BCC)
    assert mail.mail_from == "reports@acme.example"
    part = _attachment(message)
    assert part.get_filename() == "sms_2026-11-28.csv"
    assert part.get_content_type() == "text/csv"
    assert part.get_payload(decode=True) == artifact.path.read_bytes()
    assert receipt.location == message["Message-ID"]
    assert receipt.destination == "email"
    assert receipt.sha256 == artifact.sha256
    assert receipt.extra["zipped"] is False


def test_plain_smtp_without_auth(smtp_factory, make_artifact):
    server = smtp_factory(security="none")
    artifact = make_artifact()
    _send(artifact, _connections(server))
    [mail] = server.received
    assert _attachment(mail.message).get_payload(decode=True) == artifact.path.read_bytes()


def test_wrong_password_is_permanent_and_sends_nothing(smtp_factory, make_artifact, monkeypatch):
    server = smtp_factory(security="starttls", users={"reports": SMTP_PASSWORD})
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong-password-xyz")
    sleeps: list[float] = []
    with pytest.raises(PermanentDeliveryError) as info:
        deliver(make_artifact(), _dest(), _connections(server), subject="s", sleep=sleeps.append)
    assert "rejected the login" in str(info.value)
    assert "wrong-password-xyz" not in str(info.value)
    assert sleeps == []
    assert server.received == []


def test_missing_password_variable_names_it(smtp_factory, make_artifact, monkeypatch):
    server = smtp_factory(security="starttls", users={"reports": SMTP_PASSWORD})
    monkeypatch.delenv("TEST_SMTP_PASSWORD", raising=False)
    with pytest.raises(PermanentDeliveryError, match="TEST_SMTP_PASSWORD.*not set"):
        _send(make_artifact(), _connections(server))
    assert server.received == []


@pytest.mark.parametrize("reply", ["421 4.3.2 Service shutting down", "451 4.3.0 Try again later"])
def test_temporary_refusal_is_retried_and_delivered_once(smtp_factory, smtp_env, make_artifact, reply):
    server = smtp_factory(security="starttls", users={"reports": SMTP_PASSWORD})
    server.fail_next(reply)
    sleeps: list[float] = []
    receipt = deliver(make_artifact(), _dest(), _connections(server), subject="s", sleep=sleeps.append)
    assert len(server.received) == 1
    assert server.data_attempts == 2
    assert len(sleeps) == 1
    assert receipt.extra["attempts"] == 2


def test_550_is_permanent_after_one_attempt(smtp_factory, smtp_env, make_artifact):
    server = smtp_factory(security="starttls", users={"reports": SMTP_PASSWORD})
    server.fail_next("550 5.7.1 Message rejected by policy")
    sleeps: list[float] = []
    with pytest.raises(PermanentDeliveryError, match="550"):
        deliver(make_artifact(), _dest(), _connections(server), subject="s", sleep=sleeps.append)
    assert server.data_attempts == 1
    assert sleeps == []
    assert server.received == []


def test_temporary_refusals_exhaust_attempts(smtp_factory, smtp_env, make_artifact):
    server = smtp_factory(security="starttls", users={"reports": SMTP_PASSWORD})
    server.fail_next(*["451 4.3.0 later"] * 5)
    with pytest.raises(TransientDeliveryError):
        deliver(
            make_artifact(),
            _dest(),
            _connections(server),
            subject="s",
            sleep=lambda s: None,
            attempts=3,
        )
    assert server.data_attempts == 3


@pytest.mark.parametrize(
    "subject",
    [
        "x\r\nBcc: evil@example.net",
        "x\nBcc: evil@example.net",
        "=?UTF-8?Q?=0A?=Bcc: evil@example.net",
        "=?UTF-8?Q?x=0D=0ABcc:_evil@example.net?=",
        "report\u2028Bcc: evil@example.net",
        "report\x85Bcc: evil@example.net\n",
    ],
)
def test_header_injection_in_subject_adds_no_header_or_recipient(smtp_factory, smtp_env, make_artifact, subject):
    server = smtp_factory(security="starttls", users={"reports": SMTP_PASSWORD})
    _send(make_artifact(), _connections(server), subject=subject)
    [mail] = server.received
    assert "evil@example.net" not in mail.rcpt_tos
    assert mail.message["Bcc"] is None
    header_names = [name.lower() for name in mail.message]
    assert header_names.count("bcc") == 0
    assert header_names.count("subject") == 1
    assert "\n" not in mail.message["Subject"] and "\r" not in mail.message["Subject"]
    head = mail.data.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc:") for line in head.split(b"\r\n"))


def test_address_with_line_break_is_refused_before_sending(smtp_factory, make_artifact):
    server = smtp_factory(security="none")
    hostile = "ops@example.com\r\nBcc: evil@example.net"
    # The destination is refused as a saved report's would be; the sender refuses it too.
    with pytest.raises(ConfigurationError, match="to: .*invalid e-mail address"):
        deliver(make_artifact(), {"type": "email", "to": [hostile]}, _connections(server), subject="s")
    with pytest.raises(ConfigurationError, match="not a single e-mail address"):
        email_delivery.send(
            make_artifact(),
            connection_name="default",
            connection=_connections(server).get_smtp("default"),
            to=[hostile],
            subject="s",
        )
    assert server.received == []


def test_oversize_attachment_is_zipped(smtp_factory, make_artifact):
    server = smtp_factory(security="none")
    csv = b"Timestamp,From,To\r\n" + b"2026-11-28T00:00:00-05:00,+15551234567,+15557654321\r\n" * 4000
    artifact = make_artifact("voice.csv", data=csv)
    limit = 50_000
    assert email_delivery.encoded_size(artifact.size) > limit

    receipt = _send(artifact, _connections(server, max_attachment_bytes=limit))

    [mail] = server.received
    part = _attachment(mail.message)
    assert part.get_filename() == "voice.csv.zip"
    assert part.get_content_type() == "application/zip"
    with zipfile.ZipFile(BytesIO(part.get_payload(decode=True))) as zf:
        assert zf.namelist() == ["voice.csv"]
        assert zf.read("voice.csv") == csv
    assert receipt.extra["zipped"] is True
    assert receipt.extra["attachment_bytes"] <= limit


def test_attachment_too_large_even_zipped_fails_and_sends_nothing(smtp_factory, make_artifact):
    server = smtp_factory(security="none")
    artifact = make_artifact("noise.csv", size=100_000)
    with pytest.raises(PermanentDeliveryError) as info:
        _send(artifact, _connections(server, max_attachment_bytes=60_000))
    message = str(info.value)
    assert "60000" in message and str(email_delivery.encoded_size(100_000)) in message
    assert "nothing was sent" in message
    assert server.received == []
    assert server.data_attempts == 0


def test_encoded_size_matches_what_the_email_package_produces(make_artifact):
    for size in (0, 1, 2, 3, 56, 57, 58, 1000, 12345):
        artifact = make_artifact(f"f{size}.bin", size=size)
        msg = email_delivery.build_message(
            from_address="a@example.com",
            to=["b@example.com"],
            cc=[],
            subject="s",
            body="",
            attachment=artifact.path,
            attachment_name=artifact.filename,
            content_type="application/octet-stream",
            message_id="<x@example.com>",
        )
        part = next(iter(msg.iter_attachments()))
        payload = part.get_payload().replace("\n", "\r\n").encode()
        assert email_delivery.encoded_size(size) == len(payload), size


def test_second_delivery_with_ledger_does_not_send_again(smtp_factory, make_artifact, tmp_path):
    server = smtp_factory(security="none")
    artifact = make_artifact()
    ledger = DeliveryLedger.open(f"sqlite:///{tmp_path / 'registry.db'}")
    first = _send(artifact, _connections(server), ledger=ledger)
    second = _send(artifact, _connections(server), ledger=ledger)
    assert len(server.received) == 1
    assert second.location == first.location
    assert second.extra["reused"] is True
