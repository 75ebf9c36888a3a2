"""`format:` and `manifest:` in report definitions: what is accepted, defaulted and refused."""

from __future__ import annotations

from typing import Any

import pytest

from report_platform.reports.definition import DefinitionError, parse_definition
from report_platform.reports.definition.model import default_filename_pattern, filename_pattern_errors

from .conftest import DELETE, variant

SFTP = {"type": "sftp", "connection": "partner-sftp", "remote_dir": "/inbound"}
S3 = {"type": "s3", "connection": "reports-aws", "bucket": "acme-reports"}


@pytest.mark.parametrize(("file_format", "ext"), [("csv", ".csv"), ("csv.gz", ".csv.gz"), ("parquet", ".parquet")])
def test_the_default_filename_pattern_follows_the_format(file_format: str, ext: str) -> None:
    definition = parse_definition(variant({"format": file_format, "filename_pattern": DELETE}))
    assert definition.filename_pattern == "{{ReportName}}_{{PeriodStart}}_{{PeriodEnd}}" + ext
    assert definition.file_format == file_format and definition.extension == ext


@pytest.mark.parametrize("type_", ["voice_usage", "sms_usage", "aegis_interaction"])
def test_every_usage_type_accepts_parquet_and_csv_gz(type_: str) -> None:
    for file_format, pattern in (("parquet", "r.parquet"), ("csv.gz", "{{ReportName}}.csv.gz")):
        definition = parse_definition(variant({"type": type_, "format": file_format, "filename_pattern": pattern}))
        assert definition.file_format == file_format


def test_a_definition_without_format_is_csv_and_reads_back_unchanged() -> None:
    definition = parse_definition(variant())
    assert definition.format is None and definition.file_format == "csv"
    assert "format" not in definition.to_dict()
    parquet = parse_definition(variant({"format": "parquet", "filename_pattern": "x.parquet"}))
    assert parse_definition(parquet.to_dict()) == parquet and parquet.to_dict()["format"] == "parquet"


INVALID: list[tuple[str, dict[str, Any], str]] = [
    (
        "unknown format",
        {"format": "json"},
        "format: unknown format 'json'; expected one of csv, csv.gz, parquet for a sms_usage report",
    ),
    ("format not text", {"format": 5}, "format: must be text, got 5"),
    (
        "billing parquet",
        {"type": "billing", "format": "parquet", "filename_pattern": "b.parquet"},
        "format: a billing report cannot be written as parquet; it is only xlsx",
    ),
    (
        "usage xlsx",
        {"format": "xlsx", "filename_pattern": "b.xlsx"},
        "format: a sms_usage report cannot be written as xlsx; it is one of csv, csv.gz, parquet",
    ),
    (
        "parquet with a csv pattern",
        {"format": "parquet"},
        "filename_pattern: must end with '.parquet' for a sms_usage report in format parquet "
        "(for a .csv file, set format: csv)",
    ),
    (
        "parquet pattern without format",
        {"filename_pattern": "x.parquet"},
        "filename_pattern: must end with '.csv' for a sms_usage report (for a .parquet file, set format: parquet)",
    ),
    (
        "csv.gz with a plain csv pattern",
        {"format": "csv.gz", "filename_pattern": "x.csv"},
        "filename_pattern: must end with '.csv.gz' for a sms_usage report in format csv.gz",
    ),
    (
        "manifest on e-mail",
        {"destination.manifest": True},
        "destination.manifest: only sftp and s3 destinations can carry a manifest",
    ),
    (
        "manifest not a bool",
        {"destination": {**SFTP, "manifest": "yes"}},
        "destination.manifest: must be true or false, got 'yes'",
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected"), [pytest.param(changes, expected, id=label) for label, changes, expected in INVALID]
)
def test_invalid_format_or_manifest_is_refused_with_a_message(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(variant(changes))
    assert expected in str(caught.value)


@pytest.mark.parametrize("destination", [SFTP, S3])
def test_file_destinations_take_manifest(destination: dict[str, Any]) -> None:
    definition = parse_definition(variant({"destination": {**destination, "manifest": True}}))
    assert definition.destination.manifest is True  # type: ignore[union-attr]
    assert definition.to_dict()["destination"]["manifest"] is True
    plain = parse_definition(variant({"destination": destination}))
    assert plain.destination.manifest is False  # type: ignore[union-attr]


def test_pattern_helpers_know_the_format() -> None:
    assert default_filename_pattern("billing", "parquet").endswith(".xlsx")  # the format's own error is reported
    assert filename_pattern_errors("x.parquet", "sms_usage", "parquet") == []
    assert filename_pattern_errors("x.csv", "sms_usage", "csv.gz") == [
        "must end with '.csv.gz' for a sms_usage report in format csv.gz (for a .csv file, set format: csv)"
    ]
