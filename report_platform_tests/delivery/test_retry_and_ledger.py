from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from report_platform.database import make_engine
from report_platform.delivery import (
    Artifact,
    DeliveryIdentity,
    DeliveryLedger,
    PermanentDeliveryError,
    Receipt,
    TransientDeliveryError,
    deliver_with_retries,
)
from report_platform.delivery.ledger import DeliveryInProgressError, OutcomeUnknownError
from report_platform.delivery.retry import backoff_delay


def test_transient_errors_are_retried_with_growing_delays():
    calls = []
    sleeps: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise TransientDeliveryError("try later")
        return "ok"

    result = deliver_with_retries(
        flaky, attempts=4, base_delay=1.0, max_delay=100.0, sleep=sleeps.append, rng=lambda: 1.0
    )
    assert result == "ok"
    assert sleeps == [1.0, 2.0, 4.0]


def test_delays_stay_within_half_to_full_step_and_the_cap():
    assert backoff_delay(1, 2.0, 60.0, rng=lambda: 0.0) == 1.0
    assert backoff_delay(10, 2.0, 60.0, rng=lambda: 1.0) == 60.0
    assert backoff_delay(10, 2.0, 60.0, rng=lambda: 0.0) == 30.0


def test_permanent_errors_are_not_retried():
    sleeps: list[float] = []

    def broken() -> None:
        raise PermanentDeliveryError("bad key")

    with pytest.raises(PermanentDeliveryError):
        deliver_with_retries(broken, sleep=sleeps.append)
    assert sleeps == []


def test_last_transient_error_propagates():
    calls = []

    def always() -> None:
        calls.append(1)
        raise TransientDeliveryError(f"attempt {len(calls)}")

    with pytest.raises(TransientDeliveryError, match="attempt 3"):
        deliver_with_retries(always, attempts=3, sleep=lambda s: None)


def _receipt(target: str = "s3://b/k") -> Receipt:
    return Receipt(
        destination="s3",
        target=target,
        location="k",
        size=3,
        sha256="ab" * 32,
        delivered_at=datetime(2026, 11, 29, 6, 0, tzinfo=UTC),
        extra={"etag": "x"},
    )


def test_receipt_and_artifact_round_trip_through_json(tmp_path):
    receipt = _receipt()
    assert Receipt.from_dict(json.loads(json.dumps(receipt.to_dict()))) == receipt
    path = tmp_path / "a.csv"
    path.write_bytes(b"abc")
    artifact = Artifact.from_path(path)
    assert artifact.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert Artifact.from_dict(json.loads(json.dumps(artifact.to_dict()))) == artifact


@pytest.mark.parametrize("name", ["../x.csv", "a/b.csv", "a\\b.csv", "x\r\n.csv", ".."])
def test_artifact_refuses_unsafe_file_names(tmp_path, name):
    path = tmp_path / "a.csv"
    path.write_bytes(b"abc")
    with pytest.raises(ValueError, match="single safe file name"):
        Artifact.from_path(path, filename=name)


def _identity(target: str = "s3://b/k", scope: str = "rpt_1/run") -> DeliveryIdentity:
    return DeliveryIdentity(
        scope=scope,
        destination="s3",
        connection="reports-aws",
        endpoint="http://127.0.0.1:9000",
        target=target,
        recipients=(),
        sha256="ab" * 32,
    )


def test_ledger_keeps_a_confirmed_receipt_in_the_registry_database_across_reopening(tmp_path):
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    ledger = DeliveryLedger.open(url)
    claim = ledger.claim(_identity())
    assert claim.reused is None
    ledger.confirm(claim, _receipt())
    again = DeliveryLedger(make_engine(url)).claim(_identity())
    assert again.reused == _receipt()
    assert DeliveryLedger(make_engine(url)).claim(_identity("s3://b/other")).reused is None
    assert [row.state for row in ledger.rows()] == ["confirmed", "claimed"]


def test_ledger_identity_changes_with_scope_connection_endpoint_recipients_and_bytes():
    base = _identity()
    variants = [
        dataclasses.replace(base, scope="rpt_1/other-run"),
        dataclasses.replace(base, connection="other"),
        dataclasses.replace(base, endpoint="https://s3.eu-west-1.amazonaws.com"),
        dataclasses.replace(base, recipients=("a@x.example",)),
        dataclasses.replace(base, sha256="cd" * 32),
    ]
    assert len({base.key, *(v.key for v in variants)}) == 6
    assert (
        dataclasses.replace(base, recipients=("b@x.example", "a@x.example")).key
        == dataclasses.replace(base, recipients=("a@x.example", "b@x.example", "a@x.example")).key
    )


def test_a_failed_delivery_is_taken_over_by_the_next_claim(tmp_path):
    ledger = DeliveryLedger.open(f"sqlite:///{tmp_path / 'registry.db'}")
    first = ledger.claim(_identity())
    ledger.fail(first, "S3 asked us to retry (SlowDown)")
    second = ledger.claim(_identity())
    assert (second.attempt, second.reused) == (2, None)
    assert ledger.rows()[0].state == "claimed"


def test_an_expired_email_claim_becomes_unknown_and_is_only_resent_after_release(tmp_path):
    ledger = DeliveryLedger.open(f"sqlite:///{tmp_path / 'registry.db'}", lease_seconds=0.2)
    mail = dataclasses.replace(_identity("mailto:a@x.example"), destination="email", recipients=("a@x.example",))
    ledger.claim(mail, worker="dead-worker")  # the worker dies without a heartbeat or a result
    with pytest.raises(OutcomeUnknownError, match="dead-worker .* deliveries release 1"):
        ledger.claim(mail)
    with pytest.raises(OutcomeUnknownError):
        ledger.claim(mail)
    ledger.release(1, note="checked with the recipient: not received")
    assert ledger.claim(mail).attempt == 2


def test_an_expired_file_claim_is_taken_over(tmp_path):
    ledger = DeliveryLedger.open(f"sqlite:///{tmp_path / 'registry.db'}", lease_seconds=0.2)
    ledger.claim(_identity(), worker="dead-worker")
    assert ledger.claim(_identity()).attempt == 2


def test_a_live_claim_makes_another_worker_wait_then_give_up_without_sending(tmp_path):
    ledger = DeliveryLedger.open(f"sqlite:///{tmp_path / 'registry.db'}", lease_seconds=30, wait_seconds=0.5)
    claim = ledger.claim(_identity(), worker="busy-worker")
    with ledger.heartbeat(claim), pytest.raises(DeliveryInProgressError, match="busy-worker"):
        ledger.claim(_identity())


def test_operator_lists_an_unknown_delivery_and_releases_it_from_the_cli(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import report_platform.cli.deliveries  # noqa: F401  (registers the group)
    from report_platform.cli.main import cli

    monkeypatch.setenv("REPORT_PLATFORM_HOME", str(tmp_path))
    monkeypatch.delenv("REPORT_PLATFORM_REGISTRY_URL", raising=False)
    ledger = DeliveryLedger.open(f"sqlite:///{tmp_path / 'registry.db'}", lease_seconds=0.1)
    mail = dataclasses.replace(_identity("mailto:a@x.example"), destination="email", recipients=("a@x.example",))
    ledger.claim(mail, worker="killed-worker")
    with pytest.raises(OutcomeUnknownError):
        ledger.claim(mail)
    runner = CliRunner()
    listed = runner.invoke(cli, ["deliveries", "list", "--state", "unknown", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [(row["id"], row["state"], row["target"]) for row in json.loads(listed.output)] == [
        (1, "unknown", "mailto:a@x.example")
    ]
    released = runner.invoke(cli, ["deliveries", "release", "1", "--note", "recipient never got it"])
    assert released.exit_code == 0, released.output
    assert ledger.rows()[0].state == "failed"
    again = runner.invoke(cli, ["deliveries", "release", "1", "--note", "twice"])
    assert again.exit_code != 0
    assert "only an unknown outcome can be released" in again.output
