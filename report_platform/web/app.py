"""The console's ASGI app: the JSON API, the pages and their static files when they exist.

`create_app(settings)` wires the registry service of the settings' data folder, the sign-in
store and the background worker into one FastAPI app, and turns every refusal into its status
code: 401 without valid credentials, 403 when the role (or the CSRF check) refuses, 404 for what
the caller may not see, 409 for a clash, 422 with every problem by field for an invalid body,
400 for another malformed request, 413 for a body over 256 KiB, 429 with Retry-After after
repeated failed sign-ins. Only a fault of the server itself answers 500.

`GET /healthz` needs no sign-in: 200 when the registry database answers, 503 when it does not (or
not within 5 s). It says nothing else, so it can face a load balancer.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
from argon2 import PasswordHasher
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

from report_platform.app import registry_service, sign_in_store
from report_platform.redaction import redact
from report_platform.registry import errors
from report_platform.registry.service import ReportService
from report_platform.registry.signin import SignInRefused, SignInThrottled
from report_platform.reports.definition import DefinitionError
from report_platform.settings import Home, PlatformSettings, current_settings
from report_platform.web.api import DEFINITION_BODY
from report_platform.web.api import router as api_router
from report_platform.web.background import Background
from report_platform.web.schemas import InvalidAnswer, definition_body_schema, field_problems
from report_platform.web.security import MAX_BODY_BYTES, CsrfRefused, Guard, NotSignedIn, internal_error

API_VERSION = "1"
STATIC_FOLDER = Path(__file__).with_name("static")
PAGES_MODULE = "report_platform.web.pages"
COMPRESS_FROM_BYTES = 1024  # below this, gzip's header and a CPU round cost more than they save
HEALTH_TIMEOUT_SECONDS = 5.0  # a registry slower than this counts as not answering

log = logging.getLogger(__name__)

# The registry's refusals, most specific first (UnknownUser is a PermissionDenied, DefinitionError a BadRequest).
_REGISTRY_STATUS: tuple[tuple[type[errors.RegistryError], int], ...] = (
    (errors.UnknownUser, 401),
    (errors.PermissionDenied, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.DefinitionError, 422),
    (errors.BadRequest, 400),
)


class ConsoleApp(FastAPI):
    """FastAPI with `Guard` around everything, Starlette's own error and body-limit layers included."""

    def build_middleware_stack(self) -> ASGIApp:
        return Guard(super().build_middleware_stack())


def create_app(
    settings: PlatformSettings | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    hasher: PasswordHasher | None = None,
) -> FastAPI:
    """The console of the settings' data folder (default: this process's settings).

    `clock` and `hasher` go to the sign-in store (tests move the clock, or hash with cheaper
    argon2id parameters).
    """
    settings = settings or current_settings()
    home = Home(settings.data_home, settings.registry_url).ensure()
    service = registry_service(home)
    overrides: dict[str, Any] = {k: v for k, v in (("clock", clock), ("hasher", hasher)) if v is not None}
    background = Background(service)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(_load_dagster)
        yield
        await anyio.to_thread.run_sync(background.shutdown)

    app = ConsoleApp(
        title="Report Platform",
        version=API_VERSION,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # the docs UIs load scripts from a CDN, which the CSP refuses
        redoc_url=None,
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.settings = settings
    app.state.home = home
    app.state.service = service
    app.state.sign_in = sign_in_store(home, settings, **overrides)
    app.state.background = background
    # A 1,000-report list is ~2 MB of JSON and ~10x less compressed. Pages hold the CSRF token, but
    # the session cookie is SameSite=Strict: another site cannot make a signed-in browser fetch
    # them repeatedly, which a compression side channel (BREACH) would need.
    app.add_middleware(GZipMiddleware, minimum_size=COMPRESS_FROM_BYTES)
    app.include_router(api_router)
    _health_check(app, service)
    _answer_refusals(app)
    if importlib.util.find_spec(PAGES_MODULE) is not None:
        app.include_router(importlib.import_module(PAGES_MODULE).router)
    if STATIC_FOLDER.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_FOLDER), name="static")
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _load_dagster() -> None:
    """Import Dagster once, before the first request. A "run now" imports it on a background thread
    and a next-run computation on a request thread; when both did so at once, Dagster's circular
    imports met half-initialised in the two threads, the import failed ("partially initialized
    module 'dagster._utils.schedules'") and every later import of it in the process failed too."""
    import report_platform.launch  # noqa: F401 - Dagster, and what "run now" launches with


def _health_check(app: FastAPI, service: ReportService) -> None:
    def registry_answers() -> None:
        with service.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        """200 when the registry answers; 503 otherwise, with no reason (the console's log has it)."""
        with anyio.move_on_after(HEALTH_TIMEOUT_SECONDS):
            try:
                # Abandoned, not waited for, when it hangs: the answer must come within the bound.
                await anyio.to_thread.run_sync(registry_answers, abandon_on_cancel=True)
            except Exception as exc:  # noqa: BLE001 - any failure means "not answering"
                log.warning("health check: the registry does not answer: %s", redact(f"{type(exc).__name__}: {exc}"))
            else:
                return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})
            return _unavailable()
        log.warning("health check: the registry did not answer within %.0f s", HEALTH_TIMEOUT_SECONDS)
        return _unavailable()


def _unavailable() -> JSONResponse:
    return JSONResponse({"status": "unavailable"}, status_code=503, headers={"Cache-Control": "no-store"})


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _invalid(messages: list[str]) -> JSONResponse:
    return JSONResponse(InvalidAnswer(errors=field_problems(messages)).model_dump(), status_code=422)


def _answer_refusals(app: FastAPI) -> None:
    async def registry_refusal(_request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, errors.DefinitionError):
            # The registry wraps the definition's own error: its messages are those of `reports validate`.
            cause = exc.__cause__
            return _invalid(cause.errors if isinstance(cause, DefinitionError) else str(exc).splitlines())
        status = next((code for kind, code in _REGISTRY_STATUS if isinstance(exc, kind)), 400)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return _problem(status, str(exc).replace("\n", "; "), headers)

    async def invalid_definition(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DefinitionError)
        return _invalid(exc.errors)

    async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        messages = []
        for error in exc.errors():
            loc = [str(part) for part in error.get("loc", ())]
            if error.get("type") == "json_invalid":
                messages.append(f"invalid JSON: {(error.get('ctx') or {}).get('error', error.get('msg'))}")
                continue
            path = ".".join(loc[1:] if loc[:1] == ["body"] else loc)
            messages.append(f"{path}: {error.get('msg')}" if path else str(error.get("msg")))
        return _invalid(messages)

    async def not_signed_in(_request: Request, exc: Exception) -> JSONResponse:
        return _problem(401, str(exc), {"WWW-Authenticate": "Bearer"})

    async def refused_sign_in(_request: Request, exc: Exception) -> JSONResponse:
        return _problem(401, str(exc))

    async def throttled(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SignInThrottled)
        return _problem(429, str(exc), {"Retry-After": str(exc.retry_after)})

    async def csrf_refused(_request: Request, exc: Exception) -> JSONResponse:
        return _problem(403, str(exc))

    app.add_exception_handler(errors.RegistryError, registry_refusal)
    app.add_exception_handler(DefinitionError, invalid_definition)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(NotSignedIn, not_signed_in)
    app.add_exception_handler(SignInRefused, refused_sign_in)
    app.add_exception_handler(SignInThrottled, throttled)
    app.add_exception_handler(CsrfRefused, csrf_refused)
    app.add_exception_handler(Exception, internal_error)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The API's OpenAPI document (the pages are not part of it); definition bodies are the definition model."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description="Scheduled reports: sign in, then list, create, change, run and inspect them (docs/console.md).",
        routes=api_router.routes,
    )
    body, components = definition_body_schema()
    schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if operation.pop(DEFINITION_BODY, False):
                operation["requestBody"] = body
    app.openapi_schema = schema
    return schema
