"""`report-platform reports|folders …`: the registry and report runs from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from report_platform.cli.common import UserError, cli, echo_json, parse_date, registry, registry_call, rows_table
from report_platform.settings import Home

if TYPE_CHECKING:
    from report_platform.reports.definition import ReportDefinition


class InvalidDefinition(UserError):
    """A definition file was refused: one `error: FILE: field: problem` line per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))

    def show(self, file: Any = None) -> None:
        for line in self.errors:
            UserError(line).show(file)


def _read_definition(path: str) -> tuple[dict[str, Any], ReportDefinition]:
    """The file's fields as written and the checked definition.

    validate, create, update and render --file all read a file here, so they accept and refuse
    the same files with the same messages (the registry checks the fields again when it saves).
    """
    from report_platform.app import known_names
    from report_platform.domain.tenancy import load_tenancy
    from report_platform.reports.definition import DefinitionError, parse_definition, read_definition_file

    try:
        fields = read_definition_file(path)  # its messages name the file already
    except DefinitionError as exc:
        raise InvalidDefinition(exc.errors) from None
    try:
        definition = parse_definition(fields, known_names(load_tenancy(Home.from_env().root)))
    except DefinitionError as exc:
        raise InvalidDefinition([f"{Path(path)}: {m}" for m in exc.errors]) from None
    return fields, definition


def _after_change() -> None:
    """New or changed schedules appear at once when Dagster is running (no restart)."""
    from report_platform.scheduling.webserver import reload_code_location

    reload_code_location()


@cli.group()
def reports() -> None:
    """Create, change, run and inspect scheduled reports."""


@reports.command("validate")
@click.argument("file")
def reports_validate(file: str) -> None:
    """Check a report definition file; prints every problem, one per line."""
    _, definition = _read_definition(file)
    click.echo(f"{file}: valid {definition.type} report {definition.name!r}")


@reports.command("create")
@click.argument("file")
@click.option("--user", "actor", required=True)
def reports_create(file: str, actor: str) -> None:
    """Register a report from a definition file; prints its id."""
    fields, _ = _read_definition(file)
    report_id = registry_call(registry().create_report, actor, fields)
    _after_change()
    click.echo(report_id)


@reports.command("update")
@click.argument("report_id")
@click.argument("file")
@click.option("--user", "actor", required=True)
def reports_update(report_id: str, file: str, actor: str) -> None:
    """Replace a report's definition."""
    fields, _ = _read_definition(file)
    changed = registry_call(registry().update_report, actor, report_id, fields)
    _after_change()
    click.echo(f"updated {report_id}" + (f": {', '.join(sorted(changed))}" if changed else " (no change)"))


@reports.command("list")
@click.option("--user", "actor", required=True)
@click.option("--folder", default=None)
@click.option("--json", "as_json", is_flag=True)
def reports_list(actor: str, folder: str | None, as_json: bool) -> None:
    """The reports you may see: name, type, folder, status, schedule, next/last run, last status."""
    rows = [r.to_dict() for r in registry_call(registry().list_reports, actor, folder)]
    if as_json:
        echo_json(rows)
        return
    rows_table(
        rows,
        [
            ("id", "Id"),
            ("name", "Name"),
            ("type", "Type"),
            ("folder", "Folder"),
            ("status", "Status"),
            ("schedule", "Schedule"),
            ("filters", "Filters"),
            ("next_run", "Next run"),
            ("last_run", "Last run"),
            ("last_status", "Last status"),
        ],
    )
    _destinations_table([(row["id"], row.get("last_destinations")) for row in rows], "Report")


def _destinations_table(owners: list[tuple[str, list[dict[str, Any]] | None]], owner_title: str) -> None:
    """Each destination's outcome, one row each, for the runs (or reports' last runs) that have them."""
    rows = [
        {
            "owner": owner,
            "destination": entry.get("destination"),
            "status": entry.get("status"),
            "detail": entry.get("error") or entry.get("note") or entry.get("target"),
        }
        for owner, entries in owners
        for entry in entries or []
    ]
    if rows:
        rows_table(
            rows, [("owner", owner_title), ("destination", "Destination"), ("status", "Outcome"), ("detail", "Detail")]
        )


@reports.command("show")
@click.argument("report_id")
@click.option("--user", "actor", required=True)
@click.option("--json", "as_json", is_flag=True)
def reports_show(report_id: str, actor: str, as_json: bool) -> None:
    """One report in full."""
    import yaml

    view = registry_call(registry().get_report, actor, report_id).to_dict()
    if as_json:
        echo_json(view)
        return
    click.echo(yaml.safe_dump(view, sort_keys=False, allow_unicode=True))


def _simple(action: str, doc: str):  # noqa: ANN202
    @reports.command(action, help=doc)
    @click.argument("report_id")
    @click.option("--user", "actor", required=True)
    def _command(report_id: str, actor: str) -> None:
        service = registry()
        registry_call(getattr(service, action), actor, report_id)
        _after_change()
        click.echo(f"{action}d {report_id}" if action.endswith("e") else f"{action}ed {report_id}")

    return _command


_simple("pause", "Stop a report's schedule; nothing is deleted.")
_simple("resume", "Start a paused report's schedule again.")
_simple("delete", "Remove a report and its schedule; its audit log stays readable.")


@reports.command("move")
@click.argument("report_id")
@click.option("--folder", default=None, help="Folder name; leave out to take the report out of its folder.")
@click.option("--user", "actor", required=True)
def reports_move(report_id: str, folder: str | None, actor: str) -> None:
    """Move a report into a folder (or out of any folder)."""
    registry_call(registry().move_report, actor, report_id, folder)
    click.echo(f"moved {report_id} to {folder or 'no folder'}")


@reports.command("run-now")
@click.argument("report_id")
@click.option("--user", "actor", required=True)
@click.option("--period-start", default=None, help="Re-deliver a past period: its first local day.")
@click.option("--period-end", default=None, help="…and its last local day (included).")
@click.option("--wait", is_flag=True, help="Wait for the run to finish; exit non-zero if it failed.")
@click.option("--json", "as_json", is_flag=True)
def reports_run_now(
    report_id: str, actor: str, period_start: str | None, period_end: str | None, wait: bool, as_json: bool
) -> None:
    """Run a report now (optionally for a chosen past period)."""
    from report_platform.launch import RunNotLaunched, launch_requested_run, wait_for

    start = parse_date(period_start, "--period-start") if period_start else None
    end = parse_date(period_end, "--period-end") if period_end else None
    service = registry()
    # The service checks the period before it records the QUEUED row, so a refusal records nothing.
    request = registry_call(service.request_run_now, actor, report_id, start, end)
    try:
        launched = launch_requested_run(service, request)
    except RunNotLaunched as exc:  # recorded FAILED with this reason
        raise UserError(str(exc)) from None
    success = launched.success
    if wait and success is None:
        success = wait_for(launched.dagster_run_id)
    result = {
        "report_id": report_id,
        "audit_run_id": request.run_id,
        "dagster_run_id": launched.dagster_run_id,
        "launched": launched.where,
        "success": success,
    }
    if as_json:
        echo_json(result)
    else:
        state = {True: "succeeded", False: "FAILED", None: "queued"}[success]
        click.echo(f"run {request.run_id} (Dagster run {launched.dagster_run_id}) {state}")
    if success is False:
        raise SystemExit(1)


@reports.command("backfill")
@click.argument("report_id")
@click.option("--user", "actor", required=True)
@click.option("--start", required=True, help="First scheduled local date, YYYY-MM-DD.")
@click.option("--end", required=True, help="Last scheduled local date (included).")
@click.option("--json", "as_json", is_flag=True)
def reports_backfill(report_id: str, actor: str, start: str, end: str, as_json: bool) -> None:
    """Re-deliver the report for every period whose scheduled date falls in [start, end]."""
    from report_platform.app import definition_of
    from report_platform.launch import launch_backfill
    from report_platform.reports.periods import periods_in_range

    first, last = parse_date(start, "--start"), parse_date(end, "--end")
    if last < first:
        raise UserError("--end is before --start")
    view = registry_call(registry().backfill_target, actor, report_id)
    definition = definition_of(view.definition)
    ticks = periods_in_range(definition.period, definition.schedule, definition.schedule.timezone, first, last)
    dates = sorted({scheduled.date() for scheduled, _ in ticks})
    if not dates:
        raise UserError(f"the report has no scheduled run between {first} and {last}")
    try:
        backfill_id = launch_backfill(report_id, view.type, dates)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    result = {
        "report_id": report_id,
        "backfill_id": backfill_id,
        "dates": [d.isoformat() for d in dates],
        "periods": len(ticks),
    }
    if as_json:
        echo_json(result)
    else:
        click.echo(f"backfill {backfill_id}: {len(dates)} run(s) for {len(ticks)} period(s) of {report_id}")


@reports.command("audit-log")
@click.argument("report_id")
@click.option("--user", "actor", required=True)
@click.option("--json", "as_json", is_flag=True)
def reports_audit_log(report_id: str, actor: str, as_json: bool) -> None:
    """Every run and every change of a report, newest first."""
    log = registry_call(registry().audit_log, actor, report_id).to_dict()
    if as_json:
        echo_json(log)
        return
    click.echo(f"{log['report']['name']} ({report_id})")
    rows_table(
        log["runs"],
        [
            ("id", "Run"),
            ("trigger", "Trigger"),
            ("scheduled_at", "Scheduled"),
            ("period_start", "Period start"),
            ("period_end", "Period end"),
            ("status", "Status"),
            ("rows", "Rows"),
            ("bytes", "Bytes"),
            ("sha256", "SHA-256"),
            ("error", "Error"),
            ("note", "Note"),
            ("dagster_run_id", "Dagster run"),
        ],
    )
    _destinations_table([(run["id"], run.get("destinations")) for run in log["runs"]], "Run")
    rows_table(log["changes"], [("at", "When"), ("by", "Who"), ("action", "Action"), ("diff", "What changed")])


@reports.command("render")
@click.argument("report_id", required=False)
@click.option("--file", "file", default=None, help="A definition file instead of a registered report.")
@click.option("--at", "at", required=True, help="Scheduled time, ISO 8601; without offset: the report's local time.")
@click.option("--out", "out", required=True, help="Folder to write the file into.")
@click.option("--json", "as_json", is_flag=True)
def reports_render(report_id: str | None, file: str | None, at: str, out: str, as_json: bool) -> None:
    """Build the file the run scheduled at --at would build; delivers nothing."""
    from report_platform.app import definition_of
    from report_platform.reports import produce
    from report_platform.reports.builders import ExportError

    if (report_id is None) == (file is None):
        raise UserError("give a report id or --file, not both")
    home = Home.from_env().ensure()
    if file:
        _, definition = _read_definition(file)
    else:
        view = registry().system.report_for_run(report_id)
        if view is None or view.deleted_at is not None:
            raise UserError(f"no report {report_id}")
        definition = definition_of(view.definition)
    try:
        scheduled = produce.scheduled_time(at, definition.schedule.timezone)
    except ValueError:
        raise UserError(f"--at must be ISO 8601 (e.g. 2026-03-09T06:00:00), got {at!r}") from None
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        built = produce.build(home, definition, scheduled, out_dir)
    except ExportError as exc:
        raise UserError(str(exc)) from None
    summary = built.summary()
    if as_json:
        echo_json(summary)
    else:
        click.echo(f"{summary['path']}: {summary['rows']} rows, {summary['bytes']} bytes, sha256 {summary['sha256']}")


@cli.group()
def folders() -> None:
    """Organise reports in folders."""


@folders.command("create")
@click.argument("name")
@click.option("--user", "actor", required=True)
@click.option("--org", default=None, help="Organisation, when you belong to several.")
def folders_create(name: str, actor: str, org: str | None) -> None:
    registry_call(registry().create_folder, actor, name, organization=org)
    click.echo(f"created folder {name}")


@folders.command("rename")
@click.argument("name")
@click.argument("new_name")
@click.option("--user", "actor", required=True)
@click.option("--org", default=None)
def folders_rename(name: str, new_name: str, actor: str, org: str | None) -> None:
    registry_call(registry().rename_folder, actor, name, new_name, organization=org)
    click.echo(f"renamed folder {name} to {new_name}")


@folders.command("delete")
@click.argument("name")
@click.option("--user", "actor", required=True)
@click.option("--org", default=None)
def folders_delete(name: str, actor: str, org: str | None) -> None:
    registry_call(registry().delete_folder, actor, name, organization=org)
    click.echo(f"deleted folder {name}")


@folders.command("list")
@click.option("--user", "actor", required=True)
@click.option("--json", "as_json", is_flag=True)
def folders_list(actor: str, as_json: bool) -> None:
    rows = [f.to_dict() for f in registry_call(registry().list_folders, actor)]
    if as_json:
        echo_json(rows)
    else:
        rows_table(rows, [("organization", "Organisation"), ("name", "Folder"), ("reports", "Reports")])
