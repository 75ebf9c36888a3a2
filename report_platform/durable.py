"""Files the platform can vouch for: renames that survive a crash, and the SHA-256 that proves bytes.

`os.replace` is atomic, but until the folder itself is fsynced a power cut can bring back the
old entry (or none) even though the data was synced. Every rename a promise depends on (a
partition, an archived file and its checksum, a built export) goes through `replace_durably`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20


def fsync_dir(folder: Path | str) -> None:
    """Flush a folder's entries (new, renamed or removed names) to disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path | str) -> None:
    """Flush a file's contents to disk (for files written by a library that closed them)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: Path | str, target: Path | str) -> None:
    """`os.replace(tmp, target)`, then fsync the target's folder (and the source's, if another)."""
    tmp, target = Path(tmp), Path(target)
    os.replace(tmp, target)
    fsync_dir(target.parent)
    if tmp.parent.resolve() != target.parent.resolve():
        fsync_dir(tmp.parent)


def sha256_file(path: Path | str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks so memory stays flat."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()
