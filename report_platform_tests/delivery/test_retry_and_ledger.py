from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from report_platform.delivery import (
    Artifact,
    Ledger,
    PermanentDeliveryError,
    Receipt,
    TransientDeliveryError,
    deliver_with_retries,
    delivery_key,
)
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


def test_ledger_records_beside_the_archived_file_and_survives_reopening(tmp_path):
    archived = tmp_path / "report.csv"
    archived.write_bytes(b"abc")
    ledger = Ledger.beside(archived)
    key = delivery_key("s3", "s3://b/k", "ab" * 32)
    assert ledger.confirmed(key) is None
    ledger.record(key, _receipt())
    assert ledger.path == tmp_path / "report.csv.deliveries.json"
    assert Ledger.beside(archived).confirmed(key) == _receipt()
    assert Ledger.beside(archived).confirmed(delivery_key("s3", "s3://b/other", "ab" * 32)) is None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_ledger_keeps_every_destination(tmp_path):
    ledger = Ledger(tmp_path / "l.json")
    for i in range(5):
        ledger.record(f"k{i}", _receipt(f"s3://b/{i}"))
    assert sorted(ledger.receipts()) == [f"k{i}" for i in range(5)]
