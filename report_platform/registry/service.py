"""The one service layer over the registry: every surface (CLI, HTTP API, Dagster) goes through it.

Each user-facing method takes the acting user's e-mail first, checks permissions
(`permissions.py`) before writing anything, and runs in one transaction, so a refused or failed
action changes nothing. They live by concern in `users.py`, `reports.py` and `folders.py`, over
the shared helpers of `core.py`. The scheduler's side is a separate object, `ReportService.system`
(`run_log.py`), whose methods take no actor at all, so no e-mail address or other text a person
types can reach them.
"""

from __future__ import annotations

from functools import cached_property

from report_platform.registry.core import Describe, NextRun, default_describe, default_next_run
from report_platform.registry.folders import Folders
from report_platform.registry.reports import Reports, Validate, default_validate
from report_platform.registry.run_log import RunLog
from report_platform.registry.users import Users

__all__ = [
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
