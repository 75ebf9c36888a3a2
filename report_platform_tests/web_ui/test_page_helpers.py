"""The pages' own small rules: where sign-in may return to, how times are written, which zones are
offered, how a stored public key is named."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from report_platform.web.pages import _safe_next, key_line, timezone_names, when


@pytest.mark.parametrize(
    "target",
    ["/", "/reports/new", "/reports/rpt_abc/audit-log", "/?folder=SMS"],
)
def test_sign_in_returns_to_a_path_on_this_site(target: str) -> None:
    assert _safe_next(target) == target


@pytest.mark.parametrize(
    "target",
    [None, "", "https://evil.example/", "//evil.example", "/\\evil.example", "/\t/evil.example", "/\n/x", "reports"],
)
def test_sign_in_never_returns_to_another_site(target: str | None) -> None:
    assert _safe_next(target) == "/"


def test_times_are_written_in_the_zone_asked_for_else_their_own() -> None:
    at = datetime(2026, 3, 9, 10, 0, tzinfo=UTC)
    assert when(at, "America/New_York") == "2026-03-09 06:00 EDT"
    assert when(at) == "2026-03-09 10:00 UTC"
    assert when(at.astimezone(ZoneInfo("Europe/London"))) == "2026-03-09 10:00 GMT"
    assert when(at.replace(second=30), "Not/A_Zone") == "2026-03-09 10:00:30 UTC"
    assert when(None) == ""


def test_the_timezone_list_has_the_iana_zones_and_no_legacy_aliases() -> None:
    zones = timezone_names()
    assert zones[0] == "UTC"
    assert {"America/New_York", "Europe/London", "Asia/Kolkata", "Australia/Sydney"} <= set(zones)
    assert not [z for z in zones if z.startswith(("US/", "Etc/", "posix/", "right/"))]
    assert all(ZoneInfo(z) for z in zones)


BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
END = "-----END PGP PUBLIC KEY BLOCK-----"


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        (
            f"{BEGIN}\nComment: Alice <alice@partner.example>\n\nmDMEZabc123def456ghi789jkl012mno\n=ab12\n{END}\n",
            "Comment: Alice <alice@partner.example>",
        ),
        (
            f"{BEGIN}\n\nmDMEZabc123def456ghi789jkl012mno\n{END}\n",
            "mDMEZabc123def456ghi789j…",
        ),
        (f"{BEGIN}\n{END}\n", "(empty)"),
    ],
)
def test_a_stored_key_is_named_by_its_comment_or_the_start_of_its_data(key: str, shown: str) -> None:
    assert key_line(key) == shown
