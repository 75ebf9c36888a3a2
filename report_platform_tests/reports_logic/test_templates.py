"""Templates: token checks, context values, safe file names and mail headers."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from report_platform.reports.definition import RollingWindow
from report_platform.reports.periods import period_for_dates, resolve_period
from report_platform.reports.templates import (
    TOKENS,
    render,
    render_filename,
    render_header,
    template_context,
    template_errors,
    unknown_tokens,
)

NY = ZoneInfo("America/New_York")
PATTERN = "{{ReportName}}_{{PeriodStart}}_{{PeriodEnd}}.csv"


def context(name: str = "Daily SMS") -> dict[str, str]:
    return {
        "ReportName": name,
        "Date": "2026-03-09",
        "PeriodStart": "2026-03-08",
        "PeriodEnd": "2026-03-08",
    }


def test_tokens() -> None:
    assert TOKENS == ("ReportName", "Date", "PeriodStart", "PeriodEnd")


def test_unknown_tokens_in_order_without_duplicates() -> None:
    assert unknown_tokens("{{A}} {{ReportName}} {{B}} {{A}} {{ Date }}") == ["A", "B"]
    assert unknown_tokens("plain text") == []


def test_template_errors_suggest_the_right_spelling() -> None:
    assert template_errors("{{PeriodStrat}}")[0].endswith("did you mean {{PeriodStart}}?")
    assert "unbalanced" in template_errors("{{Date} x")[0]
    assert template_errors("{{ReportName}} {{Date}}") == []


def test_whole_day_context() -> None:
    period = period_for_dates(date(2026, 3, 8), date(2026, 3, 8), "America/New_York")
    ctx = template_context("Daily SMS", datetime(2026, 3, 9, 6, tzinfo=NY), period)
    assert ctx == context()


def test_scheduled_date_is_the_local_date() -> None:
    period = period_for_dates(date(2026, 3, 8), date(2026, 3, 8), "America/New_York")
    ctx = template_context("x", datetime(2026, 3, 10, 2, tzinfo=ZoneInfo("UTC")), period)
    assert ctx["Date"] == "2026-03-09"


def test_partial_day_context_uses_times() -> None:
    scheduled = datetime(2026, 3, 9, 6, 15, tzinfo=NY)
    period = resolve_period(RollingWindow(kind="rolling_window", lookback="6h"), "America/New_York", scheduled)
    ctx = template_context("x", scheduled, period)
    assert (ctx["PeriodStart"], ctx["PeriodEnd"]) == ("2026-03-09T00-15", "2026-03-09T06-15")


def test_render_replaces_tokens_with_spaces_inside_braces() -> None:
    assert render("{{ ReportName }} on {{Date}}", context()) == "Daily SMS on 2026-03-09"


def test_render_refuses_unknown_token() -> None:
    with pytest.raises(ValueError, match="Nope"):
        render("{{Nope}}", context())


def test_render_filename_normal() -> None:
    assert render_filename(PATTERN, context()) == "Daily SMS_2026-03-08_2026-03-08.csv"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "_._etc_passwd_2026-03-08_2026-03-08.csv"),
        ('a\\b:c*d?e"f<g>h|i', "a_b_c_d_e_f_g_h_i_2026-03-08_2026-03-08.csv"),
        ("line\nbreak\r", "line_break__2026-03-08_2026-03-08.csv"),
        ("..", "_2026-03-08_2026-03-08.csv"),
        ("evil\u202ecod.exe", "evil_cod.exe_2026-03-08_2026-03-08.csv"),
    ],
)
def test_render_filename_hostile_names(name: str, expected: str) -> None:
    assert render_filename(PATTERN, context(name)) == expected


def test_render_filename_only_tokens_never_empty() -> None:
    assert render_filename("{{ReportName}}", context("...")) == "report"
    assert render_filename("{{ReportName}}.csv", context(" . ")) == "report.csv"


def test_render_filename_caps_length_and_keeps_extension() -> None:
    name = render_filename(PATTERN, context("é" * 300))
    assert len(name.encode()) <= 200
    assert name.endswith(".csv")
    name.encode().decode("utf-8")


def test_render_filename_windows_reserved_name() -> None:
    assert render_filename("{{ReportName}}.csv", context("CON")) == "_CON.csv"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_render_filename_is_always_one_safe_name(name: str) -> None:
    result = render_filename(PATTERN, context(name))
    assert result
    assert not set('/\\:*?"<>|') & set(result)
    assert ".." not in result
    assert not result.startswith((".", " "))
    assert all(ord(c) >= 32 and not 0x7F <= ord(c) <= 0x9F for c in result)
    assert len(result.encode()) <= 200
    assert result.endswith(".csv")


@pytest.mark.parametrize(
    "name",
    [
        "=?UTF-8?Q?=0A?=Bcc: x",
        "Report\r\nBcc: victim@example.com",
        "a\u2028b",
        "=?utf-8?b?QmNjOiB4?=",
    ],
)
def test_render_header_hostile_names(name: str) -> None:
    header = render_header("{{ReportName}} - {{Date}}", context(name))
    assert "\r" not in header and "\n" not in header
    assert "=?" not in header and "?=" not in header
    assert "\u2028" not in header
    assert header.endswith(" - 2026-03-09")


def test_render_header_keeps_ordinary_text() -> None:
    assert render_header("{{ReportName}} - {{Date}}", context("Usage: 5 = ok?")) == "Usage: 5 = ok? - 2026-03-09"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_render_header_never_carries_line_breaks_or_encoded_words(name: str) -> None:
    header = render_header("{{ReportName}}", context(name))
    assert not any(c in header for c in "\r\n\x00\u2028\u2029")
    assert "=?" not in header and "?=" not in header
    assert len(header) <= 500
