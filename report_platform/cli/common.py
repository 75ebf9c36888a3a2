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
