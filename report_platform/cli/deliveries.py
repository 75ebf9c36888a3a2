"""`report-platform deliveries …`: the delivery ledger, for the operator on the server.

`list` shows what was claimed, sent, confirmed, failed or is of unknown outcome; `release` lets a
delivery whose outcome is unknown (its worker died mid-send) be sent again by the run's next retry,
after the operator has checked with the recipients that it did not arrive.
"""

from __future__ import annotations

import click

from report_platform.cli.common import UserError, cli, echo_json
from report_platform.settings import Home


def _ledger():  # noqa: ANN202
    from report_platform.delivery.ledger import DeliveryLedger

    return DeliveryLedger.open(Home.from_env().registry_url)


@cli.group()
def deliveries() -> None:
    """The delivery ledger: one row per delivery of a report run's file to one destination."""


@deliveries.command("list")
@click.option("--report", "report_id", default=None, help="Only this report's deliveries.")
@click.option("--state", default=None, type=click.Choice(["claimed", "sent", "confirmed", "failed", "unknown"]))
@click.option("--json", "as_json", is_flag=True)
def deliveries_list(report_id: str | None, state: str | None, as_json: bool) -> None:
    """List deliveries, oldest first."""
    rows = [r for r in _ledger().rows(state=state) if report_id is None or r.scope.split("/", 1)[0] == report_id]
    data = [
        {
            "id": r.id,
            "run": r.scope,
            "destination": r.destination,
            "connection": r.connection,
            "target": r.target,
            "state": r.state,
            "attempt": r.attempt,
            "worker": r.worker,
            "claimed_at": r.claimed_at,
            "updated_at": r.updated_at,
            "recipients": r.outcomes,
            "error": r.error,
        }
        for r in rows
    ]
    if as_json:
        echo_json(data)
        return
    for row in data:
        click.echo(f"{row['id']:>6}  {row['state']:<9}  {row['destination']:<5}  {row['run']}  {row['target']}")
        if row["error"]:
            click.echo(f"        {row['error']}")


@deliveries.command("release")
@click.argument("delivery_id", type=int)
@click.option("--note", required=True, help="What was checked, e.g. 'recipients confirm it never arrived'.")
def deliveries_release(delivery_id: int, note: str) -> None:
    """Allow a resend of a delivery whose outcome is unknown (the next retry or run sends it)."""
    from report_platform.delivery.errors import DeliveryError

    try:
        row = _ledger().release(delivery_id, note=note)
    except DeliveryError as exc:
        raise UserError(str(exc)) from None
    click.echo(
        f"delivery {row.id} released: re-executing run {row.scope} (Dagster UI: Re-execute) sends it to "
        f"{row.target} again, only to the recipients that did not accept it"
    )
