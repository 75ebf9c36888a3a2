"""The completion marker of a file destination: `<file>.manifest.json`, uploaded after the file.

A consumer polling a folder or bucket waits for the manifest, never for the file itself: the
manifest is only sent once the file is confirmed in place (SFTP: after its rename and size check;
S3: after the stored object's checksum is verified), and it is sent the same way (temporary name
then rename; a conditional put), so it is never seen partial either.

Delivery knows nothing of report types: the caller hands over the facts about the run (`fields`:
report id, run id, period, rows, format, columns, ...); what is known only here, the delivered
file's name, size and SHA-256, is added here. When the delivered bytes differ from the file that
was built (an encrypted copy), `plaintext_bytes` and `plaintext_sha256` describe the built file
and `bytes`/`sha256` the delivered one.

The document must be the same bytes on every attempt and every retry of a run: it has its own
ledger row (identified by its SHA-256), and S3 refuses to replace an object with different bytes.
So it carries nothing that changes between attempts (no upload time, no Dagster run id).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from report_platform.delivery.artifact import Artifact
from report_platform.delivery.destinations import MANIFEST_SUFFIX

MANIFEST_VERSION = 1
MANIFEST_CONTENT_TYPE = "application/json"
# Set here from the delivered file; the caller's fields cannot override them.
FILE_FIELDS = ("file", "bytes", "sha256", "content_type", "plaintext_bytes", "plaintext_sha256")


def manifest_name(filename: str) -> str:
    return filename + MANIFEST_SUFFIX


def manifest_document(fields: Mapping[str, Any], delivered: Artifact, plaintext: Artifact | None = None) -> bytes:
    """The manifest's bytes: `manifest_version`, the delivered file's facts, then `fields` in their order."""
    document: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "file": delivered.filename,
        "bytes": delivered.size,
        "sha256": delivered.sha256,
        "content_type": delivered.content_type,
    }
    if plaintext is not None and plaintext.sha256 != delivered.sha256:
        document["plaintext_bytes"] = plaintext.size
        document["plaintext_sha256"] = plaintext.sha256
    document.update((k, v) for k, v in fields.items() if k not in FILE_FIELDS and k != "manifest_version")
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_manifest(
    folder: Path, fields: Mapping[str, Any], delivered: Artifact, plaintext: Artifact | None = None
) -> Artifact:
    """The manifest of `delivered` written into `folder`, as an artifact to deliver."""
    name = manifest_name(delivered.filename)
    path = folder / name
    path.write_bytes(manifest_document(fields, delivered, plaintext))
    return Artifact.from_path(path, filename=name, content_type=MANIFEST_CONTENT_TYPE)
