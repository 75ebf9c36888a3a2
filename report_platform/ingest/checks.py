"""Asset checks of the usage assets: how much of a day's landing data the ingest refused.

The usage assets declare these checks (`check_specs=`) and evaluate them as they materialise, so
every ingested partition shows its verdict in the UI without a separate run. The checks never
block: the rows that were loaded are correct, and billing is re-derived from them either way;
a high rate is a reason to ask the data provider, not to stop the day.
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from report_platform.ingest.load import IngestResult
from report_platform.store.partitions import Store, partition_rows
from report_platform.store.schema import QUARANTINE

QUARANTINE_CHECK = "quarantine_rate"
WARN_ABOVE = 0.01  # more than 1% of a day's landing rows refused: WARN
ERROR_ABOVE = 0.10  # more than 10%: ERROR


def quarantine_spec(table: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        QUARANTINE_CHECK,
        asset=table,
        description=f"Share of the partition's landing rows that were quarantined: WARN above {WARN_ABOVE:.0%}, "
        f"ERROR above {ERROR_ABOVE:.0%} (the rows and reasons are in the `quarantine` table).",
    )


def quarantine_rate(loaded: int, quarantined: int) -> float:
    """Quarantined rows as a share of all rows that arrived for the table and day."""
    arrived = loaded + quarantined
    return quarantined / arrived if arrived else 0.0


def quarantine_severity(rate: float) -> dg.AssetCheckSeverity | None:
    """None when the rate is acceptable, else how bad it is."""
    if rate > ERROR_ABOVE:
        return dg.AssetCheckSeverity.ERROR
    if rate > WARN_ABOVE:
        return dg.AssetCheckSeverity.WARN
    return None


def quarantined_rows(store: Store, table: str, day: date) -> int:
    """The rows of `table` the ingest of `day` quarantined, from the quarantine partition it wrote.

    `IngestResult.quarantined` counts a whole source; Aegis is two tables, so each asset reads
    its own table's share.
    """
    return partition_rows(store, QUARANTINE, day, name=table)


def quarantine_check(store: Store, table: str, result: IngestResult) -> dg.AssetCheckResult:
    loaded = result.rows.get(table, 0)
    quarantined = quarantined_rows(store, table, result.day)
    rate = quarantine_rate(loaded, quarantined)
    severity = quarantine_severity(rate)
    description = (
        f"{quarantined:,} of {loaded + quarantined:,} landing rows quarantined ({rate:.2%}); "
        f"WARN above {WARN_ABOVE:.0%}, ERROR above {ERROR_ABOVE:.0%}"
    )
    return dg.AssetCheckResult(
        asset_key=table,
        check_name=QUARANTINE_CHECK,
        passed=severity is None,
        severity=severity or dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "quarantine_rate": dg.MetadataValue.float(rate),
            "loaded_rows": dg.MetadataValue.int(loaded),
            "quarantined_rows": dg.MetadataValue.int(quarantined),
            "quarantined_rows_of_source": dg.MetadataValue.int(result.quarantined),
            "warn_above": dg.MetadataValue.float(WARN_ABOVE),
            "error_above": dg.MetadataValue.float(ERROR_ABOVE),
            "origin": dg.MetadataValue.text(result.origin),
        },
    )
