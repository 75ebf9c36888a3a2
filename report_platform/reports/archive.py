"""The archive of built files: every export kept with its checksum, so a failed delivery is
retried from the archived file (never rebuilt) and what was sent can be proven later.

Layout, one folder per report and scheduled time (UTC, compact):

    <archive_root>/<report_id>/<YYYY>/<MM>/<YYYYMMDDTHHMMSSZ>/<filename>
                                                             <filename>.sha256   (sha256sum format)
                                                             manifest.json

Each file is written under a temporary name and renamed; the manifest is written last, so a
folder with a manifest always holds a complete file. Retention: a run's folder is deleted by
`prune` once it is older (by `built_at`) than its own `retention_days` (stored in the manifest
when given) or else `prune`'s default, `DEFAULT_RETENTION_DAYS` = 90.

`Archive` is what callers use: `LocalArchive` keeps that layout in a folder, `S3Archive` the same
layout under an S3 prefix (see its docstring), and `open_archive` picks one from the settings.
Either way an `ArchivedFile` names a local copy (`path`, what checks and delivery read) and where
the archive keeps it (`location`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from report_platform.durable import atomic_write, sha256_file, write_text_durably
from report_platform.reports.builders.output import AtomicHashedFile
from report_platform.settings import DEFAULT_RETENTION_DAYS, S3Location
from report_platform.store.s3 import client, list_objects, storage_error

MANIFEST = "manifest.json"
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class ArchiveError(ValueError):
    pass


@dataclass(frozen=True)
class ArchivedFile:
    """A file in the archive and what its manifest says about it."""

    path: Path
    sha256: str
    size: int
    report_id: str
    scheduled_at: datetime
    built_at: datetime
    rows: int | None = None
    period_start: str | None = None
    period_end: str | None = None
    content_type: str | None = None
    retention_days: int | None = None
    location: str = ""
    """Where the archive keeps the file (`s3://bucket/key`); empty when it is `path` itself."""
    keep: Callable[[Path], None] | None = field(default=None, compare=False, repr=False)
    """Keeps a file written beside `path` (a delivery's ciphertext or zip) in the archive with the
    run; None when the archive is the folder itself."""

    @property
    def where(self) -> str:
        return self.location or str(self.path)

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def checksum_path(self) -> Path:
        return self.path.with_name(self.path.name + ".sha256")


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ArchiveError(f"{name} must carry a timezone, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def run_folder(archive_root: Path, report_id: str, scheduled_at: datetime, variant: str | None = None) -> Path:
    """Where the file of (report, scheduled time) lives; `variant` keeps a deliberate re-delivery
    (e.g. a backfill) apart from the scheduled run's own file and delivery ledger."""
    for value, what in ((report_id, "report id"), (variant, "archive variant")):
        if value is not None and (not _SAFE_ID.fullmatch(value) or ".." in value):
            raise ArchiveError(f"{what} {value!r} cannot be used as a folder name")
    at = _utc(scheduled_at, "scheduled_at")
    name = f"{at:%Y%m%dT%H%M%SZ}" + (f"-{variant}" if variant else "")
    return archive_root / report_id / f"{at:%Y}" / f"{at:%m}" / name


def archive_file(
    archive_root: Path,
    report_id: str,
    scheduled_at: datetime,
    path: Path,
    *,
    retention_days: int | None,
    rows: int | None = None,
    period_start: str | None = None,
    period_end: str | None = None,
    content_type: str | None = None,
    built_at: datetime | None = None,
    variant: str | None = None,
) -> ArchivedFile:
    """Copy the built file at `path` into the archive, with its checksum and manifest.

    Archiving the same (report, scheduled time) again replaces the earlier file atomically.
    """
    if retention_days is not None and retention_days < 1:
        raise ArchiveError(f"retention_days must be at least 1, got {retention_days}")
    folder = run_folder(archive_root, report_id, scheduled_at, variant)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    with path.open("rb") as src, AtomicHashedFile(target) as out:
        while block := src.read(1 << 20):
            out.write(block)
    digest = out.hexdigest
    write_text_durably(target.with_name(target.name + ".sha256"), f"{digest}  {target.name}\n")
    archived = ArchivedFile(
        path=target,
        sha256=digest,
        size=out.size,
        report_id=report_id,
        scheduled_at=_utc(scheduled_at, "scheduled_at"),
        built_at=_utc(built_at or datetime.now(UTC), "built_at"),
        rows=rows,
        period_start=period_start,
        period_end=period_end,
        content_type=content_type,
        retention_days=retention_days,
    )
    manifest = {
        "report_id": report_id,
        "scheduled_at": archived.scheduled_at.isoformat(),
        "built_at": archived.built_at.isoformat(),
        "file": target.name,
        "rows": rows,
        "bytes": archived.size,
        "sha256": digest,
        "period": {"start": period_start, "end": period_end},
        "content_type": content_type,
        "retention_days": retention_days,
    }
    write_text_durably(folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return archived


def _load(folder: Path) -> ArchivedFile | None:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    path = folder / data["file"]
    if not path.exists():
        return None
    return _described(data, path)


def _described(data: dict[str, Any], path: Path) -> ArchivedFile:
    """The ArchivedFile a manifest describes, its file at `path`."""
    return ArchivedFile(
        path=path,
        sha256=data["sha256"],
        size=int(data["bytes"]),
        report_id=data["report_id"],
        scheduled_at=datetime.fromisoformat(data["scheduled_at"]),
        built_at=datetime.fromisoformat(data["built_at"]),
        rows=data.get("rows"),
        period_start=(data.get("period") or {}).get("start"),
        period_end=(data.get("period") or {}).get("end"),
        content_type=data.get("content_type"),
        retention_days=data.get("retention_days"),
    )


def find_archived(
    archive_root: Path, report_id: str, scheduled_at: datetime, variant: str | None = None
) -> ArchivedFile | None:
    """The archived file of (report, scheduled time), if a complete one exists."""
    return _load(run_folder(archive_root, report_id, scheduled_at, variant))


def verify(archived: ArchivedFile) -> bool:
    """True when the file still has the size and SHA-256 recorded when it was archived."""
    try:
        if archived.path.stat().st_size != archived.size:
            return False
        return sha256_file(archived.path) == archived.sha256
    except OSError:
        return False


def prune(archive_root: Path, retention_days: int = DEFAULT_RETENTION_DAYS, now: datetime | None = None) -> list[Path]:
    """Delete archived runs older than their retention; returns the folders removed."""
    now = _utc(now or datetime.now(UTC), "now")
    removed: list[Path] = []
    if not archive_root.exists():
        return removed
    for manifest in sorted(archive_root.glob(f"*/*/*/*/{MANIFEST}")):
        archived = _load(manifest.parent)
        if archived is None:
            continue
        keep = timedelta(days=archived.retention_days or retention_days)
        if now - archived.built_at > keep:
            shutil.rmtree(manifest.parent)
            removed.append(manifest.parent)
            for parent in (manifest.parent.parent, manifest.parent.parent.parent):
                try:
                    parent.rmdir()  # only succeeds once a month/year folder is empty
                except OSError:
                    break
    return removed


def set_aside(folder: Path, run_id: str) -> Path:
    """Move a refused file's run folder aside (`<run>.rejected-<id>`); it keeps its manifest, so
    retention still prunes it."""
    target = folder.with_name(f"{folder.name}.rejected-{run_id[:8]}")
    os.replace(folder, target)
    return target


class Archive(ABC):
    """The archive of built exports, wherever it is kept; every caller goes through this."""

    @property
    @abstractmethod
    def where(self) -> str:
        """The archive's place, for messages: a folder or `s3://bucket/prefix/`."""

    @abstractmethod
    def put(
        self,
        report_id: str,
        scheduled_at: datetime,
        path: Path,
        *,
        retention_days: int | None,
        rows: int | None = None,
        period_start: str | None = None,
        period_end: str | None = None,
        content_type: str | None = None,
        built_at: datetime | None = None,
        variant: str | None = None,
    ) -> ArchivedFile:
        """Archive the built file at `path` with its checksum and manifest (see `archive_file`)."""

    @abstractmethod
    def find(self, report_id: str, scheduled_at: datetime, variant: str | None = None) -> ArchivedFile | None:
        """The archived file of (report, scheduled time) with a local copy, if a complete one exists."""

    def verify(self, archived: ArchivedFile) -> bool:
        """True when the local copy has the size and SHA-256 recorded when it was archived."""
        return verify(archived)

    @abstractmethod
    def prune(self, retention_days: int = DEFAULT_RETENTION_DAYS, now: datetime | None = None) -> list[str]:
        """Delete archived runs older than their retention; returns the runs removed."""

    @abstractmethod
    def set_aside(self, archived: ArchivedFile, run_id: str) -> str:
        """Move a refused file's run aside so that a retry rebuilds it; returns where it went."""


class LocalArchive(Archive):
    """The archive in a folder of this machine (the data folder's `archive/`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def where(self) -> str:
        return str(self.root)

    def put(self, report_id: str, scheduled_at: datetime, path: Path, **kwargs: Any) -> ArchivedFile:
        return archive_file(self.root, report_id, scheduled_at, path, **kwargs)

    def find(self, report_id: str, scheduled_at: datetime, variant: str | None = None) -> ArchivedFile | None:
        return find_archived(self.root, report_id, scheduled_at, variant)

    def prune(self, retention_days: int = DEFAULT_RETENTION_DAYS, now: datetime | None = None) -> list[str]:
        return [str(p) for p in prune(self.root, retention_days, now)]

    def set_aside(self, archived: ArchivedFile, run_id: str) -> str:
        return str(set_aside(archived.folder, run_id))


# Files from this size on go up in parts (S3 takes at most 5 GB in one PUT); each part's SHA-256 is
# checked by S3 as it arrives.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNKSIZE = 64 * 1024 * 1024


class S3Archive(Archive):
    """The archive under an S3 prefix, in the same layout as a local one.

    The file goes up first with its SHA-256 (S3 refuses a body that does not match it, and a PUT
    or a multipart upload shows the object only once it is whole), then its `.sha256`, then the
    manifest: a run with a manifest has its whole file. After the upload the checksum S3 stored
    is compared with the file's. `cache` (the data folder's `archive/`) holds a local copy of each
    file this machine built or read, in the same layout: checks and delivery read that copy, and
    `find` fetches the file from the bucket whenever the copy is missing or is not the archived
    one, so a retry or a re-delivery on any machine sends the bytes the bucket holds.
    """

    def __init__(self, location: S3Location, cache: Path) -> None:
        self.location = location
        self.cache = cache

    @property
    def where(self) -> str:
        return self.location.url()

    def _client(self) -> Any:
        return client(self.location)

    def _error(self, exc: BaseException, what: str) -> Exception:
        return storage_error(exc, f"{what} the archive", self.location)

    def _key(self, folder: Path, name: str) -> str:
        return self.location.key(*folder.relative_to(self.cache).parts, name)

    def put(self, report_id: str, scheduled_at: datetime, path: Path, **kwargs: Any) -> ArchivedFile:
        local = archive_file(self.cache, report_id, scheduled_at, path, **kwargs)
        s3 = self._client()
        key = self._key(local.folder, local.path.name)
        try:
            self._upload(s3, local, key)
            for name in (local.checksum_path.name, MANIFEST):  # the manifest last
                body = (local.folder / name).read_bytes()
                s3.put_object(
                    Bucket=self.location.bucket,
                    Key=self._key(local.folder, name),
                    Body=body,
                    ChecksumSHA256=_b64_sha256(hashlib.sha256(body).hexdigest()),
                )
        except ArchiveError:
            raise
        except Exception as exc:
            raise self._error(exc, "writing to") from None
        return replace(local, location=f"s3://{self.location.bucket}/{key}", keep=self._keeper(local.folder))

    def _keeper(self, folder: Path) -> Callable[[Path], None]:
        def keep(made: Path) -> None:
            try:
                self._client().upload_file(
                    str(made),
                    self.location.bucket,
                    self._key(folder, made.name),
                    ExtraArgs={"ChecksumAlgorithm": "SHA256"},
                    Config=_transfer_config(),
                )
            except Exception as exc:
                raise self._error(exc, "writing to") from None

        return keep

    def _upload(self, s3: Any, local: ArchivedFile, key: str) -> None:
        extra = {"ChecksumAlgorithm": "SHA256", "Metadata": {"sha256": local.sha256}}
        if local.content_type:
            extra["ContentType"] = local.content_type
        s3.upload_file(str(local.path), self.location.bucket, key, ExtraArgs=extra, Config=_transfer_config())
        head = s3.head_object(Bucket=self.location.bucket, Key=key, ChecksumMode="ENABLED")
        stored = str(head.get("ChecksumSHA256") or "")
        expected = _expected_checksum(local.path, local.size, local.sha256)
        if int(head.get("ContentLength", -1)) != local.size or stored.partition("-")[0] != expected:
            raise ArchiveError(
                f"s3://{self.location.bucket}/{key} does not hold the archived bytes after the upload "
                f"({head.get('ContentLength')} bytes, SHA-256 {stored or 'missing'}); nothing was delivered from it"
            )

    def _get(self, s3: Any, key: str) -> bytes | None:
        try:
            return s3.get_object(Bucket=self.location.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._error(exc, "reading") from None

    def find(self, report_id: str, scheduled_at: datetime, variant: str | None = None) -> ArchivedFile | None:
        folder = run_folder(self.cache, report_id, scheduled_at, variant)
        s3 = self._client()
        raw = self._get(s3, self._key(folder, MANIFEST))
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            archived = _described(data, folder / data["file"])
        except (ValueError, KeyError, TypeError):
            return None
        key = self._key(folder, archived.path.name)
        run = "/".join(folder.relative_to(self.cache).parts) + "/"
        stored = {obj.key: obj for obj in list_objects(s3, self.location, run)}
        if key not in stored:
            return None  # a manifest without its file: not a complete run
        cached = _load(folder)
        if cached is None or cached.sha256 != archived.sha256 or not verify(cached):
            self._download(s3, key, archived, raw)
        # Files deliveries kept beside it (hidden names: a ciphertext, a zip) come along, so that a
        # retry here sends what an attempt elsewhere may already have sent.
        for obj in stored.values():
            name = obj.key.rsplit("/", 1)[1]
            local = folder / name
            if name.startswith(".") and not (local.exists() and local.stat().st_size == obj.size):
                self._fetch(s3, obj.key, local)
        return replace(archived, location=f"s3://{self.location.bucket}/{key}", keep=self._keeper(folder))

    def _fetch(self, s3: Any, key: str, local: Path) -> None:
        try:
            body = s3.get_object(Bucket=self.location.bucket, Key=key)["Body"]
            with atomic_write(local) as out:
                while block := body.read(1 << 20):
                    out.write(block)
        except Exception as exc:
            raise self._error(exc, "reading") from None

    def _download(self, s3: Any, key: str, archived: ArchivedFile, manifest: bytes) -> None:
        """The object, its checksum line and its manifest into the cache; `verify` then checks the bytes."""
        self._fetch(s3, key, archived.path)
        write_text_durably(archived.checksum_path, f"{archived.sha256}  {archived.path.name}\n")
        write_text_durably(archived.folder / MANIFEST, manifest.decode("utf-8"))

    def _runs(self, s3: Any, under: str = "") -> dict[str, list[str]]:
        """Each run folder (four levels down, like `prune`'s glob) under `under`, with its keys."""
        runs: dict[str, list[str]] = {}
        for obj in list_objects(s3, self.location, under):
            relative = obj.key[len(self.location.prefix) :].split("/")
            if len(relative) == 5:
                runs.setdefault("/".join(relative[:4]), []).append(obj.key)
        return runs

    def prune(self, retention_days: int = DEFAULT_RETENTION_DAYS, now: datetime | None = None) -> list[str]:
        now = _utc(now or datetime.now(UTC), "now")
        s3 = self._client()
        removed = []
        for run, keys in sorted(self._runs(s3).items()):
            manifest = self.location.key(run, MANIFEST)
            if manifest not in keys:
                continue
            raw = self._get(s3, manifest)
            try:
                data = json.loads(raw or b"")
                built_at = _utc(datetime.fromisoformat(data["built_at"]), "built_at")
            except (ValueError, KeyError, TypeError, ArchiveError):
                continue
            if now - built_at <= timedelta(days=data.get("retention_days") or retention_days):
                continue
            # The manifest goes last: until then the run still reads as "archived" and is pruned again.
            self._delete(s3, [k for k in keys if k != manifest])
            self._delete(s3, [manifest])
            shutil.rmtree(self.cache / run, ignore_errors=True)
            removed.append(self.location.url(run))
        prune(self.cache, retention_days, now)  # copies of runs another machine pruned
        return removed

    def _delete(self, s3: Any, keys: list[str]) -> None:
        try:
            for start in range(0, len(keys), 1000):
                batch = [{"Key": k} for k in keys[start : start + 1000]]
                s3.delete_objects(Bucket=self.location.bucket, Delete={"Objects": batch, "Quiet": True})
        except Exception as exc:
            raise self._error(exc, "deleting from") from None

    def set_aside(self, archived: ArchivedFile, run_id: str) -> str:
        run = "/".join(archived.folder.relative_to(self.cache).parts)
        aside = f"{run}.rejected-{run_id[:8]}"
        s3 = self._client()
        keys = self._runs(s3, run + "/").get(run, [])
        manifest = self.location.key(run, MANIFEST)
        try:
            # Copied with the manifest last and removed with it first, as in `put` and `prune`.
            for key in sorted(keys, key=lambda k: k == manifest):
                s3.copy_object(
                    Bucket=self.location.bucket,
                    Key=self.location.key(aside, key.rsplit("/", 1)[1]),
                    CopySource={"Bucket": self.location.bucket, "Key": key},
                )
        except Exception as exc:
            raise self._error(exc, "writing to") from None
        self._delete(s3, [manifest])
        self._delete(s3, [k for k in keys if k != manifest])
        if archived.folder.exists():
            set_aside(archived.folder, run_id)
        return self.location.url(aside)


def open_archive(cache: Path, s3: S3Location | None) -> Archive:
    """The archive the settings name: under `s3` when given (with `cache` as this machine's
    copies), else the folder `cache` itself."""
    return S3Archive(s3, cache) if s3 is not None else LocalArchive(cache)


def _transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNKSIZE)


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _b64_sha256(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _expected_checksum(path: Path, size: int, sha256: str) -> str:
    """The `ChecksumSHA256` S3 stores for the upload: the file's SHA-256, or for a multipart upload
    the SHA-256 of its parts' digests (S3 adds `-<parts>`, which the caller leaves out)."""
    if size < MULTIPART_THRESHOLD:
        return _b64_sha256(sha256)
    from s3transfer.utils import ChunksizeAdjuster

    part_size = ChunksizeAdjuster().adjust_chunksize(MULTIPART_CHUNKSIZE, size)
    digests = []
    with path.open("rb") as handle:
        while part := handle.read(part_size):
            digests.append(hashlib.sha256(part).digest())
    return base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()
