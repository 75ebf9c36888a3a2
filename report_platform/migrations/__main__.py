"""Alembic's commands on the registry database: `python -m report_platform.migrations upgrade`.

The database is `--url`, else the platform's own (`$REPORT_PLATFORM_REGISTRY_URL`, or `registry.db`
in the data folder). Every command runs under the migration lock; `upgrade` first stamps a
database made before migrations, exactly as opening the registry does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from alembic import command
from alembic.config import CommandLine
from sqlalchemy import MetaData

from report_platform.database import make_engine
from report_platform.migrations import SchemaError, alembic_config, locked, prepare_upgrade


def models_metadata() -> list[MetaData]:
    """Every table the registry database holds, as the code defines it (what autogenerate compares)."""
    from report_platform.delivery.ledger import metadata as ledger_metadata
    from report_platform.registry.models import Base

    return [Base.metadata, ledger_metadata]


def main(argv: Sequence[str] | None = None) -> None:
    cli = CommandLine(prog="python -m report_platform.migrations")
    cli.parser.add_argument("--url", help="the registry database (default: the platform's registry URL)")
    options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("name a command, e.g. upgrade head, current, history, revision --autogenerate")
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # Alembic says what it runs
    url = options.url
    if url is None:
        from report_platform.settings import Home

        url = Home.from_env().registry_url
    if getattr(options, "sql", False):
        cli.run_cmd(alembic_config(url=url), options)
        return
    engine = make_engine(url)
    try:
        with locked(engine) as connection:
            config = alembic_config(connection)
            if options.cmd[0] in (command.revision, command.check):
                config.attributes["target_metadata"] = models_metadata()
            if options.cmd[0] is command.revision:
                for name, value in (("hooks", "ruff"), ("ruff.type", "module"), ("ruff.module", "ruff")):
                    config.set_section_option("post_write_hooks", name, value)
                config.set_section_option("post_write_hooks", "ruff.options", "format REVISION_SCRIPT_FILENAME")
            if options.cmd[0] is command.upgrade:
                prepare_upgrade(connection, config)
            cli.run_cmd(config, options)
    except SchemaError as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
