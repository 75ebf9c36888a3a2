"""Files the platform can vouch for: renames that survive a crash, and the SHA-256 that proves bytes.

`os.replace` is atomic, but until the folder itself is fsynced a power cut can bring back the
old entry (or none) even though the data was synced. Every rename a promise depends on (a
partition, an archived file and its checksum, a built export) goes through `replace_durably`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 20


def fsync_dir(folder: Path | str) -> None:
    """Flush a folder's entries (new, renamed or removed names) to disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
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


@contextmanager
def atomic_write(
    target: Path | str, *, mode: int | None = None, prefix: str | None = None, suffix: str = ".tmp"
) -> Iterator[BinaryIO]:
    """A binary file that appears at `target` only complete: written under a temporary name in the
    same folder, fsynced, then renamed durably. If the block raises, `target` is left as it was.

    `mode` sets the file's permissions (mkstemp makes it 0600); `prefix`/`suffix` shape the
    temporary name, e.g. so that it never matches a reader's glob.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix or f".{target.name}.", suffix=suffix, dir=target.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb", buffering=_CHUNK) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        replace_durably(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_durably(target: Path | str, text: str) -> None:
    """Replace `target` with `text` (UTF-8), atomically and durably."""
    with atomic_write(target) as handle:
        handle.write(text.encode("utf-8"))
