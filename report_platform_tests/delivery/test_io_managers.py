from __future__ import annotations

import dagster as dg
import pytest
import yaml
from dagster._serdes import serialize_value

from report_platform.delivery import Artifact, DeliveryRequest
from report_platform.delivery.io_managers import (
    DeliveryIOManager,
    EmailDeliveryIOManager,
    S3DeliveryIOManager,
    SftpDeliveryIOManager,
)
from report_platform_devservers.standins import MotoStandin, SshdStandin
from report_platform_devservers.standins.s3 import STANDIN_ACCESS_KEY

SMTP_SECRET = "smtp-Secret-4f9c1e"
S3_SECRET = "s3-Secret-a8d27b"


@pytest.fixture
def servers(home, smtp_factory, sshd_shared: SshdStandin, moto_server: MotoStandin, s3_bucket, monkeypatch):
    smtp = smtp_factory(security="starttls", users={"reports": SMTP_SECRET})
    sftp_dir = sshd_shared.root_dir / "io-manager"
    connections = {
        "smtp": {
            "default": {
                "host": smtp.host,
                "port": smtp.port,
                "security": "starttls",
                "username": "reports",
                "password_env": "IOM_SMTP_PASSWORD",
                "from_address": "reports@acme.example",
                "ca_file": str(smtp.cert_file),
                "organizations": ["*"],
            }
        },
        "sftp": {
            "partner-sftp": {
                "host": sshd_shared.host,
                "port": sshd_shared.port,
                "username": sshd_shared.username,
                "private_key_env": "IOM_SFTP_KEY",
                "host_key": sshd_shared.host_key,
                "organizations": ["acme"],
            }
        },
        "s3": {
            "reports-aws": {
                "region": "us-east-1",
                "endpoint_url": moto_server.endpoint_url,
                "access_key_id_env": "IOM_AWS_KEY_ID",
                "secret_access_key_env": "IOM_AWS_SECRET",
                "organizations": ["acme"],
            }
        },
    }
    home.connections.write_text(yaml.safe_dump(connections))
    monkeypatch.setenv("IOM_SMTP_PASSWORD", SMTP_SECRET)
    monkeypatch.setenv("IOM_SFTP_KEY", sshd_shared.client_key_text)
    monkeypatch.setenv("IOM_AWS_KEY_ID", STANDIN_ACCESS_KEY)
    monkeypatch.setenv("IOM_AWS_SECRET", S3_SECRET)
    return {"smtp": smtp, "sftp_dir": sftp_dir, "bucket": s3_bucket, "moto": moto_server}


def _artifact(home, name: str) -> Artifact:
    path = home.archive / name
    path.write_bytes(b"Timestamp,From,To\r\n2026-11-28T06:00:00-05:00,+15551234567,+15557654321\r\n")
    return Artifact.from_path(path)


def _materialize(request: DeliveryRequest, io_manager: dg.ConfigurableIOManager):
    @dg.asset(io_manager_key="delivery")
    def report_export() -> DeliveryRequest:
        return request

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([report_export], resources={"delivery": io_manager}, instance=instance)
    assert result.success
    [mat] = result.asset_materializations_for_node("report_export")
    events = instance.all_logs(result.run_id)
    return {k: v.value for k, v in mat.metadata.items()}, events


def _assert_no_secrets(events, expected: str, *secrets: str) -> None:
    """Search the run's whole event log, serialised as Dagster stores it, for any secret."""
    text = "\n".join(serialize_value(e) + repr(e) for e in events)
    assert expected in text  # the search covers the delivery's own events
    for secret in secrets:
        assert secret not in text


def _secrets(sshd: SshdStandin) -> list[str]:
    key_lines = [line for line in sshd.client_key_text.splitlines() if "-----" not in line]
    return [SMTP_SECRET, S3_SECRET, *key_lines]


@pytest.mark.parametrize("manager", [EmailDeliveryIOManager, DeliveryIOManager])
def test_email_io_manager_delivers_and_records_metadata(servers, home, sshd_shared, manager):
    artifact = _artifact(home, "voice.csv")
    request = DeliveryRequest(
        organization="acme",
        artifact=artifact,
        destination={"type": "email", "to": ["ops@example.com"], "bcc": ["audit@example.com"]},
        report_id="r-1",
        subject="Voice usage - 2026-11-28",
        body="Attached.",
    )
    metadata, events = _materialize(request, manager())
    [mail] = servers["smtp"].received
    part = next(iter(mail.message.iter_attachments()))
    assert part.get_payload(decode=True) == artifact.path.read_bytes()
    assert metadata["destination"] == "email"
    assert metadata["location"] == mail.message["Message-ID"]
    assert metadata["bytes"] == artifact.size
    assert metadata["sha256"] == artifact.sha256
    assert metadata["report_id"] == "r-1"
    assert "delivered_at" in metadata
    _assert_no_secrets(events, metadata["location"], *_secrets(sshd_shared))


@pytest.mark.parametrize("manager", [SftpDeliveryIOManager, DeliveryIOManager])
def test_sftp_io_manager_delivers_and_records_metadata(servers, home, sshd_shared, manager):
    artifact = _artifact(home, f"sms-{manager.__name__}.csv")
    request = DeliveryRequest(
        organization="acme",
        artifact=artifact,
        destination={
            "type": "sftp",
            "connection": "partner-sftp",
            "remote_dir": str(servers["sftp_dir"]),
            "create_dirs": True,
        },
        report_id="r-2",
    )
    metadata, events = _materialize(request, manager())
    landed = servers["sftp_dir"] / artifact.filename
    assert landed.read_bytes() == artifact.path.read_bytes()
    assert metadata["location"] == str(landed)
    assert metadata["target"] == f"sftp://partner-sftp{landed}"
    assert metadata["bytes"] == artifact.size
    _assert_no_secrets(events, metadata["target"], *_secrets(sshd_shared))


@pytest.mark.parametrize("manager", [S3DeliveryIOManager, DeliveryIOManager])
def test_s3_io_manager_delivers_and_records_metadata(servers, home, sshd_shared, manager):
    artifact = _artifact(home, f"aegis-{manager.__name__}.csv")
    bucket = servers["bucket"]
    request = DeliveryRequest(
        organization="acme",
        artifact=artifact,
        destination={"type": "s3", "connection": "reports-aws", "bucket": bucket, "prefix": "x/"},
        report_id="r-3",
    )
    metadata, events = _materialize(request, manager())
    body = servers["moto"].client().get_object(Bucket=bucket, Key=f"x/{artifact.filename}")["Body"]
    assert body.read() == artifact.path.read_bytes()
    assert metadata["target"] == f"s3://{bucket}/x/{artifact.filename}"
    assert metadata["checksum_sha256"]
    _assert_no_secrets(events, metadata["target"], *_secrets(sshd_shared))


def test_skipped_request_sends_nothing_and_says_why(servers, home):
    artifact = _artifact(home, "empty.csv")
    request = DeliveryRequest(
        organization="acme",
        artifact=artifact,
        destination={"type": "email", "to": ["ops@example.com"]},
        report_id="r-4",
        skip=True,
    )
    metadata, _ = _materialize(request, DeliveryIOManager())
    assert metadata["skipped"] == "skipped: no rows"
    assert servers["smtp"].received == []


def test_rerun_reuses_the_confirmed_delivery(servers, home):
    artifact = _artifact(home, "again.csv")
    request = DeliveryRequest(
        organization="acme", artifact=artifact, destination={"type": "email", "to": ["ops@example.com"]}, report_id="r5"
    )
    _materialize(request, DeliveryIOManager())
    metadata, _ = _materialize(request, DeliveryIOManager())
    assert len(servers["smtp"].received) == 1
    assert metadata["reused_earlier_delivery"] is True


def test_wrong_io_manager_for_destination_fails_the_run(servers, home):
    request = DeliveryRequest(
        organization="acme",
        artifact=_artifact(home, "w.csv"),
        destination={"type": "email", "to": ["ops@example.com"]},
        report_id="r6",
    )

    @dg.asset(io_manager_key="delivery")
    def report_export() -> DeliveryRequest:
        return request

    result = dg.materialize([report_export], resources={"delivery": S3DeliveryIOManager()}, raise_on_error=False)
    assert not result.success
    assert servers["smtp"].received == []


def test_load_input_is_not_supported():
    with pytest.raises(NotImplementedError, match="only send files out"):
        DeliveryIOManager().load_input(dg.build_input_context())


def test_delivery_refuses_a_connection_the_reports_organization_may_no_longer_use(servers, home, sshd_shared):
    # Saved while partner-sftp was open to globex; connections.yaml has since been narrowed to acme.
    request = DeliveryRequest(
        organization="globex",
        artifact=_artifact(home, "tenant.csv"),
        destination={"type": "sftp", "connection": "partner-sftp", "remote_dir": str(sshd_shared.root_dir)},
        report_id="r7",
    )

    @dg.asset(io_manager_key="delivery")
    def report_export() -> DeliveryRequest:
        return request

    result = dg.materialize(
        [report_export],
        resources={"delivery": DeliveryIOManager()},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "connection 'partner-sftp' is not available to organization 'globex'" in failure.cause.message
    assert not (sshd_shared.root_dir / "tenant.csv").exists()
