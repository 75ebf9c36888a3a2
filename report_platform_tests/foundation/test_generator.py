from datetime import date

import polars as pl
import pytest

from report_platform.domain.tenancy import DEMO_TENANCY
from report_platform.ingest.generator import HOSTILE_TEXT, generate

DAY = date(2026, 3, 8)


@pytest.mark.parametrize("source", ["voice_calls", "sms_messages", "aegis_transactions"])
def test_a_day_is_the_same_whatever_else_is_generated(source):
    first = generate(source, DEMO_TENANCY, DAY, 3000, seed=11)
    generate(source, DEMO_TENANCY, date(2026, 3, 9), 3000, seed=11)  # another day in between
    again = generate(source, DEMO_TENANCY, DAY, 3000, seed=11)
    for table, frame in first.items():
        assert frame.equals(again[table]), table


def test_seed_and_day_change_the_rows():
    a = generate("sms_messages", DEMO_TENANCY, DAY, 1000, seed=1)["sms_messages"]
    b = generate("sms_messages", DEMO_TENANCY, DAY, 1000, seed=2)["sms_messages"]
    c = generate("sms_messages", DEMO_TENANCY, date(2026, 3, 9), 1000, seed=1)["sms_messages"]
    assert not a["message"].equals(b["message"])
    assert not a["occurred_at"].equals(c["occurred_at"])


def test_every_row_is_inside_its_utc_day_and_belongs_to_a_known_workspace():
    known = {w.id for w in DEMO_TENANCY.workspaces()}
    for source in ["voice_calls", "sms_messages", "aegis_transactions"]:
        for table, frame in generate(source, DEMO_TENANCY, DAY, 5000, seed=3).items():
            days = frame["occurred_at"].dt.date().unique().to_list()
            if table != "aegis_events":  # events may run past midnight after a late call
                assert days == [DAY], table
            assert set(frame["workspace_id"].unique()) <= known


def test_sms_values_are_realistic():
    sms = generate("sms_messages", DEMO_TENANCY, DAY, 20_000, seed=5)["sms_messages"]
    assert set(sms["message_type"].unique()) == {"SMS", "MMS"}
    assert set(sms["direction"].unique()) == {"inbound", "outbound"}
    assert sms["segments"].min() >= 1
    long_sms = sms.filter((pl.col("message").str.len_chars() == 1600) & (pl.col("message_type") == "SMS"))
    assert long_sms.height > 0 and long_sms["segments"].min() > 10
    inbound = sms.filter(pl.col("direction") == "inbound")
    assert inbound["carrier_fee"].cast(pl.Float64).max() == 0
    failed = sms.filter(pl.col("status") == "failed")
    assert failed.height > 0 and failed["error_message"].null_count() == 0
    hostile = sms.filter(pl.col("message").is_in(HOSTILE_TEXT)).height / sms.height
    assert 0.005 < hostile < 0.05
    starts = set(sms["message"].str.slice(0, 1).unique().to_list())
    assert {"=", "+", "-", "@", "\t", "\r"} <= starts
    assert sms["message"].str.contains("\n").any() and sms["message"].str.contains('"').any()
    assert sms["message"].str.contains("🎉").any() and sms["message"].str.contains("Привет").any()


def test_aegis_values_are_realistic():
    frames = generate("aegis_transactions", DEMO_TENANCY, DAY, 20_000, seed=5)
    tx, ev = frames["aegis_transactions"], frames["aegis_events"]
    assert set(tx["result"].unique()) == {"Accepted", "Rejected"}
    assert tx["databoost_activity_score"].min() >= 0 and tx["databoost_activity_score"].max() <= 100
    assert set(tx["sip_attestation"].unique()) == {"A", "B", "C"}
    assert tx.filter(pl.col("result") == "Rejected")["reason"].str.contains("DNC|litigator|Invalid|score").all()
    assert tx["dnc_blocked"].any() and tx["state_dnc_blocked"].any() and tx["litigator_blocked"].any()
    assert set(tx["caller_timezone"].unique()) >= {
        "America/New_York",
        "America/Los_Angeles",
        "Pacific/Honolulu",
    }
    counts = ev.group_by("transaction_id").agg(pl.len().alias("n"), pl.col("seq").max().alias("last"))
    assert counts["n"].min() >= 5 and counts["n"].max() <= 40
    assert (counts["n"] == counts["last"]).all()
    ordered = ev.group_by("transaction_id", maintain_order=True).agg(pl.col("occurred_at").is_sorted().alias("s"))
    assert ordered["s"].all()
    assert set(ev["transaction_id"].unique()) == set(tx["transaction_id"])


def test_voice_durations_follow_status():
    voice = generate("voice_calls", DEMO_TENANCY, DAY, 10_000, seed=5)["voice_calls"]
    assert (
        voice.filter(pl.col("status").is_in(["busy", "failed", "no-answer", "canceled"]))["duration_seconds"].max() == 0
    )
    assert voice.filter(pl.col("status") == "completed")["duration_seconds"].min() > 0
    assert voice["to_number"].str.contains(r"^\+1\d{10}$").all()
