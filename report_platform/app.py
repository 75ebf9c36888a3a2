"""Wiring shared by every surface: the data folder, the tenancy and the registry service."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from report_platform.domain.tenancy import Tenancy, load_tenancy
from report_platform.registry.db import init_registry
from report_platform.registry.service import SYSTEM_ACTOR, ReportService
from report_platform.reports.definition import KnownNames, ReportDefinition, parse_definition
from report_platform.settings import Home

__all__ = ["SYSTEM_ACTOR", "known_names", "open_service", "definition_of"]


def known_names(tenancy: Tenancy) -> KnownNames:
    return KnownNames(organizations=tenancy.workspace_ids(), workflows=tenancy.workflow_names())


@lru_cache(maxsize=8)
def _service(registry_url: str, root: str) -> ReportService:
    from pathlib import Path

    tenancy = load_tenancy(Path(root))
    known = known_names(tenancy)

    def validate(definition: dict[str, Any]) -> dict[str, Any]:
        return parse_definition(definition, known).to_dict()

    service = ReportService(init_registry(registry_url), validate)
    for org in tenancy.organizations:
        service.register_organization(org.id, [w.id for w in org.workspaces], name=org.name)
    return service


def open_service(home: Home | None = None) -> ReportService:
    """The registry service for this data folder, with the tenancy registered."""
    home = (home or Home.from_env()).ensure()
    return _service(home.registry_url, str(home.root))


def definition_of(stored: dict[str, Any]) -> ReportDefinition:
    """A stored (already validated) definition as the typed model."""
    return parse_definition(stored)
