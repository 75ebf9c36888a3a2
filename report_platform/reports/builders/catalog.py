"""The report types, and `build_export`: the one entry point from an `ExportSpec` to a file.

The one place a report type is described: the formats it can write (the first is its default;
each with its extension and content type), the usage tables it reads and its builder.
Definitions ask it for formats and extensions and the Dagster assets for sources. Importing it
is cheap: a builder (Polars, DuckDB, openpyxl) is imported when a build first needs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from report_platform.reports.builders.spec import (
    FORMAT_CONTENT_TYPES,
    FORMAT_EXTENSIONS,
    BuildResult,
    CsvFormat,
    ExportError,
    ExportSpec,
)

if TYPE_CHECKING:
    from report_platform.domain.rate_card import RateCard
    from report_platform.domain.tenancy import Tenancy
    from report_platform.store.partitions import Store

ReportType = Literal["voice_usage", "sms_usage", "aegis_interaction", "billing"]
REPORT_TYPES: tuple[str, ...] = get_args(ReportType)


USAGE_FORMATS = ("csv", "csv.gz", "parquet")


@dataclass(frozen=True)
class ReportKind:
    """One report type: the formats it writes (the first is the default), the usage assets it
    reads, and its builder."""

    name: str
    formats: tuple[str, ...]
    sources: tuple[str, ...]
    builder: str  # "module:function" in this package, imported on first use

    @property
    def default_format(self) -> str:
        return self.formats[0]

    @property
    def extension(self) -> str:
        """The default format's extension, with the dot, as file names end: ".csv"."""
        return FORMAT_EXTENSIONS[self.default_format]

    @property
    def content_type(self) -> str:
        return FORMAT_CONTENT_TYPES[self.default_format]

    def build_function(self) -> Callable[..., BuildResult]:
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)


REPORT_KINDS: dict[str, ReportKind] = {
    kind.name: kind
    for kind in (
        ReportKind("voice_usage", USAGE_FORMATS, ("voice_calls",), "voice:build_voice"),
        ReportKind("sms_usage", USAGE_FORMATS, ("sms_messages",), "sms:build_sms"),
        ReportKind(
            "aegis_interaction",
            USAGE_FORMATS,
            ("aegis_transactions", "aegis_events", "aegis_interactions"),
            "aegis:build_aegis",
        ),
        ReportKind("billing", ("xlsx",), ("billing_line_items",), "billing:build_billing"),
    )
}
FILE_EXTENSIONS: dict[str, str] = {name: kind.extension.removeprefix(".") for name, kind in REPORT_KINDS.items()}


def formats_for(report_type: str) -> tuple[str, ...]:
    """The formats a report type can write; the first is its default."""
    return REPORT_KINDS[report_type].formats


def default_format(report_type: str) -> str:
    return REPORT_KINDS[report_type].default_format


def extension_for(report_type: str, file_format: str | None = None) -> str:
    """The extension (".csv", ".csv.gz", ".parquet", ".xlsx") of a report type's files in
    `file_format` (default: the type's default format)."""
    return FORMAT_EXTENSIONS[file_format or default_format(report_type)]


def content_type_for(report_type: str, file_format: str | None = None) -> str:
    return FORMAT_CONTENT_TYPES[file_format or default_format(report_type)]


def format_problem(report_type: str, file_format: str | None) -> str | None:
    """Why `file_format` cannot be used for `report_type`, or None when it can."""
    if file_format is None:
        return None
    allowed = formats_for(report_type)
    if file_format in allowed:
        return None
    if file_format in FORMAT_EXTENSIONS:
        only = "only" if len(allowed) == 1 else "one of"
        return f"a {report_type} report cannot be written as {file_format}; it is {only} {', '.join(allowed)}"
    return f"unknown format {file_format!r}; expected one of {', '.join(allowed)} for a {report_type} report"


def columns_for(report_type: str, include_event_details: bool = False) -> tuple[tuple[str, str], ...]:
    """(name, type) of each column of a report type's file, in order; types as Parquet writes them
    (a CSV holds the same values as text). Billing: the columns of each workbook tab."""
    if report_type == "billing":
        from report_platform.reports.builders import billing

        return tuple(zip(billing.HEADERS, ("string", "string", "decimal", "decimal", "decimal"), strict=True))
    from report_platform.reports.builders import aegis, sms, voice
    from report_platform.reports.builders.csv_writer import column_types

    columns = {"voice_usage": voice.COLUMNS, "sms_usage": sms.COLUMNS}.get(report_type)
    return column_types(columns if columns is not None else aegis.columns(include_event_details))


def build_export(
    store: Store,
    spec: ExportSpec,
    out_path: Path,
    tenancy: Tenancy,
    rate_card: RateCard,
    *,
    csv_format: CsvFormat | None = None,
) -> BuildResult:
    """Build `spec` from the usage store into `out_path` (written under a temporary name and
    renamed, so `out_path` is either absent, the previous file, or the complete new one)."""
    kind = REPORT_KINDS.get(spec.type)
    if kind is None:
        raise ExportError(f"unknown report type {spec.type!r}; expected one of {', '.join(REPORT_TYPES)}")
    problem = format_problem(spec.type, spec.format)
    if problem is not None:
        raise ExportError(problem)
    build = kind.build_function()
    if spec.type == "billing":
        return build(store, spec, out_path, tenancy, rate_card)
    if spec.organization_id is not None:
        raise ExportError(f"a {spec.type} report is scoped to one workspace, not an organisation")
    return build(store, spec, out_path, csv_format or CsvFormat())
