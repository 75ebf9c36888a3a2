"""Folders: named groups of reports, unique within an organisation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from report_platform.registry.core import RegistryCore
from report_platform.registry.errors import BadRequest, Conflict, NotFound
from report_platform.registry.models import Folder, Report
from report_platform.registry.permissions import Action, Principal, acting_organization, can_view, require
from report_platform.registry.users import principal_of
from report_platform.registry.views import FolderView


class Folders(RegistryCore):
    """Listing, creating, renaming and deleting folders, with permissions enforced."""

    def list_folders(self, actor: str, *, organization: str | None = None) -> list[FolderView]:
        """Folders of the organisations `actor` is credentialed in, with visible report counts."""
        with self._sessions() as s:
            p = principal_of(s, actor)
            orgs = [organization] if organization else sorted(p.credentials)
            folders = s.scalars(select(Folder).where(Folder.organization_id.in_(orgs)).order_by(Folder.name)).all()
            counts = _visible_reports(s, p, folders)
            return [
                FolderView(organization=f.organization_id, name=f.name, reports=counts.get(f.id, 0))
                for f in folders
                if f.organization_id in p.credentials
            ]

    def create_folder(self, actor: str, name: str, *, organization: str | None = None) -> FolderView:
        """Create an empty folder; names are unique within an organisation. Returns it as saved."""
        with self._sessions.begin() as s:
            p = principal_of(s, actor)
            org = acting_organization(p, organization)
            require(p, Action.CREATE_FOLDER, org)
            folder = new_folder(s, org, name, by=p.email, at=self._clock())
            return FolderView(organization=org, name=folder.name, reports=0)

    def rename_folder(self, actor: str, name: str, new_name: str, *, organization: str | None = None) -> FolderView:
        """Rename a folder; its reports stay in it (no report change is logged). Returns it as saved."""
        with self._sessions.begin() as s:
            p = principal_of(s, actor)
            org = acting_organization(p, organization)
            require(p, Action.RENAME_FOLDER, org)
            folder = existing_folder(s, org, name)
            new_name = _folder_name(new_name)
            if new_name != folder.name:
                _refuse_taken(s, org, new_name)
                folder.name = new_name
            visible = _visible_reports(s, p, [folder]).get(folder.id, 0)
            return FolderView(organization=org, name=folder.name, reports=visible)

    def delete_folder(self, actor: str, name: str, *, organization: str | None = None) -> None:
        """Delete an empty folder. A folder that still holds live reports is refused.

        Deleted reports that were in it keep their history but lose the folder.
        """
        with self._sessions.begin() as s:
            p = principal_of(s, actor)
            org = acting_organization(p, organization)
            require(p, Action.DELETE_FOLDER, org)
            folder = existing_folder(s, org, name)
            reports = s.scalars(select(Report).where(Report.folder_id == folder.id)).all()
            live = [r for r in reports if r.deleted_at is None]
            if live:
                raise Conflict(
                    f"folder '{folder.name}' still holds {len(live)} report"
                    f"{'s' if len(live) != 1 else ''}; move or delete them first"
                )
            for r in reports:
                r.folder_id, r.folder = None, None
            s.flush()
            s.delete(folder)


def _visible_reports(s: Session, p: Principal, folders: Sequence[Folder]) -> dict[int, int]:
    """Live reports in each folder (by id) that `p` may see."""
    reports = s.scalars(
        select(Report).where(Report.folder_id.in_([f.id for f in folders]), Report.deleted_at.is_(None))
    ).all()
    counts: dict[int, int] = {}
    for r in reports:
        if r.folder_id is not None and can_view(p, r.organization_id, r.workspace_id):
            counts[r.folder_id] = counts.get(r.folder_id, 0) + 1
    return counts


def find_folder(s: Session, org: str, name: str) -> Folder | None:
    return s.scalar(select(Folder).where(Folder.organization_id == org, Folder.name == name))


def existing_folder(s: Session, org: str, name: str) -> Folder:
    """The folder `name` of `org`; a report is moved only into one that exists."""
    folder = find_folder(s, org, name)
    if folder is None:
        raise NotFound(f"no folder '{name}' in {org}")
    return folder


def new_folder(s: Session, org: str, name: str, *, by: str, at: datetime) -> Folder:
    name = _folder_name(name)
    _refuse_taken(s, org, name)
    folder = Folder(organization_id=org, name=name, created_at=at, created_by=by)
    s.add(folder)
    s.flush()
    return folder


def folder_for_definition(s: Session, org: str, name: str | None, *, by: str, at: datetime) -> Folder | None:
    """The folder a definition names, created if missing: the file says where the report lives."""
    if not name:
        return None
    return find_folder(s, org, name) or new_folder(s, org, name, by=by, at=at)


def _refuse_taken(s: Session, org: str, name: str) -> None:
    if find_folder(s, org, name) is not None:
        raise Conflict(f"folder '{name}' already exists in {org}")


def _folder_name(name: str) -> str:
    clean = name.strip() if isinstance(name, str) else ""
    if not clean or len(clean) > 200 or any(ord(ch) < 32 for ch in clean):
        raise BadRequest(f"folder name must be 1-200 printable characters, got {name!r}")
    return clean
