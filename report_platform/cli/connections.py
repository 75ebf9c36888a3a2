"""`report-platform connections …`: the named connections of connections.yaml, and testing one."""

from __future__ import annotations

import click

from report_platform.cli.common import UserError, cli, echo_json


def _connections():  # noqa: ANN202
    from report_platform.delivery.connections import Connections
    from report_platform.delivery.errors import DeliveryError

    try:
        return Connections.from_env()
    except DeliveryError as exc:
        raise UserError(str(exc)) from None


@cli.group()
def connections() -> None:
    """Named SMTP, SFTP and S3 connections ($REPORT_PLATFORM_HOME/connections.yaml)."""


@connections.command("list")
@click.option("--json", "as_json", is_flag=True)
def connections_list(as_json: bool) -> None:
    """List the connections: kind, name, where they lead and which organisations may use them."""
    from report_platform.delivery.connections import CONNECTION_KINDS

    loaded = _connections()
    rows = []
    for kind in CONNECTION_KINDS:
        for name, conn in sorted(loaded.table(kind).items()):
            host = getattr(conn, "host", None)
            where = f"{host}:{conn.port}" if host else (getattr(conn, "endpoint_url", None) or "AWS")  # type: ignore[attr-defined]
            rows.append({"kind": kind, "name": name, "where": where, "organizations": list(conn.organizations)})
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['kind']:<5} {row['name']:<24} {row['where']:<32} {', '.join(row['organizations'])}")


@connections.command("test")
@click.argument("name")
@click.option("--kind", type=click.Choice(["smtp", "sftp", "s3"]), default=None, help="When NAME is used by two kinds.")
@click.option("--remote-dir", default=None, help="SFTP: the folder to write the probe file in (default: the home).")
@click.option("--bucket", default=None, help="S3: the bucket to write the probe object in (required for S3).")
@click.option("--prefix", default="", help="S3: the key prefix of the probe object.")
@click.option("--send-to", default=None, help="SMTP: also send a short test message to this address.")
@click.option("--json", "as_json", is_flag=True)
def connections_test(
    name: str,
    kind: str | None,
    remote_dir: str | None,
    bucket: str | None,
    prefix: str,
    send_to: str | None,
    as_json: bool,
) -> None:
    """Resolve the secrets, connect, check the server's identity, log in and prove write access.

    One line per step (✓/✗ step: detail); exits non-zero at the first failure. Never prints a secret.
    """
    from report_platform.delivery.errors import DeliveryError
    from report_platform.delivery.probe import check_connection

    try:
        result = check_connection(
            _connections(), name, kind=kind, remote_dir=remote_dir, bucket=bucket, prefix=prefix, send_to=send_to
        )
    except DeliveryError as exc:
        raise UserError(str(exc)) from None
    if as_json:
        echo_json(result.to_dict())
    else:
        for step in result.steps:
            click.echo(step.line())
    if not result.ok:
        failed = next(step for step in result.steps if not step.ok)
        raise UserError(f"connection {name!r} failed at {failed.name}: {failed.detail}")
