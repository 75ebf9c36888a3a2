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
from report_platform.reports.archive import Archive, open_archive
from report_platform.settings import DEFAULT_RETENTION_DAYS, Home, S3Location


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
    """The archive folder; with `s3_bucket` set, this machine's cache of the bucket's files."""
    retention_days: int = DEFAULT_RETENTION_DAYS
    s3_bucket: str = ""
    """Keep the archive under this bucket (credentials: the standard AWS chain)."""
    s3_prefix: str = ""
    s3_endpoint_url: str = ""

    def open(self) -> Archive:
        return open_archive(Path(self.root), S3Location.of(self.s3_bucket, self.s3_prefix, self.s3_endpoint_url))

    @property
    def where(self) -> str:
        return self.open().where

    def prune(self) -> list[str]:
        return self.open().prune(self.retention_days)
