"""Report builders: turn one report type over one period into a file (CSV or XLSX).

Builders take plain arguments (`ExportSpec`), read the usage store through a lock-free DuckDB
reader and know nothing of schedules, definitions or delivery.
"""

from report_platform.reports.builders.catalog import (
    FILE_EXTENSIONS,
    REPORT_TYPES,
    build_export,
)
from report_platform.reports.builders.spec import (
    BuildResult,
    CsvFormat,
    ExportError,
    ExportSpec,
)

__all__ = [
    "FILE_EXTENSIONS",
    "REPORT_TYPES",
    "BuildResult",
    "CsvFormat",
    "ExportError",
    "ExportSpec",
    "build_export",
]
