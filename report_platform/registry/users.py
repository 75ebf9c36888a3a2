"""Organisations, their workspaces and users, and the principal an acting e-mail address stands for."""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from report_platform.delivery.addresses import address_problem
from report_platform.registry.core import RegistryCore
from report_platform.registry.errors import BadRequest, Conflict, NotFound, UnknownUser
from report_platform.registry.models import Membership, MembershipWorkspace, Organization, User, Workspace
from report_platform.registry.permissions import Action, Credential, Principal, Role, acting_organization, require

_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def normal_email(email: str) -> str:
    return email.strip().lower()


def principal_of(s: Session, actor: str) -> Principal:
    """The credentials of the person `actor` names; raises `UnknownUser` if there is none.

    Only an e-mail address names a person, so "system" (in any case or spacing) never does, even
    if such a row were written into the users table by hand.
    """
    email = normal_email(actor) if isinstance(actor, str) else ""
    if address_problem(email):
        raise UnknownUser(f"unknown user {actor!r}: a person acts by their registered e-mail address")
    user = s.scalar(
        select(User)
        .where(User.email == email)
        .options(selectinload(User.memberships).selectinload(Membership.workspaces))
    )
    if user is None or not user.memberships:
        raise UnknownUser(
            f"unknown user {actor!r}: register them with `report-platform users add {email} --org ORG --role ROLE`"
        )
    return Principal(
        email=email,
        credentials={
            m.organization_id: Credential(
                organization_id=m.organization_id,
                role=Role(m.role),
                workspaces=frozenset(w.workspace_id for w in m.workspaces),
            )
            for m in user.memberships
        },
    )


class Users(RegistryCore):
    """Registering organisations, workspaces and users, and reading a user's credentials."""

    def register_organization(
        self, organization: str, workspaces: Iterable[str] = (), *, name: str | None = None
    ) -> None:
        """Make sure the organisation and its workspaces exist (bootstrap, e.g. `demo-data`)."""
        with self._sessions.begin() as s:
            self._ensure_org(s, organization, name)
            for ws in workspaces:
                _ensure_workspace(s, organization, ws)

    def register_tenancy(self, organizations: Iterable[tuple[str, str | None, Iterable[str]]]) -> None:
        """`register_organization` for each (organisation, name, workspaces), read in one go.

        Every process opening the registry does this, every run worker included, so when every
        organisation and workspace is already there with its name it costs two reads and writes
        nothing."""
        wanted = [(org, name, tuple(workspaces)) for org, name, workspaces in organizations]
        org_ids = {org for org, _, _ in wanted}
        workspace_ids = {ws for _, _, workspaces in wanted for ws in workspaces}
        with self._sessions() as s:
            names = dict(
                s.execute(select(Organization.id, Organization.name).where(Organization.id.in_(org_ids))).all()
            )
            owners = dict(
                s.execute(select(Workspace.id, Workspace.organization_id).where(Workspace.id.in_(workspace_ids))).all()
            )
        for org, name, workspaces in wanted:
            present = org in names and (not name or names[org] == name)
            if not present or any(owners.get(ws) != org for ws in workspaces):
                self.register_organization(org, workspaces, name=name)

    def add_user(
        self,
        email: str,
        org: str,
        role: str,
        workspaces: Iterable[str] = (),
        *,
        display_name: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Register `email` with `role` in `org`, optionally limited to some workspaces.

        Adding the same user to the same organisation again replaces their role and workspace
        limits. Without `actor` this is a bootstrap action (`report-platform users add`) that also
        creates the organisation and workspaces if missing; with `actor`, only an Owner of `org`
        may do it, and the workspaces must already exist.
        """
        email = normal_email(email)
        if problem := address_problem(email):
            raise BadRequest(f"'{email}' {problem}")
        try:
            role_ = Role(role.lower())
        except ValueError:
            raise BadRequest(f"role must be owner, admin or user, got '{role}'") from None
        wanted = sorted(set(workspaces))
        if role_ is Role.OWNER and wanted:
            raise BadRequest("an Owner is credentialed organisation-wide; drop the workspace limits")
        with self._sessions.begin() as s:
            if actor is not None:
                require(principal_of(s, actor), Action.MANAGE_USERS, org)
            else:
                self._ensure_org(s, org, None)
            for ws in wanted:
                if actor is None:
                    _ensure_workspace(s, org, ws)
                elif (found := s.get(Workspace, ws)) is None or found.organization_id != org:
                    raise NotFound(f"no workspace '{ws}' in {org}")
            user = s.scalar(select(User).where(User.email == email))
            if user is None:
                user = User(
                    email=email,
                    display_name=display_name or email.split("@")[0],
                    created_at=self._clock(),
                )
                s.add(user)
                s.flush()
            elif display_name:
                user.display_name = display_name
            membership = s.scalar(
                select(Membership).where(Membership.user_id == user.id, Membership.organization_id == org)
            )
            if membership is None:
                membership = Membership(user_id=user.id, organization_id=org, role=role_.value)
                s.add(membership)
            membership.role = role_.value
            membership.workspaces = [MembershipWorkspace(workspace_id=ws) for ws in wanted]

    def principal(self, actor: str) -> Principal:
        """The acting user's credentials; raises `UnknownUser` if they are not registered."""
        with self._sessions() as s:
            return principal_of(s, actor)

    def authorize(self, actor: str, action: Action, organization: str | None = None) -> str:
        """The organisation `actor` may do `action` in (their only one unless named); refused otherwise.

        For actions on no registry record (testing a connection): the same rule as for the rest.
        """
        p = self.principal(actor)
        org = acting_organization(p, organization)
        require(p, action, org)
        return org

    def _ensure_org(self, s: Session, organization: str, name: str | None) -> Organization:
        if not _SLUG.fullmatch(organization or ""):
            raise BadRequest(f"organisation id must be a lower-case slug, got {organization!r}")
        org = s.get(Organization, organization)
        if org is None:
            org = Organization(id=organization, name=name or organization, created_at=self._clock())
            s.add(org)
            s.flush()
        elif name:
            org.name = name
        return org


def _ensure_workspace(s: Session, organization: str, workspace: str) -> Workspace:
    if not _SLUG.fullmatch(workspace or ""):
        raise BadRequest(f"workspace id must be a lower-case slug, got {workspace!r}")
    found = s.get(Workspace, workspace)
    if found is None:
        found = Workspace(id=workspace, organization_id=organization, name=workspace)
        s.add(found)
        s.flush()
    elif found.organization_id != organization:
        raise Conflict(f"workspace '{workspace}' belongs to another organisation")
    return found
