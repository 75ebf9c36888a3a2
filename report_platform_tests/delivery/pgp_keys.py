"""OpenPGP test keys made with Debian's gpg in temporary GNUPGHOMEs (no passphrase), and decryption."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GpgKey:
    home: Path  # holds the secret key: decrypts what was encrypted to `public`
    public: str  # ASCII-armored public key
    fingerprint: str


def _gpg(home: Path, *args: str, faked_time: str | None = None) -> subprocess.CompletedProcess[bytes]:
    extra = [f"--faked-system-time={faked_time}"] if faked_time else []
    return subprocess.run(
        ["gpg", "--batch", "--homedir", str(home), "--pinentry-mode", "loopback", "--passphrase", "", *extra, *args],
        capture_output=True,
        check=True,
        timeout=60,
    )


def make_key(uid: str, *, usage: str = "default", expire: str = "never", faked_time: str | None = None) -> GpgKey:
    home = Path(tempfile.mkdtemp(prefix="rp-testkey-"))
    home.chmod(0o700)
    _gpg(home, "--quick-gen-key", uid, "future-default", usage, expire, faked_time=faked_time)
    public = _gpg(home, "--armor", "--export", uid).stdout.decode()
    listing = _gpg(home, "--with-colons", "--list-keys", uid).stdout.decode()
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    return GpgKey(home=home, public=public, fingerprint=fingerprint)


def decrypt(key: GpgKey, ciphertext: bytes) -> bytes:
    return subprocess.run(
        ["gpg", "--batch", "--homedir", str(key.home), "--pinentry-mode", "loopback", "--passphrase", "", "--decrypt"],
        input=ciphertext,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout


def remove(key: GpgKey) -> None:
    subprocess.run(["gpgconf", "--homedir", str(key.home), "--kill", "all"], capture_output=True, check=False)
    shutil.rmtree(key.home, ignore_errors=True)
