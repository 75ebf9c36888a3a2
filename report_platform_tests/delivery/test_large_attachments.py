"""Attachments over the limit: zipped; still too large, a download link from `large_files`; else FAILED."""

from __future__ import annotations

import hashlib
import io
import re
import urllib.request
import zipfile
from pathlib import Path

import pytest

from report_platform.delivery import (
    Connections,
    DeliveryLedger,
    PermanentDeliveryError,
    SmtpConnection,
    deliver,
)
from report_platform.delivery import email as email_delivery
from report_platform_devservers.standins import SmtpStandin
from report_platform_tests.delivery.conftest import standin_s3

LIMIT = 20_000


def _connections(smtp: SmtpStandin, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Connections:
    return Connections(
        smtp={
            "default": SmtpConnection(
                host=smtp.host,
                port=smtp.port,
                security="none",
                from_address="reports@acme.example",
                max_attachment_bytes=LIMIT,
                timeout=10,
                organizations=("*",),
            )
        },
        s3={"big-files": standin_s3(s3_endpoint, monkeypatch)},
    )


def _email(**extra: object) -> dict[str, object]:
    return {"type": "email", "to": ["ops@example.com"]} | extra


def test_a_compressible_file_over_the_limit_is_zipped_under_it(smtp_factory, moto_server, monkeypatch, make_artifact):
    smtp = smtp_factory(security="none")
    artifact = make_artifact("usage.csv", data=b"2026-11-28,+15551234567,Delivered\n" * 3000)  # ~100 kB

    receipt = deliver(artifact, _email(), _connections(smtp, moto_server.endpoint_url, monkeypatch), subject="Usage")

    [mail] = smtp.received
    [part] = list(mail.message.iter_attachments())
    assert part.get_filename() == "usage.csv.zip"
    with zipfile.ZipFile(io.BytesIO(part.get_content())) as zf:
        assert zf.read("usage.csv") == artifact.path.read_bytes()
    assert receipt.extra["zipped"] is True and receipt.extra["attachment_bytes"] <= LIMIT


def test_with_large_files_a_zip_that_fits_is_attached_and_made_only_once(
    smtp_factory, moto_server, s3_bucket, make_artifact, monkeypatch: pytest.MonkeyPatch
):
    """Sizing the zip to choose between attaching and linking makes it; the mail attaches that one."""
    made: list[Path] = []
    real_zip_into = email_delivery.zip_into

    def counting_zip_into(artifact, archive):  # noqa: ANN001, ANN202
        made.append(archive)
        return real_zip_into(artifact, archive)

    monkeypatch.setattr(email_delivery, "zip_into", counting_zip_into)
    smtp = smtp_factory(security="none")
    artifact = make_artifact("usage.csv", data=b"2026-11-28,+15551234567,Delivered\n" * 3000)  # ~100 kB
    dest = _email(large_files={"connection": "big-files", "bucket": s3_bucket, "prefix": "mail/"})

    receipt = deliver(artifact, dest, _connections(smtp, moto_server.endpoint_url, monkeypatch), subject="Usage")

    [mail] = smtp.received
    [part] = list(mail.message.iter_attachments())
    kept = made[0].with_name(made[0].name.removesuffix(".part"))  # written, then renamed into place
    assert part.get_filename() == "usage.csv.zip" and part.get_content() == kept.read_bytes()
    assert len(made) == 1 and receipt.extra["zipped"] is True and "large_file" not in receipt.extra
    assert "Contents" not in moto_server.client().list_objects_v2(Bucket=s3_bucket)  # nothing uploaded


def test_too_large_even_zipped_with_large_files_mails_a_link_that_downloads_the_file(
    smtp_factory, moto_server, s3_bucket, monkeypatch, make_artifact, tmp_path: Path
):
    smtp = smtp_factory(security="none")
    artifact = make_artifact("usage.csv", size=200_000)  # random bytes: zipping does not help
    dest = _email(large_files={"connection": "big-files", "bucket": s3_bucket, "prefix": "mail/", "expires": "2d"})
    conns = _connections(smtp, moto_server.endpoint_url, monkeypatch)
    ledger = DeliveryLedger.open(f"sqlite:///{tmp_path / 'registry.db'}")

    receipt = deliver(
        artifact, dest, conns, subject="Usage", body="Your report.", ledger=ledger, scope="r/1", organization="acme"
    )

    [mail] = smtp.received
    message = mail.message
    assert list(message.iter_attachments()) == []
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith("Your report.\n\nThe file usage.csv.zip (")
    assert "too large to attach (the limit is 20,000 bytes)" in text
    expires = receipt.extra["large_file"]["expires_at"][:16].replace("T", " ")
    assert f"until {expires} UTC, when the link expires" in text
    url = re.search(r"^(http://\S+)$", text, re.MULTILINE).group(1)
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - moto on loopback
        downloaded = answer.read()
    with zipfile.ZipFile(io.BytesIO(downloaded)) as zf:
        assert zf.read("usage.csv") == artifact.path.read_bytes()
    assert receipt.extra["large_file"]["sha256"] == hashlib.sha256(downloaded).hexdigest()
    assert "X-Amz-Expires=172800" in url
    assert url not in str(receipt.to_dict())  # the link is a credential: not in the audit log

    # A run retry neither mails nor uploads again.
    again = deliver(artifact, dest, conns, subject="Usage", ledger=ledger, scope="r/1", organization="acme")
    assert again.extra["reused"] is True and len(smtp.received) == 1
    objects = moto_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert [o["Key"].rsplit("/", 1)[-1] for o in objects] == ["usage.csv.zip"]


def test_too_large_without_large_files_fails_naming_both_sizes_and_the_limit(
    smtp_factory, moto_server, monkeypatch, make_artifact
):
    smtp = smtp_factory(security="none")
    artifact = make_artifact("usage.csv", size=200_000)
    with pytest.raises(PermanentDeliveryError) as caught:
        deliver(artifact, _email(), _connections(smtp, moto_server.endpoint_url, monkeypatch), subject="Usage")
    message = str(caught.value)
    assert re.search(r"is 273686 bytes after MIME encoding and 27\d{4} bytes even zipped", message)
    assert "over the limit of 20000 bytes (max_attachment_bytes)" in message
    assert "Set large_files on the destination" in message
    assert smtp.received == []
