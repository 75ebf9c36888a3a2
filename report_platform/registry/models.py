"""The registry's tables: tenancy, users and their credentials, folders, reports, changes, runs.

One schema for SQLite (the embedded default) and PostgreSQL (production). Timestamps are stored
in UTC and always come back timezone-aware, whatever the backend.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from report_platform.database import UTCDateTime

ROLES = ("owner", "admin", "user")
REPORT_STATUSES = ("enabled", "disabled")
CHANGE_ACTIONS = ("create", "update", "pause", "resume", "delete", "move")
RUN_TRIGGERS = ("schedule", "run_now", "backfill", "retry")
# MISSED: a scheduled time the scheduler never evaluated (the daemon was down), recorded afterwards.
RUN_STATUSES = ("QUEUED", "STARTED", "SUCCESS", "FAILED", "SKIPPED", "MISSED")


# Plain JSON, not JSONB, on PostgreSQL too: it keeps the definition's field order, so `show`
# prints fields in the order people wrote them. Nothing queries inside these documents.
JSONType = JSON()


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType}


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # a slug, e.g. "acme"
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]

    workspaces: Mapped[list[Workspace]] = relationship(back_populates="organization")


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # e.g. "acme-east"
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))

    organization: Mapped[Organization] = relationship(back_populates="workspaces")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-case
    display_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]

    memberships: Mapped[list[Membership]] = relationship(back_populates="user", cascade="all, delete-orphan")


class Membership(Base):
    """A user's credential in one organisation: a role, optionally limited to some workspaces."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "organization_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # owner | admin | user

    user: Mapped[User] = relationship(back_populates="memberships")
    workspaces: Mapped[list[MembershipWorkspace]] = relationship(
        back_populates="membership", cascade="all, delete-orphan"
    )


class MembershipWorkspace(Base):
    """One workspace a restricted membership may see; no rows means organisation-wide."""

    __tablename__ = "membership_workspaces"

    membership_id: Mapped[int] = mapped_column(ForeignKey("memberships.id"), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)

    membership: Mapped[Membership] = relationship(back_populates="workspaces")


class Folder(Base):
    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(320))


class Report(Base):
    """A scheduled report.

    `definition` holds the validated definition except `status` and `folder`, whose truth is the
    `status` and `folder_id` columns (so pausing or renaming a folder never rewrites JSON).
    `name`, `type` and `workspace_id` are copies of definition fields kept for listing.
    """

    __tablename__ = "reports"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # rpt_ + 10 base32 chars
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    # NULL for an organisation-scoped (billing) report.
    workspace_id: Mapped[str | None] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # enabled | disabled
    folder_id: Mapped[int | None] = mapped_column(ForeignKey("folders.id"), index=True)
    definition: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(320))
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(320))
    deleted_at: Mapped[datetime | None]  # soft delete: history stays readable
    # Final failures in a row (a run retried by Dagster counts once); a success or a resume clears it.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Which scheduled times the scheduler owes the report: every one after `ticks_expected_from`
    # (creation, or the last change of its schedule). `last_tick_at` is the latest it evaluated;
    # a scheduled time between two evaluated ones was missed. None on reports older than these.
    ticks_expected_from: Mapped[datetime | None]
    last_tick_at: Mapped[datetime | None]

    folder: Mapped[Folder | None] = relationship()


class ReportChange(Base):
    """One change to a report's definition or state, with a field-level diff."""

    __tablename__ = "report_changes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id"), index=True)
    at: Mapped[datetime]
    by: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(16))
    # {"schedule.time_of_day": {"old": "06:00:00", "new": "07:00:00"}, ...}
    diff: Mapped[dict[str, Any]]


class ReportRun(Base):
    """One run of a report, as the audit log shows it."""

    __tablename__ = "report_runs"
    __table_args__ = (
        Index("ix_report_runs_report_seq", "report_id", "seq"),
        # MISSED rows whose owner has not been told yet: what the missed-tick sensor looks for.
        Index("ix_report_runs_status_notified", "status", "notified_owner_at"),
    )

    # Insertion order: "newest first" and "last run" must not depend on clock resolution.
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)  # run_ + 10 base32 chars
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id"), index=True)
    dagster_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    trigger: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime]
    scheduled_at: Mapped[datetime | None]
    # What a person asked for with "run now" (inclusive local dates), before resolution.
    requested_period_start: Mapped[date | None] = mapped_column(Date)
    requested_period_end: Mapped[date | None] = mapped_column(Date)
    # The resolved half-open period [start, end), recorded when the run starts.
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    rows: Mapped[int | None] = mapped_column(BigInteger)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    delivered_to: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)  # e.g. "skipped: no rows"
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    notified_owner_at: Mapped[datetime | None]
    # One entry per destination of the report: where (its label), delivered/failed/skipped, and why.
    destinations: Mapped[list[Any]] = mapped_column(JSONType, default=list, server_default="[]")


AUTH_OUTCOMES = ("success", "failure", "throttled")


class UserPassword(Base):
    """A person's sign-in password, as an argon2id hash; a user without one cannot sign in."""

    __tablename__ = "user_passwords"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(512))
    changed_at: Mapped[datetime]


class SignInSession(Base):
    """A signed-in browser. Only the SHA-256 of its token is kept; the cookie holds the token."""

    __tablename__ = "sign_in_sessions"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # Sent back in the X-CSRF-Token header of every state-changing request made with the cookie.
    csrf_token: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]  # the absolute limit, however active the session is
    revoked_at: Mapped[datetime | None]


class ApiToken(Base):
    """A named token a script signs in with (`Authorization: Bearer`); only its SHA-256 is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # tok_ + 10 base32 chars
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuthEvent(Base):
    """One sign-in attempt: who (as typed), from where, when and how it ended; never the password.

    The throttle counts these rows, so every process serving sign-ins sees the same counts.
    """

    __tablename__ = "auth_events"
    __table_args__ = (
        Index("ix_auth_events_email_at", "email", "at"),
        Index("ix_auth_events_client_at", "client", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime]
    email: Mapped[str] = mapped_column(String(320))  # normalised, as typed: also for unknown addresses
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    client: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(16))  # success | failure | throttled
    reason: Mapped[str | None] = mapped_column(String(100))
