from __future__ import annotations

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from report_platform.ingest.generator import HOSTILE_TEXT
from report_platform.reports.builders.safety import (
    TRIGGERS,
    needs_prefix,
    neutralise,
    neutralise_expr,
    neutralise_sql,
    restore,
)


@pytest.mark.parametrize(
    "value",
    ["=1+1", "+A1", "-A1", "@SUM(A1:A9)", "\tTab", "\rCR", "\nLF", "=", "-", "+1 (555) 010-9999"],
)
def test_each_trigger_gets_a_quote_prefix(value: str) -> None:
    assert neutralise(value) == "'" + value
    assert restore(neutralise(value)) == value


@pytest.mark.parametrize("value", ["+15551234567", "+442079460958", "+1234567"])
def test_e164_numbers_are_untouched(value: str) -> None:
    assert neutralise(value) == value


@pytest.mark.parametrize("value", ["-5", "+3.5", "-0.25", ".5", "-.5", "1e3", "-1E-3", "+2.", "+0123456", "+12"])
def test_plain_numbers_are_untouched(value: str) -> None:
    assert neutralise(value) == value


@pytest.mark.parametrize(
    "value",
    ["+1 555 123 4567", "-5 credits", "+15551234567\n", "-1e", "-\u0665", "+-1", "--1"],
)
def test_near_misses_are_prefixed(value: str) -> None:
    # A formatted phone number, text after a number, a trailing newline and non-ASCII
    # digits are not exempt.
    assert neutralise(value) == "'" + value


@pytest.mark.parametrize("value", ["hello", "", "'=already quoted", "1+1", " =x", "Привет"])
def test_text_without_a_leading_trigger_is_untouched(value: str) -> None:
    assert neutralise(value) == value


def test_none_stays_none() -> None:
    assert neutralise(None) is None


def test_generator_hostile_messages_are_neutralised() -> None:
    for value in HOSTILE_TEXT:
        out = neutralise(value)
        assert out is not None
        assert out[0] not in TRIGGERS
        assert restore(out) == value


_values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(TRIGGERS).flatmap(lambda c: st.text(max_size=12).map(lambda s: c + s)),
    st.from_regex(r"[+-][0-9]{1,16}(\.[0-9]*)?([eE][+-]?[0-9]+)?", fullmatch=True),
)


_CON = duckdb.connect()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.none(), _values), max_size=30))
def test_polars_sql_and_scalar_versions_agree(values: list[str | None]) -> None:
    expected = [neutralise(v) for v in values]
    frame = pl.DataFrame({"v": values}, schema={"v": pl.String})
    assert frame.select(neutralise_expr(pl.col("v")))["v"].to_list() == expected
    got = _CON.sql(
        f"SELECT {neutralise_sql('v')} FROM (SELECT unnest($vals::VARCHAR[]) AS v, "
        "generate_subscripts($vals::VARCHAR[], 1) AS i) ORDER BY i",
        params={"vals": values},
    ).fetchall()
    assert [r[0] for r in got] == expected
    assert all(needs_prefix(v) == (n != v) for v, n in zip(values, expected, strict=True))
