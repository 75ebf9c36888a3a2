"""Wiring shared by every surface: the data folder, the tenancy and the registry service."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import sessionmaker

from report_platform.domain.tenancy import Tenancy, load_tenancy
from report_platform.registry.db import init_registry
from report_platform.registry.service import ReportService
from report_platform.registry.signin import SignInStore
from report_platform.reports.definition import KnownNames, ReportDefinition, parse_definition
from report_platform.settings import Home, PlatformSettings, current_settings

if TYPE_CHECKING:
    from report_platform.delivery.connections import Connections

__all__ = ["definition_of", "known_names", "registry_service", "sign_in_store"]

log = logging.getLogger(__name__)


def known_names(tenancy: Tenancy, connections: Connections | None = None) -> KnownNames:
    """What a definition is checked against; without `connections`, those of $REPORT_PLATFORM_HOME."""
    # Imported here: the delivery package loads dagster_aws, which commands that save nothing skip.
    from report_platform.delivery.connections import Connections

    if connections is None:
        connections = Connections.from_env()
    # An id no organisation has grants nothing (a typo fails closed), so it is a warning, not a refusal.
    for problem in connections.unknown_organizations(org.id for org in tenancy.organizations):
        log.warning("connections.yaml: %s", problem)
    return KnownNames(
        organizations=tenancy.workspace_ids(),
        workflows=tenancy.workflow_names(),
        campaigns=tenancy.campaign_names(),
        connections=connections.availability(),
    )


@lru_cache(maxsize=8)
def _service(registry_url: str, root: str) -> ReportService:
    tenancy = load_tenancy(Path(root))
    connections_file = Home(Path(root)).connections

    @lru_cache(maxsize=2)
    def known_for(version: tuple[int, ...] | None) -> KnownNames:
        from report_platform.delivery.connections import Connections

        return known_names(tenancy, Connections.load(connections_file))

    def validate(definition: dict[str, Any]) -> dict[str, Any]:
        # Checked against the file as it is now, so an edited connections.yaml counts without a
        # restart; it is parsed again only when it changed.
        try:
            stat = connections_file.stat()
            version = (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
        except FileNotFoundError:
            version = None
        return parse_definition(definition, known_for(version)).to_dict()

    service = ReportService(init_registry(registry_url), validate)
    service.register_tenancy((org.id, org.name, [w.id for w in org.workspaces]) for org in tenancy.organizations)
    return service


def registry_service(home: Home) -> ReportService:
    """The registry service of `home` (its database, tenancy and connections), tenancy registered.

    Dagster code gets it from the `registry` resource and the CLI from the settings; the service
    is made once per database and folder in a process (it holds the connection pool).
    """
    home = home.ensure()
    return _service(home.registry_url, str(home.root))


def sign_in_store(home: Home, settings: PlatformSettings | None = None, **overrides: Any) -> SignInStore:
    """Passwords, sessions and API tokens of `home`'s registry, with the settings' session limits.

    `overrides` go to `SignInStore` (a clock or a hasher, for tests).
    """
    settings = settings or current_settings()
    engine = registry_service(home).engine  # the registry, migrated, and its connection pool
    options: dict[str, Any] = {
        "idle": timedelta(minutes=settings.session_idle_minutes),
        "max_age": timedelta(hours=settings.session_max_hours),
    }
    return SignInStore(sessionmaker(engine, expire_on_commit=False), **(options | overrides))


def definition_of(stored: dict[str, Any]) -> ReportDefinition:
    """A stored (already validated) definition as the typed model."""
    return parse_definition(stored)
