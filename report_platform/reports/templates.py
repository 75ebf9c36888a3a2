"""Template tokens for file names, e-mail subjects and bodies, and safe rendering."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from report_platform.delivery.addresses import clean_header, is_control_character

if TYPE_CHECKING:
    from report_platform.reports.periods import ResolvedPeriod

TOKENS = ("ReportName", "Date", "PeriodStart", "PeriodEnd")

# `{{ Name }}` with optional inner spaces; anything else containing braces is malformed.
_TOKEN_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_FILENAME_MAX_BYTES = 200
_UNSAFE_FILENAME_CHARS = set('/\\:*?"<>|')
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)}


def unknown_tokens(template: str) -> list[str]:
    """Names of `{{...}}` tokens in `template` that are not in TOKENS, in order of appearance."""
    found: list[str] = []
    for match in _TOKEN_RE.finditer(template):
        name = match.group(1)
        if name not in TOKENS and name not in found:
            found.append(name)
    return found


def template_errors(template: str) -> list[str]:
    """Human-readable problems with a template: unknown tokens and stray braces."""
    allowed = ", ".join("{{" + t + "}}" for t in TOKENS)
    errors = []
    for name in unknown_tokens(template):
        hint = difflib.get_close_matches(name, TOKENS, n=1, cutoff=0.6)
        if not hint:
            lowered = {t.lower(): t for t in TOKENS}
            hint = [lowered[name.lower()]] if name.lower() in lowered else []
        suggestion = f"; did you mean {{{{{hint[0]}}}}}?" if hint else ""
        errors.append(f"unknown token '{{{{{name}}}}}' (allowed: {allowed}){suggestion}")
    leftover = _TOKEN_RE.sub("", template)
    if "{{" in leftover or "}}" in leftover:
        errors.append("has an unbalanced '{{' or '}}'; write tokens as {{ReportName}}")
    return errors


def template_context(report_name: str, scheduled_at_local: datetime, period: ResolvedPeriod) -> dict[str, str]:
    """Token values for one run: the scheduled local date and the period's bounds."""
    tz = period.start_local.tzinfo
    scheduled = scheduled_at_local
    if scheduled.tzinfo is not None:
        scheduled = scheduled.astimezone(tz)
    if period.whole_days:
        start, end = period.first_day.isoformat(), period.last_day.isoformat()
    else:
        # Colons are not allowed in file names on every platform, hence HH-MM.
        start = period.start_local.strftime("%Y-%m-%dT%H-%M")
        end = period.end_local.strftime("%Y-%m-%dT%H-%M")
    return {
        "ReportName": report_name,
        "Date": scheduled.date().isoformat(),
        "PeriodStart": start,
        "PeriodEnd": end,
    }


def render(template: str, context: Mapping[str, str]) -> str:
    """Replace every known token; an unknown token raises ValueError."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in TOKENS or name not in context:
            raise ValueError(f"unknown template token '{{{{{name}}}}}'")
        return str(context[name])

    return _TOKEN_RE.sub(substitute, template)


def sanitize_filename(name: str) -> str:
    """Turn any text into one safe file name (no separators, no `..`, no control characters)."""
    # Bidirectional overrides among them: they can disguise an extension ("report\u202excs.exe").
    cleaned = "".join("_" if c in _UNSAFE_FILENAME_CHARS or is_control_character(c) else c for c in name)
    cleaned = unicodedata.normalize("NFC", cleaned)
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    stem, dot, ext = cleaned.rpartition(".")
    if not dot or not re.fullmatch(r"[A-Za-z0-9]{1,10}", ext):
        stem, ext = cleaned, ""
    # Leading dots hide a file, trailing dots and spaces are dropped by Windows.
    stem = stem.strip(" .") or "report"
    if stem.split(".")[0].upper() in _WINDOWS_RESERVED:
        stem = "_" + stem
    suffix = f".{ext}" if ext else ""
    budget = _FILENAME_MAX_BYTES - len(suffix.encode())
    encoded = stem.encode()
    if len(encoded) > budget:
        # Cut on a character boundary so the name stays valid UTF-8.
        stem = encoded[:budget].decode("utf-8", errors="ignore").rstrip(" .") or "report"
    return stem + suffix


def render_filename(pattern: str, context: Mapping[str, str]) -> str:
    """Render a filename pattern into a single safe file name, at most 200 bytes."""
    return sanitize_filename(render(pattern, context))


def render_header(template: str, context: Mapping[str, str]) -> str:
    """Render a template for a mail header (subject): one line, no CR/LF, no encoded words."""
    return clean_header(render(template, context))
