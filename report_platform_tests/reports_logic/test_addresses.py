"""One address rule and one header cleaner, for saving a report and for sending its mail."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from report_platform.delivery import ConfigurationError
from report_platform.delivery.addresses import clean_header
from report_platform.delivery.email import parse_address
from report_platform.reports.definition import DefinitionError, parse_definition
from report_platform.reports.templates import render_header

from .conftest import variant

ADDRESSES = [
    "ops@example.com",
    "first.last+tag@mail.example.co.uk",
    "a..b@example.com",
    "a@localhost",
    "Ops <ops@example.com>",
    "a@b.co\nBcc: x@y.co",
    "a@b.co,c@d.co",
    "jörg@example.de",
    '"quoted"@example.com',
    "x@[127.0.0.1]",
    "a@b.c0",
    "",
]


def _saved(address: str) -> bool:
    try:
        parse_definition(variant({"destination.to": [address]}))
    except DefinitionError:
        return False
    return True


def _sendable(address: str) -> bool:
    try:
        parse_address(address, "to")
    except ConfigurationError:
        return False
    return True


@pytest.mark.parametrize("address", ADDRESSES)
def test_an_address_a_report_may_save_is_one_the_sender_accepts(address: str) -> None:
    assert _saved(address) == _sendable(address)


def test_the_sender_says_why_an_address_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="to: 'a@b.co,c@d.co' is not a single e-mail address"):
        parse_address("a@b.co,c@d.co", "to")
    with pytest.raises(ConfigurationError, match="is not a plain address like name@example.com"):
        parse_address("Ops <ops@example.com>", "to")


@pytest.mark.parametrize(
    "value",
    [
        "=?=?utf-8?q?x?=?=",  # removing the inner markers must not leave outer ones behind
        "report\u202exsl.exe",
        "a\u2028Bcc: x@y.co",
        "a\x85Bcc: x@y.co",
    ],
)
def test_header_text_keeps_no_line_break_bidi_control_or_encoded_word(value: str) -> None:
    cleaned = clean_header(value)
    assert "=?" not in cleaned and "?=" not in cleaned
    assert not any(c in cleaned for c in "\r\n\x85\u2028\u2029\u202e")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=600))
def test_a_rendered_subject_is_what_the_sender_would_put_in_the_header(name: str) -> None:
    subject = render_header("{{ReportName}}", {"ReportName": name})
    assert clean_header(subject) == subject
    assert len(subject) <= 500
