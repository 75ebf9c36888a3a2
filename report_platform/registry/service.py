"""The one service layer over the registry: every surface (CLI, HTTP API, Dagster) goes through it.

Each user-facing method takes the acting user's e-mail first, checks permissions
(`permissions.py`) before writing anything, and runs in one transaction, so a refused or failed
action changes nothing. They live by concern in `users.py`, `reports.py` and `folders.py`, over
the shared helpers of `core.py`. The scheduler's side is a separate object, `ReportService.system`
(`run_log.py`), whose methods take no actor at all, so no e-mail address or other text a person
types can reach them.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import Any

from report_platform.registry.core import Describe, NextRun, default_describe, default_next_run
from report_platform.registry.errors import PermissionDenied
from report_platform.registry.folders import Folders
from report_platform.registry.reports import Reports, Validate, default_validate
from report_platform.registry.run_log import RunLog
from report_platform.registry.users import SYSTEM_ACTOR, Users
from report_platform.registry.views import ReportView, RunRecord

__all__ = [
    "SYSTEM_ACTOR",
    "Describe",
    "NextRun",
    "ReportService",
    "RunLog",
    "Validate",
    "default_describe",
    "default_next_run",
    "default_validate",
]


class ReportService(Users, Reports, Folders):
    """Reports, folders, users, run history and change history, with permissions enforced.

    `validate` turns a raw definition dict into the normalised one (see `Reports`); `describe`,
    `next_run` and `clock` are the schedule functions and "now" (see `RegistryCore`). All are
    injectable for tests, and `system` shares them.
    """

    @cached_property
    def system(self) -> RunLog:
        """The scheduler's side: live reports and schedules as ticks see them, and the run records."""
        return RunLog(self._sessions, describe=self._describe, next_run=self._next_run, clock=self._clock)

    def _as_system(self, actor: str) -> RunLog:
        if actor != SYSTEM_ACTOR:
            raise PermissionDenied("run records are written by the scheduler only")
        return self.system

    # kept for callers outside the registry; to be removed
    def scheduled_reports(self, actor: str) -> list[ReportView]:
        return self._as_system(actor).scheduled_reports()

    # kept for callers outside the registry; to be removed
    def schedule_specs(self, actor: str) -> list[tuple[str, str, str, dict[str, Any]]]:
        return self._as_system(actor).schedule_specs()

    # kept for callers outside the registry; to be removed
    def report_for_run(self, actor: str, report_id: str) -> ReportView | None:
        return self._as_system(actor).report_for_run(report_id)

    # kept for callers outside the registry; to be removed
    def revision(self, actor: str) -> int:
        return self._as_system(actor).revision()

    # kept for callers outside the registry; to be removed
    def record_run_start(self, actor: str, report_id: str, **fields: Any) -> str:
        return self._as_system(actor).record_run_start(report_id, **fields)

    # kept for callers outside the registry; to be removed
    def runs_for_dagster_run(self, actor: str, dagster_run_id: str) -> list[RunRecord]:
        return self._as_system(actor).runs_for_dagster_run(dagster_run_id)

    # kept for callers outside the registry; to be removed
    def record_run_finish(self, actor: str, run_id: str, **fields: Any) -> None:
        return self._as_system(actor).record_run_finish(run_id, **fields)

    # kept for callers outside the registry; to be removed
    def record_owner_notified(self, actor: str, run_id: str, at: datetime | None = None) -> None:
        return self._as_system(actor).record_owner_notified(run_id, at)
