"""Shorthands for the foundation tests."""

from __future__ import annotations

from datetime import date

from report_platform.domain.tenancy import DEMO_TENANCY
from report_platform.ingest.load import IngestResult, SourceSettings, ingest_day
from report_platform.settings import Home

DAY = date(2026, 3, 8)


def ingest(home: Home, source: str, settings: SourceSettings, day: date = DAY) -> IngestResult:
    """Ingest one source and day of the demo tenancy into `home`'s store."""
    return ingest_day(home.store, home.landing, source, day, DEMO_TENANCY, settings)
