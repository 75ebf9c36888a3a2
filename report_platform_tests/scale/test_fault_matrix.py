"""The delivery fault matrix at one repetition per fault: every fault meets its target at the real
servers, in the ledger and in what the caller sees (`benchmarks/fault_matrix.py`)."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest

from report_platform_tests.scale.benchmark_module import load_benchmark


@pytest.fixture(scope="module")
def matrix() -> ModuleType:
    return load_benchmark("fault_matrix")


@pytest.mark.skipif(not Path("/usr/sbin/sshd").exists(), reason="needs OpenSSH's sshd (openssh-server)")
def test_every_fault_meets_its_target_once(matrix: ModuleType, tmp_path: Path) -> None:
    rows = matrix.run_matrix(1, workdir=tmp_path)

    assert sorted(row.number for row in rows) == list(range(1, 16))
    # Only the full disk needs root (to mount a tmpfs); everything else runs everywhere.
    skipped = {row.number for row in rows if row.skipped}
    assert skipped == (set() if os.geteuid() == 0 else {6})
    assert {row.title: row.violations() for row in rows if row.violations()} == {}
    # The set-up really produced each fault: every piece of evidence was seen.
    missing = {
        row.number: key for row in rows for rep in row.repetitions for key, seen in rep.evidence.items() if not seen
    }
    assert missing == {}
    text = matrix.render(rows, repetitions=1, ledger="SQLite")
    assert "VIOLATED" not in text
    assert "| 5 | SMTP: one recipient refused 550" in text
    assert os.environ.get(matrix.ENV_SFTP_KEY) is None, "the matrix leaves the environment as it found it"
