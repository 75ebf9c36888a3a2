"""`benchmarks/process_faults.py` judges each repetition by what the servers, the ledger and the
audit log show, and flags every miss (the scenarios themselves run in report_platform_tests/faults)."""

from __future__ import annotations

from types import ModuleType

import pytest

from report_platform_tests.faults.harness import Outcome
from report_platform_tests.scale.benchmark_module import load_benchmark

KILLED = "Detected run worker status FAILED: 'run worker (pid 1) is no longer running'."


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("process_faults")


def _delivered_once(**changes: object) -> Outcome:
    outcome = Outcome(
        "killed mid SFTP upload",
        runs=["FAILURE", "SUCCESS"],
        copies={"sftp": 1, "sftp wrong bytes": 0},
        leftovers={".part- files": 0},
        ledger=["confirmed"],
        audit=[("FAILED", 1, KILLED), ("SUCCESS", 2, "")],
        evidence={"the kill landed mid-upload": True},
    )
    for name, value in changes.items():
        setattr(outcome, name, value)
    return outcome


def test_a_repetition_that_meets_its_target_passes_and_each_kind_of_miss_is_named(bench):
    (fault,) = [f for f in bench.FAULTS if f.key == "b"]
    assert bench.missed(fault, _delivered_once()) == []
    misses = {
        "two copies": (dict(copies={"sftp": 2, "sftp wrong bytes": 0}), "2 copies sftp"),
        "a leftover": (dict(leftovers={".part- files": 1}), "1 .part- files"),
        "wrong bytes": (dict(copies={"sftp": 0, "sftp wrong bytes": 1}), "1 sftp wrong bytes"),
        "the retry failed": (dict(runs=["FAILURE", "FAILURE"]), "runs FAILURE/FAILURE"),
        "ledger": (dict(ledger=["claimed"]), "ledger ['claimed']"),
        "silent audit": (dict(audit=[("FAILED", 1, "steps failed"), ("SUCCESS", 2, "")]), "audit log"),
        "not produced": (dict(evidence={"the kill landed mid-upload": False}), "fault not produced"),
    }
    for what, (changes, says) in misses.items():
        found = bench.missed(fault, _delivered_once(**changes))
        assert any(says in problem for problem in found), (what, found)


def test_the_table_says_violated_and_the_script_fails_on_any_miss(bench):
    (fault,) = [f for f in bench.FAULTS if f.key == "b"]
    good = bench.Row(fault, [_delivered_once(), _delivered_once()])
    bad = bench.Row(fault, [_delivered_once(), _delivered_once(copies={"sftp": 2, "sftp wrong bytes": 0})])
    assert good.violations() == [] and "VIOLATED" not in bench.render([good], repetitions=2)
    assert bad.violations() == [(2, "2 copies sftp, expected 1")]
    text = bench.render([bad], repetitions=2)
    assert "| b | " in text and "sftp: 1–2 (Σ 3)" in text and "VIOLATED (1)" in text
    crashed = bench.Row(fault, [_delivered_once()], errors=["repetition 2: TimeoutError: ..."])
    assert crashed.violations() and "| 2 |" in bench.render([crashed], repetitions=2)
