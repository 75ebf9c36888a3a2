"""A report with three destinations (e-mail, SFTP, S3) run end to end through Dagster, one of them
down at its server: the run fails naming it, the others get exactly one copy, and the retry
sends only what is missing. Copies are counted at the servers."""

from __future__ import annotations

import functools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import yaml

from report_platform import launch, resources
from report_platform.app import registry_service
from report_platform.launch import launch_report_run
from report_platform.scheduling.report_io_manager import ReportDeliveryIOManager
from report_platform.settings import Home
from report_platform_devservers.standins.s3 import STANDIN_ACCESS_KEY
from report_platform_tests.scheduling.conftest import OWNER, USER, sms_definition
from report_platform_tests.servers.fixtures import moto_server, s3_bucket, s3_fault_proxy, sshd_factory  # noqa: F401

SCHEDULED = datetime(2026, 3, 9, 6, 0, tzinfo=ZoneInfo("America/New_York"))
SFTP_LABEL = "sftp partner-sftp:"


@pytest.fixture
def three_servers(platform, smtp, sshd_factory, s3_bucket, s3_fault_proxy, monkeypatch):  # noqa: F811
    sshd = sshd_factory()
    inbound = sshd.root_dir / "inbound"
    inbound.mkdir()
    connections = yaml.safe_load(platform.connections.read_text())
    connections["sftp"] = {
        "partner-sftp": {
            "host": sshd.host,
            "port": sshd.port,
            "username": sshd.username,
            "private_key_env": "MD_SFTP_KEY",
            "host_key": sshd.host_key,
            "organizations": ["acme"],
        }
    }
    connections["s3"] = {
        "reports-aws": {
            "region": "us-east-1",
            "endpoint_url": s3_fault_proxy.url,
            "access_key_id_env": "MD_AWS_KEY_ID",
            "secret_access_key_env": "MD_AWS_SECRET",
            "sdk_max_attempts": 1,
            "organizations": ["acme"],
        }
    }
    platform.connections.write_text(yaml.safe_dump(connections))
    monkeypatch.setenv("MD_SFTP_KEY", sshd.client_key_text)
    monkeypatch.setenv("MD_AWS_KEY_ID", STANDIN_ACCESS_KEY)
    monkeypatch.setenv("MD_AWS_SECRET", "md-secret")
    # Each destination still gets its four attempts, without the production backoff's seconds.
    monkeypatch.setattr(
        resources,
        "ReportDeliveryIOManager",
        functools.partial(ReportDeliveryIOManager, base_delay_seconds=0.01, max_delay_seconds=0.02),
    )
    email = sms_definition()["destination"]
    sftp = {"type": "sftp", "connection": "partner-sftp", "remote_dir": str(inbound)}
    s3 = {"type": "s3", "connection": "reports-aws", "bucket": s3_bucket, "prefix": "sms/"}
    definition = sms_definition(destinations=[email, sftp, s3])
    del definition["destination"]
    report_id = registry_service(Home.from_env()).create_report(OWNER, definition)
    return {"report_id": report_id, "smtp": smtp, "sshd": sshd, "inbound": inbound, "s3": s3_fault_proxy}


def _sftp_logins(sshd) -> int:
    return sshd.log_text().count("Accepted publickey")


def _run(report_id: str, monkeypatch, retry: int = 0):
    if retry:
        # As Dagster's run retry launches it: the failed run's tags plus its retry number.
        original = launch._tags
        monkeypatch.setattr(launch, "_tags", lambda *a, **k: {**original(*a, **k), "dagster/retry_number": str(retry)})
    return launch_report_run(report_id, "sms_usage", SCHEDULED, trigger="schedule")


@pytest.mark.parametrize("down", ["email", "sftp", "s3"])
def test_one_destination_down_fails_the_run_naming_it_and_the_retry_sends_only_that_one(
    three_servers, monkeypatch, down
):
    servers = three_servers
    smtp, sshd, inbound, s3 = servers["smtp"], servers["sshd"], servers["inbound"], servers["s3"]
    if down == "email":
        smtp.fail_next(*["451 4.3.0 mail system unavailable, try later"] * 4)
    elif down == "sftp":
        sshd.stop(cleanup=False)
    else:
        s3.fail_next(50)

    failed = _run(servers["report_id"], monkeypatch)

    assert failed.success is False
    service = registry_service(Home.from_env())
    (run,) = service.audit_log(USER, servers["report_id"]).runs
    assert run.status == "FAILED"
    statuses = {entry["type"]: entry["status"] for entry in run.destinations}
    assert statuses == {t: ("failed" if t == down else "delivered") for t in ("email", "sftp", "s3")}
    (failed_entry,) = [e for e in run.destinations if e["status"] == "failed"]
    assert run.error.startswith(failed_entry["destination"] + ": ")
    assert [e["destination"] for e in run.destinations][1] == f"{SFTP_LABEL}{inbound}"
    # The other two have exactly one copy each.
    assert len(smtp.received) == (0 if down == "email" else 1)
    assert len(s3.puts()) == (0 if down == "s3" else 1)
    files = sorted(p.name for p in inbound.iterdir())
    assert len(files) == (0 if down == "sftp" else 1)
    if down == "sftp":
        sshd.start()  # the same port and host key: the server is back
    logins = _sftp_logins(sshd)
    smtp_before, puts_before = len(smtp.received), len(s3.puts())
    s3.clear_faults()

    retried = _run(servers["report_id"], monkeypatch, retry=1)

    assert retried.success is True
    latest, first = service.audit_log(USER, servers["report_id"]).runs
    assert (latest.status, latest.trigger, latest.attempt) == ("SUCCESS", "retry", 2)
    assert {e["type"]: e["status"] for e in latest.destinations} == {
        t: ("delivered" if t == down else "already delivered") for t in ("email", "sftp", "s3")
    }
    # Only the missing destination was sent to; each server holds exactly one copy.
    assert len(smtp.received) == 1 and len(smtp.received) - smtp_before == (1 if down == "email" else 0)
    assert len(s3.puts()) == 1 and len(s3.puts()) - puts_before == (1 if down == "s3" else 0)
    assert len([p for p in inbound.iterdir()]) == 1
    assert _sftp_logins(sshd) - logins == (1 if down == "sftp" else 0)
    assert smtp.received[0].rcpt_tos == ["ops@example.com", "audit@example.com"]
