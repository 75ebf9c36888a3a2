"""Reading and checking a report definition needs no transport, no Dagster and no builder.

`reports validate`, the web console and the registry read definitions in processes that never
deliver or build; each library below costs start-up time there (Dagster, boto3 and paramiko
the most). Destinations are delivery's models, so delivery's package must stay light to import.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("boto3", "botocore", "paramiko", "dagster", "dagster_aws", "sqlalchemy", "polars", "duckdb", "openpyxl")

PARSE_A_DEFINITION = """
from report_platform.reports.definition import parse_definition
from report_platform_tests.samples import sms_definition
parse_definition(sms_definition())
"""


def _packages_loaded_by(code: str) -> set[str]:
    """The top-level packages in `sys.modules` after `code` runs in a fresh interpreter."""
    script = code + "\nimport sys\nprint(' '.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("import report_platform.reports.definition", id="definition"),
        pytest.param(PARSE_A_DEFINITION, id="parse_definition"),
        pytest.param("import report_platform.delivery", id="delivery-package"),
        pytest.param("import report_platform.delivery.destinations", id="destinations"),
    ],
)
def test_definitions_and_destinations_import_no_transport_dagster_or_builder(code: str) -> None:
    assert sorted(_packages_loaded_by(code) & set(HEAVY)) == []


def test_delivery_names_still_import_from_the_package() -> None:
    from report_platform.delivery import Artifact, ConfigurationError, Connections, deliver, parse_destination

    assert deliver.__module__ == "report_platform.delivery.dispatch"
    assert parse_destination.__module__ == "report_platform.delivery.destinations"
    assert Artifact.__module__ == "report_platform.delivery.artifact"
    assert issubclass(ConfigurationError, Exception) and Connections.__name__ == "Connections"
