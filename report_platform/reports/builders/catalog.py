"""The report types and their builders, and `build_export`: the one entry point from an `ExportSpec` to a file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from report_platform.domain.rate_card import RateCard
from report_platform.domain.tenancy import Tenancy
from report_platform.reports.builders.aegis import build_aegis
from report_platform.reports.builders.billing import build_billing
from report_platform.reports.builders.sms import build_sms
from report_platform.reports.builders.spec import BuildResult, CsvFormat, ExportError, ExportSpec
from report_platform.reports.builders.voice import build_voice

CsvBuilder = Callable[[Path, ExportSpec, Path, CsvFormat], BuildResult]

CSV_BUILDERS: dict[str, CsvBuilder] = {
    "voice_usage": build_voice,
    "sms_usage": build_sms,
    "aegis_interaction": build_aegis,
}
REPORT_TYPES: tuple[str, ...] = (*CSV_BUILDERS, "billing")
FILE_EXTENSIONS: dict[str, str] = {**dict.fromkeys(CSV_BUILDERS, "csv"), "billing": "xlsx"}


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
    if spec.type == "billing":
        return build_billing(store, spec, out_path, tenancy, rate_card)
    builder = CSV_BUILDERS.get(spec.type)
    if builder is None:
        raise ExportError(f"unknown report type {spec.type!r}; expected one of {', '.join(REPORT_TYPES)}")
    if spec.organization_id is not None:
        raise ExportError(f"a {spec.type} report is scoped to one workspace, not an organisation")
    return builder(store, spec, out_path, csv_format or CsvFormat())
