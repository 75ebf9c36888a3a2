"""Billing line items of one UTC day: usage counted per workspace and priced by the rate card.

Monthly fees (campaigns, BYOP pools, 10DLC campaigns, protect numbers) are charged on the 1st
of the month; usage lines on the day it happened. Taxes are not line items: they are a
percentage of the period's priced lines, computed when a billing report is built.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl

from report_platform.domain.rate_card import RateCard
from report_platform.domain.tenancy import Tenancy
from report_platform.store.partitions import Store, read_partition, write_partition
from report_platform.store.schema import (
    AEGIS_TRANSACTIONS,
    BILLING_LINE_ITEMS,
    MONEY,
    SMS_MESSAGES,
    VOICE_CALLS,
)


def _usage_quantities(store: Store, day: date) -> pl.DataFrame:
    """(workspace_id, type, quantity) from the day's usage partitions."""
    voice = read_partition(store, VOICE_CALLS, day)
    sms = read_partition(store, SMS_MESSAGES, day)
    aegis = read_partition(store, AEGIS_TRANSACTIONS, day)
    minutes = (pl.col("duration_seconds") + 59) // 60  # VoIP is billed per started minute
    parts = [
        voice.group_by("workspace_id").agg(pl.len().cast(MONEY).alias("quantity")).with_columns(type=pl.lit("Calls")),
        voice.filter(pl.col("duration_seconds") > 0)
        .group_by("workspace_id", "jurisdiction")
        .agg(minutes.sum().cast(MONEY).alias("quantity"))
        .with_columns(
            type=pl.when(pl.col("jurisdiction") == "intrastate")
            .then(pl.lit("IntrastateVoIP"))
            .otherwise(pl.lit("InterstateVoIP"))
        )
        .drop("jurisdiction"),
        sms.filter(pl.col("direction") == "outbound")
        .group_by("workspace_id")
        .agg(pl.col("segments").sum().cast(MONEY).alias("quantity"))
        .with_columns(type=pl.lit("Messages")),
        sms.filter(pl.col("carrier_fee") > 0)
        .group_by("workspace_id")
        .agg(pl.col("carrier_fee").sum().cast(MONEY).alias("quantity"))
        .with_columns(type=pl.lit("MessageCarrierFees")),
        aegis.group_by("workspace_id")
        .agg(pl.len().cast(MONEY).alias("quantity"))
        .with_columns(type=pl.lit("Transactions")),
        aegis.group_by("workspace_id", "workflow_tier")
        .agg(pl.len().cast(MONEY).alias("quantity"))
        .with_columns(
            type=pl.when(pl.col("workflow_tier") == "lite")
            .then(pl.lit("AegisLiteTransactions"))
            .otherwise(pl.lit("AegisEttTransactions"))
        )
        .drop("workflow_tier"),
    ]
    return pl.concat([p.select("workspace_id", "type", "quantity") for p in parts])


def _monthly_fees(tenancy: Tenancy) -> pl.DataFrame:
    rows = []
    for ws in tenancy.workspaces():
        counts = {
            "CampaignFee": len(ws.campaigns_of("core")),
            "ByopPoolFee": len(ws.campaigns_of("byop")),
            "SmsLongCodeFee": len(ws.campaigns_of("10dlc")),
            "ProtectNumber": ws.protect_numbers,
        }
        rows += [{"workspace_id": ws.id, "type": t, "quantity": Decimal(q)} for t, q in counts.items() if q]
    return pl.DataFrame(rows, schema={"workspace_id": pl.String, "type": pl.String, "quantity": MONEY})


def derive_billing_day(store: Store, day: date, tenancy: Tenancy, rate_card: RateCard) -> pl.DataFrame:
    quantities = _usage_quantities(store, day)
    if day.day == 1:
        quantities = pl.concat([quantities, _monthly_fees(tenancy)])
    org_of = pl.DataFrame(
        {
            "workspace_id": [w.id for w in tenancy.workspaces()],
            "organization_id": [w.organization_id for w in tenancy.workspaces()],
        }
    )
    rates = pl.DataFrame(
        {
            "type": list(rate_card.lines),
            "description": [r.description for r in rate_card.lines.values()],
            "rate": [r.rate for r in rate_card.lines.values()],
        },
        schema={"type": pl.String, "description": pl.String, "rate": MONEY},
    )
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return (
        quantities.filter(pl.col("quantity") > 0)
        .join(org_of, on="workspace_id", how="inner")
        .join(rates, on="type", how="inner")
        .with_columns(day=pl.lit(day), occurred_at=pl.lit(start).cast(pl.Datetime("us", "UTC")))
        .select(BILLING_LINE_ITEMS.names)
        .sort("organization_id", "workspace_id", "type")
    )


def refresh_billing_day(store: Store, day: date, tenancy: Tenancy, rate_card: RateCard) -> tuple[pl.DataFrame, str]:
    """Derive the day's line items and replace its `billing_line_items` partition."""
    frame = derive_billing_day(store, day, tenancy, rate_card)
    return frame, write_partition(store, BILLING_LINE_ITEMS, day, frame)
