"""Secrets to look for, and where a text holds one.

A secret is searched for as it is and in the forms a log line, a URL, a header or a serialised
error would carry it: URL-encoded (both ways), base64 (standard and URL-safe, padded or not),
escaped as in JSON or `repr`, and for a multi-line value such as a private key, each line of its
body on its own (a message cut at a line break still holds the key).
"""

from __future__ import annotations

import base64
import json
import secrets
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field

# Long enough that a match is never chance; PEM armour lines are the same in every key.
MIN_LINE_LENGTH = 16


@dataclass(frozen=True)
class Secret:
    """A secret value of the run, by the name the report says it under."""

    name: str
    value: str
    forms: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "forms", _forms(self.value))

    def __repr__(self) -> str:  # a failing assertion prints the name, never the value
        return f"Secret({self.name!r})"


def distinctive(label: str, length: int = 40) -> str:
    """A long random value that no text holds by chance, with characters URL-encoding changes."""
    return f"{label}-{secrets.token_urlsafe(length)}/+@:%!"


def _forms(value: str) -> dict[str, str]:
    raw = value.encode()
    found = {
        "plain": value,
        "URL-encoded": urllib.parse.quote(value, safe=""),
        "form-encoded": urllib.parse.quote_plus(value),
        "JSON-escaped": json.dumps(value)[1:-1],
        "repr-escaped": repr(value)[1:-1],
        "base64": base64.b64encode(raw).decode(),
        "base64 unpadded": base64.b64encode(raw).decode().rstrip("="),
        "URL-safe base64": base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }
    body = [line.strip() for line in value.splitlines() if not line.startswith("-----")]
    for number, line in enumerate(body, start=1):
        if len(line) >= MIN_LINE_LENGTH:
            found[f"line {number} of its body"] = line
    return found


def leaks(text: str | bytes, in_question: Iterable[Secret]) -> list[str]:
    """'NAME as FORM' for every secret found in `text`; empty when it holds none."""
    haystack = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return [
        f"{secret.name} as {form}"
        for secret in in_question
        for form, needle in secret.forms.items()
        if needle in haystack
    ]
