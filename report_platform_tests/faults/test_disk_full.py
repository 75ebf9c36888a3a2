"""The data folder's disk fills up while a report builds: a real tmpfs (mounted for the test; we
run as root) holds the whole data folder (store, registry, archive, the build's temporary files).
The run fails saying which disk is full, what was there before is byte for byte the same, nothing
is sent, and once space is back the report is delivered once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from report_platform.settings import Home
from report_platform_devservers.standins import SmtpStandin
from report_platform_tests.faults.harness import BIG_AT, SMALL_AT, Platform, Servers, Store, open_platform, sha256_of
from report_platform_tests.faults.scenarios import TO, mail_copies
from report_platform_tests.servers.disks import fill, small_tmpfs

DISK_SIZE = "48m"
FREE_WHILE_BUILDING = 2 * 1024 * 1024  # far less than the report's file (about 14 MB)


@pytest.fixture(scope="module")
def full_disk_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, SmtpStandin]]:
    work = tmp_path_factory.mktemp("disk-full")
    with small_tmpfs(work / "data", DISK_SIZE) as mount, SmtpStandin(security="none") as relay:
        # Only the relay is used; the other connections point at ports nobody listens on.
        servers = Servers(relay.port, "127.0.0.1", 9, "nobody", "ssh-ed25519 AAAA", "", "http://127.0.0.1:9", "", "")
        with open_platform(work, servers, Store(rows_per_day=400_000), home=Home(mount)) as platform:
            yield platform, relay


def _digests(*folders: Path) -> dict[str, str]:
    return {str(p): sha256_of(p) for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_full_data_disk_fails_the_build_naming_the_disk_and_keeps_what_was_there(full_disk_platform):
    p, relay = full_disk_platform
    mail = {"type": "email", "to": [TO[0]], "bcc": [TO[1]]}
    earlier = p.create_report("Earlier", mail)
    assert [run.status.value for run in p.settle(p.launch(earlier, SMALL_AT))] == ["SUCCESS"]
    before = _digests(p.home.archive, p.home.store)
    assert any("Earlier" in name for name in before)

    filler = fill(p.home.root)
    os.truncate(filler, filler.stat().st_size - FREE_WHILE_BUILDING)
    report_id = p.create_report("Big", mail)
    runs = p.settle(p.launch(report_id, BIG_AT))

    # The run and Dagster's two retries fail the same way; none sends anything.
    assert [run.status.value for run in runs] == ["FAILURE"] * 3
    audit = p.audit(report_id)
    assert [(row.status, row.attempt) for row in audit] == [("FAILED", 1), ("FAILED", 2), ("FAILED", 3)]
    for row in audit:
        assert "no space left" in row.error and str(p.home.root) in row.error, row.error
        assert "nothing was delivered" in row.error and "earlier runs are untouched" in row.error
    assert p.ledger(report_id) == [] and p.archived(report_id) == []
    assert _digests(p.home.archive, p.home.store) == before
    assert p.temporary_builds() == []  # the partial build was removed with its folder
    big = [m for m in relay.received if (m.message["Subject"] or "").startswith("Big")]
    assert big == []
    notices = [m for m in relay.received if m.message["Subject"] == "Scheduled report failed: Big"]
    assert len(notices) == 1 and str(p.home.root) in notices[0].message.get_content()

    filler.unlink()
    (last,) = p.settle(p.launch(report_id, BIG_AT))
    assert last.status.value == "SUCCESS"
    (archived,) = p.archived(report_id)
    assert mail_copies(relay, archived.name, sha256_of(archived)) == dict.fromkeys(TO, 1)
