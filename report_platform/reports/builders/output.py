"""Writing a built file atomically while hashing it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import TracebackType

from report_platform.durable import atomic_write


class AtomicHashedFile:
    """A binary file written under a temporary name next to `target` and renamed on success.

    Every write also feeds a SHA-256 and a byte count, so the checksum costs no second read.
    On an exception inside the `with` block the temporary file is removed and `target` is
    left as it was.
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._writer = atomic_write(target)
        self._fh = self._writer.__enter__()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._fh.write(data)

    def __enter__(self) -> AtomicHashedFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._writer.__exit__(exc_type, exc, tb)

    @property
    def hexdigest(self) -> str:
        return self.sha256.hexdigest()
