"""Which deliveries of an archived file are already confirmed, so a retry never re-sends them."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from report_platform.delivery.artifact import Receipt

LEDGER_SUFFIX = ".deliveries.json"


def delivery_key(destination: str, target: str, sha256: str) -> str:
    """What makes two deliveries "the same": where to, and exactly which bytes."""
    return f"{destination}|{target}|{sha256}"


class Ledger:
    """Receipts in a JSON file, normally `<archived file>.deliveries.json`.

    Writes go to a temporary file that replaces the ledger atomically, under an exclusive
    lock, so concurrent runs for the same file cannot lose each other's receipts.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @classmethod
    def beside(cls, archived_file: Path | str) -> Ledger:
        archived_file = Path(archived_file)
        return cls(archived_file.with_name(archived_file.name + LEDGER_SUFFIX))

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": 1, "deliveries": {}}
        if not isinstance(data, dict) or not isinstance(data.get("deliveries"), dict):
            raise ValueError(f"{self.path} is not a delivery ledger")
        return data

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def confirmed(self, key: str) -> Receipt | None:
        """The receipt recorded for `key`, if that delivery already succeeded."""
        entry = self._read()["deliveries"].get(key)
        return Receipt.from_dict(entry) if entry else None

    def receipts(self) -> dict[str, Receipt]:
        return {k: Receipt.from_dict(v) for k, v in self._read()["deliveries"].items()}

    def record(self, key: str, receipt: Receipt) -> None:
        """Add or replace the receipt for `key`, atomically."""
        with self._locked():
            data = self._read()
            data["deliveries"][key] = receipt.to_dict()
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(data, handle, indent=2, sort_keys=True)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
