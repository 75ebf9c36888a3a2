"""The landing zone under an S3 prefix (moto's S3 server on loopback), read as Dagster does."""

from datetime import date

import dagster as dg
import polars as pl

from report_platform.domain.tenancy import DEMO_TENANCY
from report_platform.ingest.assets import UsageStoreResource, usage_assets
from report_platform.ingest.generator import generate
from report_platform.store.duck import reader
from report_platform_tests.servers.fixtures import moto_server  # noqa: F401

DAY = date(2026, 3, 8)


def test_usage_lands_from_an_s3_prefix_with_bad_rows_quarantined(home, moto_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "landing-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "landing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    moto_server.create_bucket("usage-landing")
    frame = generate("voice_calls", DEMO_TENANCY, DAY, 500, seed=3)["voice_calls"]
    text = pl.concat(
        [
            frame.cast(pl.String),
            frame.head(1).cast(pl.String).with_columns(call_id=pl.lit("x"), duration_seconds=pl.lit("-")),
        ]
    ).write_csv()
    moto_server.client().put_object(Bucket="usage-landing", Key=f"acme/voice_calls/{DAY}.csv", Body=text.encode())
    resource = UsageStoreResource(
        home=str(home.root),
        source="landing",
        landing_s3_bucket="usage-landing",
        landing_s3_prefix="acme/",
        landing_s3_endpoint_url=moto_server.endpoint_url,
    )
    voice = [a for a in usage_assets if dg.AssetKey("voice_calls") in a.keys]
    result = dg.materialize(voice, partition_key=str(DAY), resources={"usage_store": resource})
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["rows"].value == frame.height and meta["quarantined_rows"].value == 1
    assert meta["origin"].value == f"landing:s3://usage-landing/acme/voice_calls/{DAY}.csv"
    con = reader(home.store)
    assert con.execute("select count(*) from voice_calls").fetchone() == (frame.height,)
    assert con.execute("select file from quarantine").fetchone() == (f"s3://usage-landing/acme/voice_calls/{DAY}.csv",)
