"""Who a request comes from, the CSRF check, and the headers every answer carries.

A request is authenticated by `Authorization: Bearer <API token>` (scripts) or by the `rp_session`
cookie (browsers); a request with an Authorization header is judged by that header alone. A
state-changing request (POST, PUT, PATCH, DELETE) made with the cookie must also carry the
session's CSRF token in `X-CSRF-Token`; a bearer token needs none, as browsers never send it on
their own. The pages ask `current_user_or_none` and `csrf_token_for`; the API depends on
`current_user`, which refuses with 401 (and 403 for a missing or wrong CSRF token).
"""

from __future__ import annotations

import hmac
import logging
import traceback
from datetime import timedelta

from fastapi import Request, Response
from fastapi.security import APIKeyCookie, HTTPBearer
from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from report_platform.redaction import redact
from report_platform.registry.signin import Authenticated, SignedIn, SignInStore

log = logging.getLogger(__name__)

SESSION_COOKIE = "rp_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_BODY_BYTES = 256 * 1024  # a report definition's own cap; nothing the API takes is larger
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

# For the OpenAPI document only (auto_error off): the dependency below does the checking.
bearer_scheme = HTTPBearer(auto_error=False, description="An API token from `report-platform users token`.")
cookie_scheme = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="The session cookie POST /api/v1/session sets."
)


class NotSignedIn(Exception):
    """No valid credentials: none given, unknown, revoked or expired (HTTP 401)."""

    def __init__(self) -> None:
        super().__init__("sign in first: no valid session or API token")


class CsrfRefused(Exception):
    """A state-changing request made with the session cookie lacks the session's CSRF token (HTTP 403)."""

    def __init__(self) -> None:
        super().__init__(f"the {CSRF_HEADER} header is missing or does not match this session")


def sign_in_store_of(request: Request) -> SignInStore:
    return request.app.state.sign_in


def authenticate(request: Request) -> Authenticated | None:
    """Who sent the request (API token or session cookie), or None; looked up once per request."""
    cached = request.scope.get("report_platform.authenticated", False)
    if cached is not False:
        return cached
    store = sign_in_store_of(request)
    header = request.headers.get("authorization")
    who: Authenticated | None = None
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            who = store.token_user(token.strip())
    elif cookie := request.cookies.get(SESSION_COOKIE):
        who = store.session(cookie)
    request.scope["report_platform.authenticated"] = who
    return who


def csrf_matches(request: Request, who: Authenticated, submitted: str | None) -> bool:
    """Whether `submitted` is the CSRF token of the session the request was made with."""
    expected = who.csrf_token or ""
    return bool(expected and submitted) and hmac.compare_digest(expected.encode(), (submitted or "").encode())


def current_user(request: Request) -> Authenticated:
    """The API's dependency: the signed-in user; the CSRF token is checked for cookie-made changes."""
    who = authenticate(request)
    if who is None:
        raise NotSignedIn()
    cookie_made_change = who.via == "session" and request.method not in SAFE_METHODS
    if cookie_made_change and not csrf_matches(request, who, request.headers.get(CSRF_HEADER)):
        raise CsrfRefused()
    return who


def current_user_or_none(request: Request) -> str | None:
    """The e-mail address of whoever is signed in (session or token), or None; for the pages."""
    who = authenticate(request)
    return who.email if who else None


def csrf_token_for(request: Request) -> str | None:
    """The CSRF token of the request's session, for a page to hand its scripts; None without one."""
    who = authenticate(request)
    return who.csrf_token if who else None


def client_address(request: Request) -> str:
    """The peer's address as the server sees it (behind a proxy: the proxy's)."""
    return request.client.host if request.client else "unknown"


def set_session_cookie(response: Response, signed_in: SignedIn, max_age: timedelta, *, secure: bool) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Path=/, Secure when the console is served over HTTPS."""
    response.set_cookie(
        SESSION_COOKIE,
        signed_in.token,
        max_age=int(max_age.total_seconds()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def clear_session_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=secure)


class Guard:
    """Wraps the whole app: the security headers on every answer (API answers are also never
    cached), a NUL in the path or query refused (400), and an unexpected error logged once,
    redacted, after its 500 answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/api/")
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if api:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            # No name holds a NUL, and PostgreSQL refuses one in any text it is asked to compare.
            await JSONResponse({"detail": "a NUL character is not allowed in a path or query"}, status_code=400)(
                scope, receive, send_with_headers
            )
            return

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Starlette has sent its 500 by now (see `internal_error`) and re-raised for the server's log.
            log.error(
                "unexpected error answering %s %s:\n%s",
                scope.get("method"),
                scope.get("path"),
                redact(traceback.format_exc()),
            )
            if not started:
                await JSONResponse({"detail": "internal error"}, status_code=500)(scope, receive, send_with_headers)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """The 500 answer: says nothing of the error, which `Guard` logs."""
    return JSONResponse({"detail": "internal error"}, status_code=500)
