"""Assembles the Dagster code location; nothing is defined here."""

from __future__ import annotations

import dagster as dg

from report_platform.ingest.assets import (
    UsageStoreResource,
    usage_assets,
    usage_daily_schedule,
    usage_job,
)

defs = dg.Definitions(
    assets=usage_assets,
    jobs=[usage_job],
    schedules=[usage_daily_schedule],
    resources={"usage_store": UsageStoreResource()},
)
