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

from report_platform.reports.period_bounds import period_dates_problem
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

# Caps on what a definition may hold, so reading and checking one has a size and time bound.
# A real definition is a few hundred bytes, a handful of levels deep, with short lists.
MAX_DEFINITION_BYTES = 256 * 1024
MAX_NESTING_DEPTH = 20  # the top-level mapping is level 1
MAX_LIST_ITEMS = 1000  # any list: each of to/cc/bcc, workflows, ...
MAX_PROBLEMS_LISTED = 50  # beyond that the rest are counted, so the answer stays readable and small
_TOO_LARGE = f"the definition is larger than {MAX_DEFINITION_BYTES} bytes (256 KiB), the limit for a report definition"


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


def _check_list_length(value: list[Any]) -> None:
    if len(value) > MAX_LIST_ITEMS:
        raise ValueError(f"at most {MAX_LIST_ITEMS} items are allowed, got {len(value)}")


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
        _check_list_length(value)
        # A dict keeps the first occurrence's order and de-duplicates in linear time.
        return list(dict.fromkeys(_single_line(item, max_len=200) for item in value))

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
    def _within_bounds(self) -> CustomRange:
        problem = period_dates_problem(self.start, self.end)
        if problem is not None:
            raise _FieldError(*problem)
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
    _check_list_length(value)
    addresses: list[str] = []
    seen: set[str] = set()  # lower-cased, so de-duplication stays linear in the list's length
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"must contain e-mail addresses, got {_show(item)}")
        address = item.strip()
        if len(address) > 254 or not _EMAIL_RE.fullmatch(address):
            raise ValueError(f"invalid e-mail address {_show(item)}")
        if address.lower() not in seen:
            seen.add(address.lower())
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


_YAML_TAG = "tag:yaml.org,2002:"


class _Refused(yaml.MarkedYAMLError):
    """Well-formed YAML that a definition may not use, at a place in the text."""


class _PythonParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """PyYAML's own parser, for an installation without libyaml."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


# libyaml's parser (in PyYAML's wheels) reads a 256 KiB file about 20 times faster than the
# Python one; only parsing is delegated: nodes are composed in Python, where the checks below are.
try:
    from yaml.cyaml import CParser as _Parser
except ImportError:  # PyYAML built without libyaml
    _Parser = _PythonParser


class _Loader(yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver, _Parser):
    """Strict YAML 1.1 for definitions: times and dates stay text, and what a definition never needs is refused.

    Refused, each naming its line: duplicate keys (no silent "last one wins"), anchors and aliases
    (a 600-byte "billion laughs" expands to billions of values), merge keys, explicit tags, keys
    that are not plain names, numbers too long to convert, and more than MAX_NESTING_DEPTH levels
    of nesting (the composer recurses once per level).
    """

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            raise _Refused(
                problem="anchors and aliases (&name, *name) are not allowed; write each value out",
                problem_mark=event.start_mark,
            )
        tag = getattr(event, "tag", None)
        if tag is not None:
            shown = "!!" + tag.removeprefix(_YAML_TAG) if tag.startswith(_YAML_TAG) else tag
            raise _Refused(
                problem=f"tags such as {shown!r} are not allowed; quote a value to make it text",
                problem_mark=event.start_mark,
            )
        if not isinstance(event, yaml.CollectionStartEvent):
            return super().compose_node(parent, index)
        if self._depth >= MAX_NESTING_DEPTH:
            raise _Refused(problem=f"nested more than {MAX_NESTING_DEPTH} levels deep", problem_mark=event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# PyYAML reads 12:30:00 as the base-60 integer 45000 and 2026-01-01 as a date; report
# definitions want the text, so drop the sexagesimal int/float and timestamp resolvers. The
# merge resolver goes too: a plain `<<` value is text, and a `<<` key is refused below.
_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in (_YAML_TAG + "timestamp", _YAML_TAG + "merge")
        and not (tag.endswith((":int", ":float")) and ":[0-5]?[0-9]" in regexp.pattern)
    ]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
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
    first_lines: dict[Any, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise _Refused(
                problem="a key must be a plain name, not a list or a mapping", problem_mark=key_node.start_mark
            )
        if key_node.value == "<<" and not key_node.style:  # plain: None from PyYAML's parser, "" from libyaml
            raise _Refused(
                problem="merge keys (<<) are not allowed; write each field out", problem_mark=key_node.start_mark
            )
        key = loader.construct_object(key_node)
        if key in first_lines:
            raise _Refused(
                problem=f"duplicate key {_show(key_node.value)} (first on line {first_lines[key]})",
                problem_mark=key_node.start_mark,
            )
        first_lines[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node)


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    try:
        return loader.construct_yaml_int(node)
    except ValueError:  # Python refuses to convert more than 4300 digits
        raise _Refused(
            problem=f"a number of {len(node.value)} digits is too long", problem_mark=node.start_mark
        ) from None


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(_YAML_TAG + "int", _construct_int)


def _load_yaml(text: str) -> Any:
    # Characters first: cheap, and never more than the UTF-8 bytes.
    if len(text) > MAX_DEFINITION_BYTES:
        raise DefinitionError([_TOO_LARGE])
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from a JSON "\ud800" escape
        raise DefinitionError([f"{_line_column(text[: exc.start])}: not valid text ({exc.reason})"]) from None
    if size > MAX_DEFINITION_BYTES:
        raise DefinitionError([_TOO_LARGE])
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except yaml.reader.ReaderError as exc:  # its own text spans two lines and counts characters, not lines
        # libyaml counts the offset in UTF-8 bytes, PyYAML's reader in characters.
        offset = exc.position
        before = (
            text.encode("utf-8")[:offset].decode("utf-8", "ignore") if _Parser is not _PythonParser else text[:offset]
        )
        raise DefinitionError([f"{_line_column(before)}: {exc.reason}"]) from None
    except _Refused as exc:
        raise DefinitionError([f"{_where(exc.problem_mark, text)}: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if "maximum nesting depth" in problem:  # libyaml's own limit (1000), met when it reads ahead
            raise DefinitionError([f"{_where(mark, text)}: nested more than {MAX_NESTING_DEPTH} levels deep"]) from None
        where = f" at {_where(mark, text)}" if mark else ""
        raise DefinitionError([f"invalid YAML{where}: {problem}"]) from None
    finally:
        loader.dispose()


def _line_column(before: str) -> str:
    """`line L, column C` of the character that follows the text `before`."""
    line = before.count("\n") + 1
    column = len(before) - before.rfind("\n")
    return f"line {line}, column {column}"


def _where(mark: yaml.Mark, text: str) -> str:
    """`line L, column C` of a parser's mark, as PyYAML counts them.

    libyaml puts the end of the input on a line of its own; such a mark becomes the text's end.
    """
    end = (text.count("\n"), len(text) - (text.rfind("\n") + 1))
    line, column = min((mark.line, mark.column), end)
    return f"line {line + 1}, column {column + 1}"


def _shape_errors(data: Mapping[str, Any]) -> list[str]:
    """The first cap `data` breaks: a list too long, nesting too deep, too much in all; else [].

    Iterative and stopping at the first problem, so it costs at most the caps, whatever `data` is
    (a mapping may come from JSON or from Python, where it may even contain itself).
    """
    budget = MAX_DEFINITION_BYTES  # text counts its characters, anything else 1
    pending: list[tuple[Any, str, int]] = [(data, "", 1)]
    while pending:
        value, path, depth = pending.pop()
        budget -= len(value) if isinstance(value, str) else 1
        if budget < 0:
            return [_TOO_LARGE]
        if not isinstance(value, Mapping | list | tuple):
            continue
        if depth > MAX_NESTING_DEPTH:
            return [f"{path}: nested more than {MAX_NESTING_DEPTH} levels deep"]
        if isinstance(value, Mapping):
            for key, item in value.items():
                budget -= len(key) if isinstance(key, str) else 1
                if budget < 0:
                    return [_TOO_LARGE]
                pending.append((item, f"{path}.{key}" if path else str(key), depth + 1))
        elif len(value) > MAX_LIST_ITEMS:
            return [f"{path}: at most {MAX_LIST_ITEMS} items are allowed, got {len(value)}"]
        else:
            pending.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
    return []


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


def _definition_mapping(data: Mapping[str, Any] | str) -> Mapping[str, Any]:
    """`data` (YAML text is read first) as a mapping within the caps, or DefinitionError."""
    if isinstance(data, str):
        data = _load_yaml(data)
        if data is None:
            raise DefinitionError(["the definition is empty"])
    if not isinstance(data, Mapping):
        raise DefinitionError([f"the definition must be a mapping of fields (name:, type:, ...), got {_show(data)}"])
    too_big = _shape_errors(data)
    if too_big:
        raise DefinitionError(too_big)
    return data


def parse_definition(data: Mapping[str, Any] | str, known: KnownNames | None = None) -> ReportDefinition:
    """Validate a definition (a mapping, or YAML text); raise DefinitionError listing every problem.

    The one entry point for every surface: YAML files (CLI) and mappings (JSON of the HTTP API, the
    registry) meet the same caps and rules. With `known`, also check the names of the deployment
    (workspace/organization, Aegis workflows, connections).
    """
    data = _definition_mapping(data)
    errors: list[str] = []
    definition: ReportDefinition | None = None
    try:
        definition = ReportDefinition.model_validate(dict(data))
    except ValidationError as exc:
        errors.extend(_message(e) for e in exc.errors(include_url=False))
    if known is not None:
        errors.extend(_context_errors(data, known))
    if errors or definition is None:
        problems = list(dict.fromkeys(errors))  # the same problem found twice is said once
        if len(problems) > MAX_PROBLEMS_LISTED:
            more = len(problems) - MAX_PROBLEMS_LISTED
            problems = [*problems[:MAX_PROBLEMS_LISTED], f"... and {more} more problems"]
        raise DefinitionError(problems)
    return definition


def read_definition_file(path: str | Path) -> dict[str, Any]:
    """The fields of a YAML definition file as written, read strictly and within the caps, not yet validated.

    For callers that need to know which fields the file names (an update leaves out what it does not
    name); validate the result with `parse_definition`. Messages are prefixed with the file name.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            # One byte past the cap is enough to refuse: a huge file is never read whole.
            raw = fh.read(MAX_DEFINITION_BYTES + 1)
    except OSError as exc:
        raise DefinitionError([f"{path}: cannot read the file ({exc})"]) from None
    if len(raw) > MAX_DEFINITION_BYTES:
        raise DefinitionError([f"{path}: {_TOO_LARGE}"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(
            [f"{path}: cannot read the file (not UTF-8 text: {exc.reason} at byte {exc.start})"]
        ) from None
    try:
        return dict(_definition_mapping(text))
    except DefinitionError as exc:
        raise DefinitionError([f"{path}: {m}" for m in exc.errors]) from None


def load_definition_file(path: str | Path, known: KnownNames | None = None) -> ReportDefinition:
    """Read and validate a YAML definition file; messages are prefixed with the file name."""
    data = read_definition_file(path)
    try:
        return parse_definition(data, known)
    except DefinitionError as exc:
        raise DefinitionError([f"{Path(path)}: {m}" for m in exc.errors]) from None
