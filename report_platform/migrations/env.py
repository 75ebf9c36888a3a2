"""Alembic's entry point, run by every migration command (see `report_platform.migrations`).

Online commands get their connection from `config.attributes["connection"]`, opened by the caller
under the migration lock; offline (`--sql`) commands get `config.attributes["url"]`. The models
are `config.attributes["target_metadata"]`, given only to the commands that compare them with the
database (`revision --autogenerate`, `check`): applying revisions never imports application code.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection

from report_platform.database import UTCDateTime

config = context.config
target_metadata = config.attributes.get("target_metadata")


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # A revision must keep working when application types change, so it names the plain column type.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=render_item,
        # SQLite alters most things by copying the table; batch mode writes revisions that way.
        render_as_batch=connection.dialect.name == "sqlite",
        # SQLite's DDL is transactional too: every command runs in the one locked transaction.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline(url: str) -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline(config.attributes["url"])
else:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run the registry's migrations with `python -m report_platform.migrations`, "
            "which opens the database under the migration lock"
        )
    run_online(connection)
