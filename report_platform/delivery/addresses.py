"""What may go into a mail header: one plain e-mail address, and text that cannot start a new line.

One rule for each, used when a report's recipients are saved (destinations) and again when a
message is built (email), so an address a report may name is exactly one the sender accepts.
Rendered subjects and file names are cleaned of the same control characters.
"""

from __future__ import annotations

import re
import unicodedata

MAX_ADDRESS_LENGTH = 254
HEADER_MAX_CHARS = 500
# Deliberately simple: one dot-atom local part, one dotted domain with a TLD; no display names,
# quoted parts or IP literals.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
# Bidirectional overrides can disguise text ("report\u202excs.exe" shows as "reportexe.csv").
_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ENCODED_WORD_MARKERS = re.compile(r"=\?|\?=")
_SPACES = re.compile(r"\s+")


def is_control_character(char: str) -> bool:
    """True for what breaks a line or hides text: Cc (CR, LF, NUL, NEL), U+2028/U+2029, bidi controls."""
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS


def address_problem(address: str) -> str | None:
    """Why `address` (already stripped) is not one plain address like name@example.com; None if it is."""
    if not address or "," in address or any(is_control_character(c) for c in address):
        return "is not a single e-mail address"
    if len(address) > MAX_ADDRESS_LENGTH or not _PLAIN_ADDRESS.fullmatch(address):
        return "is not a plain address like name@example.com"
    return None


def clean_header(value: str, max_chars: int = HEADER_MAX_CHARS) -> str:
    """`value` as one line of header text, at most `max_chars` long, that cannot start a new header.

    Python's email package may still let a crafted value inject headers (CPython gh-121650,
    CVE-2024-6923): it can decode `=?charset?...?=` encoded words it re-folds, smuggling a newline
    back in. So line breaks and control characters become spaces and encoded-word markers are
    removed (repeatedly: removing one can join two halves of another) rather than trusted to the
    serializer.
    """
    text = "".join(" " if is_control_character(c) else c for c in value)
    while True:
        stripped = _ENCODED_WORD_MARKERS.sub("", text)
        if stripped == text:
            break
        text = stripped
    return _SPACES.sub(" ", text).strip()[:max_chars].rstrip()
