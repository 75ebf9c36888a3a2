"""The report-type catalog is the one description of each type, and definitions follow it."""

from __future__ import annotations

import pytest

from report_platform.reports.builders.catalog import REPORT_KINDS, REPORT_TYPES
from report_platform.reports.definition import default_filename_pattern, extension_for


def test_every_report_type_has_exactly_one_kind() -> None:
    assert tuple(REPORT_KINDS) == REPORT_TYPES


@pytest.mark.parametrize("report_type", REPORT_TYPES)
def test_each_kind_names_a_builder_that_exists(report_type: str) -> None:
    kind = REPORT_KINDS[report_type]
    build = kind.build_function()
    assert callable(build)
    assert build.__name__ == kind.builder.partition(":")[2]


@pytest.mark.parametrize("report_type", REPORT_TYPES)
def test_definition_file_names_end_with_the_catalog_extension(report_type: str) -> None:
    kind = REPORT_KINDS[report_type]
    assert extension_for(report_type) == kind.extension
    assert default_filename_pattern(report_type).endswith(kind.extension)
    assert ("spreadsheetml" in kind.content_type) == (kind.extension == ".xlsx")
