"""Who may do what: the rules, as plain functions over a user's credentials.

- An **Owner** may do everything within their organisation (always organisation-wide).
- An **Admin** or **User** may only view reports and their run history, and only where they are
  credentialed: organisation-wide, or limited to some workspaces. An organisation-scoped
  (billing) report is visible only to credentials without workspace limits, because it shows
  every workspace's figures.
- Nobody sees or touches another organisation.

The service layer calls these before changing anything; nothing else decides permissions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from report_platform.registry.errors import BadRequest, PermissionDenied


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    USER = "user"

    @property
    def title(self) -> str:
        return self.value.capitalize()


class Action(StrEnum):
    """Things that change reports or folders; viewing is checked with `can_view`."""

    CREATE = "create reports"
    UPDATE = "edit reports"
    PAUSE = "pause reports"
    RESUME = "resume reports"
    RUN_NOW = "run reports now"
    DELETE = "delete reports"
    MOVE = "move reports between folders"
    CREATE_FOLDER = "create folders"
    RENAME_FOLDER = "rename folders"
    DELETE_FOLDER = "delete folders"
    TEST_CONNECTION = "test connections"
    MANAGE_USERS = "manage users"


@dataclass(frozen=True)
class Credential:
    """A role in one organisation; `workspaces` empty means organisation-wide."""

    organization_id: str
    role: Role
    workspaces: frozenset[str] = frozenset()

    @property
    def org_wide(self) -> bool:
        return not self.workspaces


@dataclass(frozen=True)
class Principal:
    """An acting user and their credentials, keyed by organisation id."""

    email: str
    credentials: dict[str, Credential] = field(default_factory=dict)

    def credential(self, organization_id: str) -> Credential | None:
        return self.credentials.get(organization_id)


def can_view(principal: Principal, organization_id: str, workspace_id: str | None) -> bool:
    """May `principal` see reports (and their history) in this organisation/workspace?

    `workspace_id` None means an organisation-scoped report.
    """
    cred = principal.credential(organization_id)
    if cred is None:
        return False
    if cred.role is Role.OWNER or cred.org_wide:
        return True
    return workspace_id is not None and workspace_id in cred.workspaces


def require(principal: Principal, action: Action, organization_id: str) -> None:
    """Raise `PermissionDenied` unless `principal` may do `action` in the organisation.

    Only Owners change anything, and Owners are organisation-wide, so the workspace does not
    matter here; visibility (`can_view`) is checked before this for existing reports.
    """
    cred = principal.credential(organization_id)
    if cred is None:
        raise PermissionDenied(f"{principal.email} has no credentials in organisation '{organization_id}'")
    if cred.role is not Role.OWNER:
        raise PermissionDenied(
            f"{principal.email} is a{'n' if cred.role is Role.ADMIN else ''} {cred.role.title} "
            f"in {organization_id}: only an Owner may {action.value}"
        )


def acting_organization(principal: Principal, organization: str | None) -> str:
    """The organisation an action names, or the principal's only one when it names none."""
    if organization is not None:
        return organization
    if len(principal.credentials) == 1:
        return next(iter(principal.credentials))
    raise BadRequest(
        f"{principal.email} is credentialed in several organisations "
        f"({', '.join(sorted(principal.credentials))}): say which one"
    )
