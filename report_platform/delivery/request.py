"""What a report run hands to delivery: the built file and where it should go."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from report_platform.delivery.artifact import Artifact


@dataclass(frozen=True)
class DeliveryRequest:
    """A built file plus the report's destination (as a plain dict) and rendered texts.

    `skip=True` means "deliver nothing" (an empty period with `send_when_empty: false`);
    the run still succeeds and the metadata says why.
    """

    artifact: Artifact
    destination: dict[str, Any]
    report_id: str
    # The report's organisation: delivery checks again that it may use the named connection.
    organization: str
    subject: str | None = None
    body: str | None = None
    skip: bool = False
    skip_reason: str = "skipped: no rows"
    # The report run this delivery belongs to (report id + scheduled time, + a backfill's id):
    # retries of the run share it, so the ledger never lets them send twice.
    scope: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # The run's facts for `<file>.manifest.json` (report id, run id, period, rows, format,
    # columns), sent when the destination sets `manifest: true`; delivery adds the file's own.
    manifest: dict[str, Any] | None = None

    @property
    def destination_type(self) -> str:
        return str(self.destination.get("type", ""))

    @property
    def destination_label(self) -> str:
        """The destination in a few words, as failures and the audit log name it:
        `sftp partner-sftp:/inbound`, `s3 reports-aws:bucket/prefix/`, `email default:ops@example.com`
        (To only: copies, and BCC above all, are not shown)."""
        d = self.destination
        kind = self.destination_type
        if kind == "email":
            to = d.get("to") or []
            return f"email {d.get('connection', 'default')}:{','.join(str(a) for a in to)}"
        if kind == "sftp":
            return f"sftp {d.get('connection')}:{d.get('remote_dir')}"
        if kind == "s3":
            return f"s3 {d.get('connection')}:{d.get('bucket')}/{d.get('prefix') or ''}"
        return kind or "destination"
