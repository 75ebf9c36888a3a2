"""The analyst-facing tables of the usage store: names, column types and what each column means.

Every table is stored as one Parquet file per UTC day and exposed as a DuckDB view of the same
name. `docs/store.md` is generated from `TABLES` (`report-platform docs-store`), so this module is
the single description of the store.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")
MONEY = pl.Decimal(18, 6)


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    doc: str
    required: bool = True  # a landing row without it is quarantined


@dataclass(frozen=True)
class Table:
    name: str
    doc: str
    columns: tuple[Column, ...]

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in self.columns}

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(name: str, dtype: pl.DataType, doc: str, required: bool = True) -> Column:
    return Column(name, dtype, doc, required)


VOICE_CALLS = Table(
    "voice_calls",
    "Inbound callback calls to Core campaign numbers, one row per call.",
    (
        _c("call_id", pl.String, "Unique call identifier."),
        _c("workspace_id", pl.String, "Workspace the call belongs to."),
        _c("occurred_at", UTC_TS, "When the call started (UTC)."),
        _c("from_number", pl.String, "Originating number, E.164."),
        _c("to_number", pl.String, "Number dialled (a Core campaign number), E.164."),
        _c("destination", pl.String, "Endpoint the call was routed to (SIP URI or E.164)."),
        _c("campaign_id", pl.String, "Core campaign id."),
        _c("campaign_name", pl.String, "Core campaign display name."),
        _c("status", pl.String, "completed, no-answer, busy, failed, voicemail or canceled."),
        _c("duration_seconds", pl.Int32, "Talk time in seconds (0 when not answered)."),
        _c("jurisdiction", pl.String, "intrastate or interstate, for VoIP billing."),
    ),
)

SMS_MESSAGES = Table(
    "sms_messages",
    "SMS/MMS messages, inbound and outbound, one row per message.",
    (
        _c("message_id", pl.String, "Unique message identifier."),
        _c("workspace_id", pl.String, "Workspace the message belongs to."),
        _c("occurred_at", UTC_TS, "When the platform processed the message (UTC)."),
        _c("direction", pl.String, "inbound or outbound."),
        _c("status", pl.String, "Overall status: delivered, sent, failed, received, queued."),
        _c("from_number", pl.String, "Sending number, E.164."),
        _c("to_number", pl.String, "Recipient number, E.164."),
        _c("core_campaign", pl.String, "Core campaign name, or null.", False),
        _c("engage_campaign", pl.String, "Engage campaign name, or null.", False),
        _c("tendlc_campaign_id", pl.String, "SMS 10DLC campaign id, or null.", False),
        _c("message", pl.String, "Original message content.", False),
        _c("segments", pl.Int32, "Billable segments (GSM-7 153/160, UCS-2 67/70 per segment)."),
        _c("carrier_fee", MONEY, "Carrier pass-through fee for this message, USD."),
        _c("message_type", pl.String, "SMS or MMS."),
        _c("sent_status", pl.String, "Delivery status returned by the carrier.", False),
        _c("sent_message", pl.String, "Final message as delivered.", False),
        _c("error_status", pl.String, "Error classification when delivery failed.", False),
        _c("error_message", pl.String, "Detailed error description.", False),
    ),
)

AEGIS_TRANSACTIONS = Table(
    "aegis_transactions",
    "Calls screened by an Aegis workflow, one row per transaction.",
    (
        _c("transaction_id", pl.String, "Unique transaction identifier."),
        _c("workspace_id", pl.String, "Workspace the transaction belongs to."),
        _c("occurred_at", UTC_TS, "When the transaction started (UTC)."),
        _c("workflow", pl.String, "Aegis workflow name."),
        _c("workflow_tier", pl.String, "lite or etl (billing tier of the workflow)."),
        _c("from_number", pl.String, "Originating number, E.164."),
        _c("to_number", pl.String, "Presented (DNIS) number, E.164."),
        _c("result", pl.String, "Accepted or Rejected."),
        _c("reason", pl.String, "Why the transaction was accepted or rejected.", False),
        _c("city", pl.String, "Caller's city.", False),
        _c("state", pl.String, "Caller's state (two letters).", False),
        _c("zip", pl.String, "Caller's ZIP code.", False),
        _c("caller_timezone", pl.String, "Caller's IANA timezone."),
        _c("is_test", pl.Boolean, "System-initiated test transaction."),
        _c("pcid_from", pl.String, "Core number substituted for the caller, or null.", False),
        _c("databoost_valid", pl.Boolean, "DataBoost: number is valid.", False),
        _c("databoost_activity_score", pl.Int32, "DataBoost activity score 0-100.", False),
        _c("databoost_line_type", pl.String, "mobile, landline, voip, toll-free…", False),
        _c("databoost_carrier", pl.String, "Carrier of the number.", False),
        _c("dnc_blocked", pl.Boolean, "On the federal Do Not Call list.", False),
        _c("dnc_san_coverage", pl.Boolean, "Subscription Account Number coverage.", False),
        _c("dnc_reason", pl.String, "Federal DNC result detail.", False),
        _c("state_dnc_blocked", pl.Boolean, "On a state DNC list.", False),
        _c("state_dnc_reason", pl.String, "State DNC result detail.", False),
        _c("litigator_blocked", pl.Boolean, "Associated with a known litigator.", False),
        _c("litigator_info", pl.String, "Litigator flag detail.", False),
        _c("sip_duration_seconds", pl.Int32, "SIP call duration in seconds.", False),
        _c("sip_status", pl.Int32, "Final SIP response status code.", False),
        _c("sip_hangup_cause", pl.String, "Hangup cause text (Q.850).", False),
        _c("sip_hangup_cause_code", pl.Int32, "Hangup cause code (Q.850).", False),
        _c("sip_attestation", pl.String, "STIR/SHAKEN attestation A, B or C.", False),
    ),
)

AEGIS_EVENTS = Table(
    "aegis_events",
    "Ordered event stream of each Aegis transaction (5-40 events), stored in the transaction's day.",
    (
        _c("transaction_id", pl.String, "Transaction the event belongs to."),
        _c("workspace_id", pl.String, "Workspace of the transaction."),
        _c("seq", pl.Int32, "Position in the transaction's event stream, from 1."),
        _c("occurred_at", UTC_TS, "When the event happened (UTC)."),
        _c("event_type", pl.String, "What happened, e.g. databoost.lookup, dnc.check."),
        _c("detail", pl.String, "Event payload as a JSON object."),
    ),
)

AEGIS_INTERACTIONS = Table(
    "aegis_interactions",
    "Aegis transactions with their event streams rendered as JSON, one row per transaction, in workspace, "
    "time, then transaction order: what the Aegis export with event details reads. Derived from "
    "aegis_transactions and aegis_events when a day is ingested, and by the aegis_interactions asset for "
    "days ingested before this table existed; a day whose events cannot be rendered (a detail that is not "
    "JSON) has no rows here. Each file records the SHA-256 of the two partitions it was derived from, and "
    "exports use it only while they still match.",
    (
        *AEGIS_TRANSACTIONS.columns,
        _c(
            "events",
            pl.String,
            'The event stream as one JSON array ordered by seq, exactly as exports write it: [{"seq":1,'
            '"at":"…+00:00","type":"…","detail":{…}},…]. Null when the transaction has no events.',
            False,
        ),
    ),
)

BILLING_LINE_ITEMS = Table(
    "billing_line_items",
    "Billable quantities per workspace, UTC day and line type, priced with the rate card.",
    (
        _c("organization_id", pl.String, "Organisation of the workspace."),
        _c("workspace_id", pl.String, "Workspace charged."),
        _c("day", pl.Date, "UTC day the usage happened (monthly fees: the 1st of the month)."),
        _c("occurred_at", UTC_TS, "Start of that UTC day, for period filters."),
        _c("type", pl.String, "Line type, e.g. Messages, Calls, CampaignFee."),
        _c("description", pl.String, "Human description of the line."),
        _c("quantity", MONEY, "Units used (messages, segments, minutes, campaigns, USD for fees)."),
        _c("rate", MONEY, "Price per unit from the rate card in force, USD."),
    ),
)

QUARANTINE = Table(
    "quarantine",
    "Landing-zone rows that failed validation, kept with the reason (never silently dropped).",
    (
        _c("source", pl.String, "Usage table the row was meant for."),
        _c("day", pl.Date, "Landing day (UTC)."),
        _c("file", pl.String, "Landing file the row came from."),
        _c("row_number", pl.Int64, "1-based row number within the file."),
        _c("reason", pl.String, "Why the row was refused."),
        _c("raw", pl.String, "The row as read, as JSON."),
    ),
)

USAGE_TABLES: tuple[Table, ...] = (VOICE_CALLS, SMS_MESSAGES, AEGIS_TRANSACTIONS, AEGIS_EVENTS)
TABLES: tuple[Table, ...] = (*USAGE_TABLES, AEGIS_INTERACTIONS, BILLING_LINE_ITEMS, QUARANTINE)
TABLES_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}


def empty_frame(table: Table) -> pl.DataFrame:
    return pl.DataFrame(schema=table.schema)


def sql_type(dtype: pl.DataType) -> str:
    """The type DuckDB shows analysts for a column of this Polars type."""
    if dtype == UTC_TS:
        return "TIMESTAMP WITH TIME ZONE"
    if isinstance(dtype, pl.Decimal):
        return f"DECIMAL({dtype.precision},{dtype.scale})"
    names = {
        pl.String: "VARCHAR",
        pl.Int32: "INTEGER",
        pl.Int64: "BIGINT",
        pl.Boolean: "BOOLEAN",
        pl.Date: "DATE",
    }
    return names[dtype.base_type()]


def markdown() -> str:
    """The store's tables as Markdown, for analysts."""
    lines = ["# The usage store", ""]
    lines.append(
        "Open `$REPORT_PLATFORM_HOME/store.duckdb` read-only (`duckdb -readonly FILE`) or use "
        "`report-platform sql`. Each table is a view over one Parquet file per UTC day under "
        "`store/<table>/day=YYYY-MM-DD/`. Timestamps are UTC (`TIMESTAMP WITH TIME ZONE`). "
        "With the store on S3 (`REPORT_PLATFORM_STORE_S3_BUCKET`) the same tables and days live "
        "under the bucket's prefix, there is no `store.duckdb`, and analysts use "
        "`report-platform sql`: see `docs/object-storage.md`."
    )
    for t in TABLES:
        lines += [
            "",
            f"## `{t.name}`",
            "",
            t.doc,
            "",
            "| column | type | meaning |",
            "|---|---|---|",
        ]
        lines += [f"| `{c.name}` | {sql_type(c.dtype)} | {c.doc} |" for c in t.columns]
    from report_platform.store.analyst_access import ANALYST_ACCESS_MARKDOWN

    return "\n".join(lines) + "\n\n" + ANALYST_ACCESS_MARKDOWN
