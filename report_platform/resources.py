"""The resources of a deployment, built in one place from the platform's settings.

Every value comes from `PlatformSettings` (read once from the environment); no resource reads the
environment itself, so the CLI, the Dagster assets and the IO managers answer from the same
configuration. Secrets are not resource values: connections name the variables that hold them.
"""

from __future__ import annotations

from typing import Any

from report_platform.ingest.assets import UsageStoreResource
from report_platform.scheduling.report_io_manager import ReportDeliveryIOManager
from report_platform.settings import PlatformSettings, current_settings


def deployment_resources(settings: PlatformSettings | None = None) -> dict[str, Any]:
    """Resource key -> resource, for the deployment `settings` describe (default: this process's)."""
    settings = settings or current_settings()
    home = settings.data_home
    return {
        "usage_store": UsageStoreResource.from_settings(settings),
        "delivery_io_manager": ReportDeliveryIOManager(
            connections_file=str(home / "connections.yaml"),
            registry_url=settings.registry_url or f"sqlite:///{home / 'registry.db'}",
        ),
    }
