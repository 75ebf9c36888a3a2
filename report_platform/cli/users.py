"""`report-platform users …`: people, their roles, passwords, API tokens and sessions.

The CLI is the operator's tool on the server: whoever runs it holds the data folder, so these
commands need no sign-in. A password is read from standard input (one line, never echoed, never
an argument, which other users of the machine could see in the process list).
"""

from __future__ import annotations

import getpass
import sys
from dataclasses import asdict
from typing import Any

import click

from report_platform.cli.common import UserError, cli, echo_json, registry, registry_call, rows_table


def _sign_in_store():  # noqa: ANN202
    from report_platform.app import sign_in_store
    from report_platform.settings import Home

    return sign_in_store(Home.from_env())


def _read_password() -> str:
    """One line from standard input (a terminal does not echo it), checked before anything is saved."""
    from report_platform.registry.signin import MAX_PASSWORD_LENGTH, password_problem

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        # One character past the limit is enough to refuse; the rest is never read.
        password = sys.stdin.readline(MAX_PASSWORD_LENGTH + 1).removesuffix("\n").removesuffix("\r")
    problem = password_problem(password)
    if problem:
        raise UserError(f"{problem} (--password-stdin reads one line)")
    return password


@cli.group()
def users() -> None:
    """Register users and their roles, passwords, API tokens and sessions."""


@users.command("add")
@click.argument("email")
@click.option("--org", required=True)
@click.option("--role", required=True, type=click.Choice(["owner", "admin", "user"], case_sensitive=False))
@click.option("--workspace", "workspaces", multiple=True, help="Limit the user to these workspaces (repeatable).")
@click.option("--password-stdin", is_flag=True, help="Also set their console password, read from standard input.")
def users_add(email: str, org: str, role: str, workspaces: tuple[str, ...], password_stdin: bool) -> None:
    """Add a user to an organisation with a role (again: replace the role)."""
    password = _read_password() if password_stdin else None
    registry_call(registry().add_user, email, org, role, list(workspaces))
    if password is not None:
        registry_call(_sign_in_store().set_password, email, password)
    scope = f" in {', '.join(workspaces)}" if workspaces else ""
    click.echo(f"{email} is {role} of {org}{scope}" + (", with a password" if password else ""))


@users.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, required=True, help="Read the password from standard input.")
def users_set_password(email: str, password_stdin: bool) -> None:
    """Set a user's console password (12 to 1024 characters); their sessions end, a change revokes their API tokens."""
    password = _read_password()
    done = registry_call(_sign_in_store().set_password, email, password)
    click.echo(
        f"password of {email} set; {done.sessions_ended} session(s) ended, {done.tokens_revoked} API token(s) revoked"
    )


@users.command("token")
@click.argument("email")
@click.option("--name", default="api token", show_default=True, help="What the token is for.")
def users_token(email: str, name: str) -> None:
    """Make an API token for scripts (Authorization: Bearer); it is printed this once."""
    issued = registry_call(_sign_in_store().issue_token, email, name)
    click.echo(issued.token)
    click.echo(f"API token {issued.id} ({issued.name!r}) for {issued.email}: it is not shown again", err=True)


@users.command("tokens")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True)
def users_tokens(email: str, as_json: bool) -> None:
    """A user's API tokens (never the tokens themselves): id, name, created, last used, revoked."""
    records = registry_call(_sign_in_store().tokens, email)
    _print(records, as_json, ("id", "name", "created_at", "last_used_at", "revoked_at"))


@users.command("revoke-token")
@click.argument("token_id")
def users_revoke_token(token_id: str) -> None:
    """Revoke an API token by its id (`users tokens` lists them)."""
    revoked = registry_call(_sign_in_store().revoke_token, token_id)
    click.echo(f"revoked {token_id}" if revoked else f"{token_id} was revoked already")


@users.command("sessions")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True)
def users_sessions(email: str, as_json: bool) -> None:
    """A user's live console sessions: where from, since when, last used, when they end."""
    records = registry_call(_sign_in_store().sessions, email)
    _print(records, as_json, ("id", "client", "created_at", "last_seen_at", "idle_until", "expires_at"))


@users.command("sign-out")
@click.argument("email")
def users_sign_out(email: str) -> None:
    """End every console session of a user (API tokens stay; revoke them one by one)."""
    ended = registry_call(_sign_in_store().sign_out_everywhere, email)
    click.echo(f"{ended} session(s) of {email} ended")


def _print(records: list[Any], as_json: bool, columns: tuple[str, ...]) -> None:
    rows = [asdict(r) for r in records]
    if as_json:
        echo_json(rows)
    else:
        rows_table(rows, [(c, c.replace("_", " ").capitalize()) for c in columns])
