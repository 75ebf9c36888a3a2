"""Signing in and out of the console over HTTP: the cookie, CSRF, API tokens, expiry, the throttle.

Each test has a console of its own (`fresh_console`), whose sign-in clock the test moves.
"""

from __future__ import annotations

from datetime import timedelta

from report_platform.web.security import CSRF_HEADER, SESSION_COOKIE
from report_platform_tests.registry.conftest import snapshot
from report_platform_tests.samples import sms_definition
from report_platform_tests.web.conftest import ADMIN, OWNER, Console, password_of

SIGN_IN = "/api/v1/session"


def test_signing_in_sets_an_httponly_strict_session_cookie_and_answers_the_csrf_token(fresh_console: Console) -> None:
    client = fresh_console.anonymous()
    answer = client.post(SIGN_IN, json={"email": OWNER, "password": password_of(OWNER)})
    assert answer.status_code == 200
    body = answer.json()
    assert body["email"] == OWNER and len(body["csrf_token"]) >= 40
    cookie = answer.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert {"httponly", "path", "samesite", "max-age"} <= attributes and "secure" not in attributes
    assert "SameSite=strict" in cookie and "Path=/" in cookie and "Max-Age=43200" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    assert token not in answer.text  # the session token is in the cookie only
    assert client.get("/api/v1/reports").status_code == 200


def test_the_cookie_is_secure_when_the_console_is_served_over_https(tmp_path) -> None:  # noqa: ANN001
    from report_platform_tests.web.conftest import make_console

    console = make_console(tmp_path / "console", console_secure_cookies=True)
    answer = console.anonymous().post(SIGN_IN, json={"email": OWNER, "password": password_of(OWNER)})
    assert "; Secure" in answer.headers["set-cookie"]


def test_an_unknown_address_and_a_wrong_password_get_the_same_answer(fresh_console: Console) -> None:
    client = fresh_console.anonymous()
    answers = [
        client.post(SIGN_IN, json={"email": email, "password": password})
        for email, password in (
            (OWNER, "not the password at all"),
            ("nobody@acme.example", password_of(OWNER)),
            (ADMIN.upper(), "not the password either"),
        )
    ]
    assert {(a.status_code, a.text) for a in answers} == {(401, '{"detail":"wrong e-mail address or password"}')}
    assert all("set-cookie" not in a.headers for a in answers)


def test_signing_out_ends_the_session_and_clears_the_cookie(fresh_console: Console) -> None:
    client = fresh_console.browser(OWNER)
    cookie = client.cookies[SESSION_COOKIE]
    answer = client.delete(SIGN_IN)
    assert answer.status_code == 204
    cleared = answer.headers["set-cookie"]
    assert cleared.startswith(f'{SESSION_COOKIE}=""') and "Max-Age=0" in cleared
    replay = fresh_console.anonymous()
    replay.cookies[SESSION_COOKIE] = cookie  # the old cookie, kept by someone
    refused = replay.get("/api/v1/reports")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"


def test_a_session_the_operator_revoked_is_refused(fresh_console: Console) -> None:
    client = fresh_console.browser(OWNER)
    assert fresh_console.sign_in.sign_out_everywhere(OWNER) == 1
    assert client.get("/api/v1/reports").status_code == 401


def test_an_idle_session_expires(fresh_console: Console) -> None:
    client = fresh_console.browser(OWNER)
    assert fresh_console.clock is not None
    fresh_console.clock.now += timedelta(minutes=29)
    assert client.get("/api/v1/reports").status_code == 200
    fresh_console.clock.now += timedelta(minutes=30)
    assert client.get("/api/v1/reports").status_code == 401


def test_a_busy_session_expires_at_its_absolute_limit(fresh_console: Console) -> None:
    client = fresh_console.browser(OWNER)
    assert fresh_console.clock is not None
    for _ in range(12 * 3 - 1):
        fresh_console.clock.now += timedelta(minutes=20)
        assert client.get("/api/v1/folders").status_code == 200
    fresh_console.clock.now += timedelta(minutes=20)
    assert client.get("/api/v1/folders").status_code == 401


def test_a_change_made_with_the_cookie_needs_the_sessions_csrf_token(fresh_console: Console) -> None:
    client = fresh_console.browser(OWNER)
    token = client.headers.pop(CSRF_HEADER)
    before = fresh_console.registry_rows()
    for headers in (
        {},
        {CSRF_HEADER: "not-the-token"},
        {CSRF_HEADER: fresh_console.browser(OWNER).headers[CSRF_HEADER]},
    ):
        answer = client.post("/api/v1/reports", json=sms_definition(), headers=headers)
        assert answer.status_code == 403, headers
        assert answer.json() == {"detail": f"the {CSRF_HEADER} header is missing or does not match this session"}
    assert client.delete(SIGN_IN).status_code == 403  # signing out is a change too
    assert fresh_console.registry_rows() == before
    assert client.get("/api/v1/reports").status_code == 200  # reading needs none
    assert client.post("/api/v1/reports", json=sms_definition(), headers={CSRF_HEADER: token}).status_code == 201


def test_an_api_token_works_without_csrf_until_it_is_revoked(fresh_console: Console) -> None:
    issued = fresh_console.sign_in.issue_token(OWNER, "nightly script")
    script = fresh_console.anonymous()
    script.headers["Authorization"] = f"Bearer {issued.token}"
    created = script.post("/api/v1/reports", json=sms_definition())
    assert created.status_code == 201
    assert fresh_console.service.get_report(OWNER, created.json()["id"]).created_by == OWNER
    assert script.delete(SIGN_IN).status_code == 204  # nothing to end; the token stays valid
    assert script.get("/api/v1/reports").status_code == 200
    fresh_console.sign_in.revoke_token(issued.id)
    assert script.get("/api/v1/reports").status_code == 401
    assert script.post("/api/v1/reports", json=sms_definition()).status_code == 401


def test_a_malformed_or_unknown_authorization_header_is_refused_even_with_a_valid_cookie(
    fresh_console: Console,
) -> None:
    client = fresh_console.browser(OWNER)
    for value in ("Bearer", "Bearer rpk_unknown", "Basic b3duZXI6cGFzcw==", "rpk_" + "x" * 300):
        assert client.get("/api/v1/reports", headers={"Authorization": value}).status_code == 401, value


def test_failed_sign_ins_for_an_address_are_throttled_with_retry_after(fresh_console: Console) -> None:
    client = fresh_console.anonymous()
    assert fresh_console.clock is not None
    for _ in range(5):
        fresh_console.clock.now += timedelta(minutes=1)
        assert client.post(SIGN_IN, json={"email": OWNER, "password": "a wrong guess"}).status_code == 401
    throttled = client.post(SIGN_IN, json={"email": OWNER, "password": password_of(OWNER)})
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == str(11 * 60)
    assert throttled.json() == {"detail": "too many failed sign-ins: try again in 660 seconds"}
    # Another person from the same client is not held up by this address's failures.
    assert client.post(SIGN_IN, json={"email": ADMIN, "password": password_of(ADMIN)}).status_code == 200
    fresh_console.clock.now += timedelta(minutes=11)
    assert client.post(SIGN_IN, json={"email": OWNER, "password": password_of(OWNER)}).status_code == 200


def test_failed_sign_ins_from_a_client_are_throttled_with_retry_after(fresh_console: Console) -> None:
    client = fresh_console.anonymous()
    for i in range(20):
        answer = client.post(SIGN_IN, json={"email": f"guess{i}@acme.example", "password": "a wrong guess"})
        assert answer.status_code == 401
    throttled = client.post(SIGN_IN, json={"email": OWNER, "password": password_of(OWNER)})
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, str(15 * 60))


def test_every_sign_in_attempt_is_recorded_and_no_password_is(fresh_console: Console) -> None:
    client = fresh_console.anonymous()
    client.post(SIGN_IN, json={"email": OWNER, "password": "a wrong guess"})
    client.post(SIGN_IN, json={"email": "nobody@acme.example", "password": "another guess"})
    client.post(SIGN_IN, json={"email": OWNER, "password": password_of(OWNER)})
    for _ in range(5):
        client.post(SIGN_IN, json={"email": ADMIN, "password": "a wrong guess"})
    client.post(SIGN_IN, json={"email": ADMIN, "password": password_of(ADMIN)})
    events = [(e.email, e.client, e.outcome) for e in reversed(fresh_console.sign_in.events())]
    assert events == [
        (OWNER, "testclient", "failure"),
        ("nobody@acme.example", "testclient", "failure"),
        (OWNER, "testclient", "success"),
        *[(ADMIN, "testclient", "failure")] * 5,
        (ADMIN, "testclient", "throttled"),
    ]
    recorded = str(snapshot(fresh_console.engine))  # every table, the sign-in ones included
    for password in ("a wrong guess", "another guess", password_of(OWNER), password_of(ADMIN)):
        assert password not in recorded
