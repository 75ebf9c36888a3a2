"""`report-platform`: the command line of PRODUCT.md §7.

Every command exits 0 on success and non-zero with a one-line reason on stderr otherwise;
`--json` prints machine-readable output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from report_platform.cli import connections, console, deliveries, production, reports, users  # noqa: F401 (their commands join the group)
from report_platform.cli.common import UserError, cli, echo_json, parse_date
from report_platform.redaction import install, redact
from report_platform.settings import Home


@cli.command("demo-data")
@click.option("--start", required=True, help="First UTC day, YYYY-MM-DD.")
@click.option("--end", required=True, help="Last UTC day (included), YYYY-MM-DD.")
@click.option("--seed", default=7, show_default=True, type=int)
@click.option(
    "--rows-per-day",
    default=2000,
    show_default=True,
    type=int,
    help="SMS rows per day; voice and Aegis scale with it.",
)
@click.option(
    "--format",
    "fmt",
    default="parquet",
    type=click.Choice(["parquet", "csv", "jsonl"]),
    show_default=True,
)
def demo_data(start: str, end: str, seed: int, rows_per_day: int, fmt: str) -> None:
    """Write deterministic synthetic usage files into the landing zone."""
    from report_platform.domain.tenancy import load_tenancy
    from report_platform.ingest.generator import SOURCES, day_range
    from report_platform.ingest.load import write_landing_day

    first, last = parse_date(start, "--start"), parse_date(end, "--end")
    if last < first:
        raise UserError("--end is before --start")
    if rows_per_day < 0:
        raise UserError("--rows-per-day must be zero or more")
    home = Home.from_env().ensure()
    tenancy = load_tenancy(home.root)
    days = day_range(first, last)
    with _progress() as progress:
        task = progress.add_task("demo data", total=len(days) * len(SOURCES))
        for day in days:
            for source in SOURCES:
                write_landing_day(home.landing, source, day, tenancy, rows_per_day, seed, fmt)
                progress.advance(task)
    click.echo(f"wrote {len(days)} day(s) of demo data to {home.landing}", err=True)


def _progress():  # noqa: ANN202
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


@cli.command()
@click.option("--start", required=True, help="First UTC day, YYYY-MM-DD.")
@click.option("--end", required=True, help="Last UTC day (included), YYYY-MM-DD.")
@click.option("--json", "as_json", is_flag=True, help="Print one summary object per day and source.")
def ingest(start: str, end: str, as_json: bool) -> None:
    """Load usage for each UTC day (landing files, else synthetic) and derive billing."""
    from report_platform.ingest.runner import ingest_range

    first, last = parse_date(start, "--start"), parse_date(end, "--end")
    if last < first:
        raise UserError("--end is before --start")
    results = ingest_range(Home.from_env().ensure(), first, last, progress=None if as_json else _progress())
    if as_json:
        echo_json(results)
    else:
        rows = sum(sum(r["rows"].values()) for r in results)
        bad = sum(r["quarantined"] for r in results)
        click.echo(
            f"ingested {rows} rows over {(last - first).days + 1} day(s); {bad} row(s) quarantined",
            err=True,
        )
        for r in results:
            if "aegis_interactions_not_derived" in r:
                click.echo(
                    f"{r['day']}: aegis_interactions not derived: {r['aegis_interactions_not_derived']}", err=True
                )


@cli.command()
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print an array of row objects.")
@click.option(
    "--timeout",
    "timeout_seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop the query after this many seconds (default 60).",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    default=None,
    help="Print at most this many rows (default 10000); a longer result is cut and exits with status 3.",
)
def sql(query: str, as_json: bool, timeout_seconds: float | None, max_rows: int | None) -> None:
    """Run one read-only SQL query (SELECT or plain EXPLAIN) against the usage store."""
    from report_platform.store.query import (
        DEFAULT_MAX_ROWS,
        DEFAULT_TIMEOUT_SECONDS,
        QueryTimeout,
        ReadOnlyQueryError,
        run_read_only,
    )

    # Not `ensure()`: an analyst may have read access to the store and nothing else.
    store = Home.from_env().store
    if isinstance(store, Path) and not store.is_dir():
        raise UserError(f"no usage store at {store}; set REPORT_PLATFORM_HOME or run `report-platform ingest`")
    limit = max_rows or DEFAULT_MAX_ROWS
    try:
        result = run_read_only(store, query, timeout_seconds=timeout_seconds or DEFAULT_TIMEOUT_SECONDS, max_rows=limit)
    except QueryTimeout as exc:
        raise UserError(f"query stopped after {exc.seconds:g} s (--timeout)") from None
    except ReadOnlyQueryError as exc:
        raise UserError(str(exc)) from None
    if as_json:
        echo_json([dict(zip(result.columns, r, strict=True)) for r in result.rows])
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*result.columns)
        for r in result.rows:
            table.add_row(*["" if v is None else str(v) for v in r])
        Console().print(table)
    if result.truncated:
        # The rows printed are a valid answer to a different question; the exit status says so.
        click.echo(f"error: output cut at {limit} rows (--max-rows): the query returned more", err=True)
        sys.exit(3)


def main() -> None:
    # Errors and log lines (a run executed in this process logs through Dagster) are redacted.
    install()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        if isinstance(exc, UserError):
            exc.show()
        else:
            click.echo(f"error: {redact(exc.format_message())}", err=True)
        sys.exit(exc.exit_code or 1)
    except Exception as exc:  # the user gets one line, never a stack trace
        message = redact(str(exc)).strip().splitlines()
        click.echo(f"error: {type(exc).__name__}: {message[0] if message else ''}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
