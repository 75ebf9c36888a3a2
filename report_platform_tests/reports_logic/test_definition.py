"""Report definitions: valid shapes, every rejection with its message, YAML round trip."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from typing import Any

import pytest

from report_platform.reports.definition import (
    AegisFilters,
    CustomRange,
    DefinitionError,
    EmailDestination,
    KnownNames,
    PreviousDay,
    PreviousMonth,
    PreviousWeek,
    ReportDefinition,
    RollingWindow,
    S3Destination,
    SftpDestination,
    load_definition_file,
    parse_definition,
)

from .conftest import BASE, DELETE, KNOWN, S3_KMS, variant

EXAMPLE_YAML = """
name: Daily SMS usage
type: sms_usage            # voice_usage | sms_usage | aegis_interaction | billing
status: enabled
folder: SMS
workspace: acme-east       # billing may use `organization: acme` instead
schedule: {timezone: America/New_York, frequency: daily, time_of_day: "06:00:00"}
period: {kind: previous_day}
destination:
  type: email
  to: [ops@example.com]
  cc: []
  bcc: [audit@example.com]
  subject_template: "{{ReportName}} - {{Date}}"
  body_template: "Report attached."
filename_pattern: "{{ReportName}}_{{PeriodStart}}_{{PeriodEnd}}.csv"
"""

AEGIS = {"type": "aegis_interaction", "filters": {"workflows": ["inbound-screening"]}}
BILLING_ORG = {
    "type": "billing",
    "workspace": DELETE,
    "organization": "acme",
    "filename_pattern": "{{ReportName}}_{{PeriodStart}}.xlsx",
}
WEEKLY = {"schedule.frequency": "weekly"}
MONTHLY = {"schedule.frequency": "monthly"}
SFTP = {"destination": {"type": "sftp", "connection": "partner-sftp", "remote_dir": "/inbound"}}
S3 = {"destination": {"type": "s3", "connection": "reports-aws", "bucket": "acme-reports"}}


def test_product_example_parses_with_every_field() -> None:
    definition = parse_definition(EXAMPLE_YAML, KNOWN)
    assert definition.name == "Daily SMS usage"
    assert definition.type == "sms_usage"
    assert definition.enabled
    assert definition.folder == "SMS"
    assert definition.workspace == "acme-east"
    assert definition.organization is None
    assert definition.filters is None
    assert definition.schedule.timezone == "America/New_York"
    assert definition.schedule.time_of_day == time(6, 0, 0)
    assert definition.schedule.day_of_week is None
    assert isinstance(definition.period, PreviousDay)
    assert isinstance(definition.destination, EmailDestination)
    assert definition.destination.to == ["ops@example.com"]
    assert definition.destination.bcc == ["audit@example.com"]
    assert definition.destination.connection == "default"
    assert definition.send_when_empty is True


@pytest.mark.parametrize(
    ("report_type", "extension"),
    [("voice_usage", ".csv"), ("sms_usage", ".csv"), ("aegis_interaction", ".csv")],
)
def test_default_filename_pattern_depends_on_type(report_type: str, extension: str) -> None:
    data = variant({"type": report_type, "filename_pattern": DELETE})
    definition = parse_definition(data)
    assert definition.filename_pattern == "{{ReportName}}_{{PeriodStart}}_{{PeriodEnd}}" + extension


def test_billing_defaults_to_xlsx_and_may_be_scoped_to_organization() -> None:
    definition = parse_definition(variant({**BILLING_ORG, "filename_pattern": DELETE}), KNOWN)
    assert definition.organization == "acme"
    assert definition.workspace is None
    assert definition.filename_pattern.endswith(".xlsx")
    assert definition.extension == ".xlsx"


def test_billing_may_be_scoped_to_a_workspace() -> None:
    data = variant({"type": "billing", "filename_pattern": "billing.xlsx"})
    assert parse_definition(data, KNOWN).workspace == "acme-east"


def test_aegis_filters_are_kept_and_default_to_all_workflows() -> None:
    with_filters = parse_definition(variant({**AEGIS, "filters.include_event_details": True}), KNOWN)
    assert with_filters.filters == AegisFilters(workflows=["inbound-screening"], include_event_details=True)
    without = parse_definition(variant({"type": "aegis_interaction"}))
    assert without.filters == AegisFilters(workflows=[], include_event_details=False)


def test_weekly_defaults_to_monday_and_accepts_short_names() -> None:
    assert parse_definition(variant(WEEKLY)).schedule.day_of_week == "monday"
    fri = parse_definition(variant({**WEEKLY, "schedule.day_of_week": "FRI"}))
    assert fri.schedule.day_of_week == "friday"
    assert fri.schedule.weekday == 4


def test_monthly_defaults_to_day_one_and_keeps_day_31() -> None:
    assert parse_definition(variant(MONTHLY)).schedule.day_of_month == 1
    assert parse_definition(variant({**MONTHLY, "schedule.day_of_month": 31})).schedule.day_of_month == 31


def test_hourly_schedule_parses() -> None:
    data = variant({"schedule.frequency": "hourly", "schedule.time_of_day": "00:15:30"})
    assert parse_definition(data).schedule.time_of_day == time(0, 15, 30)


@pytest.mark.parametrize(
    ("period", "expected_type"),
    [
        ({"kind": "previous_day"}, PreviousDay),
        ({"kind": "previous_week"}, PreviousWeek),
        ({"kind": "previous_month"}, PreviousMonth),
        ({"kind": "rolling_window", "lookback": "6h"}, RollingWindow),
        ({"kind": "custom_range", "start": "2026-01-01", "end": "2026-01-31"}, CustomRange),
    ],
)
def test_every_period_kind_parses(period: dict[str, Any], expected_type: type) -> None:
    assert isinstance(parse_definition(variant({"period": period})).period, expected_type)


def test_rolling_window_exposes_amount_and_unit() -> None:
    period = parse_definition(variant({"period": {"kind": "rolling_window", "lookback": "30m"}})).period
    assert isinstance(period, RollingWindow)
    assert (period.amount, period.unit) == (30, "m")


def test_custom_range_accepts_yaml_dates_and_date_objects() -> None:
    from_yaml = parse_definition(
        EXAMPLE_YAML.replace(
            "period: {kind: previous_day}",
            "period: {kind: custom_range, start: 2026-02-01, end: 2026-02-01}",
        )
    )
    assert from_yaml.period == CustomRange(kind="custom_range", start=date(2026, 2, 1), end=date(2026, 2, 1))
    from_objects = parse_definition(
        variant({"period": {"kind": "custom_range", "start": date(2026, 2, 1), "end": date(2026, 2, 1)}})
    )
    assert from_objects.period == from_yaml.period


def test_period_shorthand_string() -> None:
    assert isinstance(parse_definition(variant({"period": "previous_week"})).period, PreviousWeek)


def test_sftp_destination_defaults() -> None:
    destination = parse_definition(variant(SFTP)).destination
    assert destination == SftpDestination(
        type="sftp", connection="partner-sftp", remote_dir="/inbound", create_dirs=False
    )


def test_s3_destination_defaults_and_kms() -> None:
    destination = parse_definition(variant(S3)).destination
    assert isinstance(destination, S3Destination)
    assert (destination.prefix, destination.server_side_encryption) == ("", None)
    kms = parse_definition(variant({"destination": S3_KMS})).destination
    assert isinstance(kms, S3Destination)
    assert (kms.prefix, kms.kms_key_id) == ("pcid/sms/", "alias/reports")


def test_email_single_address_and_duplicates_are_normalised() -> None:
    destination = parse_definition(
        variant({"destination.to": " ops@example.com ", "destination.cc": ["a@x.io", "A@x.io"]})
    ).destination
    assert isinstance(destination, EmailDestination)
    assert destination.to == ["ops@example.com"]
    assert destination.cc == ["a@x.io"]


def test_unquoted_yaml_time_stays_a_time() -> None:
    # Plain YAML 1.1 would read 12:30:00 as the base-60 number 45000.
    text = EXAMPLE_YAML.replace('time_of_day: "06:00:00"', "time_of_day: 12:30:00")
    assert parse_definition(text).schedule.time_of_day == time(12, 30)


ROUND_TRIP_VARIANTS = [
    {},
    {**AEGIS, "filters.include_event_details": True, **SFTP},
    {**BILLING_ORG, **S3, **MONTHLY, "schedule.day_of_month": 31},
    {**WEEKLY, "schedule.day_of_week": "sun", "status": "disabled", "send_when_empty": False},
    {"period": {"kind": "custom_range", "start": "2026-01-01", "end": "2026-03-31"}},
    {"period": {"kind": "rolling_window", "lookback": "2w"}, "description": "Two weeks"},
    {"schedule.frequency": "hourly", "schedule.time_of_day": "12:45:59", "folder": DELETE},
]


@pytest.mark.parametrize("changes", ROUND_TRIP_VARIANTS)
def test_round_trip_through_dict_and_yaml(changes: dict[str, Any]) -> None:
    definition = parse_definition(variant(changes))
    as_dict = definition.to_dict()
    assert parse_definition(as_dict) == definition
    assert parse_definition(definition.to_yaml()) == definition
    import json

    assert json.loads(json.dumps(as_dict)) == as_dict


def test_to_dict_writes_times_and_dates_as_text() -> None:
    definition = parse_definition(
        variant({"period": {"kind": "custom_range", "start": "2026-01-01", "end": "2026-01-02"}})
    )
    as_dict = definition.to_dict()
    assert as_dict["schedule"]["time_of_day"] == "06:00:00"
    assert as_dict["period"] == {"kind": "custom_range", "start": "2026-01-01", "end": "2026-01-02"}
    assert "organization" not in as_dict


def test_load_definition_file(tmp_path: Path) -> None:
    path = tmp_path / "daily.yaml"
    path.write_text(EXAMPLE_YAML, encoding="utf-8")
    assert load_definition_file(path, KNOWN).name == "Daily SMS usage"


def test_load_definition_file_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(EXAMPLE_YAML.replace("06:00:00", "6am"), encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        load_definition_file(path)
    assert str(caught.value) == f"{path}: schedule.time_of_day: must be HH:MM:SS (e.g. '06:00:00'), got '6am'"


def test_load_definition_file_missing(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="cannot read the file"):
        load_definition_file(tmp_path / "nope.yaml")


def test_definition_error_lists_every_problem_one_per_line() -> None:
    data = variant({"schedule.time_of_day": "6am", "schedule.timezone": "Mars/Base", "name": ""})
    with pytest.raises(DefinitionError) as caught:
        parse_definition(data)
    assert len(caught.value.errors) == 3
    assert str(caught.value) == "\n".join(caught.value.errors)
    assert str(caught.value).count("\n") == 2


def test_messages_do_not_leak_pydantic_text() -> None:
    data = variant(
        {
            "name": 5,
            "status": "on",
            "schedule.extra": 1,
            "period": {"kind": "x"},
            "send_when_empty": "x",
        }
    )
    with pytest.raises(DefinitionError) as caught:
        parse_definition(data)
    text = str(caught.value)
    assert "pydantic" not in text
    assert "https://" not in text
    assert "Input should" not in text
    assert "Value error" not in text


def test_models_are_frozen() -> None:
    definition = parse_definition(variant())
    with pytest.raises(ValueError):
        definition.name = "x"  # type: ignore[misc]
    assert isinstance(definition, ReportDefinition)


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("missing name", {"name": DELETE}, "name: required field is missing"),
    ("empty name", {"name": "  "}, "name: must not be empty"),
    ("name not text", {"name": 42}, "name: must be text, got 42"),
    ("name with newline", {"name": "a\nb"}, "name: must be a single line"),
    ("name too long", {"name": "x" * 201}, "name: must be at most 200 characters"),
    ("unknown type", {"type": "fax_usage"}, "type: must be one of 'voice_usage', 'sms_usage'"),
    ("missing type", {"type": DELETE}, "type: required field is missing"),
    (
        "bad status",
        {"status": "paused"},
        "status: must be one of 'enabled' or 'disabled', got 'paused'",
    ),
    (
        "unknown top-level field",
        {"workspce": "x"},
        "workspce: unknown field; did you mean 'workspace'?",
    ),
    ("unknown field named", {"colour": "red"}, "colour: unknown field"),
    ("folder with slash", {"folder": "a/b"}, "folder: must be a folder name without '/'"),
    ("no scope", {"workspace": DELETE}, "workspace: required: set workspace"),
    (
        "both scopes",
        {"type": "billing", "organization": "acme", "filename_pattern": "b.xlsx"},
        "organization: give either workspace or organization, not both",
    ),
    (
        "organization on sms",
        {"workspace": DELETE, "organization": "acme"},
        "organization: only billing reports may be scoped to an organization",
    ),
    (
        "workflows on sms",
        {"filters": {"workflows": []}},
        "filters.workflows: sms_usage reports have no 'workflows' filter (allowed: core_campaigns, engage_campaigns)",
    ),
    (
        "campaigns on sms",
        {"filters": {"campaigns": ["Acme East Sales Line"]}},
        "filters.campaigns: sms_usage reports have no 'campaigns' filter; did you mean 'core_campaigns'? "
        "(allowed: core_campaigns, engage_campaigns)",
    ),
    (
        "campaigns on aegis",
        {**AEGIS, "filters.core_campaigns": ["Acme East Sales Line"]},
        "filters.core_campaigns: aegis_interaction reports have no 'core_campaigns' filter",
    ),
    (
        "campaigns on billing",
        {"type": "billing", "filename_pattern": "b.xlsx", "filters": {"campaigns": ["Acme East Sales Line"]}},
        "filters: billing reports take no filters: a workbook covers its whole workspace or organization",
    ),
    (
        "voice campaigns not a list",
        {"type": "voice_usage", "filters": {"campaigns": "Acme East Sales Line"}},
        "filters.campaigns: must be a list of Core campaign names, got 'Acme East Sales Line'",
    ),
    (
        "sms engage campaign empty",
        {"filters": {"engage_campaigns": [" "]}},
        "filters.engage_campaigns: must not be empty",
    ),
    (
        "filters workflows not list",
        {**AEGIS, "filters.workflows": "inbound"},
        "filters.workflows: must be a list of workflow names, got 'inbound'",
    ),
    (
        "filters unknown field",
        {**AEGIS, "filters.workflow": ["x"]},
        "filters.workflow: aegis_interaction reports have no 'workflow' filter; did you mean 'workflows'?",
    ),
    (
        "filters details not bool",
        {**AEGIS, "filters.include_event_details": "yes"},
        "filters.include_event_details: must be true or false, got 'yes'",
    ),
    ("missing schedule", {"schedule": DELETE}, "schedule: required field is missing"),
    (
        "schedule not mapping",
        {"schedule": "daily"},
        "schedule: must be a mapping of fields, got 'daily'",
    ),
    (
        "time 6am",
        {"schedule.time_of_day": "6am"},
        "schedule.time_of_day: must be HH:MM:SS (e.g. '06:00:00'), got '6am'",
    ),
    (
        "time without seconds",
        {"schedule.time_of_day": "06:00"},
        "schedule.time_of_day: must be HH:MM:SS",
    ),
    (
        "time hour 24",
        {"schedule.time_of_day": "24:00:00"},
        "schedule.time_of_day: must be HH:MM:SS",
    ),
    (
        "time minute 60",
        {"schedule.time_of_day": "06:60:00"},
        "schedule.time_of_day: must be HH:MM:SS",
    ),
    (
        "time second 60",
        {"schedule.time_of_day": "06:00:60"},
        "schedule.time_of_day: must be HH:MM:SS",
    ),
    (
        "time single digit hour",
        {"schedule.time_of_day": "6:00:00"},
        "schedule.time_of_day: must be HH:MM:SS",
    ),
    (
        "time number",
        {"schedule.time_of_day": 600},
        "schedule.time_of_day: must be HH:MM:SS (e.g. '06:00:00'), got 600",
    ),
    (
        "typo timezone",
        {"schedule.timezone": "America/New_Yrok"},
        "schedule.timezone: unknown timezone 'America/New_Yrok'; did you mean 'America/New_York'?",
    ),
    (
        "nonsense timezone",
        {"schedule.timezone": "Mars/Olympus"},
        "schedule.timezone: unknown timezone 'Mars/Olympus'",
    ),
    (
        "path timezone",
        {"schedule.timezone": "/etc/passwd"},
        "schedule.timezone: unknown timezone '/etc/passwd'",
    ),
    (
        "missing timezone",
        {"schedule.timezone": DELETE},
        "schedule.timezone: required field is missing",
    ),
    (
        "bad frequency",
        {"schedule.frequency": "fortnightly"},
        "schedule.frequency: must be one of 'hourly', 'daily', 'weekly' or 'monthly', got 'fortnightly'",
    ),
    (
        "day_of_week on daily",
        {"schedule.day_of_week": "monday"},
        "schedule.day_of_week: only allowed when frequency is weekly (frequency is daily)",
    ),
    (
        "day_of_month on weekly",
        {**WEEKLY, "schedule.day_of_month": 3},
        "schedule.day_of_month: only allowed when frequency is monthly (frequency is weekly)",
    ),
    (
        "day_of_week on monthly",
        {**MONTHLY, "schedule.day_of_week": "tue"},
        "schedule.day_of_week: only allowed when frequency is weekly (frequency is monthly)",
    ),
    (
        "day_of_month on hourly",
        {"schedule.frequency": "hourly", "schedule.day_of_month": 1},
        "schedule.day_of_month: only allowed when frequency is monthly (frequency is hourly)",
    ),
    (
        "bad weekday",
        {**WEEKLY, "schedule.day_of_week": "funday"},
        "schedule.day_of_week: must be a weekday name like 'monday' or 'mon', got 'funday'",
    ),
    (
        "numeric weekday",
        {**WEEKLY, "schedule.day_of_week": 1},
        "schedule.day_of_week: must be a weekday name",
    ),
    (
        "day_of_month 0",
        {**MONTHLY, "schedule.day_of_month": 0},
        "schedule.day_of_month: must be a whole number from 1 to 31, got 0",
    ),
    (
        "day_of_month 32",
        {**MONTHLY, "schedule.day_of_month": 32},
        "schedule.day_of_month: must be a whole number from 1 to 31, got 32",
    ),
    (
        "day_of_month text",
        {**MONTHLY, "schedule.day_of_month": "first"},
        "schedule.day_of_month: must be a whole number from 1 to 31",
    ),
    (
        "schedule unknown field",
        {"schedule.frequncy": "daily"},
        "schedule.frequncy: unknown field; did you mean 'frequency'?",
    ),
    ("missing period", {"period": DELETE}, "period: required field is missing"),
    (
        "period without kind",
        {"period": {"lookback": "6h"}},
        "period.kind: required field is missing",
    ),
    (
        "unknown period kind",
        {"period": {"kind": "yesterday"}},
        "period.kind: must be one of previous_day, previous_week, previous_month, "
        "rolling_window, custom_range, got 'yesterday'",
    ),
    (
        "lookback missing",
        {"period": {"kind": "rolling_window"}},
        "period.lookback: required field is missing",
    ),
    (
        "lookback zero",
        {"period": {"kind": "rolling_window", "lookback": "0h"}},
        "period.lookback: must be a positive whole number",
    ),
    ("lookback no unit", {"period": {"kind": "rolling_window", "lookback": "6"}}, "got '6'"),
    (
        "lookback bad unit",
        {"period": {"kind": "rolling_window", "lookback": "6y"}},
        "period.lookback: must be a positive whole number and a unit m, h, d or w",
    ),
    (
        "lookback negative",
        {"period": {"kind": "rolling_window", "lookback": "-6h"}},
        "period.lookback: must be a positive",
    ),
    (
        "lookback too long",
        {"period": {"kind": "rolling_window", "lookback": "400d"}},
        "period.lookback: must be at most 366 days",
    ),
    (
        "lookback as number",
        {"period": {"kind": "rolling_window", "lookback": 6}},
        "period.lookback: must be a positive whole number and a unit",
    ),
    (
        "extra field on previous_day",
        {"period": {"kind": "previous_day", "lookback": "1d"}},
        "period.lookback: unknown field",
    ),
    (
        "custom range reversed",
        {"period": {"kind": "custom_range", "start": "2026-02-01", "end": "2026-01-01"}},
        "period.end: must be on or after start (2026-02-01)",
    ),
    (
        "custom range bad date",
        {"period": {"kind": "custom_range", "start": "2026-02-30", "end": "2026-03-01"}},
        "period.start: must be a date YYYY-MM-DD, got '2026-02-30'",
    ),
    (
        "custom range datetime text",
        {"period": {"kind": "custom_range", "start": "2026-02-01T00:00", "end": "2026-03-01"}},
        "period.start: must be a date YYYY-MM-DD",
    ),
    (
        "custom range missing end",
        {"period": {"kind": "custom_range", "start": "2026-02-01"}},
        "period.end: required field is missing",
    ),
    ("missing destination", {"destination": DELETE}, "destination: required field is missing"),
    (
        "destination without type",
        {"destination": {"to": ["a@b.co"]}},
        "destination.type: required field is missing (one of email, sftp, s3)",
    ),
    (
        "unknown destination",
        {"destination": {"type": "fax"}},
        "destination.type: must be one of email, sftp, s3, got 'fax'",
    ),
    (
        "email no recipients",
        {"destination.to": []},
        "destination.to: must list at least one e-mail address",
    ),
    ("email missing to", {"destination.to": DELETE}, "destination.to: required field is missing"),
    (
        "email bad address",
        {"destination.to": ["not-an-address"]},
        "destination.to: invalid e-mail address 'not-an-address'",
    ),
    (
        "email no tld",
        {"destination.cc": ["a@localhost"]},
        "destination.cc: invalid e-mail address 'a@localhost'",
    ),
    (
        "email header injection",
        {"destination.bcc": ["a@b.co\nBcc: x@y.co"]},
        "destination.bcc: invalid e-mail address",
    ),
    (
        "email display name",
        {"destination.to": ["Ops <ops@example.com>"]},
        "destination.to: invalid e-mail address",
    ),
    (
        "email double dot",
        {"destination.to": ["a..b@example.com"]},
        "destination.to: invalid e-mail address",
    ),
    (
        "subject unknown token",
        {"destination.subject_template": "{{Report}} {{Date}}"},
        "destination.subject_template: unknown token '{{Report}}'",
    ),
    (
        "subject multi-line",
        {"destination.subject_template": "a\nBcc: x@y.co"},
        "destination.subject_template: must be a single line",
    ),
    (
        "body unknown token",
        {"destination.body_template": "Hi {{Recipient}}"},
        "destination.body_template: unknown token '{{Recipient}}'",
    ),
    (
        "body wrong case token",
        {"destination.body_template": "{{reportname}}"},
        "did you mean {{ReportName}}?",
    ),
    (
        "unbalanced braces",
        {"destination.subject_template": "{{ReportName} report"},
        "unbalanced '{{' or '}}'",
    ),
    (
        "email unknown field",
        {"destination.reply_to": "a@b.co"},
        "destination.reply_to: unknown field",
    ),
    (
        "sftp missing remote_dir",
        {"destination": {"type": "sftp", "connection": "p"}},
        "destination.remote_dir: required field is missing",
    ),
    (
        "sftp dotdot",
        {"destination": {"type": "sftp", "connection": "p", "remote_dir": "/in/../etc"}},
        "destination.remote_dir: must be a '/'-separated path without '..' parts",
    ),
    (
        "sftp connection with spaces",
        {"destination": {"type": "sftp", "connection": "my sftp", "remote_dir": "/in"}},
        "destination.connection: must be a connection name",
    ),
    (
        "sftp create_dirs text",
        {
            "destination": {
                "type": "sftp",
                "connection": "p",
                "remote_dir": "/in",
                "create_dirs": "no",
            }
        },
        "destination.create_dirs: must be true or false, got 'no'",
    ),
    (
        "s3 bad bucket",
        {"destination": {"type": "s3", "connection": "c", "bucket": "Acme_Reports"}},
        "destination.bucket: must be an S3 bucket name",
    ),
    (
        "s3 absolute prefix",
        {"destination": {"type": "s3", "connection": "c", "bucket": "acme", "prefix": "/x/"}},
        "destination.prefix: must not start with '/'",
    ),
    (
        "s3 bad encryption",
        {
            "destination": {
                "type": "s3",
                "connection": "c",
                "bucket": "acme",
                "server_side_encryption": "des",
            }
        },
        "destination.server_side_encryption: must be one of 'AES256' or 'aws:kms', got 'des'",
    ),
    (
        "s3 kms key without kms",
        {"destination": {"type": "s3", "connection": "c", "bucket": "acme", "kms_key_id": "k"}},
        "destination.kms_key_id: only allowed with server_side_encryption: aws:kms",
    ),
    (
        "s3 secret in definition",
        {
            "destination": {
                "type": "s3",
                "connection": "c",
                "bucket": "acme",
                "secret_access_key": "s",
            }
        },
        "destination.secret_access_key: unknown field",
    ),
    (
        "pattern path",
        {"filename_pattern": "out/{{ReportName}}.csv"},
        "filename_pattern: must be a file name, not a path",
    ),
    (
        "pattern backslash",
        {"filename_pattern": "out\\{{ReportName}}.csv"},
        "filename_pattern: must be a file name, not a path",
    ),
    (
        "pattern dotdot",
        {"filename_pattern": "..{{ReportName}}.csv"},
        "filename_pattern: must not contain '..'",
    ),
    (
        "pattern control char",
        {"filename_pattern": "a\tb.csv"},
        "filename_pattern: must not contain control characters",
    ),
    (
        "pattern hidden file",
        {"filename_pattern": ".{{ReportName}}.csv"},
        "filename_pattern: must not start with '.'",
    ),
    (
        "pattern unknown token",
        {"filename_pattern": "{{ReportName}}_{{Today}}.csv"},
        "filename_pattern: unknown token '{{Today}}'",
    ),
    (
        "pattern wrong extension",
        {"filename_pattern": "{{ReportName}}.txt"},
        "filename_pattern: must end with '.csv' for a sms_usage report",
    ),
    (
        "billing csv pattern",
        {"type": "billing", "filename_pattern": "b.csv"},
        "filename_pattern: must end with '.xlsx' for a billing report",
    ),
    ("pattern not text", {"filename_pattern": 5}, "filename_pattern: must be text, got 5"),
    (
        "send_when_empty text",
        {"send_when_empty": "sometimes"},
        "send_when_empty: must be true or false, got 'sometimes'",
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [pytest.param(changes, expected, id=label) for label, changes, expected in INVALID],
)
def test_invalid_definition_is_rejected_with_message(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(variant(changes))
    assert expected in str(caught.value)


def test_the_invalid_table_is_large() -> None:
    assert len(INVALID) >= 45


CONTEXT_INVALID: list[tuple[str, dict[str, Any], str]] = [
    (
        "unknown workspace",
        {"workspace": "acme-north"},
        "workspace: unknown workspace 'acme-north' (known: acme-east, acme-labs, acme-west)",
    ),
    (
        "unknown organization",
        {**BILLING_ORG, "organization": "globex"},
        "organization: unknown organization 'globex' (known: acme)",
    ),
    (
        "unknown workflow",
        {**AEGIS, "filters.workflows": ["inbound-screening", "x"]},
        "filters.workflows: unknown workflow 'x' in workspace 'acme-east'",
    ),
    (
        "workspace without workflows",
        {**AEGIS, "workspace": "acme-west"},
        "filters.workflows: unknown workflow 'inbound-screening' in workspace 'acme-west' (known: none)",
    ),
    (
        "near miss of a voice campaign",
        {"type": "voice_usage", "filters": {"campaigns": ["Acme East Sales Line", "Acme East Sale Line"]}},
        "filters.campaigns: unknown Core campaign 'Acme East Sale Line' in workspace 'acme-east'; "
        "did you mean 'Acme East Sales Line'? (known: Acme East Callback, Acme East Sales Line)",
    ),
    (
        "an Engage campaign as a voice campaign",
        {"type": "voice_usage", "filters": {"campaigns": ["Acme East Promotions"]}},
        "filters.campaigns: unknown Core campaign 'Acme East Promotions' in workspace 'acme-east' "
        "(known: Acme East Callback, Acme East Sales Line); it is an Engage campaign, "
        "which voice_usage reports do not filter on",
    ),
    (
        "unknown Engage campaign",
        {"filters": {"engage_campaigns": ["Acme West Promotions"]}},
        "filters.engage_campaigns: unknown Engage campaign 'Acme West Promotions' in workspace 'acme-east'; "
        "did you mean 'Acme East Promotions'? (known: Acme East Promotions)",
    ),
    (
        "an Engage campaign as an SMS Core campaign",
        {"filters": {"core_campaigns": ["Acme East Promotions"]}},
        "it is an Engage campaign: list it under filters.engage_campaigns",
    ),
    (
        "campaign of a workspace without campaigns",
        {"workspace": "acme-west", "filters": {"core_campaigns": ["Acme East Callback"]}},
        "filters.core_campaigns: unknown Core campaign 'Acme East Callback' in workspace 'acme-west' (known: none)",
    ),
]


def test_campaign_filters_with_known_names_are_accepted_and_kept() -> None:
    voice = parse_definition(
        variant({"type": "voice_usage", "filters": {"campaigns": ["Acme East Sales Line"]}}), KNOWN
    )
    assert voice.to_dict()["filters"] == {"campaigns": ["Acme East Sales Line"]}
    sms = parse_definition(variant({"filters": {"engage_campaigns": ["Acme East Promotions"]}}), KNOWN)
    assert sms.to_dict()["filters"] == {"core_campaigns": [], "engage_campaigns": ["Acme East Promotions"]}
    assert parse_definition(sms.to_dict(), KNOWN) == sms
    assert "filters" not in parse_definition(variant(), KNOWN).to_dict()  # no filters: every campaign


@pytest.mark.parametrize(
    ("changes", "expected"),
    [pytest.param(changes, expected, id=label) for label, changes, expected in CONTEXT_INVALID],
)
def test_unknown_names_are_rejected_with_known_ones_listed(changes: dict[str, Any], expected: str) -> None:
    parse_definition(variant(changes))  # valid without the platform's names
    with pytest.raises(DefinitionError) as caught:
        parse_definition(variant(changes), KNOWN)
    assert any(expected in message for message in caught.value.errors)


def test_context_errors_are_reported_with_model_errors() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(variant({"workspace": "acme-north", "schedule.time_of_day": "6am"}), KNOWN)
    assert len(caught.value.errors) == 2


def test_empty_known_names_reject_every_workspace() -> None:
    with pytest.raises(DefinitionError, match="known: none"):
        parse_definition(variant(), KnownNames())


YAML_INVALID = [
    ("unclosed flow", "name: x\nschedule: {timezone: UTC", "invalid YAML at line 2, column 25"),
    ("bad indentation", "name: x\n  type: y\n type: z", "invalid YAML at line 2"),
    ("duplicate key", EXAMPLE_YAML + "name: again\n", "duplicate key 'name'"),
    ("a list", "- name: x", "the definition must be a mapping of fields"),
    (
        "a scalar",
        "hello",
        "the definition must be a mapping of fields (name:, type:, ...), got 'hello'",
    ),
    ("empty", "# nothing here\n", "the definition is empty"),
    ("tab indentation", "name: x\nschedule:\n\ttimezone: UTC", "invalid YAML at line 3"),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=label) for label, t, e in YAML_INVALID])
def test_invalid_yaml_is_reported_with_its_line(text: str, expected: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text)
    assert expected in str(caught.value)
    assert len(caught.value.errors) == 1


def test_base_fixture_is_valid() -> None:
    assert parse_definition(BASE).name == "Daily SMS usage"
