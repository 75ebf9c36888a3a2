"""Formula-injection safety for text cells (PRODUCT.md §3).

A spreadsheet evaluates a cell that begins with `=`, `+`, `-` or `@` (and some also act on a
leading tab, CR or LF, OWASP's list), so such a text value is written with a leading `'`, which
every spreadsheet shows as text and never evaluates. Two kinds of value are left alone because
they are data a person expects to see unchanged and no spreadsheet turns them into a formula:
a plain number (`-5`, `+3.5`, `.5`, `-1e3`) and an E.164 phone number (`+15551234567`).

The same rule exists three times, for the three places text flows through: a scalar function,
a Polars expression and a DuckDB SQL expression. They agree (tests check it); regexes use
`[0-9]` rather than `\\d`, whose meaning differs between Python, Rust and RE2.
"""

from __future__ import annotations

import re

import polars as pl

PREFIX = "'"
TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r", "\n")
PLAIN_NUMBER = r"[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?"
E164 = r"[+][1-9][0-9]{6,14}"
_EXEMPT = f"({PLAIN_NUMBER})|({E164})"
_EXEMPT_RE = re.compile(_EXEMPT)


def needs_prefix(value: str | None) -> bool:
    """True when a spreadsheet could evaluate `value` as a formula."""
    return bool(value) and value[0] in TRIGGERS and _EXEMPT_RE.fullmatch(value) is None


def neutralise(value: str | None) -> str | None:
    """`value` made safe to open in a spreadsheet (None stays None)."""
    return PREFIX + value if needs_prefix(value) else value


def restore(value: str | None) -> str | None:
    """Undo `neutralise` (for readers that want the original text back)."""
    if value and value.startswith(PREFIX) and needs_prefix(value[1:]):
        return value[1:]
    return value


def neutralise_expr(expr: pl.Expr) -> pl.Expr:
    """Vectorised `neutralise` over a String expression; keeps the expression's name."""
    first = expr.str.slice(0, 1)
    unsafe = first.is_in(list(TRIGGERS)) & ~expr.str.contains(f"^({_EXEMPT})$")
    # `expr` in the first branch so the result keeps its name.
    return pl.when(~unsafe).then(expr).otherwise(pl.lit(PREFIX) + expr)


def neutralise_sql(expr: str) -> str:
    """`neutralise` as a DuckDB SQL expression over a VARCHAR expression."""
    triggers = ", ".join(f"chr({ord(c)})" for c in TRIGGERS)
    # The cheap first-character test runs on every row; the regex only on the rare trigger rows.
    return (
        f"CASE WHEN left({expr}, 1) IN ({triggers}) "
        f"AND NOT regexp_full_match({expr}, '{_EXEMPT}') "
        f"THEN '{PREFIX}{PREFIX}' || {expr} ELSE {expr} END"
    )
