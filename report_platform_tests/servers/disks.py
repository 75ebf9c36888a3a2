"""A real file system that fills up: a small tmpfs (needs root), and a way to fill it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def small_tmpfs(mount: Path, size: str = "4m") -> Iterator[Path]:
    """Mount a tmpfs of `size` at `mount` (created) for the duration; unmounted lazily after."""
    mount.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True, capture_output=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def fill(folder: Path) -> Path:
    """Write `folder/filler` until the file system says ENOSPC; returns the file to free it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 65536):
            pass
    except OSError:
        pass  # ENOSPC: the file system is full, which is the point
    finally:
        os.close(fd)
    return filler
