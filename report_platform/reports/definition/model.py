"""`ReportDefinition`: one scheduled report, its filters, destinations and filename pattern rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import yaml
from pydantic import Discriminator, Field, field_validator, model_validator

from report_platform.reports.builders.catalog import REPORT_TYPES, ReportType, extension_for
from report_platform.reports.definition.fields import (
    CONTROL_CHARACTERS,
    FieldError,
    StrictModel,
    check_list_length,
    check_template,
    require_text,
    shown,
    single_line,
    strict_bool,
)
from report_platform.reports.definition.period_models import Period
from report_platform.reports.definition.schedule_model import Schedule
from report_platform.reports.templates import template_errors

DESTINATION_TYPES: tuple[str, ...] = ("email", "sftp", "s3")
DEFAULT_SUBJECT_TEMPLATE = "{{ReportName}} - {{Date}}"
_CONNECTION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Deliberately simple: one local part, one dotted domain with a TLD; no display names.
_EMAIL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def _address_list(value: Any, *, required: bool) -> list[str]:
    if value is None:
        value = []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"must be a list of e-mail addresses, got {shown(value)}")
    if required and not value:
        raise ValueError("must list at least one e-mail address")
    check_list_length(value)
    addresses: list[str] = []
    seen: set[str] = set()  # lower-cased, so de-duplication stays linear in the list's length
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"must contain e-mail addresses, got {shown(item)}")
        address = item.strip()
        if len(address) > 254 or not _EMAIL_RE.fullmatch(address):
            raise ValueError(f"invalid e-mail address {shown(item)}")
        if address.lower() not in seen:
            seen.add(address.lower())
            addresses.append(address)
    return addresses


def _connection_name(value: Any) -> str:
    name = require_text(value, "a connection name").strip()
    if not _CONNECTION_RE.fullmatch(name):
        raise ValueError(f"must be a connection name of letters, digits, '-', '_' or '.', got {shown(value)}")
    return name


class EmailDestination(StrictModel):
    """Deliver the file as an e-mail attachment."""

    type: Literal["email"]
    to: list[str]
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    subject_template: str = DEFAULT_SUBJECT_TEMPLATE
    body_template: str | None = None
    connection: str = "default"

    @field_validator("to", mode="before")
    @classmethod
    def _to(cls, value: Any) -> list[str]:
        return _address_list(value, required=True)

    @field_validator("cc", "bcc", mode="before")
    @classmethod
    def _copies(cls, value: Any) -> list[str]:
        return _address_list(value, required=False)

    @field_validator("subject_template", mode="before")
    @classmethod
    def _subject(cls, value: Any) -> str:
        return check_template(single_line(value, max_len=300))

    @field_validator("body_template", mode="before")
    @classmethod
    def _body(cls, value: Any) -> str | None:
        if value is None:
            return None
        text = require_text(value)
        if len(text) > 20_000:
            raise ValueError(f"must be at most 20000 characters, got {len(text)}")
        return check_template(text)

    _connection = field_validator("connection", mode="before")(_connection_name)


class SftpDestination(StrictModel):
    """Upload the file to a directory on an SFTP server."""

    type: Literal["sftp"]
    connection: str
    remote_dir: str
    create_dirs: bool = False

    _connection = field_validator("connection", mode="before")(_connection_name)
    _bool = field_validator("create_dirs", mode="before")(strict_bool)

    @field_validator("remote_dir", mode="before")
    @classmethod
    def _remote_dir(cls, value: Any) -> str:
        path = single_line(value, max_len=1000)
        if "\\" in path or ".." in path.split("/"):
            raise ValueError(f"must be a '/'-separated path without '..' parts, got {shown(value)}")
        return path


class S3Destination(StrictModel):
    """Put the file into an S3 bucket under a key prefix."""

    type: Literal["s3"]
    connection: str
    bucket: str
    prefix: str = ""
    server_side_encryption: Literal["AES256", "aws:kms"] | None = None
    kms_key_id: str | None = None

    _connection = field_validator("connection", mode="before")(_connection_name)

    @field_validator("bucket", mode="before")
    @classmethod
    def _bucket(cls, value: Any) -> str:
        name = require_text(value, "a bucket name").strip()
        if not _BUCKET_RE.fullmatch(name) or ".." in name:
            raise ValueError(
                f"must be an S3 bucket name (3-63 lower-case letters, digits, '.' or '-'), got {shown(value)}"
            )
        return name

    @field_validator("prefix", mode="before")
    @classmethod
    def _prefix(cls, value: Any) -> str:
        if value is None:
            return ""
        prefix = single_line(value, max_len=900, allow_empty=True)
        if prefix.startswith("/"):
            raise ValueError(f"must not start with '/', got {shown(value)}")
        if ".." in prefix.split("/"):
            raise ValueError(f"must not contain '..' parts, got {shown(value)}")
        return prefix

    @field_validator("kms_key_id", mode="before")
    @classmethod
    def _kms(cls, value: Any) -> str | None:
        return None if value is None else single_line(value, max_len=2048)

    @model_validator(mode="after")
    def _kms_needs_kms(self) -> S3Destination:
        if self.kms_key_id and self.server_side_encryption != "aws:kms":
            raise FieldError("kms_key_id", "only allowed with server_side_encryption: aws:kms")
        return self

    @property
    def key_prefix(self) -> str:
        return self.prefix


Destination = Annotated[
    EmailDestination | SftpDestination | S3Destination,
    Discriminator("type"),
]


class AegisFilters(StrictModel):
    """Filters of an Aegis interaction report."""

    workflows: list[str] = Field(default_factory=list)
    include_event_details: bool = False

    @field_validator("workflows", mode="before")
    @classmethod
    def _workflows(cls, value: Any) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValueError(f"must be a list of workflow names, got {shown(value)}")
        check_list_length(value)
        # A dict keeps the first occurrence's order and de-duplicates in linear time.
        return list(dict.fromkeys(single_line(item, max_len=200) for item in value))

    _bool = field_validator("include_event_details", mode="before")(strict_bool)


def default_filename_pattern(report_type: str) -> str:
    return "{{ReportName}}_{{PeriodStart}}_{{PeriodEnd}}" + extension_for(report_type)


def filename_pattern_errors(pattern: str, report_type: str | None) -> list[str]:
    """Problems with a filename pattern: unknown tokens, unsafe literal text, wrong extension."""
    errors = template_errors(pattern)
    # Checked per literal piece: tokens are made safe when rendered.
    pieces = re.split(r"\{\{[^{}]*\}\}", pattern)
    if any("/" in p or "\\" in p for p in pieces):
        errors.append("must be a file name, not a path (no '/' or '\\')")
    if any(".." in p for p in pieces):
        errors.append("must not contain '..'")
    if any(CONTROL_CHARACTERS.search(p) for p in pieces):
        errors.append("must not contain control characters")
    if pattern.startswith("."):
        errors.append("must not start with '.'")
    if len(pattern) > 200:
        errors.append(f"must be at most 200 characters, got {len(pattern)}")
    if report_type in REPORT_TYPES:
        ext = extension_for(report_type)
        if not pattern.endswith(ext):
            errors.append(f"must end with '{ext}' for a {report_type} report")
    return errors


class ReportDefinition(StrictModel):
    """One scheduled report, as written in its YAML definition file."""

    name: str
    description: str | None = None
    type: ReportType
    status: Literal["enabled", "disabled"] = "enabled"
    folder: str | None = None
    workspace: str | None = None
    organization: str | None = None
    filters: AegisFilters | None = None
    schedule: Schedule
    period: Period
    destination: Destination
    filename_pattern: str
    send_when_empty: bool = True

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        report_type = data.get("type")
        if data.get("filename_pattern") is None:
            # With an invalid type the default is a guess; the type error is reported anyway.
            known_type = report_type if report_type in REPORT_TYPES else "voice_usage"
            data["filename_pattern"] = default_filename_pattern(known_type)
        if report_type == "aegis_interaction" and data.get("filters") is None:
            data["filters"] = {}
        # `period: previous_day` is accepted as shorthand for `{kind: previous_day}`.
        if isinstance(data.get("period"), str):
            data["period"] = {"kind": data["period"].strip()}
        return data

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        return single_line(value, max_len=200)

    @field_validator("description", mode="before")
    @classmethod
    def _description(cls, value: Any) -> str | None:
        if value is None:
            return None
        text = require_text(value).strip()
        if len(text) > 2000:
            raise ValueError(f"must be at most 2000 characters, got {len(text)}")
        return text or None

    @field_validator("folder", mode="before")
    @classmethod
    def _folder(cls, value: Any) -> str | None:
        if value is None:
            return None
        name = single_line(value, max_len=100)
        if "/" in name or "\\" in name:
            raise ValueError(f"must be a folder name without '/' or '\\', got {shown(value)}")
        return name

    @field_validator("workspace", "organization", mode="before")
    @classmethod
    def _scope(cls, value: Any) -> str | None:
        return None if value is None else single_line(value, max_len=100)

    @field_validator("filename_pattern", mode="before")
    @classmethod
    def _pattern(cls, value: Any) -> str:
        # The extension depends on the report type and is checked in _consistent.
        pattern = require_text(value)
        problems = filename_pattern_errors(pattern, None)
        if problems:
            raise ValueError("; ".join(problems))
        return pattern

    _bool = field_validator("send_when_empty", mode="before")(strict_bool)

    @model_validator(mode="after")
    def _consistent(self) -> ReportDefinition:
        if self.workspace and self.organization:
            raise FieldError("organization", "give either workspace or organization, not both")
        if self.organization and self.type != "billing":
            raise FieldError(
                "organization",
                f"only billing reports may be scoped to an organization; set workspace for a {self.type} report",
            )
        if not self.workspace and not self.organization:
            needed = "workspace or organization" if self.type == "billing" else "workspace"
            raise FieldError("workspace", f"required: set {needed}")
        if self.filters is not None and self.type != "aegis_interaction":
            raise FieldError("filters", f"only allowed for aegis_interaction reports (type is {self.type})")
        if not self.filename_pattern.endswith(self.extension):
            raise FieldError("filename_pattern", f"must end with '{self.extension}' for a {self.type} report")
        return self

    @property
    def extension(self) -> str:
        return extension_for(self.type)

    @property
    def enabled(self) -> bool:
        return self.status == "enabled"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict that `parse_definition` turns back into an equal definition."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)
