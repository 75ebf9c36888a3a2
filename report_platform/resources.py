"""The resources of a deployment, chosen in one dictionary from the platform's settings.

Every value comes from `PlatformSettings` (read once from the environment, validated there); no
resource reads the environment itself, so the CLI, the Dagster assets, the IO managers, the
schedules and the sensors answer from the same configuration. A value that was set by an
environment variable is handed to Dagster as `EnvVar(...)`, as Dagster's own projects do: the
Dagster UI then shows which variable configures it (not its value), and the settings model has
already refused a malformed one. Secrets are never resource values: connections name the
variables that hold them (see `delivery/connections.py`).
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from report_platform.ingest.assets import UsageStoreResource
from report_platform.scheduling.report_io_manager import ReportDeliveryIOManager
from report_platform.scheduling.resources import ArchiveResource, ConnectionsResource, RegistryResource
from report_platform.settings import ENV_PREFIX, Home, PlatformSettings, current_settings


def _configured(settings: PlatformSettings, field: str) -> Any:
    """The setting's value, or `EnvVar` for it when the environment set it and Dagster can read
    it as it stands (a string or an integer the settings did not have to normalise)."""
    value = getattr(settings, field)
    if field not in settings.model_fields_set:
        return value
    name = f"{ENV_PREFIX}{field.upper()}"
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return dg.EnvVar.int(name)
    if isinstance(value, str):
        return dg.EnvVar(name)
    return value


def deployment_resources(settings: PlatformSettings | None = None) -> dict[str, Any]:
    """Resource key -> resource, for the deployment `settings` describe (default: this process's)."""
    settings = settings or current_settings()
    home = Home(settings.data_home, settings.registry_url)  # the folder's layout, said once
    registry_url = _configured(settings, "registry_url") if settings.registry_url else home.registry_url
    connections_file = str(home.connections)
    registry = RegistryResource(registry_url=registry_url, data_home=str(home.root))
    return {
        "usage_store": UsageStoreResource(
            home=str(home.root),
            source=_configured(settings, "source"),
            seed=_configured(settings, "seed"),
            rows_per_day=_configured(settings, "rows_per_day"),
            landing_s3_bucket=_configured(settings, "landing_s3_bucket"),
            landing_s3_prefix=_configured(settings, "landing_s3_prefix"),
            landing_s3_endpoint_url=_configured(settings, "landing_s3_endpoint_url"),
            store_s3_bucket=_configured(settings, "store_s3_bucket"),
            store_s3_prefix=_configured(settings, "store_s3_prefix"),
            store_s3_endpoint_url=_configured(settings, "store_s3_endpoint_url"),
        ),
        "registry": registry,
        "connections": ConnectionsResource(connections_file=connections_file),
        "archive": ArchiveResource(
            root=str(home.archive),
            retention_days=_configured(settings, "archive_retention_days"),
            s3_bucket=_configured(settings, "archive_s3_bucket"),
            s3_prefix=_configured(settings, "archive_s3_prefix"),
            s3_endpoint_url=_configured(settings, "archive_s3_endpoint_url"),
        ),
        "delivery_io_manager": ReportDeliveryIOManager(connections_file=connections_file, registry=registry),
    }
