import hashlib
from datetime import date

import dagster as dg
import polars as pl
import pytest

from report_platform.domain.tenancy import DEMO_TENANCY
from report_platform.ingest.assets import UsageStoreResource, usage_assets
from report_platform.ingest.generator import generate
from report_platform.ingest.landing import LandingFileError
from report_platform.ingest.load import SourceSettings, write_landing_day
from report_platform.store.duck import reader
from report_platform.store.partitions import partition_path
from report_platform.store.schema import SMS_MESSAGES, VOICE_CALLS
from report_platform_tests.foundation.util import ingest

DAY = date(2026, 3, 8)


def _digest(path):
    frame = pl.read_parquet(path)
    return hashlib.sha256(frame.sort(frame.columns[0]).write_csv().encode()).hexdigest(), frame.height


def test_ingesting_a_day_twice_gives_identical_contents(home):
    write_landing_day(home.landing, "sms_messages", DAY, DEMO_TENANCY, 3000, seed=4)
    ingest(home, "sms_messages", SourceSettings())
    first = _digest(partition_path(home.store, SMS_MESSAGES, DAY))
    ingest(home, "sms_messages", SourceSettings())
    second = _digest(partition_path(home.store, SMS_MESSAGES, DAY))
    assert first == second and first[1] == 3000
    con = reader(home.store)
    assert con.execute("select count(*), count(distinct message_id) from sms_messages").fetchone() == (3000, 3000)


def test_synthetic_mode_without_landing_file_generates_the_same_rows_as_the_landing_file(home):
    write_landing_day(home.landing, "voice_calls", DAY, DEMO_TENANCY, 1000, seed=9)
    landed = ingest(home, "voice_calls", SourceSettings(seed=9, rows_per_day=1000))
    from_landing = _digest(partition_path(home.store, VOICE_CALLS, DAY))
    (home.landing / "voice_calls" / f"{DAY}.parquet").unlink()
    generated = ingest(home, "voice_calls", SourceSettings(seed=9, rows_per_day=1000))
    assert landed.origin.startswith("landing:") and generated.origin.startswith("synthetic")
    assert _digest(partition_path(home.store, VOICE_CALLS, DAY)) == from_landing


def test_landing_mode_without_a_file_fails_naming_the_expected_file(home):
    with pytest.raises(
        LandingFileError,
        match=r"no landing file for sms_messages on 2026-03-08.*sms_messages/2026-03-08",
    ):
        ingest(home, "sms_messages", SourceSettings(mode="landing"))


def _good_csv_rows(n: int = 5) -> pl.DataFrame:
    """Valid voice rows with timestamps written as a landing CSV would carry them."""
    frame = generate("voice_calls", DEMO_TENANCY, DAY, 20, seed=1)["voice_calls"].head(n)
    return frame.with_columns(pl.col("occurred_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.f%:z"))


def test_a_csv_with_some_bad_rows_loads_the_good_ones_and_quarantines_the_rest(home):
    good = _good_csv_rows(5)
    bad = pl.concat(
        [
            good.head(1).with_columns(call_id=pl.lit("bad-duration"), duration_seconds=pl.lit("twelve")),
            good.head(1).with_columns(call_id=pl.lit("bad-workspace"), workspace_id=pl.lit("nowhere")),
            good.head(1).with_columns(call_id=pl.lit("bad-day"), occurred_at=pl.lit("2026-03-09T00:00:00+00:00")),
            good.head(1).with_columns(call_id=pl.lit("bad-status"), status=pl.lit("exploded")),
            good.head(1).with_columns(call_id=pl.lit(None, dtype=pl.String)),
        ],
        how="vertical_relaxed",
    )
    path = home.landing / "voice_calls" / f"{DAY}.csv"
    path.parent.mkdir(parents=True)
    pl.concat([good.cast(pl.String), bad.cast(pl.String)]).write_csv(path)
    result = ingest(home, "voice_calls", SourceSettings(mode="landing"))
    assert result.rows["voice_calls"] == 5
    assert result.quarantined == 5
    con = reader(home.store)
    reasons = dict(
        con.execute(
            "select json_extract_string(raw, '$.call_id'), reason from quarantine order by row_number"
        ).fetchall()
    )
    assert "duration_seconds: not a valid Int32: twelve" in reasons["bad-duration"]
    assert "workspace_id: unknown workspace nowhere" in reasons["bad-workspace"]
    assert "outside the landing day 2026-03-08" in reasons["bad-day"]
    assert "status: must be one of" in reasons["bad-status"]
    assert "call_id: missing" in reasons[None]
    rows = con.execute("select file, row_number from quarantine order by row_number").fetchall()
    assert rows[0] == (str(path), 6)
    # Re-ingesting after the provider fixes the file clears the day's quarantine.
    good.cast(pl.String).write_csv(path)
    again = ingest(home, "voice_calls", SourceSettings(mode="landing"))
    assert again.quarantined == 0
    assert reader(home.store).execute("select count(*) from quarantine").fetchone() == (0,)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("2026-03-08.parquet", b"PAR1 this is not parquet", "cannot be read as parquet"),
        ("2026-03-08.jsonl", b'{"call_id": "a"}\n{not json\n', "line 2: not JSON"),
        (
            "2026-03-08.csv",
            b"call_id,workspace_id\nx,acme-east\n",
            "missing required column(s): occurred_at",
        ),
        (
            "2026-03-08.csv",
            b"call_id,workspace_id,occurred_at\n1,2,3,4,5\n",
            "cannot be read as csv: found more fields",
        ),
        (
            "2026-03-08.csv",
            b'call_id,workspace_id\n"x\xff\xfe,1\n',
            "cannot be read as csv: invalid utf-8",
        ),
    ],
)
def test_a_malformed_landing_file_fails_the_partition_naming_file_and_problem(home, name, content, message):
    path = home.landing / "voice_calls" / name
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    before = reader(home.store).execute("select count(*) from voice_calls").fetchone()
    with pytest.raises(LandingFileError) as err:
        ingest(home, "voice_calls", SourceSettings(mode="landing"))
    assert str(path) in str(err.value) and message in str(err.value)
    assert reader(home.store).execute("select count(*) from voice_calls").fetchone() == before


def test_jsonl_landing_files_load(home):
    write_landing_day(home.landing, "sms_messages", DAY, DEMO_TENANCY, 500, seed=2, fmt="jsonl")
    result = ingest(home, "sms_messages", SourceSettings(mode="landing"))
    assert result.rows == {"sms_messages": 500} and result.quarantined == 0


def test_dagster_materialisation_counts_quarantined_rows_and_fails_clearly_on_a_bad_file(home):
    good = _good_csv_rows(3)
    path = home.landing / "voice_calls" / f"{DAY}.csv"
    path.parent.mkdir(parents=True)
    pl.concat(
        [
            good.cast(pl.String),
            good.head(1).with_columns(call_id=pl.lit("odd-status"), status=pl.lit("??")).cast(pl.String),
        ]
    ).write_csv(path)
    resource = UsageStoreResource(home=str(home.root), source="landing")
    voice = [a for a in usage_assets if dg.AssetKey("voice_calls") in a.keys]
    result = dg.materialize(voice, partition_key=str(DAY), resources={"usage_store": resource})
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["rows"].value == 3 and meta["quarantined_rows"].value == 1
    path.write_bytes(b"call_id\nonly-one-column\n")
    failed = dg.materialize(voice, partition_key=str(DAY), resources={"usage_store": resource}, raise_on_error=False)
    assert not failed.success
    failure = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "missing required column(s)" in failure.step_failure_data.user_failure_data.description


def test_demo_landing_files_load_without_a_single_quarantined_row(home):
    for source in ("voice_calls", "sms_messages", "aegis_transactions"):
        write_landing_day(home.landing, source, DAY, DEMO_TENANCY, 20_000, seed=8)
        result = ingest(home, source, SourceSettings(mode="landing"))
        assert result.quarantined == 0, source
