"""Signing in: passwords, browser sessions, API tokens and the throttle on failed attempts.

Passwords are kept as argon2id hashes (argon2-cffi) and rehashed at the next sign-in when the
hasher's parameters change. Session and API tokens are random; only their SHA-256 is stored, so
a copy of the database signs nobody in. A session ends `idle` after its last use, `max_age`
after it began however active it is, on sign-out, and when the user's password changes. An API
token lasts until it is revoked, or until the password of its user changes.

Every attempt is a row of `auth_events` (who as typed, client address, when, outcome; never the
password), and the throttle counts those rows, so every process serving sign-ins agrees. An
unknown address, a user without a password and a wrong password get the same refusal after the
same work: a hash is verified either way (a dummy one when there is none).
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from report_platform.registry.core import new_id, utc_now
from report_platform.registry.errors import BadRequest, NotFound
from report_platform.registry.models import ApiToken, AuthEvent, SignInSession, User, UserPassword
from report_platform.registry.users import normal_email

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
MAX_TOKEN_NAME_LENGTH = 100
API_TOKEN_PREFIX = "rpk_"  # recognisable in a script or a leaked file, like other services' tokens
# A session's last use is written at most this often: a request does not always cost a write.
TOUCH_EVERY = timedelta(minutes=1)
_MAX_TOKEN_CHARS = 200  # longer than any token we issue: not worth hashing


@dataclass(frozen=True)
class Throttle:
    """Refuse sign-ins after `per_account` failures for one e-mail address, or `per_client` from
    one client address, within `window`. A success clears its address's count, not the client's."""

    per_account: int = 5
    per_client: int = 20
    window: timedelta = timedelta(minutes=15)


class SignInRefused(Exception):
    """Wrong e-mail address or password (HTTP 401); the same whatever the cause."""

    def __init__(self) -> None:
        super().__init__("wrong e-mail address or password")


class SignInThrottled(Exception):
    """Too many failed sign-ins (HTTP 429); `retry_after` is the seconds until the next attempt counts."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed sign-ins: try again in {retry_after} seconds")


@dataclass(frozen=True)
class Authenticated:
    """Who a request comes from: a signed-in browser session or an API token."""

    user_id: int
    email: str
    via: str  # "session" | "token"
    session_id: int | None = None
    csrf_token: str | None = None
    token_id: str | None = None


@dataclass(frozen=True)
class SignedIn:
    """A new session. `token` goes into the cookie and nowhere else; the store keeps its hash."""

    session_id: int
    email: str
    token: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class SessionRecord:
    id: int
    email: str
    client: str
    created_at: datetime
    last_seen_at: datetime
    idle_until: datetime
    expires_at: datetime


@dataclass(frozen=True)
class PasswordSet:
    """What setting a password ended: the user's live sessions and, if it replaced one, their API tokens."""

    sessions_ended: int
    tokens_revoked: int


@dataclass(frozen=True)
class IssuedToken:
    """A new API token; `token` is shown this once and never stored."""

    id: str
    name: str
    email: str
    token: str
    created_at: datetime


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    email: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class AuthEventRecord:
    at: datetime
    email: str
    client: str
    outcome: str  # success | failure | throttled
    reason: str | None


def password_problem(password: str) -> str | None:
    """Why `password` may not be set, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"a password needs at least {MIN_PASSWORD_LENGTH} characters, got {len(password)}"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"a password may have at most {MAX_PASSWORD_LENGTH} characters, got {len(password)}"
    return None


def _bytes(text: str) -> bytes:
    # A lone surrogate (JSON allows "\ud800") must not make hashing fail where it would otherwise pass.
    return text.encode("utf-8", "surrogatepass")


def _digest(token: str) -> str:
    return hashlib.sha256(_bytes(token)).hexdigest()


def _storable(char: str) -> bool:
    code = ord(char)
    return not (code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code < 0xE000)  # controls, lone surrogates


def _printable(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, control characters and lone surrogates replaced: fit for any column."""
    return "".join(c if _storable(c) else "?" for c in text[:limit])


class SignInStore:
    """Passwords, sessions, API tokens and sign-in attempts, in the registry database.

    `idle` and `max_age` bound a session's life; `throttle` limits failed attempts; `hasher` is
    argon2-cffi's `PasswordHasher` (argon2id); `clock` gives "now". All injectable for tests.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        idle: timedelta = timedelta(minutes=30),
        max_age: timedelta = timedelta(hours=12),
        throttle: Throttle | None = None,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._sessions = session_factory
        self._idle = idle
        self._max_age = max_age
        self._throttle = throttle or Throttle()
        self._hasher = hasher or PasswordHasher()
        self._clock = clock or utc_now
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()

    @property
    def throttle(self) -> Throttle:
        return self._throttle

    @property
    def max_age(self) -> timedelta:
        return self._max_age

    # Passwords

    def set_password(self, email: str, password: str) -> PasswordSet:
        """Set (or change) the user's password; every session they have ends.

        A change also revokes their API tokens: a password is changed when it may have leaked, and
        whoever held it could have issued themselves a token. A first password leaves the tokens of
        someone who had none (a script's account) as they are.
        """
        problem = password_problem(password)
        if problem:
            raise BadRequest(problem)
        hashed = self._hasher.hash(_bytes(password))
        now = self._clock()
        with self._sessions.begin() as s:
            user_id = _user_id(s, email)
            stored = s.get(UserPassword, user_id)
            revoked = 0
            if stored is None:
                s.add(UserPassword(user_id=user_id, password_hash=hashed, changed_at=now))
            else:
                stored.password_hash, stored.changed_at = hashed, now
                revoked = _revoke_tokens(s, user_id, now)
            return PasswordSet(sessions_ended=_revoke_sessions(s, user_id, now), tokens_revoked=revoked)

    def has_password(self, email: str) -> bool:
        with self._sessions() as s:
            return s.get(UserPassword, _user_id(s, email)) is not None

    # Signing in and out

    def sign_in(self, email: str, password: str, client: str) -> SignedIn:
        """A new session for the user, if the password is theirs and no throttle applies.

        Raises `SignInThrottled` (nothing is checked) or `SignInRefused`; each attempt is recorded.
        """
        address = _printable(normal_email(email), 320)
        client = _printable(client or "unknown", 100)
        dummy = self._dummy_hash()  # made before any lookup, so the first attempt costs the same for everyone
        now = self._clock()
        with self._sessions.begin() as s:
            wait = self._wait(s, address, client, now)
            if wait is not None:
                seconds, reason = wait
                s.add(AuthEvent(at=now, email=address, client=client, outcome="throttled", reason=reason))
        if wait is not None:
            raise SignInThrottled(wait[0])

        with self._sessions() as s:
            found = s.execute(
                select(User.id, UserPassword.password_hash)
                .outerjoin(UserPassword, UserPassword.user_id == User.id)
                .where(User.email == address)
            ).first()
        user_id, stored = (found[0], found[1]) if found else (None, None)
        matches = self._verify(stored or dummy, password) and stored is not None
        if matches:
            reason = None
        elif user_id is None:
            reason = "unknown e-mail address"
        elif stored is None:
            reason = "no password set"
        else:
            reason = "wrong password"

        now = self._clock()
        with self._sessions.begin() as s:
            s.add(
                AuthEvent(
                    at=now,
                    email=address,
                    user_id=user_id,
                    client=client,
                    outcome="success" if matches else "failure",
                    reason=reason,
                )
            )
            if not matches or user_id is None:
                signed_in = None
            else:
                assert stored is not None
                if self._hasher.check_needs_rehash(stored):
                    s.execute(
                        update(UserPassword)
                        .where(UserPassword.user_id == user_id, UserPassword.password_hash == stored)
                        .values(password_hash=self._hasher.hash(_bytes(password)))
                    )
                signed_in = _new_session(s, user_id, address, client, now, self._max_age)
        if signed_in is None:
            raise SignInRefused()
        return signed_in

    def session(self, token: str) -> Authenticated | None:
        """Who holds this session token, if the session is live; its last use becomes now."""
        now = self._clock()
        with self._sessions.begin() as s:
            found = _holder(s, SignInSession, token)
            if found is None or not self._live(found[0], now):
                return None
            row, email = found
            if now - row.last_seen_at >= TOUCH_EVERY:
                row.last_seen_at = now
            return Authenticated(
                user_id=row.user_id, email=email, via="session", session_id=row.id, csrf_token=row.csrf_token
            )

    def sign_out(self, token: str) -> bool:
        """End the session this token opened; False if it was not live."""
        if not token or len(token) > _MAX_TOKEN_CHARS:
            return False
        now = self._clock()
        with self._sessions.begin() as s:
            ended = s.execute(
                update(SignInSession)
                .where(SignInSession.token_sha256 == _digest(token), SignInSession.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            return bool(ended.rowcount)

    def sign_out_everywhere(self, email: str) -> int:
        """End every session of the user; returns how many were live."""
        now = self._clock()
        with self._sessions.begin() as s:
            return _revoke_sessions(s, _user_id(s, email), now)

    def sessions(self, email: str) -> list[SessionRecord]:
        """The user's live sessions, newest first."""
        now = self._clock()
        with self._sessions() as s:
            user_id = _user_id(s, email)
            rows = s.scalars(
                select(SignInSession)
                .where(SignInSession.user_id == user_id, SignInSession.revoked_at.is_(None))
                .order_by(SignInSession.id.desc())
            ).all()
            return [
                SessionRecord(
                    id=r.id,
                    email=normal_email(email),
                    client=r.client,
                    created_at=r.created_at,
                    last_seen_at=r.last_seen_at,
                    idle_until=min(r.last_seen_at + self._idle, r.expires_at),
                    expires_at=r.expires_at,
                )
                for r in rows
                if self._live(r, now)
            ]

    # API tokens

    def issue_token(self, email: str, name: str = "api token") -> IssuedToken:
        """A new API token for the user; the token itself is in the answer only."""
        clean = (name or "").strip()
        if not clean or len(clean) > MAX_TOKEN_NAME_LENGTH or _printable(clean, MAX_TOKEN_NAME_LENGTH) != clean:
            raise BadRequest(f"a token name must be 1-{MAX_TOKEN_NAME_LENGTH} printable characters, got {name!r}")
        token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        with self._sessions.begin() as s:
            user_id = _user_id(s, email)
            token_id = new_id("tok")
            while s.get(ApiToken, token_id) is not None:
                token_id = new_id("tok")
            s.add(ApiToken(id=token_id, user_id=user_id, name=clean, token_sha256=_digest(token), created_at=now))
        return IssuedToken(id=token_id, name=clean, email=normal_email(email), token=token, created_at=now)

    def token_user(self, token: str) -> Authenticated | None:
        """Who this API token belongs to, unless it was revoked; its last use becomes now."""
        now = self._clock()
        with self._sessions.begin() as s:
            found = _holder(s, ApiToken, token)
            if found is None or found[0].revoked_at is not None:
                return None
            row, email = found
            if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
                row.last_used_at = now
            return Authenticated(user_id=row.user_id, email=email, via="token", token_id=row.id)

    def revoke_token(self, token_id: str) -> bool:
        """Revoke an API token; False if it was revoked already."""
        now = self._clock()
        with self._sessions.begin() as s:
            row = s.get(ApiToken, token_id)
            if row is None:
                raise NotFound(f"no API token {token_id}")
            if row.revoked_at is not None:
                return False
            row.revoked_at = now
            return True

    def tokens(self, email: str) -> list[TokenRecord]:
        """The user's API tokens, revoked ones included, newest first."""
        with self._sessions() as s:
            rows = s.scalars(
                select(ApiToken).where(ApiToken.user_id == _user_id(s, email)).order_by(ApiToken.created_at.desc())
            ).all()
            return [
                TokenRecord(r.id, r.name, normal_email(email), r.created_at, r.last_used_at, r.revoked_at) for r in rows
            ]

    # The record of attempts

    def events(self, email: str | None = None, limit: int = 100) -> list[AuthEventRecord]:
        """Sign-in attempts, newest first; only those for `email` when given."""
        query = select(AuthEvent).order_by(AuthEvent.id.desc()).limit(limit)
        if email is not None:
            query = query.where(AuthEvent.email == normal_email(email))
        with self._sessions() as s:
            return [AuthEventRecord(e.at, e.email, e.client, e.outcome, e.reason) for e in s.scalars(query)]

    # Internals

    def _live(self, row: SignInSession, now: datetime) -> bool:
        return row.revoked_at is None and now < row.expires_at and now < row.last_seen_at + self._idle

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, _bytes(password))
        except (VerificationError, InvalidHashError):
            return False

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            with self._dummy_lock:
                if self._dummy is None:
                    self._dummy = self._hasher.hash(secrets.token_bytes(16))
        return self._dummy

    def _wait(self, s: Session, address: str, client: str, now: datetime) -> tuple[int, str] | None:
        """(seconds to wait, why) if a throttle applies to this address or client, else None."""
        rule = self._throttle
        since = now - rule.window  # a failure counts while it is younger than the window
        last_success = s.scalar(
            select(func.max(AuthEvent.at)).where(
                AuthEvent.email == address, AuthEvent.outcome == "success", AuthEvent.at >= since
            )
        )
        account = select(AuthEvent.at).where(
            AuthEvent.email == address, AuthEvent.outcome == "failure", AuthEvent.at > since
        )
        if last_success is not None:
            account = account.where(AuthEvent.at > last_success)
        by_client = select(AuthEvent.at).where(
            AuthEvent.client == client, AuthEvent.outcome == "failure", AuthEvent.at > since
        )
        waits = []
        for query, limit, reason in (
            (account, rule.per_account, "too many failures for this e-mail address"),
            (by_client, rule.per_client, "too many failures from this client"),
        ):
            newest = s.scalars(query.order_by(AuthEvent.at.desc()).limit(limit)).all()
            if len(newest) >= limit:
                # The attempt counts again once the oldest of the last `limit` failures leaves the window.
                seconds = math.ceil((newest[-1] + rule.window - now).total_seconds())
                waits.append((max(seconds, 1), reason))
        return max(waits) if waits else None


def _user_id(s: Session, email: str) -> int:
    user_id = s.scalar(select(User.id).where(User.email == normal_email(email)))
    if user_id is None:
        raise NotFound(
            f"no user {normal_email(email)}: register them with `report-platform users add {normal_email(email)} "
            "--org ORG --role ROLE`"
        )
    return user_id


def _holder(s: Session, kind: type[SignInSession] | type[ApiToken], token: str) -> tuple[Any, str] | None:
    """The session or API token row this token is the secret of, and its user's e-mail address."""
    if not token or len(token) > _MAX_TOKEN_CHARS:
        return None
    found = s.execute(
        select(kind, User.email).join(User, User.id == kind.user_id).where(kind.token_sha256 == _digest(token))
    ).first()
    return (found[0], found[1]) if found else None


def _revoke_sessions(s: Session, user_id: int, now: datetime) -> int:
    ended = s.execute(
        update(SignInSession)
        .where(
            SignInSession.user_id == user_id,
            SignInSession.revoked_at.is_(None),
            SignInSession.expires_at > now,
        )
        .values(revoked_at=now)
    )
    return ended.rowcount or 0


def _revoke_tokens(s: Session, user_id: int, now: datetime) -> int:
    revoked = s.execute(
        update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None)).values(revoked_at=now)
    )
    return revoked.rowcount or 0


def _new_session(s: Session, user_id: int, email: str, client: str, now: datetime, max_age: timedelta) -> SignedIn:
    token = secrets.token_urlsafe(32)
    row = SignInSession(
        token_sha256=_digest(token),
        user_id=user_id,
        csrf_token=secrets.token_urlsafe(32),
        client=client,
        created_at=now,
        last_seen_at=now,
        expires_at=now + max_age,
    )
    s.add(row)
    s.flush()
    return SignedIn(session_id=row.id, email=email, token=token, csrf_token=row.csrf_token, expires_at=row.expires_at)
