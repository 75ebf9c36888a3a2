"""Report definitions: typed models, validation with readable messages, YAML in and out.

`fields` holds what every part shares, `schedule_model` and `period_models` the `schedule:` and
`period:` sections, `model` the whole `ReportDefinition`, `known_names` the checks against a
deployment's names and `loader` the strict YAML reader and `parse_definition`. Destinations are
delivery's models (`delivery.destinations`); the e-mail one gains the template-token checks here.
"""

from report_platform.delivery.destinations import DESTINATION_TYPES
from report_platform.reports.builders.catalog import REPORT_TYPES, ReportType, extension_for
from report_platform.reports.definition.fields import (
    FREQUENCIES,
    MAX_DEFINITION_BYTES,
    MAX_LIST_ITEMS,
    MAX_NESTING_DEPTH,
    MAX_PROBLEMS_LISTED,
    PERIOD_KINDS,
    WEEKDAYS,
    DefinitionError,
)
from report_platform.reports.definition.known_names import KnownNames
from report_platform.reports.definition.loader import load_definition_file, parse_definition, read_definition_file
from report_platform.reports.definition.model import (
    CAMPAIGN_FILTERS,
    DEFAULT_SUBJECT_TEMPLATE,
    FILTER_MODELS,
    AegisFilters,
    Destination,
    EmailDestination,
    Filters,
    ReportDefinition,
    S3Destination,
    SftpDestination,
    SmsFilters,
    VoiceFilters,
    applied_filters,
    campaign_filters,
    default_filename_pattern,
    describe_filters,
    filename_pattern_errors,
)
from report_platform.reports.definition.period_models import (
    MAX_LOOKBACK_MINUTES,
    CustomRange,
    Period,
    PreviousDay,
    PreviousMonth,
    PreviousWeek,
    RollingWindow,
)
from report_platform.reports.definition.schedule_model import Schedule, check_timezone, parse_time_of_day

__all__ = [
    "CAMPAIGN_FILTERS",
    "DEFAULT_SUBJECT_TEMPLATE",
    "DESTINATION_TYPES",
    "FILTER_MODELS",
    "FREQUENCIES",
    "MAX_DEFINITION_BYTES",
    "MAX_LIST_ITEMS",
    "MAX_LOOKBACK_MINUTES",
    "MAX_NESTING_DEPTH",
    "MAX_PROBLEMS_LISTED",
    "PERIOD_KINDS",
    "REPORT_TYPES",
    "WEEKDAYS",
    "AegisFilters",
    "CustomRange",
    "DefinitionError",
    "Destination",
    "EmailDestination",
    "Filters",
    "KnownNames",
    "Period",
    "PreviousDay",
    "PreviousMonth",
    "PreviousWeek",
    "ReportDefinition",
    "ReportType",
    "RollingWindow",
    "S3Destination",
    "Schedule",
    "SftpDestination",
    "SmsFilters",
    "VoiceFilters",
    "applied_filters",
    "campaign_filters",
    "check_timezone",
    "default_filename_pattern",
    "describe_filters",
    "extension_for",
    "filename_pattern_errors",
    "load_definition_file",
    "parse_definition",
    "parse_time_of_day",
    "read_definition_file",
]
