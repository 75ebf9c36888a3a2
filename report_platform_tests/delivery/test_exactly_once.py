"""A file is delivered once: faults at real servers never cause a second copy or a lost recipient."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from report_platform.database import make_engine
from report_platform.delivery import Connections, DeliveryError, DeliveryLedger, SmtpConnection, deliver
from report_platform_devservers.standins import SmtpStandin
from report_platform_tests.servers.disks import fill, small_tmpfs
from report_platform_tests.servers.postgres import postgres_server  # noqa: F401

TO = ["ops@example.com", "second@example.com"]


def _connections(*servers: SmtpStandin) -> Connections:
    smtp = {}
    for index, server in enumerate(servers):
        smtp["default" if index == 0 else f"relay-{index}"] = SmtpConnection(
            host=server.host,
            port=server.port,
            security="none",
            from_address="reports@acme.example",
            timeout=10,
            organizations=["*"],
        )
    return Connections(smtp=smtp)


def _ledger(artifact, tmp_path: Path, **kwargs):
    return DeliveryLedger.open(f"sqlite:///{tmp_path / 'registry.db'}", **kwargs)


def _deliver(artifact, connections, ledger, **dest):
    destination = {"type": "email", "to": TO} | dest
    return deliver(
        artifact, destination, connections, subject="Daily", ledger=ledger, scope="rpt_1/run", sleep=lambda s: None
    )


@pytest.mark.parametrize("quit_fault", ["421 4.3.2 shutting down", "drop"])
def test_mail_accepted_with_250_is_not_resent_when_quit_fails(smtp_factory, make_artifact, tmp_path, quit_fault):
    server = smtp_factory(security="none")
    server.fail_quit(quit_fault)
    artifact = make_artifact()
    receipt = _deliver(artifact, _connections(server), _ledger(artifact, tmp_path))
    assert len(server.received) == 1
    assert receipt.location == server.received[0].message["Message-ID"]


def test_recipient_refused_with_4xx_is_retried_alone_with_the_same_message_id(smtp_factory, make_artifact, tmp_path):
    server = smtp_factory(security="none")
    server.refuse_recipient("second@example.com", "450 4.2.1 mailbox busy")
    artifact = make_artifact()
    _deliver(artifact, _connections(server), _ledger(artifact, tmp_path))
    received = server.received
    assert [m.rcpt_tos for m in received] == [["ops@example.com"], ["second@example.com"]]
    assert received[0].message["Message-ID"] == received[1].message["Message-ID"]


def test_recipient_refused_with_5xx_fails_the_delivery_naming_it_and_a_retry_sends_only_to_it(
    smtp_factory, make_artifact, tmp_path
):
    server = smtp_factory(security="none")
    server.refuse_recipient("second@example.com", "550 5.1.1 no such user")
    artifact = make_artifact()
    ledger = _ledger(artifact, tmp_path)
    with pytest.raises(DeliveryError, match=r"second@example\.com.*550"):
        _deliver(artifact, _connections(server), ledger)
    assert [m.rcpt_tos for m in server.received] == [["ops@example.com"]]
    # The mailbox is fixed; the run's retry delivers to that recipient only.
    _deliver(artifact, _connections(server), ledger)
    assert [m.rcpt_tos for m in server.received] == [["ops@example.com"], ["second@example.com"]]


def test_same_recipients_through_another_connection_are_a_separate_delivery(smtp_factory, make_artifact, tmp_path):
    first, second = smtp_factory(security="none"), smtp_factory(security="none")
    connections = _connections(first, second)
    artifact = make_artifact()
    ledger = _ledger(artifact, tmp_path)
    _deliver(artifact, connections, ledger)
    _deliver(artifact, connections, ledger, connection="relay-1")
    assert (len(first.received), len(second.received)) == (1, 1)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MiB tmpfs: a real file system that fills up."""
    with small_tmpfs(tmp_path / "small-disk") as mount:
        yield mount


def test_a_confirmation_that_cannot_be_written_never_causes_a_resend(smtp_factory, make_artifact, small_disk, tmp_path):
    server = smtp_factory(security="none")
    artifact = make_artifact()
    ledger_home = small_disk / "ledger"
    ledger_home.mkdir()
    ledger = _ledger_on(ledger_home, artifact)
    # The data folder fills up while the relay is accepting the message.
    server.before_accepting(lambda: fill(small_disk))
    with pytest.raises(DeliveryError, match="was delivered .* could not record it .* not be sent again"):
        _deliver(artifact, _connections(server), ledger)
    server.before_accepting(None)
    # Dagster's run retries call deliver() again, twice, with the disk still full and then freed.
    for free in (False, True):
        if free:
            (small_disk / "filler").unlink()
        with pytest.raises(DeliveryError, match="outcome .* is unknown|nothing was sent"):
            _deliver(artifact, _connections(server), _ledger_on(ledger_home, artifact))
    assert len(server.received) == 1


def _ledger_on(folder: Path, artifact):
    # A short lease: the retry must find the first worker's claim expired, as it would be once
    # that worker has stopped renewing it.
    return DeliveryLedger(make_engine(f"sqlite:///{folder / 'registry.db'}"), lease_seconds=0.5)


_RACER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from report_platform.delivery import Artifact, Connections, SmtpConnection, deliver
    from report_platform.delivery import DeliveryLedger

    host, port, path, ledger_url = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    conn = Connections(smtp={"default": SmtpConnection(host=host, port=port, security="none",
                                                       from_address="reports@acme.example", timeout=20,
                                                       organizations=["*"])})
    artifact = Artifact.from_path(path)
    ledger = DeliveryLedger.open(ledger_url)
    receipt = deliver(artifact, {"type": "email", "to": ["ops@example.com"]}, conn, subject="Daily", ledger=ledger,
                      scope="rpt_1/run")
    print("reused" if receipt.extra.get("reused") else "sent")
    """
)


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The registry database on each backend the product supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("postgres_server").create_database()


def test_two_processes_delivering_the_same_file_at_once_send_it_once(smtp_factory, make_artifact, ledger_url):
    server = smtp_factory(security="none")
    server.slow_data(1.5)
    artifact = make_artifact()
    ledger_path = ledger_url
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, server.host, str(server.port), str(artifact.path), ledger_path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outcomes = [r.communicate(timeout=120) for r in racers]
    assert len(server.received) == 1, outcomes
    assert sorted(out.strip() for out, _err in outcomes) == ["reused", "sent"], outcomes
