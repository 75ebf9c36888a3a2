from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from report_platform.reports.archive import (
    ArchiveError,
    archive_file,
    find_archived,
    prune,
    run_folder,
    verify,
)

AT = datetime(2026, 3, 8, 6, 0, tzinfo=ZoneInfo("America/New_York"))


def built(tmp_path: Path, name: str = "Daily SMS_2026-03-07.csv", data: bytes = b"a,b\r\n") -> Path:
    path = tmp_path / "build" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_archives_under_report_year_month_and_utc_time_with_checksum(tmp_path: Path) -> None:
    src = built(tmp_path, data=b"x" * 5000)
    archived = archive_file(
        tmp_path / "archive",
        "rep-1",
        AT,
        src,
        retention_days=30,
        rows=7,
        period_start="2026-03-07T00:00:00-05:00",
        period_end="2026-03-08T00:00:00-05:00",
    )
    # 06:00 in New York on the spring-forward day is already EDT (-04:00).
    folder = tmp_path / "archive" / "rep-1" / "2026" / "03" / "20260308T100000Z"
    assert archived.path == folder / src.name
    assert archived.path.read_bytes() == src.read_bytes()
    assert archived.sha256 == hashlib.sha256(b"x" * 5000).hexdigest() and archived.size == 5000
    sidecar = folder / (src.name + ".sha256")
    assert sidecar.read_text() == f"{archived.sha256}  {src.name}\n"
    check = subprocess.run(["sha256sum", "-c", sidecar.name], cwd=folder, capture_output=True)
    assert check.returncode == 0, check.stdout
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["rows"] == 7 and manifest["bytes"] == 5000
    assert manifest["sha256"] == archived.sha256
    assert manifest["period"] == {"start": "2026-03-07T00:00:00-05:00", "end": "2026-03-08T00:00:00-05:00"}
    assert datetime.fromisoformat(manifest["built_at"]).tzinfo is not None
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_find_archived_returns_the_same_file_for_a_retry(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    assert find_archived(root, "rep-1", AT) is None
    archived = archive_file(root, "rep-1", AT, built(tmp_path), retention_days=None, rows=1)
    again = find_archived(root, "rep-1", AT.astimezone(UTC))
    assert again == archived
    assert find_archived(root, "rep-1", AT + timedelta(days=1)) is None
    assert find_archived(root, "rep-2", AT) is None


def test_verify_detects_a_changed_file(tmp_path: Path) -> None:
    archived = archive_file(tmp_path / "a", "rep-1", AT, built(tmp_path), retention_days=None)
    assert verify(archived)
    archived.path.write_bytes(b"a,c\r\n")  # same size, other content
    assert not verify(archived)
    archived.path.unlink()
    assert not verify(archived)


def test_a_folder_without_manifest_is_not_an_archived_file(tmp_path: Path) -> None:
    root = tmp_path / "a"
    archived = archive_file(root, "rep-1", AT, built(tmp_path), retention_days=None)
    (archived.folder / "manifest.json").unlink()  # as if the archiving crashed before the end
    assert find_archived(root, "rep-1", AT) is None


def test_prune_deletes_only_runs_older_than_retention(tmp_path: Path) -> None:
    root = tmp_path / "a"
    now = datetime(2026, 7, 1, tzinfo=UTC)
    old = archive_file(root, "rep-1", AT, built(tmp_path), retention_days=None, built_at=now - timedelta(days=91))
    recent = archive_file(
        root, "rep-1", AT + timedelta(days=70), built(tmp_path), retention_days=None, built_at=now - timedelta(days=20)
    )
    short = archive_file(root, "rep-2", AT, built(tmp_path), retention_days=7, built_at=now - timedelta(days=8))
    removed = prune(root, now=now)
    assert set(removed) == {old.folder, short.folder}
    assert not old.folder.exists() and not short.folder.exists()
    assert recent.path.exists() and verify(recent)
    assert not (root / "rep-1" / "2026" / "03").exists()  # emptied month folder removed
    assert prune(root, retention_days=10, now=now) == [recent.folder]


@pytest.mark.parametrize("report_id", ["../x", "a/b", "", ".hidden", "a..b"])
def test_unsafe_report_ids_are_refused(tmp_path: Path, report_id: str) -> None:
    with pytest.raises(ArchiveError):
        run_folder(tmp_path, report_id, AT)


def test_naive_scheduled_time_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="timezone"):
        archive_file(tmp_path, "r", datetime(2026, 3, 8), built(tmp_path), retention_days=None)
