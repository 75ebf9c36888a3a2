"""Ingest a range of UTC days, source by source; optionally told to Dagster.

Each source's ingest re-derives the day's billing (`ingest_day` with the rate card), so when a
source fails the run stops with billing still matching what the store holds for that day.
"""

from __future__ import annotations

import os
from datetime import date
from typing import Any

from rich.progress import Progress

from report_platform.domain.rate_card import load_rate_card
from report_platform.domain.tenancy import load_tenancy
from report_platform.ingest.generator import SOURCES, day_range
from report_platform.ingest.landing import LocalLanding
from report_platform.ingest.load import SourceSettings, ingest_day
from report_platform.settings import Home, current_settings
from report_platform.store.duck import ensure_catalog


def _dagster_instance():  # noqa: ANN202
    """The Dagster instance of $DAGSTER_HOME, or None when there is none to tell."""
    dagster_home = current_settings().dagster_home
    if not dagster_home or not os.path.isdir(dagster_home):
        return None
    import dagster as dg

    return dg.DagsterInstance.get()


def _report_to_dagster(instance, asset: str, day: date, rows: int) -> None:  # noqa: ANN001
    """Record the materialisation in the Dagster instance so the UI shows CLI ingestions too."""
    if instance is None:
        return
    import dagster as dg

    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=asset,
            partition=day.isoformat(),
            metadata={"rows": rows, "via": "report-platform ingest"},
        )
    )


def ingest_range(home: Home, first: date, last: date, progress: Any = None) -> list[dict]:
    ensure_catalog(home.store, home.catalog)
    tenancy = load_tenancy(home.root)
    rate_card = load_rate_card(home.rate_card)
    settings = SourceSettings.from_env()
    landing = LocalLanding(home.landing)
    days = day_range(first, last)
    out: list[dict] = []
    ctx = progress if progress is not None else Progress(disable=True)
    instance = _dagster_instance()
    with ctx:
        task = ctx.add_task("ingest", total=len(days) * (len(SOURCES) + 1))
        for day in days:
            billing_rows: int | None = None
            try:
                for source in SOURCES:
                    r = ingest_day(home.store, home.landing, source, day, tenancy, settings, landing, rate_card)
                    billing_rows = r.billing_rows
                    summary = {
                        "source": source,
                        "day": day.isoformat(),
                        "origin": r.origin,
                        "rows": r.rows,
                        "quarantined": r.quarantined,
                    }
                    if r.interactions_problem:
                        summary["aegis_interactions_not_derived"] = r.interactions_problem
                    out.append(summary)
                    for table, n in r.rows.items():
                        _report_to_dagster(instance, table, day, n)
                    ctx.advance(task)
            finally:
                # The day's billing changed with the first source that loaded, even if a later one failed.
                if billing_rows is not None:
                    _report_to_dagster(instance, "billing_line_items", day, billing_rows)
            out.append(
                {
                    "source": "billing_line_items",
                    "day": day.isoformat(),
                    "origin": "derived",
                    "rows": {"billing_line_items": billing_rows},
                    "quarantined": 0,
                }
            )
            ctx.advance(task)
    return out
