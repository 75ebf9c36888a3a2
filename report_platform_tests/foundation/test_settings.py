"""One settings model: every surface (CLI, Dagster assets, resources) answers from the same values."""

from __future__ import annotations

import ast
from pathlib import Path

import dagster as dg
import pytest

from report_platform.settings import SettingsError, current_settings

PACKAGE = Path(__file__).resolve().parents[2] / "report_platform"


def test_scheduled_ingestion_with_source_landing_fails_for_a_day_without_a_landing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("REPORT_PLATFORM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REPORT_PLATFORM_SOURCE", "landing")
    monkeypatch.delenv("REPORT_PLATFORM_REGISTRY_URL", raising=False)
    from report_platform.definitions import build_definitions
    from report_platform.ingest.assets import voice_calls

    definitions = build_definitions([], 0)
    result = dg.materialize(
        [voice_calls],
        resources=definitions.resources,
        partition_key="2026-03-08",
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    # The production setting says "landing only": never invent synthetic usage for a missing day.
    assert not result.success
    assert not list((tmp_path / "home" / "store" / "voice_calls").glob("day=2026-03-08/*.parquet"))


def test_a_malformed_setting_is_refused_naming_its_variable(monkeypatch):
    monkeypatch.setenv("REPORT_PLATFORM_ROWS_PER_DAY", "lots")
    with pytest.raises(SettingsError, match="REPORT_PLATFORM_ROWS_PER_DAY"):
        current_settings()


def _reads_environment(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv", "environb")
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            lines.append(node.lineno)
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in ("environ", "getenv") for alias in node.names)
        ):
            lines.append(node.lineno)
    return lines


def test_no_module_but_the_settings_model_reads_the_environment():
    readers = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).as_posix()
        if relative == "report_platform/settings.py":
            continue
        lines = _reads_environment(ast.parse(path.read_text(encoding="utf-8")))
        if lines:
            readers[relative] = lines
    assert readers == {}
