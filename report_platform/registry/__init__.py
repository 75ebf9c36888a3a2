"""The registry of report definitions, folders, users and roles, and the audit log.

Every surface goes through `ReportService`; it is the only place permissions are decided. The
scheduler goes through its `system` side, a `RunLog`, which takes no acting user.
"""

from report_platform.registry.db import init_registry, make_engine
from report_platform.registry.errors import (
    BadRequest,
    Conflict,
    DefinitionError,
    NotFound,
    PermissionDenied,
    RegistryError,
    UnknownUser,
)
from report_platform.registry.run_log import RunLog
from report_platform.registry.service import ReportService
from report_platform.registry.views import (
    AuditLog,
    ChangeRecord,
    FolderView,
    ReportRow,
    ReportView,
    RunRecord,
    RunRequest,
)

__all__ = [
    "AuditLog",
    "BadRequest",
    "ChangeRecord",
    "Conflict",
    "DefinitionError",
    "FolderView",
    "NotFound",
    "PermissionDenied",
    "RegistryError",
    "ReportRow",
    "ReportService",
    "ReportView",
    "RunRecord",
    "RunLog",
    "RunRequest",
    "UnknownUser",
    "init_registry",
    "make_engine",
]
