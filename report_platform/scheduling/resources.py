"""The Dagster resources the report runs, schedules and sensors use, besides the usage store.

Each is configured in one place (`report_platform.resources.deployment_resources`) from the
platform's settings; none reads the environment itself. The registry is a resource so that the
export assets, the delivery IO manager, the schedules and the sensors all talk to the registry
the deployment names, never to whatever a module-level global finds.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from report_platform.app import registry_service
from report_platform.delivery.connections import Connections
from report_platform.registry.service import ReportService
from report_platform.reports.archive import prune
from report_platform.settings import DEFAULT_RETENTION_DAYS, Home


class RegistryResource(dg.ConfigurableResource):
    """The report registry, checked against the tenancy and connections of `data_home`."""

    registry_url: str
    """SQLAlchemy URL of the registry database (SQLite or PostgreSQL)."""
    data_home: str
    """The data folder: its tenancy and connections.yaml are what definitions are checked against."""

    def service(self) -> ReportService:
        """The registry service (one per database and folder in this process)."""
        return registry_service(Home(Path(self.data_home), self.registry_url))


class ConnectionsResource(dg.ConfigurableResource):
    """The named SMTP, SFTP and S3 connections: each destination's client is made from these."""

    connections_file: str

    def load(self) -> Connections:
        # Read at each use, so an edited connections.yaml counts without restarting the daemon.
        return Connections.load(Path(self.connections_file))


class ArchiveResource(dg.ConfigurableResource):
    """The archive of built exports, and how long each run's files are kept."""

    root: str
    retention_days: int = DEFAULT_RETENTION_DAYS

    def prune(self) -> list[Path]:
        return prune(Path(self.root), self.retention_days)
