"""`ReportDefinition`: one scheduled report, its filters, destinations and filename pattern rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import yaml
from pydantic import Discriminator, Field, ValidationInfo, field_validator, model_validator

from report_platform.delivery import destinations
from report_platform.delivery.destinations import S3Destination, SftpDestination, address_list
from report_platform.reports.builders.catalog import (
    REPORT_TYPES,
    ReportType,
    default_format,
    extension_for,
    format_problem,
    formats_for,
)
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

DEFAULT_SUBJECT_TEMPLATE = "{{ReportName}} - {{Date}}"
MAX_DESTINATIONS = 10
DEFAULT_PAUSE_AFTER_FAILURES = 5
MAX_PAUSE_AFTER_FAILURES = 100


class EmailDestination(destinations.EmailDestination):
    """Deliver the file as an e-mail attachment, its subject and body written with the report's tokens."""

    subject_template: str = DEFAULT_SUBJECT_TEMPLATE

    @field_validator("subject_template", "body_template")
    @classmethod
    def _known_tokens(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value)


# Delivery's models, with the e-mail one that knows the report's template tokens.
Destination = Annotated[
    EmailDestination | SftpDestination | S3Destination,
    Discriminator("type"),
]


def name_list(value: Any, what: str) -> list[str]:
    """A list of names, each one line, stripped and de-duplicated in the order written."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"must be a list of {what} names, got {shown(value)}")
    check_list_length(value)
    # A dict keeps the first occurrence's order and de-duplicates in linear time.
    return list(dict.fromkeys(single_line(item, max_len=200) for item in value))


class AegisFilters(StrictModel):
    """Filters of an Aegis interaction report."""

    workflows: list[str] = Field(default_factory=list)
    include_event_details: bool = False

    @field_validator("workflows", mode="before")
    @classmethod
    def _workflows(cls, value: Any) -> list[str]:
        return name_list(value, "workflow")

    _bool = field_validator("include_event_details", mode="before")(strict_bool)


class VoiceFilters(StrictModel):
    """Filters of a voice usage report: the Core campaigns whose calls it lists (empty: all)."""

    campaigns: list[str] = Field(default_factory=list)

    @field_validator("campaigns", mode="before")
    @classmethod
    def _campaigns(cls, value: Any) -> list[str]:
        return name_list(value, "Core campaign")


class SmsFilters(StrictModel):
    """Filters of an SMS usage report: a message is listed when it belongs to any listed Core or
    Engage campaign; both lists empty lists every message."""

    core_campaigns: list[str] = Field(default_factory=list)
    engage_campaigns: list[str] = Field(default_factory=list)

    @field_validator("core_campaigns", "engage_campaigns", mode="before")
    @classmethod
    def _campaigns(cls, value: Any, info: ValidationInfo) -> list[str]:
        return name_list(value, "Core campaign" if info.field_name == "core_campaigns" else "Engage campaign")


Filters = AegisFilters | VoiceFilters | SmsFilters
# The filters each report type takes; billing takes none (a workbook covers its whole scope).
FILTER_MODELS: dict[str, type[Filters]] = {
    "aegis_interaction": AegisFilters,
    "voice_usage": VoiceFilters,
    "sms_usage": SmsFilters,
}
# Filter field -> the campaign kinds (domain.tenancy) its names are checked against.
CAMPAIGN_FILTERS: dict[str, str] = {"campaigns": "core", "core_campaigns": "core", "engage_campaigns": "engage"}


_FILTER_WORDS = {
    "workflows": "Workflows",
    "campaigns": "Campaigns",
    "core_campaigns": "Core campaigns",
    "engage_campaigns": "Engage campaigns",
}
_UNFILTERED = {"aegis_interaction": "All workflows", "voice_usage": "All campaigns", "sms_usage": "All campaigns"}


def applied_filters(filters: Filters | Mapping[str, Any] | None) -> str:
    """The filters a report sets, in words ("Campaigns: Acme East Sales Line"); "" when it sets none."""
    values = filters.model_dump() if isinstance(filters, StrictModel) else dict(filters or {})
    return "; ".join(
        f"{label}: {', '.join(str(n) for n in values[name])}"
        for name, label in _FILTER_WORDS.items()
        if isinstance(values.get(name), list) and values[name]
    )


def describe_filters(report_type: str, filters: Filters | Mapping[str, Any] | None) -> str:
    """The rows a report keeps, in words: "Campaigns: Acme East Sales Line", "All campaigns"; ""
    for billing, which has no filters."""
    return applied_filters(filters) or _UNFILTERED.get(report_type, "")


def campaign_filters(filters: Filters | None) -> dict[str, list[str]]:
    """The campaign filters a definition sets, by field (`campaigns`, `core_campaigns`, ...)."""
    if filters is None:
        return {}
    return {f: list(getattr(filters, f)) for f in CAMPAIGN_FILTERS if getattr(filters, f, None)}


def default_filename_pattern(report_type: str, file_format: str | None = None) -> str:
    """The pattern a definition without `filename_pattern` gets; its extension follows the format."""
    if format_problem(report_type, file_format) is not None:
        file_format = None  # the format's own error is reported; the pattern is a guess
    return "{{ReportName}}_{{PeriodStart}}_{{PeriodEnd}}" + extension_for(report_type, file_format)


def extension_message(pattern: str, report_type: str, file_format: str | None) -> str:
    """Why `pattern` has the wrong extension; names the format that would match it, if any."""
    ext = extension_for(report_type, file_format)
    message = f"must end with '{ext}' for a {report_type} report"
    if file_format is not None and file_format != default_format(report_type):
        message += f" in format {file_format}"
    # Longest first: ".csv.gz" before ".csv".
    matching = sorted(formats_for(report_type), key=lambda f: -len(extension_for(report_type, f)))
    wanted = next((f for f in matching if pattern.endswith(extension_for(report_type, f))), None)
    if wanted is not None and wanted != (file_format or default_format(report_type)):
        message += f" (for a {extension_for(report_type, wanted)} file, set format: {wanted})"
    return message


def filename_pattern_errors(pattern: str, report_type: str | None, file_format: str | None = None) -> list[str]:
    """Problems with a filename pattern: unknown tokens, unsafe literal text, wrong extension
    (the extension of `file_format`, or of the type's default format)."""
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
    if (
        report_type in REPORT_TYPES
        and format_problem(report_type, file_format) is None
        and not pattern.endswith(extension_for(report_type, file_format))
    ):
        errors.append(extension_message(pattern, report_type, file_format))
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
    filters: Filters | None = None
    schedule: Schedule
    period: Period
    # One of the two: `destination:` (one) or `destinations:` (a list). Both are kept as written,
    # so a definition round-trips; code reads `all_destinations`.
    destination: Destination | None = None
    destinations: list[Destination] | None = None
    filename_pattern: str
    # None: the type's default (csv for the usage types, xlsx for billing); kept unset so that
    # definitions saved before formats existed read back unchanged.
    format: str | None = None
    send_when_empty: bool = True
    # None: nobody beyond the owner; the default threshold applies (see `pause_threshold`).
    notify_on_failure: list[str] | None = None
    pause_after_failures: int | None = None

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
            file_format = data.get("format") if isinstance(data.get("format"), str) else None
            data["filename_pattern"] = default_filename_pattern(known_type, file_format)
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

    @field_validator("filters", mode="before")
    @classmethod
    def _filters(cls, value: Any, info: ValidationInfo) -> Filters | None:
        # Which filters a definition may set depends on its type, validated just before.
        if value is None:
            return None
        report_type = info.data.get("type")
        if report_type == "billing":
            raise ValueError("billing reports take no filters: a workbook covers its whole workspace or organization")
        model = FILTER_MODELS.get(str(report_type))
        if model is None:  # the type itself is wrong, and said so
            return None
        return value if isinstance(value, model) else model.model_validate(value)

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

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> str | None:
        # Which formats are allowed depends on the type: checked in _consistent.
        return None if value is None else single_line(value, max_len=20)

    @field_validator("destinations", mode="before")
    @classmethod
    def _destination_list(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list):
            raise ValueError(f"must be a list of destinations, got {shown(value)}")
        if not value:
            raise ValueError("must list at least one destination")
        if len(value) > MAX_DESTINATIONS:
            raise ValueError(f"at most {MAX_DESTINATIONS} destinations are allowed, got {len(value)}")
        return value

    @field_validator("notify_on_failure", mode="before")
    @classmethod
    def _notify(cls, value: Any) -> list[str] | None:
        return None if value is None else address_list(value, required=False)

    @field_validator("pause_after_failures", mode="before")
    @classmethod
    def _pause_after(cls, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number from 1 to {MAX_PAUSE_AFTER_FAILURES}, got {shown(value)}")
        if not 1 <= value <= MAX_PAUSE_AFTER_FAILURES:
            raise ValueError(f"must be from 1 to {MAX_PAUSE_AFTER_FAILURES}, got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ReportDefinition:
        if self.destination is not None and self.destinations is not None:
            raise FieldError("destinations", "give either destination (one) or destinations (a list), not both")
        if self.destination is None and self.destinations is None:
            raise FieldError("destination", "required field is missing (or give destinations: a list of them)")
        seen: dict[str, int] = {}
        for index, destination in enumerate(self.all_destinations):
            key = destination.model_dump_json()
            if key in seen:
                raise FieldError(
                    f"destinations[{index}]", f"the same destination as destinations[{seen[key]}]; list each once"
                )
            seen[key] = index
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
        problem = format_problem(self.type, self.format)
        if problem is not None:
            raise FieldError("format", problem)
        if not self.filename_pattern.endswith(self.extension):
            raise FieldError("filename_pattern", extension_message(self.filename_pattern, self.type, self.format))
        return self

    @property
    def file_format(self) -> str:
        """The format the report's file is written in: `format`, or the type's default."""
        return self.format or default_format(self.type)

    @property
    def extension(self) -> str:
        return extension_for(self.type, self.format)

    @property
    def enabled(self) -> bool:
        return self.status == "enabled"

    @property
    def all_destinations(self) -> list[EmailDestination | SftpDestination | S3Destination]:
        """Every destination, in the order written, whichever of the two fields gave them."""
        if self.destinations is not None:
            return list(self.destinations)
        return [self.destination] if self.destination is not None else []

    @property
    def failure_recipients(self) -> list[str]:
        """Who is told of a failure besides the report's owner (`notify_on_failure`)."""
        return list(self.notify_on_failure or [])

    @property
    def pause_threshold(self) -> int:
        """Consecutive failed runs after which the report pauses itself."""
        return self.pause_after_failures or DEFAULT_PAUSE_AFTER_FAILURES

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict that `parse_definition` turns back into an equal definition."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)
