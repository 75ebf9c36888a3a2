"""Writing a built file atomically while hashing it."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from types import TracebackType

from report_platform.durable import replace_durably


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
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        self.tmp_path = Path(tmp)
        self._fh = os.fdopen(fd, "wb", buffering=1 << 20)

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
        try:
            if exc_type is None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            self._fh.close()
            if exc_type is None:
                replace_durably(self.tmp_path, self.target)
        finally:
            if exc_type is not None or self.tmp_path.exists():
                self.tmp_path.unlink(missing_ok=True)

    @property
    def hexdigest(self) -> str:
        return self.sha256.hexdigest()


def temp_path_next_to(target: Path) -> Path:
    """A fresh temporary file name in `target`'s folder (for writers that want a path)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return Path(tmp)
