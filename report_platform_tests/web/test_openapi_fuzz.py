"""Schemathesis against the real app's own OpenAPI document, signed in as an Owner with the cookie
and its CSRF token: whatever the document allows, no answer is a 5xx and every answer is one the
document describes (status code, content type, headers, body). Bounded: 25 examples per operation.

Each operation is a test of its own, drawn from Schemathesis's Hypothesis strategy for it (its
pytest plugin cannot take a schema from a fixture under this pytest).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings

from report_platform.web.api import router
from report_platform.web.security import CSRF_HEADER
from report_platform_tests.samples import sms_definition
from report_platform_tests.web.conftest import OWNER, Console

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]
# Signing out would end the session every other operation uses; it is tested on its own.
OPERATIONS = sorted(
    (method, route.path)
    for route in router.routes
    if isinstance(route, APIRoute)
    for method in route.methods
    if (method, route.path) != ("DELETE", "/api/v1/session")
)


@pytest.fixture(scope="module")
def api_schema(console: Console) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", console.app)
    # The credentials are the Owner's own, not drawn from the security schemes.
    schema.config.generation.update(with_security_parameters=False)
    return schema


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_answer_is_a_server_error_or_outside_the_document(
    api_schema: schemathesis.BaseSchema, console: Console, method: str, path: str
) -> None:
    owner = console.signed_in(OWNER)
    fixed: dict[str, Any] = {
        "headers": {CSRF_HEADER: owner.headers[CSRF_HEADER]},
        "cookies": dict(owner.cookies.items()),
    }
    if "{report_id}" in path:  # a real report of the Owner's, so the calls get past "not found"
        report_id = console.service.create_report(OWNER, sms_definition(name=f"Fuzzed by {method} {path}"))
        fixed["path_parameters"] = {"report_id": report_id}

    @given(case=api_schema[path][method].as_strategy(**fixed))
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def answers_as_documented(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    answers_as_documented()
    console.wait_for_runs()  # the runs a generated "run now" queued are launched before the next operation
