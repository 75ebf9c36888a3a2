"""Checking a definition against the names a deployment has: organisations, workspaces, workflows,
campaigns, connections."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from report_platform.delivery.destinations import CONNECTION_KIND_BY_TYPE
from report_platform.reports.definition.fields import shown
from report_platform.reports.definition.model import CAMPAIGN_FILTERS, FILTER_MODELS

CAMPAIGN_KIND_WORDS = {"core": "Core campaign", "engage": "Engage campaign"}


@dataclass(frozen=True)
class KnownNames:
    """Names that exist in the platform, to check a definition against."""

    organizations: Mapping[str, frozenset[str]] = field(default_factory=dict)  # org -> workspaces
    workflows: Mapping[str, frozenset[str]] = field(default_factory=dict)  # workspace -> workflows
    # Workspace -> "core" / "engage" -> campaign names (Tenancy.campaign_names).
    campaigns: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)
    # Connection kind (smtp, sftp, s3) -> name -> organisations that may use it ("*": all).
    # None leaves connection names unchecked (a definition checked without a deployment).
    connections: Mapping[str, Mapping[str, frozenset[str]]] | None = None


def known_name_errors(data: Mapping[str, Any], known: KnownNames) -> list[str]:
    errors: list[str] = []
    workspaces = {ws: org for org, wss in known.organizations.items() for ws in wss}
    workspace = data.get("workspace")
    organization = data.get("organization")
    if isinstance(workspace, str) and workspace.strip():
        workspace = workspace.strip()
        if workspace not in workspaces:
            errors.append(f"workspace: unknown workspace {shown(workspace)} (known: {_listing(workspaces)})")
    if isinstance(organization, str) and organization.strip():
        organization = organization.strip()
        if organization not in known.organizations:
            errors.append(
                f"organization: unknown organization {shown(organization)} (known: {_listing(known.organizations)})"
            )
    filters = data.get("filters")
    if (
        isinstance(filters, Mapping)
        and isinstance(filters.get("workflows"), list)
        and isinstance(workspace, str)
        and workspace in workspaces
    ):
        names = known.workflows.get(workspace, frozenset())
        for name in filters["workflows"]:
            if isinstance(name, str) and name.strip() not in names:
                errors.append(
                    f"filters.workflows: unknown workflow {shown(name)} in workspace "
                    f"'{workspace}' (known: {_listing(names)})"
                )
    if isinstance(filters, Mapping) and isinstance(workspace, str) and workspace in workspaces:
        errors.extend(_campaign_errors(data.get("type"), filters, workspace, known))
    # The report's organisation is its workspace's; billing may name it directly.
    owner = workspaces.get(workspace) if isinstance(workspace, str) else None
    if owner is None and isinstance(organization, str) and organization in known.organizations:
        owner = organization
    if known.connections is not None and owner is not None:
        errors.extend(_connection_errors(data, owner, known.connections))
    errors.extend(_encryption_key_errors(data))
    return errors


def _destinations(data: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(field path, value) of `destination` and of each of `destinations`, as written."""
    destinations: list[tuple[str, Any]] = [("destination", data.get("destination"))]
    if isinstance(data.get("destinations"), list):
        destinations += [(f"destinations[{i}]", d) for i, d in enumerate(data["destinations"])]
    return destinations


def _encryption_key_errors(data: Mapping[str, Any]) -> list[str]:
    """Keys in `encrypt_to` that gpg cannot encrypt to now (damaged, expired, revoked, signing-only).

    Checked when a report is saved, not on every load: a key that expires later fails the
    delivery (checked again there) instead of making the stored report unreadable. Keys whose
    form is wrong are reported by the model already.
    """
    from report_platform.delivery import pgp

    errors: list[str] = []
    for where, destination in _destinations(data):
        keys = destination.get("encrypt_to") if isinstance(destination, Mapping) else None
        if isinstance(keys, str):
            keys = [keys]
        if not isinstance(keys, list) or len(keys) > pgp.MAX_KEYS:
            continue
        for index, text in enumerate(keys):
            if not pgp.looks_like_key(text):
                continue
            try:
                pgp.inspect_key(text)
            except pgp.KeyProblem as exc:
                errors.append(f"{where}.encrypt_to: key {index + 1} of {len(keys)}: {exc}")
    return errors


def _campaign_errors(report_type: Any, filters: Mapping[str, Any], workspace: str, known: KnownNames) -> list[str]:
    """Unknown campaign names in the filters the report's type takes (others are refused by the model)."""
    model = FILTER_MODELS.get(str(report_type))
    by_kind = known.campaigns.get(workspace, {})
    errors: list[str] = []
    for name_field, kind in CAMPAIGN_FILTERS.items():
        names = filters.get(name_field)
        if model is None or name_field not in model.model_fields or not isinstance(names, list):
            continue
        known_names = by_kind.get(kind, frozenset())
        for name in names:
            if isinstance(name, str) and name.strip() and name.strip() not in known_names:
                problem = unknown_campaign(name.strip(), kind, workspace, known_names)
                other = next((k for k, n in by_kind.items() if k != kind and name.strip() in n), None)
                if other is not None:
                    where = next(
                        (f for f, k in CAMPAIGN_FILTERS.items() if k == other and f in model.model_fields), None
                    )
                    problem += f"; it is an {CAMPAIGN_KIND_WORDS[other]}" + (
                        f": list it under filters.{where}"
                        if where
                        else f", which {report_type} reports do not filter on"
                    )
                errors.append(f"filters.{name_field}: {problem}")
    return errors


def unknown_campaign(name: str, kind: str, workspace: str, names: frozenset[str] | set[str]) -> str:
    """ "unknown Core campaign 'X' in workspace 'W'; did you mean 'Y'? (known: ...)"."""
    # A high cutoff: names in a workspace share its prefix, so a low one suggests any of them.
    close = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.8)
    hint = f"; did you mean {shown(close[0])}?" if close else ""
    return (
        f"unknown {CAMPAIGN_KIND_WORDS[kind]} {shown(name)} in workspace '{workspace}'{hint} (known: {_listing(names)})"
    )


def _named_connections(data: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """(field path, connection kind, name or None for e-mail's default) of every destination."""
    named: list[tuple[str, str, str | None]] = []
    for where, destination in _destinations(data):
        if not isinstance(destination, Mapping):
            continue
        kind = CONNECTION_KIND_BY_TYPE.get(str(destination.get("type")))
        name = destination.get("connection")
        if kind == "smtp" and name is None:
            named.append((f"{where}.connection", kind, None))
        elif kind and isinstance(name, str):
            named.append((f"{where}.connection", kind, name.strip()))
        large_files = destination.get("large_files")
        if isinstance(large_files, Mapping) and isinstance(large_files.get("connection"), str):
            named.append((f"{where}.large_files.connection", "s3", large_files["connection"].strip()))
    return named


def _connection_errors(
    data: Mapping[str, Any], organization: str, connections: Mapping[str, Mapping[str, frozenset[str]]]
) -> list[str]:
    errors: list[str] = []
    for where, kind, name in _named_connections(data):
        table = connections.get(kind, {})
        shown = repr(name) if name is not None else "'default', which e-mail uses when none is named,"
        name = name if name is not None else "default"
        allowed = table.get(name)
        if allowed is None:
            # Only this organisation's names: another tenant's connections are not its business.
            usable = [n for n, orgs in table.items() if "*" in orgs or organization in orgs]
            errors.append(f"{where}: unknown {kind} connection {shown.rstrip(',')} (known: {_listing(usable)})")
        elif "*" not in allowed and organization not in allowed:
            errors.append(f"{where}: connection {shown} is not available to organization '{organization}'")
    return errors


def _listing(names: Any, limit: int = 20) -> str:
    ordered = sorted(names)
    if not ordered:
        return "none"
    shown = ", ".join(ordered[:limit])
    return shown + (f" and {len(ordered) - limit} more" if len(ordered) > limit else "")
