"""The report types, and `build_export`: the one entry point from an `ExportSpec` to a file.

The one place a report type is described: the file it writes (extension, content type), the
usage tables it reads and its builder. Definitions ask it for extensions and the Dagster assets
for sources. Importing it is cheap: a builder (Polars, DuckDB, openpyxl) is imported when a
build first needs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from report_platform.reports.builders.spec import (
    CSV_CONTENT_TYPE,
    XLSX_CONTENT_TYPE,
    BuildResult,
    CsvFormat,
    ExportError,
    ExportSpec,
)

if TYPE_CHECKING:
    from report_platform.domain.rate_card import RateCard
    from report_platform.domain.tenancy import Tenancy

ReportType = Literal["voice_usage", "sms_usage", "aegis_interaction", "billing"]
REPORT_TYPES: tuple[str, ...] = get_args(ReportType)


@dataclass(frozen=True)
class ReportKind:
    """One report type: the file it writes, the usage assets it reads, and its builder."""

    name: str
    extension: str  # with the dot, as file names end: ".csv"
    content_type: str
    sources: tuple[str, ...]
    builder: str  # "module:function" in this package, imported on first use

    def build_function(self) -> Callable[..., BuildResult]:
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)


REPORT_KINDS: dict[str, ReportKind] = {
    kind.name: kind
    for kind in (
        ReportKind("voice_usage", ".csv", CSV_CONTENT_TYPE, ("voice_calls",), "voice:build_voice"),
        ReportKind("sms_usage", ".csv", CSV_CONTENT_TYPE, ("sms_messages",), "sms:build_sms"),
        ReportKind(
            "aegis_interaction", ".csv", CSV_CONTENT_TYPE, ("aegis_transactions", "aegis_events"), "aegis:build_aegis"
        ),
        ReportKind("billing", ".xlsx", XLSX_CONTENT_TYPE, ("billing_line_items",), "billing:build_billing"),
    )
}
FILE_EXTENSIONS: dict[str, str] = {name: kind.extension.removeprefix(".") for name, kind in REPORT_KINDS.items()}


def extension_for(report_type: str) -> str:
    """The extension (".csv", ".xlsx") of the files a report type writes."""
    return REPORT_KINDS[report_type].extension


def build_export(
    store: Path,
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
    build = kind.build_function()
    if spec.type == "billing":
        return build(store, spec, out_path, tenancy, rate_card)
    if spec.organization_id is not None:
        raise ExportError(f"a {spec.type} report is scoped to one workspace, not an organisation")
    return build(store, spec, out_path, csv_format or CsvFormat())
