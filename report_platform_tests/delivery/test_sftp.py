from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import threading
import time
from pathlib import Path

import pytest

from report_platform.delivery import (
    ConfigurationError,
    Connections,
    DeliveryLedger,
    PermanentDeliveryError,
    SftpConnection,
    TransientDeliveryError,
    deliver,
)
from report_platform.delivery import sftp as sftp_delivery
from report_platform_devservers.standins import SshdStandin
from report_platform_devservers.standins.sftp import create_password_user, remove_password_user


def _connections(server: SshdStandin, name: str = "partner-sftp", **overrides: object) -> Connections:
    fields: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "private_key_env": "TEST_SFTP_KEY",
        "host_key": server.host_key,
        "timeout": 10,
        "organizations": ["acme"],
    }
    fields |= overrides
    return Connections(sftp={name: SftpConnection.model_validate(fields)})


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch, sshd_shared: SshdStandin) -> None:
    monkeypatch.setenv("TEST_SFTP_KEY", sshd_shared.client_key_text)


def _dest(remote_dir: Path | str, **extra: object) -> dict[str, object]:
    return {"type": "sftp", "connection": "partner-sftp", "remote_dir": str(remote_dir)} | extra


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_key_auth_upload_lands_with_identical_bytes(sshd_shared, key_env, make_artifact, tmp_path):
    target = sshd_shared.root_dir / "inbound-key"
    target.mkdir()
    artifact = make_artifact("sms_2026-11-28.csv", size=300_000)

    receipt = deliver(artifact, _dest(target), _connections(sshd_shared))

    assert (target / "sms_2026-11-28.csv").read_bytes() == artifact.path.read_bytes()
    assert _leftovers(target) == ["sms_2026-11-28.csv"]
    assert receipt.location == str(target / "sms_2026-11-28.csv")
    assert receipt.target == f"sftp://partner-sftp{target}/sms_2026-11-28.csv"
    assert receipt.size == artifact.size


def test_key_given_as_path_and_via_file_variable(sshd_shared, make_artifact, monkeypatch: pytest.MonkeyPatch):
    target = sshd_shared.root_dir / "inbound-keypath"
    target.mkdir()
    monkeypatch.setenv("TEST_SFTP_KEY", str(sshd_shared.client_key_path))
    deliver(make_artifact("a.csv"), _dest(target), _connections(sshd_shared))
    monkeypatch.delenv("TEST_SFTP_KEY")
    monkeypatch.setenv("TEST_SFTP_KEYFILE", str(sshd_shared.client_key_path))
    conns = _connections(sshd_shared, private_key_env=None, private_key_file_env="TEST_SFTP_KEYFILE")
    deliver(make_artifact("b.csv"), _dest(target), conns)
    assert _leftovers(target) == ["a.csv", "b.csv"]


def test_password_auth(sshd_shared, sftp_password_user, make_artifact, monkeypatch):
    user, password = sftp_password_user
    target = sshd_shared.root_dir / "inbound-password"
    target.mkdir()
    shutil.chown(target, user=user)
    monkeypatch.setenv("TEST_SFTP_PASSWORD", password)
    conns = _connections(sshd_shared, username=user, private_key_env=None, password_env="TEST_SFTP_PASSWORD")
    artifact = make_artifact("billing.xlsx", size=50_000)
    deliver(artifact, _dest(target), conns)
    assert (target / "billing.xlsx").read_bytes() == artifact.path.read_bytes()
    assert (target / "billing.xlsx").stat().st_uid != 0


def test_wrong_password_is_permanent(sshd_shared, sftp_password_user, make_artifact, monkeypatch):
    user, _ = sftp_password_user
    monkeypatch.setenv("TEST_SFTP_PASSWORD", "not-the-password-123")
    conns = _connections(sshd_shared, username=user, private_key_env=None, password_env="TEST_SFTP_PASSWORD")
    sleeps: list[float] = []
    with pytest.raises(PermanentDeliveryError, match="authentication") as info:
        deliver(make_artifact(), _dest(sshd_shared.root_dir), conns, sleep=sleeps.append)
    assert "not-the-password-123" not in str(info.value)
    assert sleeps == []


def test_password_logins_made_at_the_same_time_each_keep_their_own_password(
    sshd_shared, make_artifact, monkeypatch: pytest.MonkeyPatch
):
    """Test processes side by side (xdist workers, other runs on the machine) each make a password
    login at once; none may take another's: each signs in with its own password afterwards."""
    if os.geteuid() != 0:
        pytest.skip("password authentication needs a local user; creating one needs root")
    passwords = [secrets.token_urlsafe(24) for _ in range(4)]
    names: dict[int, str] = {}

    def make(index: int) -> None:
        names[index] = create_password_user(passwords[index])

    threads = [threading.Thread(target=make, args=(i,)) for i in range(len(passwords))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(names) == list(range(len(passwords)))
        assert len(set(names.values())) == len(passwords)
        for index, name in names.items():
            target = sshd_shared.root_dir / f"inbound-{name}"
            target.mkdir()
            shutil.chown(target, user=name)
            monkeypatch.setenv("TEST_SFTP_PASSWORD", passwords[index])
            conns = _connections(sshd_shared, username=name, private_key_env=None, password_env="TEST_SFTP_PASSWORD")
            deliver(make_artifact(f"{index}.csv"), _dest(target), conns)
            assert (target / f"{index}.csv").stat().st_uid == pwd.getpwnam(name).pw_uid
    finally:
        for name in names.values():
            remove_password_user(name)
    for name in names.values():
        with pytest.raises(KeyError):
            pwd.getpwnam(name)


def test_existing_file_is_replaced(sshd_shared, key_env, make_artifact):
    target = sshd_shared.root_dir / "replace"
    target.mkdir()
    (target / "r.csv").write_bytes(b"old contents")
    artifact = make_artifact("r.csv", size=2000)
    deliver(artifact, _dest(target), _connections(sshd_shared))
    assert (target / "r.csv").read_bytes() == artifact.path.read_bytes()
    assert _leftovers(target) == ["r.csv"]


def test_create_dirs_makes_nested_folders(sshd_shared, key_env, make_artifact):
    target = sshd_shared.root_dir / "deep" / "er" / "folder"
    artifact = make_artifact()
    deliver(artifact, _dest(target, create_dirs=True), _connections(sshd_shared))
    assert (target / artifact.filename).read_bytes() == artifact.path.read_bytes()


def test_missing_folder_without_create_dirs_is_permanent(sshd_shared, key_env, make_artifact):
    target = sshd_shared.root_dir / "absent"
    with pytest.raises(PermanentDeliveryError, match="does not exist"):
        deliver(make_artifact(), _dest(target), _connections(sshd_shared))
    assert not target.exists()


def test_base_dir_keeps_remote_dir_beneath_it(sshd_shared, key_env, make_artifact):
    conns = _connections(sshd_shared, base_dir=str(sshd_shared.root_dir / "jail"))
    artifact = make_artifact()
    receipt = deliver(artifact, _dest("/inbound/reports", create_dirs=True), conns)
    landed = sshd_shared.root_dir / "jail" / "inbound" / "reports" / artifact.filename
    assert landed.read_bytes() == artifact.path.read_bytes()
    assert receipt.location == str(landed)
    # The destination model refuses '..' before anything connects; the upload itself refuses too.
    with pytest.raises(ConfigurationError, match="without '..' parts"):
        deliver(make_artifact("x.csv"), _dest("../../escape"), conns)
    with pytest.raises(PermanentDeliveryError, match="leaves the connection's base_dir"):
        sftp_delivery.upload(
            make_artifact("x.csv"),
            connection_name="partner-sftp",
            connection=conns.get_sftp("partner-sftp"),
            remote_dir="../../escape",
        )


def test_reader_never_sees_partial_file_under_final_name(sshd_shared, key_env, make_artifact):
    target = sshd_shared.root_dir / "watched"
    target.mkdir()
    artifact = make_artifact("big.csv", size=48 * 1024 * 1024)
    seen_sizes: list[int] = []
    names_seen: set[str] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for entry in os.scandir(target):
                names_seen.add(entry.name)
                if entry.name == "big.csv":
                    with contextlib.suppress(FileNotFoundError):
                        seen_sizes.append(entry.stat().st_size)
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        deliver(artifact, _dest(target), _connections(sshd_shared))
        time.sleep(0.05)
    finally:
        stop.set()
        watcher.join()

    assert any(name.startswith(".big.csv.part-") for name in names_seen), names_seen
    assert seen_sizes, "the watcher never saw the final file"
    assert set(seen_sizes) == {artifact.size}
    assert _leftovers(target) == ["big.csv"]


def test_changed_host_key_is_refused_before_anything_is_sent(sshd_factory, make_artifact, monkeypatch):
    server = sshd_factory()
    monkeypatch.setenv("TEST_SFTP_KEY", server.client_key_text)
    pinned = server.host_key
    conns = _connections(server, host_key=pinned)
    deliver(make_artifact("before.csv"), _dest(server.root_dir), conns)

    server.replace_host_key()
    assert server.host_key != pinned
    sleeps: list[float] = []
    with pytest.raises(PermanentDeliveryError, match="HOST KEY CHANGED"):
        deliver(make_artifact("after.csv"), _dest(server.root_dir), conns, sleep=sleeps.append)
    assert sleeps == []
    assert _leftovers(server.root_dir) == ["before.csv"]
    assert "Accepted publickey" in server.log_text()
    assert server.log_text().count("Accepted publickey") == 1


def test_unknown_host_key_is_refused(sshd_shared, key_env, make_artifact, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("[127.0.0.1]:1 ssh-ed25519 " + sshd_shared.host_key.split()[1] + "\n")
    conns = _connections(sshd_shared, host_key=None, known_hosts_file=str(known_hosts))
    target = sshd_shared.root_dir / "unknown-key"
    target.mkdir()
    with pytest.raises(PermanentDeliveryError, match="host key is unknown"):
        deliver(make_artifact(), _dest(target), conns)
    assert _leftovers(target) == []


def test_known_hosts_file_with_port_entry_is_accepted(sshd_shared, key_env, make_artifact, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sshd_shared.port} {sshd_shared.host_key}\n")
    conns = _connections(sshd_shared, host_key=None, known_hosts_file=str(known_hosts))
    target = sshd_shared.root_dir / "known-hosts"
    target.mkdir()
    artifact = make_artifact()
    deliver(artifact, _dest(target), conns)
    assert (target / artifact.filename).read_bytes() == artifact.path.read_bytes()


def test_dropped_connection_is_retried_and_leaves_no_partial_file(sshd_factory, make_artifact, monkeypatch):
    server = sshd_factory()
    monkeypatch.setenv("TEST_SFTP_KEY", server.client_key_text)
    artifact = make_artifact("drop.csv", size=40 * 1024 * 1024)
    killed = threading.Event()

    def kill_when_partial() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            parts = [p for p in server.root_dir.iterdir() if p.name.startswith(".drop.csv.part-")]
            if parts and parts[0].stat().st_size > 1024 * 1024:
                server.kill_sessions()
                killed.set()
                return
            time.sleep(0.002)

    killer = threading.Thread(target=kill_when_partial)
    killer.start()
    sleeps: list[float] = []
    receipt = deliver(artifact, _dest(server.root_dir), _connections(server), sleep=sleeps.append)
    killer.join()

    assert killed.is_set(), "the session was never killed mid-transfer"
    assert receipt.extra["attempts"] == 2
    assert len(sleeps) == 1
    assert (server.root_dir / "drop.csv").read_bytes() == artifact.path.read_bytes()
    assert _leftovers(server.root_dir) == ["drop.csv"]


def test_server_down_is_transient(sshd_factory, make_artifact, monkeypatch):
    server = sshd_factory()
    monkeypatch.setenv("TEST_SFTP_KEY", server.client_key_text)
    conns = _connections(server)
    server.stop(cleanup=False)
    with pytest.raises(TransientDeliveryError, match="cannot connect"):
        deliver(make_artifact(), _dest(server.root_dir), conns, attempts=2, sleep=lambda s: None)


def test_ledger_skips_a_confirmed_upload(sshd_shared, key_env, make_artifact, tmp_path):
    target = sshd_shared.root_dir / "ledger"
    target.mkdir()
    artifact = make_artifact()
    ledger = DeliveryLedger.open(f"sqlite:///{tmp_path / 'registry.db'}")
    deliver(artifact, _dest(target), _connections(sshd_shared), ledger=ledger)
    (target / artifact.filename).unlink()
    again = deliver(artifact, _dest(target), _connections(sshd_shared), ledger=ledger)
    assert again.extra["reused"] is True
    assert _leftovers(target) == []
