"""OpenPGP encryption of a file to recipients' public keys, with Debian's `gpg` driven by python-gnupg.

Every operation runs in a temporary GNUPGHOME of its own (never a user's keyring), imports
only the keys it was given, trusts exactly those (`--trust-model always`: the key text comes
from the report's definition, which is where trust is decided) and is killed if it runs past its
time limit. Encryption streams: python-gnupg copies the file into gpg's stdin in chunks and gpg
writes the ciphertext straight to a file, so memory stays flat for files of any size.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gnupg

from report_platform.delivery.errors import ConfigurationError, TransientDeliveryError

PGP_SUFFIX = ".pgp"
MAX_KEYS = 20
MAX_KEY_CHARS = 100_000
KEY_CHECK_TIMEOUT = 30.0
# Generous: gpg encrypts (and compresses) at roughly 100-200 MB/s; a stuck gpg must not hold a run.
ENCRYPT_TIMEOUT = 1800.0
_ARMOR_HEADER = "-----BEGIN PGP PUBLIC KEY BLOCK-----"


class KeyProblem(ValueError):
    """A key in `encrypt_to` cannot be used; the message names it (fingerprint and user id)."""


@dataclass(frozen=True)
class RecipientKey:
    fingerprint: str
    uids: tuple[str, ...]
    expires: datetime | None

    def describe(self) -> str:
        who = f" ({self.uids[0]})" if self.uids else ""
        return f"key {self.fingerprint}{who}"


@dataclass(frozen=True)
class Encrypted:
    """The ciphertext of one file, and both checksums a receipt or manifest records."""

    path: Path
    plaintext_sha256: str
    plaintext_bytes: int
    ciphertext_sha256: str
    ciphertext_bytes: int
    recipients: tuple[str, ...]  # fingerprints

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "openpgp",
            "plaintext_sha256": self.plaintext_sha256,
            "plaintext_bytes": self.plaintext_bytes,
            "ciphertext_sha256": self.ciphertext_sha256,
            "ciphertext_bytes": self.ciphertext_bytes,
            "recipients": list(self.recipients),
        }


def gpg_binary() -> str:
    found = shutil.which("gpg") or ("/usr/bin/gpg" if Path("/usr/bin/gpg").exists() else None)
    if found is None:
        raise ConfigurationError("encrypt_to needs GnuPG's gpg program, which is not installed (apt-get install gnupg)")
    return found


class _BoundedGPG(gnupg.GPG):
    """python-gnupg with a wall-clock limit on every gpg process it starts."""

    def __init__(self, *, timeout: float, **kwargs: Any) -> None:
        self._timeout = timeout
        self._timers: list[threading.Timer] = []
        self.timed_out = False
        super().__init__(**kwargs)

    def _open_subprocess(self, args: Any, passphrase: bool = False) -> subprocess.Popen[bytes]:
        process = super()._open_subprocess(args, passphrase)
        timer = threading.Timer(self._timeout, self._kill, (process,))
        timer.daemon = True
        timer.start()
        self._timers.append(timer)
        return process

    def _kill(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            self.timed_out = True
            process.kill()

    def cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()


@contextlib.contextmanager
def _gpg(timeout: float) -> Iterator[_BoundedGPG]:
    home = tempfile.mkdtemp(prefix="rp-gpg-")  # short path: gpg's sockets live beneath it
    os.chmod(home, 0o700)
    gpg = _BoundedGPG(
        timeout=timeout,
        gpgbinary=gpg_binary(),
        gnupghome=home,
        # A minimal environment: gpg finds its helpers from its own install, beside its binary.
        env={
            "LC_ALL": "C",
            "PATH": os.pathsep.join(dict.fromkeys([str(Path(gpg_binary()).parent), "/usr/bin", "/bin"])),
        },
    )
    try:
        yield gpg
    finally:
        gpg.cancel_timers()
        # Public-key work starts no agent, but stop one if anything did, so none outlives the home.
        gpgconf = shutil.which("gpgconf")
        if gpgconf and any(Path(home).glob("S.*")):
            subprocess.run([gpgconf, "--homedir", home, "--kill", "all"], capture_output=True, timeout=10, check=False)
        shutil.rmtree(home, ignore_errors=True)


def _expiry(value: str) -> datetime | None:
    if not value:
        return None
    if value.isdigit():
        return datetime.fromtimestamp(int(value), UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def looks_like_key(text: Any) -> bool:
    """Whether `check_key_text` accepts `text` (only then is gpg asked about it)."""
    try:
        check_key_text(text)
    except KeyProblem:
        return False
    return True


def check_key_text(text: Any) -> str:
    """`text` if it looks like one armored public key block; `KeyProblem` otherwise, without running gpg.

    A private key above all is refused: it would be a secret in the definition.
    """
    if not isinstance(text, str):
        raise KeyProblem("must be an ASCII-armored OpenPGP public key (gpg --armor --export ID)")
    if "PRIVATE KEY BLOCK" in text:
        raise KeyProblem(
            "is a PRIVATE key; give the recipient's public key (gpg --armor --export ID), "
            "and treat the private key as disclosed"
        )
    if _ARMOR_HEADER not in text:
        raise KeyProblem(f"must be an ASCII-armored OpenPGP public key starting with {_ARMOR_HEADER}")
    if len(text) > MAX_KEY_CHARS:
        raise KeyProblem(f"must be at most {MAX_KEY_CHARS} characters, got {len(text)}")
    return text.strip() + "\n"


def inspect_key(text: Any, *, timeout: float = KEY_CHECK_TIMEOUT) -> RecipientKey:
    """The one public key in armored `text`, if it can encrypt now; otherwise `KeyProblem`.

    Refused: anything `check_key_text` refuses, more than one key in a block, an expired or revoked key, and a
    key without a usable encryption subkey (signing-only, or its encryption subkeys expired).
    """
    check_key_text(text)
    with _gpg(timeout) as gpg:
        scanned = gpg.scan_keys_mem(text)
        if gpg.timed_out:
            raise KeyProblem(f"could not be read by gpg within {timeout:.0f} s")
    keys = list(scanned)
    if not keys:
        raise KeyProblem("does not hold an OpenPGP public key gpg can read (damaged or truncated armor?)")
    if len(keys) > 1:
        fingerprints = ", ".join(k["fingerprint"] for k in keys)
        raise KeyProblem(f"holds {len(keys)} keys ({fingerprints}); give one key per entry")
    raw = keys[0]
    key = RecipientKey(
        fingerprint=raw["fingerprint"], uids=tuple(raw.get("uids") or ()), expires=_expiry(raw.get("expires") or "")
    )
    validity = raw.get("trust") or ""
    if validity == "e" or (key.expires is not None and key.expires <= datetime.now(UTC)):
        when = f" on {key.expires:%Y-%m-%d}" if key.expires else ""
        raise KeyProblem(f"{key.describe()} expired{when}; ask the recipient for a renewed key")
    if validity == "r":
        raise KeyProblem(f"{key.describe()} is revoked")
    # gpg's capability field: an upper-case E means the key as a whole can encrypt now.
    if "E" not in (raw.get("cap") or ""):
        raise KeyProblem(
            f"{key.describe()} cannot encrypt (no usable encryption subkey: signing-only, or its "
            "encryption subkeys have expired or been revoked)"
        )
    return key


def key_problems(keys: Sequence[Any]) -> list[str]:
    """One message per unusable key of an `encrypt_to` list ("key 2 of 3: key FPR (uid) expired ...")."""
    problems = []
    for index, text in enumerate(keys):
        try:
            inspect_key(text)
        except KeyProblem as exc:
            problems.append(f"key {index + 1} of {len(keys)}: {exc}")
    return problems


def check_keys(keys: Sequence[str], *, field: str = "encrypt_to") -> list[RecipientKey]:
    """Every key of a destination's `encrypt_to`, or `ConfigurationError` naming the bad one."""
    found: list[RecipientKey] = []
    for index, text in enumerate(keys):
        try:
            found.append(inspect_key(text))
        except KeyProblem as exc:
            raise ConfigurationError(f"{field}: key {index + 1} of {len(keys)}: {exc}") from None
    return found


def encrypt_file(
    source: Path, output: Path, keys: Sequence[str], *, timeout: float = ENCRYPT_TIMEOUT
) -> tuple[str, ...]:
    """Encrypt `source` to every key in `keys` (binary OpenPGP) into `output`; the fingerprints used.

    The keys are checked first (expired, revoked, cannot encrypt: `ConfigurationError`). The
    output is written under a temporary name and renamed, so `output` is complete or absent.
    """
    recipients = check_keys(keys)
    fingerprints = tuple(k.fingerprint for k in recipients)
    partial = output.with_name(f".{output.name}.part-{os.getpid()}-{threading.get_ident()}")
    try:
        with _gpg(timeout) as gpg:
            imported = gpg.import_keys("\n".join(keys))
            if gpg.timed_out or not set(fingerprints) <= set(imported.fingerprints):
                raise ConfigurationError("encrypt_to: gpg could not import the recipients' keys")
            result = gpg.encrypt_file(
                str(source),
                recipients=list(fingerprints),
                always_trust=True,
                armor=False,
                output=str(partial),
            )
            if gpg.timed_out:
                raise TransientDeliveryError(f"encrypting {source.name} took longer than {timeout:.0f} s; gpg stopped")
            if not result.ok:
                raise ConfigurationError(f"encrypt_to: gpg could not encrypt {source.name} ({result.status})")
        with partial.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return fingerprints
