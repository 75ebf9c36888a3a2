"""Renames that survive a crash: the new name and the folder entry both reach the disk.

`os.replace` is atomic, but until the folder itself is fsynced a power cut can bring back the
old entry (or none) even though the data was synced. Every rename a promise depends on (a
partition, an archived file and its checksum, a built export) goes through `replace_durably`.
"""

from __future__ import annotations

import os
from pathlib import Path


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
