"""`report-platform users …`: passwords from standard input, API tokens shown once, sessions ended."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from report_platform.cli.main import cli
from report_platform.registry.signin import SignInRefused
from report_platform_tests.web.conftest import ADMIN, OWNER, Console, make_console, password_of

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def fresh_console(tmp_path: Path) -> Console:
    """A console of its own on the real clock, which the command line's sign-in store keeps too."""
    return make_console(tmp_path / "console")


@pytest.fixture
def run(fresh_console: Console, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    monkeypatch.setenv("REPORT_PLATFORM_HOME", str(fresh_console.home.root))

    def invoke(*args: str, stdin: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=stdin)

    return invoke


def test_users_add_still_registers_a_role_without_a_password(run, fresh_console: Console) -> None:  # noqa: ANN001
    result = run("users", "add", "new@acme.example", "--org", "acme", "--role", "admin", "--workspace", "acme-west")
    assert (result.exit_code, result.stdout) == (0, "new@acme.example is admin of acme in acme-west\n")
    assert fresh_console.service.principal("new@acme.example").credentials["acme"].workspaces == {"acme-west"}
    assert not fresh_console.sign_in.has_password("new@acme.example")


def test_users_add_with_a_password_from_stdin(run, fresh_console: Console) -> None:  # noqa: ANN001
    result = run("users", "add", "new@acme.example", "--org", "acme", "--role", "owner", "--password-stdin",
                 stdin=NEW_PASSWORD + "\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert NEW_PASSWORD not in result.output
    assert fresh_console.sign_in.sign_in("new@acme.example", NEW_PASSWORD, "cli-test").email == "new@acme.example"


def test_set_password_reads_one_line_never_echoes_it_and_ends_the_sessions(run, fresh_console: Console) -> None:  # noqa: ANN001
    client = fresh_console.browser(OWNER)
    result = run("users", "set-password", OWNER, "--password-stdin", stdin=f"{NEW_PASSWORD}\r\nsecond line\n")
    assert (result.exit_code, result.stdout) == (
        0,
        f"password of {OWNER} set; 1 session(s) ended, 0 API token(s) revoked\n",
    )
    assert NEW_PASSWORD not in result.output
    assert client.get("/api/v1/reports").status_code == 401
    fresh_console.sign_in.sign_in(OWNER, NEW_PASSWORD, "cli-test")
    with pytest.raises(SignInRefused):
        fresh_console.sign_in.sign_in(OWNER, password_of(OWNER), "cli-test")


@pytest.mark.parametrize(
    ("stdin", "reason"),
    [
        ("short one\n", "a password needs at least 12 characters, got 9"),
        ("", "a password needs at least 12 characters, got 0"),
        ("y" * 5000 + "\n", "a password may have at most 1024 characters, got 1025"),
    ],
)
def test_set_password_refuses_a_password_too_short_or_too_long(
    run,  # noqa: ANN001
    fresh_console: Console,
    stdin: str,
    reason: str,
) -> None:
    result = run("users", "set-password", OWNER, "--password-stdin", stdin=stdin)
    assert result.exit_code == 1
    assert result.stderr == f"error: {reason} (--password-stdin reads one line)\n"
    fresh_console.sign_in.sign_in(OWNER, password_of(OWNER), "cli-test")  # unchanged


def test_set_password_of_someone_unregistered_is_refused(run) -> None:  # noqa: ANN001
    result = run("users", "set-password", "nobody@acme.example", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert result.exit_code == 1 and result.stderr.startswith("error: no user nobody@acme.example")


def test_a_token_is_printed_once_works_over_http_and_is_revoked_by_its_id(run, fresh_console: Console) -> None:  # noqa: ANN001
    result = run("users", "token", ADMIN, "--name", "dashboards")
    assert result.exit_code == 0
    token = result.stdout.strip()
    assert token.startswith("rpk_") and "\n" not in token
    [listed] = fresh_console.sign_in.tokens(ADMIN)
    assert result.stderr == f"API token {listed.id} ('dashboards') for {ADMIN}: it is not shown again\n"
    listing = run("users", "tokens", ADMIN, "--json")
    assert listing.exit_code == 0 and token not in listing.output and listed.id in listing.output

    script = fresh_console.anonymous()
    script.headers["Authorization"] = f"Bearer {token}"
    assert script.get("/api/v1/reports").status_code == 200
    assert run("users", "revoke-token", listed.id).stdout == f"revoked {listed.id}\n"
    assert script.get("/api/v1/reports").status_code == 401
    assert run("users", "revoke-token", listed.id).stdout == f"{listed.id} was revoked already\n"
    assert run("users", "revoke-token", "tok_nosuchtok").exit_code == 1


def test_sessions_are_listed_and_signed_out_together(run, fresh_console: Console) -> None:  # noqa: ANN001
    browsers = [fresh_console.browser(OWNER) for _ in range(2)]
    listing = run("users", "sessions", OWNER, "--json")
    assert listing.exit_code == 0 and listing.output.count('"client": "testclient"') == 2
    assert all(b.cookies["rp_session"] not in listing.output for b in browsers)
    assert run("users", "sign-out", OWNER).stdout == f"2 session(s) of {OWNER} ended\n"
    assert all(b.get("/api/v1/reports").status_code == 401 for b in browsers)
    assert run("users", "sessions", OWNER, "--json").stdout.strip() == "[]"
