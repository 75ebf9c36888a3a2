"""The file to deliver and the receipt that proves it arrived."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from report_platform.durable import sha256_file


def guess_content_type(filename: str) -> str:
    known = {
        ".csv": "text/csv",
        ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ".zip": "application/zip",
        ".json": "application/json",
        ".gz": "application/gzip",
        ".parquet": "application/vnd.apache.parquet",
    }
    suffix = Path(filename).suffix.lower()
    return known.get(suffix) or mimetypes.guess_type(filename)[0] or "application/octet-stream"


@dataclass(frozen=True)
class Artifact:
    """A built file on local disk, with the name it should carry at the destination."""

    path: Path
    filename: str
    sha256: str
    size: int
    content_type: str
    # Keeps a file made for delivering this one (its ciphertext, its zip), written beside it, for
    # as long as the file is kept, wherever that is (an archive on S3 uploads it): a run retried on
    # another machine must send the same bytes. None when the file's own folder is enough.
    keep: Callable[[Path], None] | None = field(default=None, compare=False, repr=False)

    def kept(self, made: Path) -> None:
        if self.keep is not None:
            self.keep(made)

    @classmethod
    def from_path(cls, path: Path | str, filename: str | None = None, content_type: str | None = None) -> Artifact:
        """Describe a file on disk, computing its size and SHA-256."""
        path = Path(path)
        name = filename or path.name
        if "/" in name or "\\" in name or name in ("", ".", "..") or any(ord(ch) < 32 for ch in name):
            raise ValueError(f"filename must be a single safe file name, got {name!r}")
        return cls(
            path=path,
            filename=name,
            sha256=sha256_file(path),
            size=path.stat().st_size,
            content_type=content_type or guess_content_type(name),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "filename": self.filename,
            "sha256": self.sha256,
            "size": self.size,
            "content_type": self.content_type,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        return cls(
            path=Path(data["path"]),
            filename=data["filename"],
            sha256=data["sha256"],
            size=int(data["size"]),
            content_type=data["content_type"],
        )


@dataclass(frozen=True)
class Receipt:
    """Proof of one confirmed delivery.

    `target` names where it went (`sftp://conn/dir/file`, `s3://bucket/key`,
    `mailto:a@x,b@y`); `location` is the remote path, object key or Message-ID.
    """

    destination: str
    target: str
    location: str
    size: int
    sha256: str
    delivered_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "target": self.target,
            "location": self.location,
            "size": self.size,
            "sha256": self.sha256,
            "delivered_at": self.delivered_at.isoformat(),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Receipt:
        return cls(
            destination=data["destination"],
            target=data["target"],
            location=data["location"],
            size=int(data["size"]),
            sha256=data["sha256"],
            delivered_at=datetime.fromisoformat(data["delivered_at"]),
            extra=dict(data.get("extra") or {}),
        )


def utc_now() -> datetime:
    return datetime.now(UTC)
