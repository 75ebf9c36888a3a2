"""Aegis exports with event details read each day's rendered `aegis_interactions` partition when it
is current, and aggregate the day's events otherwise: both give the same bytes, in every format."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from report_platform.domain.tenancy import DEMO_TENANCY
from report_platform.ingest import interactions
from report_platform.ingest.assets import UsageStoreResource, usage_assets
from report_platform.ingest.generator import generate_aegis
from report_platform.ingest.interactions import (
    InteractionsError,
    current_interactions,
    refresh_interactions_day,
)
from report_platform.ingest.load import SourceSettings, ingest_day, write_landing_day
from report_platform.reports.builders import ExportSpec, aegis, build_export
from report_platform.store.partitions import partition_path, write_partition
from report_platform.store.query import run_read_only
from report_platform.store.schema import AEGIS_EVENTS, AEGIS_INTERACTIONS, AEGIS_TRANSACTIONS
from report_platform_tests.builders.helpers import read_csv_module
from report_platform_tests.foundation.test_cli import rp

DAY = date(2026, 3, 8)
WORKSPACES = [w.id for w in DEMO_TENANCY.workspaces()]

# Event types and JSON payloads that test escaping and the normalisation `json()` applies.
TYPES = [
    "transaction.received",
    'quote "inside"',
    "back\\slash",
    "new\nline and\r\ncrlf",
    "tab\tdel\x7f control\x01\x1f",
    "ünïcödé ✓ 漢字 عربى 🚀",
    "=SUM(A1)",
    "line\u2028separator",
]
DETAILS = [
    '{"step":1,"outcome":"ok"}',
    '{ "spaced" : [1, 2.50, 1e3, -0.0] ,\n "b" : null }',
    '{"q":"say \\"hi\\", ok","nl":"a\\nb\\r\\n","u":"\\u00e9\\ud83d\\ude80","raw":"ü✓🚀 漢字"}',
    "{}",
    '{"nested":{"x":[{"y":true},{"z":false}]},"comma,key":"a,b"}',
    '{"big":12345678901234567890,"small":-0.000001}',
    '{"dup":1,"dup":2}',
    '  {"padded":"\\t"}  ',
]


def hostile_day(store: Path, day: date, seed: int) -> None:
    """A day as an older store may hold it: events in no particular order, transactions without
    events, seq with gaps and negatives, hostile text, events of another workspace and orphans."""
    tx, _ = generate_aegis(DEMO_TENANCY, day, 1_200, seed)
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 7, tx.height)  # 0: a transaction with no events
    owner = np.repeat(np.arange(tx.height), counts)
    n = len(owner)
    seq = np.concatenate([rng.choice(np.arange(-3, 60), size=c, replace=False) for c in counts])
    micros = rng.integers(0, 600_000_000, n)
    micros[::7] = 0  # whole seconds still carry six digits
    events = pl.DataFrame(
        {
            "transaction_id": tx["transaction_id"].gather(owner),
            "workspace_id": tx["workspace_id"].gather(owner),
            "seq": seq.astype(np.int32),
            "occurred_at": tx["occurred_at"].gather(owner) + pl.Series(micros).cast(pl.Duration("us")),
            "event_type": [TYPES[i] for i in rng.integers(0, len(TYPES), n)],
            "detail": [DETAILS[i] for i in rng.integers(0, len(DETAILS), n)],
        }
    )
    # An event filed under another workspace than its transaction's, and events of no transaction.
    stray = events.head(25).with_columns(workspace_id=pl.lit(WORKSPACES[-1]), seq=pl.col("seq") + 100)
    orphans = events.head(10).with_columns(transaction_id=pl.format("gone-{}", pl.col("seq")))
    events = pl.concat([events, stray, orphans]).sample(fraction=1.0, shuffle=True, seed=seed)
    write_partition(store, AEGIS_TRANSACTIONS, day, tx)
    write_partition(store, AEGIS_EVENTS, day, events)


def spec(workspace: str, fmt: str, start: datetime, end: datetime, workflows: tuple[str, ...] = ()) -> ExportSpec:
    return ExportSpec(
        "aegis_interaction",
        workspace,
        None,
        "UTC",
        start,
        end,
        workflows=workflows,
        include_event_details=True,
        format=fmt,
    )


def specs() -> list[ExportSpec]:
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    out = []
    for fmt in ("csv", "csv.gz", "parquet"):
        for ws in WORKSPACES:
            out.append(spec(ws, fmt, start, start + timedelta(days=2)))
        # Part of the day, and part of the workspace's workflows.
        out.append(spec("acme-east", fmt, start + timedelta(hours=13), start + timedelta(hours=22, seconds=1.5)))
        out.append(spec("acme-west", fmt, start, start + timedelta(days=2), workflows=("collections",)))
    return out


def digests(store: Path, out: Path) -> list[tuple[int, str]]:
    result = []
    for i, export in enumerate(specs()):
        built = build_export(store, export, out / f"{i}.{export.format}", DEMO_TENANCY, None)
        result.append((built.rows, hashlib.sha256(built.path.read_bytes()).hexdigest()))
        assert built.sha256 == result[-1][1]
    return result


@pytest.fixture
def read_days(monkeypatch: pytest.MonkeyPatch) -> list[Path | None]:
    """What the export found for each day it looked at: its derived partition, or None."""
    seen: list[Path | None] = []

    def spy(store: Path, day: date) -> Path | None:
        seen.append(current_interactions(store, day))
        return seen[-1]

    monkeypatch.setattr(aegis, "current_interactions", spy)
    return seen


def test_rendered_days_export_the_same_bytes_as_the_aggregation(tmp_path, monkeypatch, read_days):
    store, out = tmp_path / "store", tmp_path / "out"
    for offset, seed in ((0, 1), (1, 2)):
        hostile_day(store, DAY + timedelta(days=offset), seed)
    # Several windows a day and several row groups a window, so their seams are crossed.
    monkeypatch.setattr(aegis, "EVENTS_ROWS_PER_WINDOW", 37)
    monkeypatch.setattr(interactions, "CHUNK_WEIGHT", 60)

    aggregated = digests(store, out)
    assert set(read_days) == {None}
    for offset in (0, 1):
        assert refresh_interactions_day(store, DAY + timedelta(days=offset)).rendered
    read_days.clear()
    rendered = digests(store, out)
    assert None not in read_days and len(set(read_days)) == 2

    assert rendered == aggregated
    assert all(rows > 0 for rows, _ in aggregated)
    groups = pq.read_metadata(partition_path(store, AEGIS_INTERACTIONS, DAY)).num_row_groups
    assert groups > 10


def test_the_rendered_json_is_the_aggregated_json(tmp_path):
    """The stored column itself, transaction by transaction (analysts read it too)."""
    store = tmp_path / "store"
    hostile_day(store, DAY, 3)
    refresh_interactions_day(store, DAY)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    events_file = str(partition_path(store, AEGIS_EVENTS, DAY))
    tx_file = str(partition_path(store, AEGIS_TRANSACTIONS, DAY))
    expected = dict(
        con.sql(
            f"SELECT t.transaction_id, ev.events FROM read_parquet('{tx_file}') AS t LEFT JOIN ("
            f"  SELECT e.transaction_id, e.workspace_id, {aegis.EVENTS_AGG} AS events"
            f"  FROM read_parquet('{events_file}') AS e GROUP BY ALL"
            ") AS ev ON ev.transaction_id = t.transaction_id AND ev.workspace_id = t.workspace_id"
        ).fetchall()
    )
    stored = run_read_only(store, "SELECT transaction_id, events FROM aegis_interactions", max_rows=100_000)
    assert len(stored.rows) == len(expected) > 300
    assert dict(stored.rows) == expected
    assert None in expected.values()  # transactions without events stay null


def test_a_day_changed_after_rendering_is_read_from_its_events(tmp_path, read_days):
    store, out = tmp_path / "store", tmp_path / "out"
    out.mkdir()
    hostile_day(store, DAY, 4)
    refresh_interactions_day(store, DAY)
    events = pl.read_parquet(partition_path(store, AEGIS_EVENTS, DAY))
    write_partition(store, AEGIS_EVENTS, DAY, events.with_columns(detail=pl.lit('{"replaced":true}')))
    assert current_interactions(store, DAY) is None

    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    built = build_export(
        store, spec("acme-east", "csv", start, start + timedelta(days=1)), out / "a.csv", DEMO_TENANCY, None
    )
    header, rows = read_csv_module(built.path)
    cells = [r[header.index("Events")] for r in rows if r[header.index("Events")]]
    assert cells and all('"detail":{"replaced":true}' in c and "step" not in c for c in cells)
    assert read_days == [None]

    # Deriving again brings the day back to the rendered file, and to the same bytes.
    aggregated = built.path.read_bytes()
    assert refresh_interactions_day(store, DAY).rendered
    again = build_export(
        store, spec("acme-east", "csv", start, start + timedelta(days=1)), out / "b.csv", DEMO_TENANCY, None
    )
    assert read_days[-1] is not None and again.path.read_bytes() == aggregated


def test_ingest_renders_the_day_and_the_asset_renders_only_what_is_not_current(home):
    settings = SourceSettings(rows_per_day=600, seed=5)
    for day in (DAY, DAY + timedelta(days=1)):
        result = ingest_day(home.store, None, "aegis_transactions", day, DEMO_TENANCY, settings)
        assert result.rows["aegis_interactions"] == result.rows["aegis_transactions"] > 0
        assert current_interactions(home.store, day) == partition_path(home.store, AEGIS_INTERACTIONS, day)
    # A store from before the table existed: its days have no rendered partition yet.
    for day in (DAY, DAY + timedelta(days=1)):
        partition_path(home.store, AEGIS_INTERACTIONS, day).unlink()

    asset = [a for a in usage_assets if dg.AssetKey("aegis_interactions") in a.keys]
    resource = {"usage_store": UsageStoreResource(home=str(home.root))}
    for day, expected in ((DAY, True), (DAY + timedelta(days=1), True), (DAY, False)):
        result = dg.materialize(asset, partition_key=day.isoformat(), resources=resource)
        (event,) = result.get_asset_materialization_events()
        meta = event.materialization.metadata
        assert (event.materialization.partition, meta["rendered_now"].value) == (day.isoformat(), expected)
        assert (
            meta["dagster/row_count"].value
            == pq.read_metadata(partition_path(home.store, AEGIS_TRANSACTIONS, day)).num_rows
        )
        assert current_interactions(home.store, day) is not None

    never = dg.materialize(asset, partition_key="2026-03-01", resources=resource, raise_on_error=False)
    failure = [e for e in never.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "no partition for 2026-03-01" in failure.step_failure_data.user_failure_data.description


def test_an_event_that_is_not_json_leaves_the_day_to_the_aggregation(home):
    write_landing_day(home.landing, "aegis_transactions", DAY, DEMO_TENANCY, 600, seed=6)
    landed = home.landing / "aegis_events" / f"{DAY}.parquet"
    events = pl.read_parquet(landed)
    bad = events.row(17, named=True)
    events.with_row_index().with_columns(
        detail=pl.when(pl.col("index") == 17).then(pl.lit('{"cut":')).otherwise(pl.col("detail"))
    ).drop("index").write_parquet(landed)
    refresh_interactions_day  # noqa: B018 - the day had a rendered partition before this landing
    result = ingest_day(
        home.store, home.landing, "aegis_transactions", DAY, DEMO_TENANCY, SourceSettings(mode="landing")
    )
    assert result.quarantined == 0 and result.rows["aegis_events"] == events.height
    assert (
        result.interactions_problem == f"event {bad['seq']} of transaction {bad['transaction_id']}: detail is not JSON"
    )
    assert "aegis_interactions" not in result.rows
    assert not partition_path(home.store, AEGIS_INTERACTIONS, DAY).exists()
    with pytest.raises(InteractionsError, match="detail is not JSON"):
        refresh_interactions_day(home.store, DAY)

    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    period = (start, start + timedelta(days=1))
    others = [w for w in WORKSPACES if w != bad["workspace_id"]]
    # As before the table existed: exports of other workspaces work; the one holding the event fails.
    for ws in others:
        build_export(home.store, spec(ws, "csv", *period), home.root / f"{ws}.csv", DEMO_TENANCY, None)
    with pytest.raises(duckdb.Error, match="JSON"):
        build_export(home.store, spec(bad["workspace_id"], "csv", *period), home.root / "bad.csv", DEMO_TENANCY, None)

    asset = [a for a in usage_assets if dg.AssetKey("aegis_interactions") in a.keys]
    failed = dg.materialize(
        asset,
        partition_key=DAY.isoformat(),
        resources={"usage_store": UsageStoreResource(home=str(home.root))},
        raise_on_error=False,
    )
    failure = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert bad["transaction_id"] in failure.step_failure_data.user_failure_data.description


def test_the_cli_ingest_says_which_day_was_not_derived_and_analysts_see_the_others(home):
    write_landing_day(home.landing, "aegis_transactions", DAY, DEMO_TENANCY, 300, seed=7)
    landed = home.landing / "aegis_events" / f"{DAY}.parquet"
    events = pl.read_parquet(landed)
    bad = events.row(0, named=True)
    events.with_columns(
        detail=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("oops")).otherwise("detail")
    ).write_parquet(landed)
    span = ("--start", DAY.isoformat(), "--end", (DAY + timedelta(days=1)).isoformat())
    loaded = rp(home, "ingest", *span)
    assert loaded.returncode == 0, loaded.stderr
    assert (
        f"{DAY}: aegis_interactions not derived: event {bad['seq']} of transaction {bad['transaction_id']}: "
        "detail is not JSON"
    ) in loaded.stderr
    as_json = rp(home, "ingest", *span, "--json")
    summaries = [r for r in json.loads(as_json.stdout) if r["source"] == "aegis_transactions"]
    assert ["aegis_interactions_not_derived" in r for r in summaries] == [True, False]

    counted = rp(home, "sql", "SELECT count(*) AS n, count(events) AS with_events FROM aegis_interactions", "--json")
    assert counted.returncode == 0, counted.stderr
    next_day = pq.read_metadata(partition_path(home.store, AEGIS_TRANSACTIONS, DAY + timedelta(days=1))).num_rows
    assert json.loads(counted.stdout) == [{"n": next_day, "with_events": next_day}]
