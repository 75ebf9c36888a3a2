"""What every `report-platform` command shares: the click group, one-line errors, JSON output."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import click

from report_platform.redaction import redact


class UserError(click.ClickException):
    """An expected failure: printed as one line, exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {redact(self.format_message())}", err=True)


def parse_date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{name} must be a date YYYY-MM-DD, got {value!r}") from None


def registry():  # noqa: ANN201
    """The registry service of the data folder the settings name."""
    from report_platform.app import registry_service
    from report_platform.settings import Home

    return registry_service(Home.from_env())


def registry_call(fn, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN001
    """Run a service call, turning its refusals into one-line errors."""
    from report_platform.registry.errors import RegistryError
    from report_platform.reports.definition import DefinitionError

    try:
        return fn(*args, **kwargs)
    except DefinitionError as exc:
        raise UserError("invalid report definition: " + "; ".join(exc.errors)) from None
    except RegistryError as exc:
        raise UserError(str(exc).replace("\n", "; ")) from None


def rows_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    """Print `rows` as a table of the (key, title) `columns`."""
    from rich.console import Console
    from rich.table import Table

    table = Table(*[title for _, title in columns])
    for row in rows:
        table.add_row(*["" if row.get(k) is None else str(row.get(k)) for k, _ in columns])
    Console(width=200).print(table)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, default=_json_default, ensure_ascii=False, indent=2))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Scheduled reports for voice, SMS, Aegis and billing usage."""
