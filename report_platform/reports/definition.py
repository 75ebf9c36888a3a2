"""Report definitions: typed models, validation with readable messages, YAML in and out."""

from __future__ import annotations

import difflib
import functools
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from report_platform.reports.templates import template_errors

ReportType = Literal["voice_usage", "sms_usage", "aegis_interaction", "billing"]
REPORT_TYPES: tuple[str, ...] = ("voice_usage", "sms_usage", "aegis_interaction", "billing")
FREQUENCIES: tuple[str, ...] = ("hourly", "daily", "weekly", "monthly")
WEEKDAYS: tuple[str, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
PERIOD_KINDS: tuple[str, ...] = (
    "previous_day",
    "previous_week",
    "previous_month",
    "rolling_window",
    "custom_range",
)
DESTINATION_TYPES: tuple[str, ...] = ("email", "sftp", "s3")

# A rolling window longer than a year is almost certainly a typo (e.g. 700d for 70d).
MAX_LOOKBACK_MINUTES = 366 * 24 * 60
_LOOKBACK_RE = re.compile(r"([1-9][0-9]{0,6})([mhdw])")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 24 * 60, "w": 7 * 24 * 60}
_TIME_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Deliberately simple: one local part, one dotted domain with a TLD; no display names.
_EMAIL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_CONNECTION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

DEFAULT_SUBJECT_TEMPLATE = "{{ReportName}} - {{Date}}"


class DefinitionError(ValueError):
    """A report definition is invalid; `errors` holds one message per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


class _FieldError(ValueError):
    """Raised inside a model validator to attach the message to one of the model's fields."""

    def __init__(self, field_path: str, message: str) -> None:
        self.field_path = field_path
        super().__init__(message)


@dataclass(frozen=True)
class KnownNames:
    """Names that exist in the platform, to check a definition against."""

    organizations: Mapping[str, frozenset[str]] = field(default_factory=dict)  # org -> workspaces
    workflows: Mapping[str, frozenset[str]] = field(default_factory=dict)  # workspace -> workflows
    # Connection kind (smtp, sftp, s3) -> name -> organisations that may use it ("*": all).
    # None leaves connection names unchecked (a definition checked without a deployment).
    connections: Mapping[str, Mapping[str, frozenset[str]]] | None = None


def _show(value: Any) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


def _text(value: Any, what: str = "text") -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be {what}, got {_show(value)}")
    return value


def _single_line(value: Any, *, max_len: int, allow_empty: bool = False) -> str:
    text = _text(value).strip()
    if not text and not allow_empty:
        raise ValueError("must not be empty")
    if _CONTROL_RE.search(text):
        raise ValueError("must be a single line without control characters")
    if len(text) > max_len:
        raise ValueError(f"must be at most {max_len} characters, got {len(text)}")
    return text


def _check_template(value: str) -> str:
    problems = template_errors(value)
    if problems:
        raise ValueError("; ".join(problems))
    return value


def _strict_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {_show(value)}")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@functools.lru_cache(maxsize=1)
def _all_timezones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def check_timezone(value: Any) -> str:
    """Return `value` if it names an IANA timezone, else raise ValueError with a suggestion."""
    name = _text(value, "an IANA timezone name like 'America/New_York'").strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, _all_timezones(), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else " (use an IANA name like 'Europe/London')"
        raise ValueError(f"unknown timezone {_show(name)}{hint}") from None
    return name


def parse_time_of_day(value: Any) -> time:
    """Parse a strict `HH:MM:SS` string."""
    if isinstance(value, time):
        return value.replace(microsecond=0, tzinfo=None)
    if not isinstance(value, str) or not _TIME_RE.fullmatch(value.strip()):
        raise ValueError(f"must be HH:MM:SS (e.g. '06:00:00'), got {_show(value)}")
    hours, minutes, seconds = (int(p) for p in value.strip().split(":"))
    return time(hours, minutes, seconds)


def _parse_date(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_RE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"must be a date YYYY-MM-DD, got {_show(value)}")


class Schedule(_Model):
    """When a report runs: wall-clock time in its IANA timezone."""

    timezone: str
    frequency: Literal["hourly", "daily", "weekly", "monthly"]
    time_of_day: time
    day_of_week: str | None = None
    day_of_month: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill_day_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = dict(data)
            if data.get("frequency") == "weekly" and data.get("day_of_week") is None:
                data["day_of_week"] = "monday"
            if data.get("frequency") == "monthly" and data.get("day_of_month") is None:
                data["day_of_month"] = 1
        return data

    _timezone = field_validator("timezone", mode="before")(check_timezone)

    @field_validator("time_of_day", mode="before")
    @classmethod
    def _time(cls, value: Any) -> time:
        return parse_time_of_day(value)

    @field_validator("day_of_week", mode="before")
    @classmethod
    def _weekday(cls, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            key = value.strip().lower()
            for name in WEEKDAYS:
                if key in (name, name[:3]):
                    return name
        raise ValueError(f"must be a weekday name like 'monday' or 'mon', got {_show(value)}")

    @field_validator("day_of_month", mode="before")
    @classmethod
    def _month_day(cls, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 31:
            raise ValueError(f"must be a whole number from 1 to 31, got {_show(value)}")
        return value

    @model_validator(mode="after")
    def _day_matches_frequency(self) -> Schedule:
        if self.day_of_week is not None and self.frequency != "weekly":
            raise _FieldError(
                "day_of_week",
                f"only allowed when frequency is weekly (frequency is {self.frequency})",
            )
        if self.day_of_month is not None and self.frequency != "monthly":
            raise _FieldError(
                "day_of_month",
                f"only allowed when frequency is monthly (frequency is {self.frequency})",
            )
        return self

    @field_serializer("time_of_day")
    def _dump_time(self, value: time) -> str:
        return value.strftime("%H:%M:%S")

    @property
    def weekday(self) -> int | None:
        """Day of week as Python counts it (Monday = 0), for weekly schedules."""
        return WEEKDAYS.index(self.day_of_week) if self.day_of_week else None


class AegisFilters(_Model):
    """Filters of an Aegis interaction report."""

    workflows: list[str] = Field(default_factory=list)
    include_event_details: bool = False

    @field_validator("workflows", mode="before")
    @classmethod
    def _workflows(cls, value: Any) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValueError(f"must be a list of workflow names, got {_show(value)}")
        names = []
        for item in value:
            name = _single_line(item, max_len=200)
            if name not in names:
                names.append(name)
        return names

    _bool = field_validator("include_event_details", mode="before")(_strict_bool)


class PreviousDay(_Model):
    """The local calendar day before the scheduled time."""

    kind: Literal["previous_day"]


class PreviousWeek(_Model):
    """The last full Monday-Sunday week before the scheduled time."""

    kind: Literal["previous_week"]


class PreviousMonth(_Model):
    """The last full calendar month before the scheduled time."""

    kind: Literal["previous_month"]


class RollingWindow(_Model):
    """A lookback such as `6h` or `7d` ending at the scheduled time."""

    kind: Literal["rolling_window"]
    lookback: str

    @field_validator("lookback", mode="before")
    @classmethod
    def _lookback(cls, value: Any) -> str:
        text = value.strip() if isinstance(value, str) else value
        match = _LOOKBACK_RE.fullmatch(text) if isinstance(text, str) else None
        if not match:
            raise ValueError(
                "must be a positive whole number and a unit m, h, d or w "
                f"(e.g. '30m', '6h', '7d', '2w'), got {_show(value)}"
            )
        if int(match.group(1)) * _UNIT_MINUTES[match.group(2)] > MAX_LOOKBACK_MINUTES:
            raise ValueError(f"must be at most 366 days, got {_show(value)}")
        return text

    @property
    def amount(self) -> int:
        return int(self.lookback[:-1])

    @property
    def unit(self) -> str:
        return self.lookback[-1]


class CustomRange(_Model):
    """A fixed local date range, inclusive of both dates."""

    kind: Literal["custom_range"]
    start: date
    end: date

    _dates = field_validator("start", "end", mode="before")(_parse_date)

    @model_validator(mode="after")
    def _ordered(self) -> CustomRange:
        if self.end < self.start:
            raise _FieldError("end", f"must be on or after start ({self.start.isoformat()}), got {self.end}")
        return self


Period = Annotated[
    PreviousDay | PreviousWeek | PreviousMonth | RollingWindow | CustomRange,
    Discriminator("kind"),
]


def _address_list(value: Any, *, required: bool) -> list[str]:
    if value is None:
        value = []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"must be a list of e-mail addresses, got {_show(value)}")
    if required and not value:
        raise ValueError("must list at least one e-mail address")
    addresses: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"must contain e-mail addresses, got {_show(item)}")
        address = item.strip()
        if len(address) > 254 or not _EMAIL_RE.fullmatch(address):
            raise ValueError(f"invalid e-mail address {_show(item)}")
        if address.lower() not in (a.lower() for a in addresses):
            addresses.append(address)
    return addresses


def _connection_name(value: Any) -> str:
    name = _text(value, "a connection name").strip()
    if not _CONNECTION_RE.fullmatch(name):
        raise ValueError(f"must be a connection name of letters, digits, '-', '_' or '.', got {_show(value)}")
    return name


class EmailDestination(_Model):
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
        return _check_template(_single_line(value, max_len=300))

    @field_validator("body_template", mode="before")
    @classmethod
    def _body(cls, value: Any) -> str | None:
        if value is None:
            return None
        text = _text(value)
        if len(text) > 20_000:
            raise ValueError(f"must be at most 20000 characters, got {len(text)}")
        return _check_template(text)

    _connection = field_validator("connection", mode="before")(_connection_name)


class SftpDestination(_Model):
    """Upload the file to a directory on an SFTP server."""

    type: Literal["sftp"]
    connection: str
    remote_dir: str
    create_dirs: bool = False

    _connection = field_validator("connection", mode="before")(_connection_name)
    _bool = field_validator("create_dirs", mode="before")(_strict_bool)

    @field_validator("remote_dir", mode="before")
    @classmethod
    def _remote_dir(cls, value: Any) -> str:
        path = _single_line(value, max_len=1000)
        if "\\" in path or ".." in path.split("/"):
            raise ValueError(f"must be a '/'-separated path without '..' parts, got {_show(value)}")
        return path


class S3Destination(_Model):
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
        name = _text(value, "a bucket name").strip()
        if not _BUCKET_RE.fullmatch(name) or ".." in name:
            raise ValueError(
                f"must be an S3 bucket name (3-63 lower-case letters, digits, '.' or '-'), got {_show(value)}"
            )
        return name

    @field_validator("prefix", mode="before")
    @classmethod
    def _prefix(cls, value: Any) -> str:
        if value is None:
            return ""
        prefix = _single_line(value, max_len=900, allow_empty=True)
        if prefix.startswith("/"):
            raise ValueError(f"must not start with '/', got {_show(value)}")
        if ".." in prefix.split("/"):
            raise ValueError(f"must not contain '..' parts, got {_show(value)}")
        return prefix

    @field_validator("kms_key_id", mode="before")
    @classmethod
    def _kms(cls, value: Any) -> str | None:
        return None if value is None else _single_line(value, max_len=2048)

    @model_validator(mode="after")
    def _kms_needs_kms(self) -> S3Destination:
        if self.kms_key_id and self.server_side_encryption != "aws:kms":
            raise _FieldError("kms_key_id", "only allowed with server_side_encryption: aws:kms")
        return self

    @property
    def key_prefix(self) -> str:
        return self.prefix


Destination = Annotated[
    EmailDestination | SftpDestination | S3Destination,
    Discriminator("type"),
]


def extension_for(report_type: str) -> str:
    """File extension produced by a report type."""
    return ".xlsx" if report_type == "billing" else ".csv"


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
    if any(_CONTROL_RE.search(p) for p in pieces):
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


class ReportDefinition(_Model):
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
        return _single_line(value, max_len=200)

    @field_validator("description", mode="before")
    @classmethod
    def _description(cls, value: Any) -> str | None:
        if value is None:
            return None
        text = _text(value).strip()
        if len(text) > 2000:
            raise ValueError(f"must be at most 2000 characters, got {len(text)}")
        return text or None

    @field_validator("folder", mode="before")
    @classmethod
    def _folder(cls, value: Any) -> str | None:
        if value is None:
            return None
        name = _single_line(value, max_len=100)
        if "/" in name or "\\" in name:
            raise ValueError(f"must be a folder name without '/' or '\\', got {_show(value)}")
        return name

    @field_validator("workspace", "organization", mode="before")
    @classmethod
    def _scope(cls, value: Any) -> str | None:
        return None if value is None else _single_line(value, max_len=100)

    @field_validator("filename_pattern", mode="before")
    @classmethod
    def _pattern(cls, value: Any) -> str:
        # The extension depends on the report type and is checked in _consistent.
        pattern = _text(value)
        problems = filename_pattern_errors(pattern, None)
        if problems:
            raise ValueError("; ".join(problems))
        return pattern

    _bool = field_validator("send_when_empty", mode="before")(_strict_bool)

    @model_validator(mode="after")
    def _consistent(self) -> ReportDefinition:
        if self.workspace and self.organization:
            raise _FieldError("organization", "give either workspace or organization, not both")
        if self.organization and self.type != "billing":
            raise _FieldError(
                "organization",
                f"only billing reports may be scoped to an organization; set workspace for a {self.type} report",
            )
        if not self.workspace and not self.organization:
            needed = "workspace or organization" if self.type == "billing" else "workspace"
            raise _FieldError("workspace", f"required: set {needed}")
        if self.filters is not None and self.type != "aegis_interaction":
            raise _FieldError("filters", f"only allowed for aegis_interaction reports (type is {self.type})")
        if not self.filename_pattern.endswith(self.extension):
            raise _FieldError("filename_pattern", f"must end with '{self.extension}' for a {self.type} report")
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


_MODELS_BY_LOC: dict[tuple[str, ...], type[BaseModel]] = {
    (): ReportDefinition,
    ("schedule",): Schedule,
    ("filters",): AegisFilters,
    **{("period", k): m for k, m in zip(PERIOD_KINDS, Period.__args__[0].__args__, strict=True)},
    **{("destination", t): m for t, m in zip(DESTINATION_TYPES, Destination.__args__[0].__args__, strict=True)},
}


def _path(loc: tuple[Any, ...]) -> tuple[str, list[str | int]]:
    """Human field path from a pydantic location, dropping union tags."""
    parts: list[str | int] = []
    raw = tuple(loc)
    for i, part in enumerate(raw):
        prev = raw[i - 1] if i else None
        if prev == "period" and part in PERIOD_KINDS:
            continue
        if prev == "destination" and part in DESTINATION_TYPES:
            continue
        parts.append(part)
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text, parts


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    value = error.get("input")
    ctx = error.get("ctx") or {}
    path, _ = _path(loc)
    if kind == "value_error" and isinstance(ctx.get("error"), _FieldError):
        path = f"{path}.{ctx['error'].field_path}" if path else ctx["error"].field_path
    prefix = f"{path}: " if path else ""
    if kind == "missing":
        return f"{prefix}required field is missing"
    if kind == "extra_forbidden":
        parent = loc[:-1]
        model = _MODELS_BY_LOC.get(tuple(str(p) for p in parent))
        allowed = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        listing = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"{prefix}unknown field{hint}{listing}"
    if kind == "value_error":
        return f"{prefix}{ctx['error']}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = PERIOD_KINDS if loc[-1:] == ("period",) else DESTINATION_TYPES
        name = "kind" if tags is PERIOD_KINDS else "type"
        where = f"{path}.{name}: "
        if kind == "union_tag_not_found":
            return f"{where}required field is missing (one of {', '.join(tags)})"
        return f"{where}must be one of {', '.join(tags)}, got {_show(ctx.get('tag'))}"
    if kind == "literal_error":
        return f"{prefix}must be one of {ctx.get('expected')}, got {_show(value)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{prefix}must be a mapping of fields, got {_show(value)}"
    if kind in ("string_type", "str_type"):
        return f"{prefix}must be text, got {_show(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"{prefix}must be true or false, got {_show(value)}"
    if kind in ("list_type",):
        return f"{prefix}must be a list, got {_show(value)}"
    if kind.startswith("int_"):
        return f"{prefix}must be a whole number, got {_show(value)}"
    return f"{prefix}{str(error.get('msg', kind)).rstrip('.')}, got {_show(value)}"


class _Loader(yaml.SafeLoader):
    """YAML 1.1 loader that keeps times and dates as text and refuses duplicate keys."""


# PyYAML reads 12:30:00 as the base-60 integer 45000 and 2026-01-01 as a date; report
# definitions want the text, so drop the sexagesimal int/float and timestamp resolvers.
_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag != "tag:yaml.org,2002:timestamp"
        and not (tag.endswith((":int", ":float")) and ":[0-5]?[0-9]" in regexp.pattern)
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(
        r"""^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$""",
        re.X,
    ),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {_show(key)}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise DefinitionError([f"invalid YAML{where}: {problem}"]) from None


def _context_errors(data: Mapping[str, Any], known: KnownNames) -> list[str]:
    errors: list[str] = []
    workspaces = {ws: org for org, wss in known.organizations.items() for ws in wss}
    workspace = data.get("workspace")
    organization = data.get("organization")
    if isinstance(workspace, str) and workspace.strip():
        workspace = workspace.strip()
        if workspace not in workspaces:
            errors.append(f"workspace: unknown workspace {_show(workspace)} (known: {_listing(workspaces)})")
    if isinstance(organization, str) and organization.strip():
        organization = organization.strip()
        if organization not in known.organizations:
            errors.append(
                f"organization: unknown organization {_show(organization)} (known: {_listing(known.organizations)})"
            )
    filters = data.get("filters")
    if (
        isinstance(filters, Mapping)
        and isinstance(filters.get("workflows"), list)
        and isinstance(workspace, str)
        and workspace in workspaces
    ):
        names = known.workflows.get(workspace, frozenset())
        for name in filters["workflows"]:
            if isinstance(name, str) and name.strip() not in names:
                errors.append(
                    f"filters.workflows: unknown workflow {_show(name)} in workspace "
                    f"'{workspace}' (known: {_listing(names)})"
                )
    # The report's organisation is its workspace's; billing may name it directly.
    owner = workspaces.get(workspace) if isinstance(workspace, str) else None
    if owner is None and isinstance(organization, str) and organization in known.organizations:
        owner = organization
    if known.connections is not None and owner is not None:
        errors.extend(_connection_errors(data, owner, known.connections))
    return errors


def _named_connections(data: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """(field path, connection kind, name or None for e-mail's default) of every destination."""
    destinations: list[tuple[str, Any]] = [("destination", data.get("destination"))]
    if isinstance(data.get("destinations"), list):
        destinations += [(f"destinations[{i}]", d) for i, d in enumerate(data["destinations"])]
    named: list[tuple[str, str, str | None]] = []
    for where, destination in destinations:
        if not isinstance(destination, Mapping):
            continue
        kind = {"email": "smtp", "sftp": "sftp", "s3": "s3"}.get(str(destination.get("type")))
        name = destination.get("connection")
        if kind == "smtp" and name is None:
            named.append((f"{where}.connection", kind, None))
        elif kind and isinstance(name, str):
            named.append((f"{where}.connection", kind, name.strip()))
        large_files = destination.get("large_files")
        if isinstance(large_files, Mapping) and isinstance(large_files.get("connection"), str):
            named.append((f"{where}.large_files.connection", "s3", large_files["connection"].strip()))
    return named


def _connection_errors(
    data: Mapping[str, Any], organization: str, connections: Mapping[str, Mapping[str, frozenset[str]]]
) -> list[str]:
    errors: list[str] = []
    for where, kind, name in _named_connections(data):
        table = connections.get(kind, {})
        shown = repr(name) if name is not None else "'default', which e-mail uses when none is named,"
        name = name if name is not None else "default"
        allowed = table.get(name)
        if allowed is None:
            # Only this organisation's names: another tenant's connections are not its business.
            usable = [n for n, orgs in table.items() if "*" in orgs or organization in orgs]
            errors.append(f"{where}: unknown {kind} connection {shown.rstrip(',')} (known: {_listing(usable)})")
        elif "*" not in allowed and organization not in allowed:
            errors.append(f"{where}: connection {shown} is not available to organization '{organization}'")
    return errors


def _listing(names: Any, limit: int = 20) -> str:
    ordered = sorted(names)
    if not ordered:
        return "none"
    shown = ", ".join(ordered[:limit])
    return shown + (f" and {len(ordered) - limit} more" if len(ordered) > limit else "")


def parse_definition(data: Mapping[str, Any] | str, known: KnownNames | None = None) -> ReportDefinition:
    """Validate a definition (a mapping, or YAML text); raise DefinitionError listing every problem.

    With `known`, also check that the workspace/organization and Aegis workflows exist.
    """
    if isinstance(data, str):
        data = _load_yaml(data)
        if data is None:
            raise DefinitionError(["the definition is empty"])
    if not isinstance(data, Mapping):
        raise DefinitionError([f"the definition must be a mapping of fields (name:, type:, ...), got {_show(data)}"])
    errors: list[str] = []
    definition: ReportDefinition | None = None
    try:
        definition = ReportDefinition.model_validate(dict(data))
    except ValidationError as exc:
        errors.extend(_message(e) for e in exc.errors(include_url=False))
    if known is not None:
        errors.extend(m for m in _context_errors(data, known) if m not in errors)
    if errors or definition is None:
        raise DefinitionError(list(dict.fromkeys(errors)))
    return definition


def load_definition_file(path: str | Path, known: KnownNames | None = None) -> ReportDefinition:
    """Read and validate a YAML definition file; messages are prefixed with the file name."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError([f"{path}: cannot read the file ({exc})"]) from None
    try:
        return parse_definition(text, known)
    except DefinitionError as exc:
        raise DefinitionError([f"{path}: {m}" for m in exc.errors]) from None
