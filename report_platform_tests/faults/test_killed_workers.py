"""Run workers SIGKILLed mid-run: while building, mid-upload over SFTP, mid S3 multipart upload,
and between a send and its confirmation (e-mail, SFTP, S3).

Each run is launched by the run queue with ForkRunLauncher; after the kill, run monitoring fails
the run, the failure sensor records it and Dagster's run retries retry it (harness.py). Copies are
counted at the server (sshd's folder, moto's object versions, the relay's messages), next to the
delivery ledger and the audit log. `benchmarks/process_faults.py` repeats the same scenarios.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from report_platform_tests.faults import scenarios
from report_platform_tests.faults.harness import SMALL_AT, Outcome

KILLED = "is no longer running"  # run monitoring's words for a dead worker, kept in the audit log


def _assert_killed_then_delivered_once(outcome: Outcome, where: str) -> None:
    assert all(outcome.evidence.values()), outcome.evidence
    assert outcome.runs == ["FAILURE", "SUCCESS"]
    assert outcome.copies[where] == 1 and sum(outcome.copies.values()) == 1, outcome.copies
    assert not any(outcome.leftovers.values()), outcome.leftovers
    assert outcome.ledger == ["confirmed"]
    assert [row[:2] for row in outcome.audit] == [("FAILED", 1), ("SUCCESS", 2)]
    assert KILLED in outcome.audit[0][2]


def test_a_worker_killed_while_building_is_retried_and_delivers_one_copy(rig):
    outcome = scenarios.killed_while_building(rig)

    _assert_killed_then_delivered_once(outcome, "sftp")
    assert outcome.notes["partial bytes"] > 0
    # The retry built the file again (nothing was archived before the kill) and claimed it first.
    assert outcome.notes["ledger attempts"] == [1] and outcome.notes["archived files"] == 1
    # The killed build's partial file stays while it may be a live build's; a build that finds it
    # stale (an hour old) removes it with its folder.
    (leftover,) = (Path(name) for name in outcome.notes["leftover build files"])
    hours_ago = time.time() - 2 * 3600
    for path in (leftover, leftover.parent):
        os.utime(path, (hours_ago, hours_ago))
    p = rig.platform
    later = p.create_report(rig.name("later"), {"type": "email", "to": ["ops@example.com"]})
    assert [run.status.value for run in p.settle(p.launch(later, SMALL_AT))] == ["SUCCESS"]
    assert not leftover.parent.exists()


def test_a_worker_killed_mid_sftp_upload_leaves_no_partial_file_and_the_retry_delivers_once(rig):
    outcome = scenarios.killed_mid_sftp_upload(rig)

    _assert_killed_then_delivered_once(outcome, "sftp")
    assert outcome.notes["file bytes"] // 2 <= outcome.notes["part bytes at kill"] < outcome.notes["file bytes"]
    # The retry took over the dead worker's claim once its lease ran out, and removed its `.part-`.
    assert outcome.notes["ledger attempts"] == [2]


def test_a_worker_killed_mid_s3_multipart_upload_leaves_no_object_and_no_unfinished_upload(rig):
    outcome = scenarios.killed_mid_s3_multipart(rig)

    _assert_killed_then_delivered_once(outcome, "s3 versions")
    assert outcome.notes["ledger attempts"] == [2]
    (receipt,) = outcome.notes["receipts"]
    assert receipt["extra"]["multipart"] is True
    # The retry aborted the upload the dead worker left open, and says so in the audit log.
    assert receipt["extra"]["aborted_unfinished_uploads"] == 1


def test_a_worker_killed_after_the_relay_accepted_the_mail_is_never_resent_and_fails_loudly(rig):
    outcome = scenarios.killed_after_smtp_send(rig)

    assert all(outcome.evidence.values()), outcome.evidence
    assert outcome.copies == {"mail to ops@example.com": 1, "mail to audit@example.com": 1}
    # The run and both of Dagster's retries fail; neither retry sends.
    assert outcome.runs == ["FAILURE", "FAILURE", "FAILURE"]
    assert outcome.ledger == ["unknown"]
    assert [row[:2] for row in outcome.audit] == [("FAILED", 1), ("FAILED", 2), ("FAILED", 3)]
    assert KILLED in outcome.audit[0][2]
    for _, _, error in outcome.audit[1:]:
        assert "is unknown" in error and "never resent automatically" in error
        assert "report-platform deliveries release" in error
    assert outcome.notes["failure notices"] == 1  # the owner is told once, when retries are over


def test_a_worker_killed_after_the_sftp_rename_is_confirmed_by_the_retry_with_one_file(rig):
    outcome = scenarios.killed_after_sftp_send(rig)

    _assert_killed_then_delivered_once(outcome, "sftp")
    assert outcome.notes["ledger attempts"] == [2]
    # SFTP has no conditional write: the retry uploads again and renames onto the same name.
    assert outcome.notes["logins by the retries"] == 1


def test_a_worker_killed_after_the_s3_put_is_confirmed_by_the_retry_without_a_second_version(rig):
    outcome = scenarios.killed_after_s3_send(rig)

    _assert_killed_then_delivered_once(outcome, "s3 versions")
    (receipt,) = outcome.notes["receipts"]
    assert receipt["extra"]["already_present"] is True  # the conditional PUT found the same bytes
