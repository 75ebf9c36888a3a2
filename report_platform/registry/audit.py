"""Field-level diffs for the change log, and the guard that keeps secrets out of definitions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Key fragments that name a credential. A definition only ever names a connection; the
# credentials themselves live in the environment (see connections.yaml's `*_env` fields).
_SECRET_KEY = re.compile(r"pass(word|wd)|secret|private_?key|token|api_?key", re.IGNORECASE)
_PEM_PRIVATE_KEY = "PRIVATE KEY-----"


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted paths: `{"a": {"b": x}}` -> `{"a.b": x}`.

    Lists and empty dicts are leaves: a changed recipient list shows as one field, whole.
    """
    flat: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, Mapping) and item:
            flat.update(flatten(item, path + "."))
        else:
            flat[path] = item
    return flat


def diff_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`{path: {"old": a, "new": b}}` for every leaf that differs; a missing leaf counts as None."""
    before, after = flatten(old), flatten(new)
    changed: dict[str, dict[str, Any]] = {}
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a != b:
            changed[path] = {"old": a, "new": b}
    return changed


def find_secrets(value: Any, path: str = "") -> list[str]:
    """Paths in `value` whose key looks like a credential, or whose text holds a private key."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if _SECRET_KEY.search(str(key).replace("-", "_")):
                found.append(child)
            else:
                found.extend(find_secrets(item, child))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found.extend(find_secrets(item, f"{path}[{index}]"))
    elif isinstance(value, str) and _PEM_PRIVATE_KEY in value:
        found.append(path)
    return found
