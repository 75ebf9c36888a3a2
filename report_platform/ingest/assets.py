"""Usage data as daily-partitioned Dagster assets (partition = UTC day) in the usage store.

`billing_line_items` is downstream of the usage assets, and Dagster skips it when one of them
fails. So that the store's billing never outlives the usage it was derived from, each usage asset
re-derives its day's billing as it replaces its partitions; the billing asset derives it again
and records the materialisation. `aegis_interactions` follows the same pattern: the Aegis ingest
renders it, and the asset renders it only when it is not current (a backfill of days ingested
before it existed, or of days re-ingested without it).
"""

from dataclasses import replace
from datetime import date
from pathlib import Path

import dagster as dg

from report_platform.domain.rate_card import load_rate_card
from report_platform.domain.tenancy import load_tenancy
from report_platform.ingest.billing import refresh_billing_day
from report_platform.ingest.checks import quarantine_check, quarantine_spec
from report_platform.ingest.interactions import InteractionsError, refresh_interactions_day
from report_platform.ingest.landing import LandingFileError, LocalLanding, S3Landing
from report_platform.ingest.load import IngestResult, SourceSettings, ingest_day
from report_platform.settings import Home, S3Location, current_settings
from report_platform.store.duck import ensure_catalog
from report_platform.store.schema import TABLES_BY_NAME, Table, sql_type

USAGE_START = current_settings().usage_start.isoformat()
USAGE_POOL = "usage_store"  # writers of the store run one at a time (limit in dagster.yaml)
daily_partitions = dg.DailyPartitionsDefinition(start_date=USAGE_START, timezone="UTC")

# Bump an asset's code version whenever what it writes changes (validation, columns, generator,
# derivation): the UI then flags partitions materialised by the older code as changed.
CODE_VERSIONS = {
    "voice_calls": "1",
    "sms_messages": "1",
    "aegis_transactions": "1",
    "aegis_events": "1",
    "aegis_interactions": "1",
    "billing_line_items": "1",
}


class UsageStoreResource(dg.ConfigurableResource):
    """Where usage comes from and goes to.

    `home` is the data folder (default `$REPORT_PLATFORM_HOME`). `source` is `synthetic` (a landing
    file is used when present, the deterministic generator otherwise) or `landing` (a day without
    a landing file fails). Set `landing_s3_bucket` to read the landing zone from S3 instead of
    `<home>/landing`, with credentials from the standard AWS chain.
    """

    home: str = ""
    source: str = "synthetic"
    seed: int = 7
    rows_per_day: int = 2_000
    landing_s3_bucket: str = ""
    landing_s3_prefix: str = ""
    landing_s3_endpoint_url: str = ""
    store_s3_bucket: str = ""
    store_s3_prefix: str = ""
    store_s3_endpoint_url: str = ""

    def home_dir(self) -> Home:
        store = S3Location.of(self.store_s3_bucket, self.store_s3_prefix, self.store_s3_endpoint_url)
        if not self.home:
            # The settings' data folder; the resource's own bucket, when it names one, wins.
            home = Home.from_env()
            return (replace(home, store_s3=store) if store else home).ensure()
        return Home(Path(self.home).resolve(), store_s3=store).ensure()

    def settings(self) -> SourceSettings:
        return SourceSettings(mode=self.source, seed=self.seed, rows_per_day=self.rows_per_day)

    def landing(self):  # noqa: ANN201 - LocalLanding | S3Landing
        if self.landing_s3_bucket:
            import boto3

            client = boto3.client("s3", endpoint_url=self.landing_s3_endpoint_url or None)
            return S3Landing(client, self.landing_s3_bucket, self.landing_s3_prefix)
        return LocalLanding(self.home_dir().landing)

    def ingest(self, source: str, day: date) -> IngestResult:
        home = self.home_dir()
        ensure_catalog(home.store, home.catalog)
        return ingest_day(
            home.store,
            home.landing,
            source,
            day,
            load_tenancy(home.root),
            self.settings(),
            self.landing(),
            load_rate_card(home.rate_card),
        )


def _day(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


def column_schema(table: Table) -> dg.TableSchema:
    """The store table's columns as Dagster shows them: DuckDB type, meaning, NULL allowed."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                c.name,
                sql_type(c.dtype),
                description=c.doc,
                constraints=dg.TableColumnConstraints(nullable=not c.required),
            )
            for c in table.columns
        ]
    )


def _definition_metadata(table: str) -> dict:
    return {"dagster/column_schema": dg.MetadataValue.table_schema(column_schema(TABLES_BY_NAME[table]))}


def _metadata(result: IngestResult, table: str) -> dict:
    rows = result.rows.get(table, 0)
    return {
        "rows": dg.MetadataValue.int(rows),
        "dagster/row_count": dg.MetadataValue.int(rows),
        "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(TABLES_BY_NAME[table])),
        "quarantined_rows": dg.MetadataValue.int(result.quarantined),
        "origin": dg.MetadataValue.text(result.origin),
        "path": dg.MetadataValue.path(result.paths.get(table, "")),
    }


def _materialized(store: UsageStoreResource, result: IngestResult, table: str) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        asset_key=table,
        metadata=_metadata(result, table),
        check_results=[quarantine_check(store.home_dir().store, table, result)],
    )


def _ingest_or_fail(store: UsageStoreResource, source: str, day: date) -> IngestResult:
    try:
        return store.ingest(source, day)
    except LandingFileError as exc:
        raise dg.Failure(description=str(exc)) from exc


def _usage_asset(table: str, group: str):  # noqa: ANN202
    @dg.asset(
        name=table,
        partitions_def=daily_partitions,
        group_name=group,
        kinds={"duckdb", "parquet"},
        pool=USAGE_POOL,
        description=TABLES_BY_NAME[table].doc + " One Parquet partition per UTC day, replaced atomically.",
        tags={"layer": "usage"},
        code_version=CODE_VERSIONS[table],
        metadata=_definition_metadata(table),
        check_specs=[quarantine_spec(table)],
    )
    def _asset(context: dg.AssetExecutionContext, usage_store: UsageStoreResource) -> dg.MaterializeResult:
        result = _ingest_or_fail(usage_store, table, _day(context))
        return _materialized(usage_store, result, table)

    return _asset


voice_calls = _usage_asset("voice_calls", "usage")
sms_messages = _usage_asset("sms_messages", "usage")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "aegis_transactions",
            description=TABLES_BY_NAME["aegis_transactions"].doc,
            group_name="usage",
            kinds={"duckdb", "parquet"},
            partitions_def=daily_partitions,
            code_version=CODE_VERSIONS["aegis_transactions"],
            metadata=_definition_metadata("aegis_transactions"),
        ),
        dg.AssetSpec(
            "aegis_events",
            description=TABLES_BY_NAME["aegis_events"].doc,
            group_name="usage",
            kinds={"duckdb", "parquet"},
            partitions_def=daily_partitions,
            deps=["aegis_transactions"],
            code_version=CODE_VERSIONS["aegis_events"],
            metadata=_definition_metadata("aegis_events"),
        ),
    ],
    check_specs=[quarantine_spec("aegis_transactions"), quarantine_spec("aegis_events")],
    partitions_def=daily_partitions,
    pool=USAGE_POOL,
)
def aegis(context: dg.AssetExecutionContext, usage_store: UsageStoreResource):  # noqa: ANN201
    """Aegis transactions and their ordered event streams for one UTC day."""
    result = _ingest_or_fail(usage_store, "aegis_transactions", _day(context))
    if result.interactions_problem:
        context.log.warning(f"aegis_interactions not derived: {result.interactions_problem}")
    yield _materialized(usage_store, result, "aegis_transactions")
    yield _materialized(usage_store, result, "aegis_events")


@dg.asset(
    partitions_def=daily_partitions,
    group_name="usage",
    kinds={"duckdb", "parquet"},
    deps=["aegis_transactions", "aegis_events"],
    pool=USAGE_POOL,
    tags={"layer": "usage"},
    code_version=CODE_VERSIONS["aegis_interactions"],
    metadata=_definition_metadata("aegis_interactions"),
)
def aegis_interactions(context: dg.AssetExecutionContext, usage_store: UsageStoreResource) -> dg.MaterializeResult:
    """Aegis transactions with their event streams rendered as the export's JSON, one row per
    transaction, derived from the day's `aegis_transactions` and `aegis_events` partitions. The
    Aegis ingest derives it already; this renders a day only when that partition is not current."""
    home = usage_store.home_dir()
    if not isinstance(home.store, Path):
        # A store on S3 keeps no aegis_interactions (it is streamed into a local file); its Aegis
        # exports aggregate the day's events as they did before the table existed.
        return dg.MaterializeResult(
            metadata={
                "derived": dg.MetadataValue.bool(False),
                "reason": dg.MetadataValue.text("aegis_interactions is kept in a local usage store only"),
            }
        )
    try:
        derived = refresh_interactions_day(home.store, _day(context))
    except InteractionsError as exc:
        raise dg.Failure(description=str(exc)) from exc
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(derived.rows),
            "dagster/row_count": dg.MetadataValue.int(derived.rows),
            "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(TABLES_BY_NAME["aegis_interactions"])),
            "rendered_now": dg.MetadataValue.bool(derived.rendered),
            "path": dg.MetadataValue.path(str(derived.path)),
        }
    )


@dg.asset(
    partitions_def=daily_partitions,
    group_name="billing",
    kinds={"duckdb", "parquet"},
    deps=["voice_calls", "sms_messages", "aegis_transactions"],
    pool=USAGE_POOL,
    tags={"layer": "usage"},
    code_version=CODE_VERSIONS["billing_line_items"],
    metadata=_definition_metadata("billing_line_items"),
)
def billing_line_items(context: dg.AssetExecutionContext, usage_store: UsageStoreResource) -> dg.MaterializeResult:
    """Billable quantities per workspace, UTC day and line type, priced with the rate card
    (`$REPORT_PLATFORM_HOME/rate_card.yaml`). Monthly fees land on the 1st of the month."""
    home = usage_store.home_dir()
    day = _day(context)
    frame, path = refresh_billing_day(home.store, day, load_tenancy(home.root), load_rate_card(home.rate_card))
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(frame.height),
            "dagster/row_count": dg.MetadataValue.int(frame.height),
            "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(TABLES_BY_NAME["billing_line_items"])),
            "path": dg.MetadataValue.path(str(path)),
        }
    )


usage_assets = [voice_calls, sms_messages, aegis, aegis_interactions, billing_line_items]
usage_job = dg.define_asset_job(
    "usage_ingest_job",
    selection=dg.AssetSelection.assets(*usage_assets),
    description="Ingest one UTC day of usage and derive its billing line items.",
    # Its five steps write the store one at a time (pool `usage_store`): in one process.
    executor_def=dg.in_process_executor,
)
usage_daily_schedule = dg.build_schedule_from_partitioned_job(
    usage_job, hour_of_day=1, minute_of_hour=15, name="usage_ingest_daily_schedule"
)
