"""The API's request and answer bodies, typed so that its OpenAPI document says exactly what it takes.

What the registry hands back (`ReportRow`, `ReportView`, `AuditLog`, `FolderView`) is answered as
those records themselves; a report definition is the YAML's structure as JSON, documented by the
definition model (`ReportDefinition`) and checked by `parse_definition`, so the API refuses a
definition with the messages `report-platform reports validate` prints.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from report_platform.registry.signin import MAX_PASSWORD_LENGTH

# A definition's messages are "field.path: what is wrong" (see reports.definition.loader).
_FIELD_MESSAGE = re.compile(r"(?P<field>[^\s:]+): (?P<message>.+)", re.DOTALL)

# A name: one line of printable text (no database column or log line need hold a control character).
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignInBody(Body):
    email: Annotated[str, StringConstraints(min_length=1, max_length=320)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_LENGTH)]


class SignedInAnswer(BaseModel):
    """The session is in the cookie; scripts of the page send `csrf_token` as `X-CSRF-Token`."""

    email: str
    csrf_token: str
    expires_at: datetime


class ProblemAnswer(BaseModel):
    """Why the request was refused, in one line."""

    detail: str


class FieldProblem(BaseModel):
    """One problem; `field` is the path of the field it concerns (`schedule.time_of_day`), "" for the whole."""

    field: str
    message: str


class InvalidAnswer(BaseModel):
    """An invalid body: every problem found, with the messages `reports validate` prints."""

    errors: list[FieldProblem]


def field_problems(messages: Iterable[str]) -> list[FieldProblem]:
    problems = []
    for message in messages:
        match = _FIELD_MESSAGE.fullmatch(message)
        if match:
            problems.append(FieldProblem(field=match["field"], message=match["message"]))
        else:
            problems.append(FieldProblem(field="", message=message))
    return problems


class CreatedAnswer(BaseModel):
    id: str


class ValidAnswer(BaseModel):
    valid: Literal[True] = True
    type: str
    name: str


class UpdatedAnswer(BaseModel):
    """`changed` names the fields whose values changed (empty: nothing did)."""

    id: str
    changed: list[str]


class StatusAnswer(BaseModel):
    """`changed` is false when the report already had this status."""

    id: str
    status: Literal["enabled", "disabled"]
    changed: bool


class RunNowBody(Body):
    """Re-deliver a past period (its first and last local day, both included), or leave both out."""

    period_start: date | None = None
    period_end: date | None = None


class RunQueuedAnswer(BaseModel):
    """The run is queued; it appears in the audit log under `audit_run_id` as it proceeds."""

    report_id: str
    audit_run_id: str
    status: Literal["QUEUED"] = "QUEUED"


class MoveBody(Body):
    folder: ShortText | None = Field(description="An existing folder's name, or null for no folder.")


class MovedAnswer(BaseModel):
    id: str
    folder: str | None
    changed: bool


class FolderBody(Body):
    name: ShortText
    organization: ShortText | None = Field(None, description="Needed only by those credentialed in several.")


class FolderRenameBody(Body):
    name: ShortText


class FolderAnswer(BaseModel):
    organization: str
    name: str


class ConnectionTestBody(Body):
    """Where to prove write access: the folder (SFTP) or bucket and prefix (S3) a destination names."""

    kind: Literal["smtp", "sftp", "s3"]
    organization: ShortText | None = Field(None, description="Needed only by those credentialed in several.")
    remote_dir: str | None = Field(None, max_length=1000, description="SFTP: the folder to write a probe file in.")
    bucket: str | None = Field(None, max_length=63, description="S3: the bucket to put a probe object in.")
    prefix: str = Field("", max_length=900, description="S3: the key prefix of the probe object.")


class ConnectionTestStep(BaseModel):
    step: str
    ok: bool
    detail: str


class ConnectionTestAnswer(BaseModel):
    """Every check that ran, in order; the first failed one ends it. `ok` only when all passed."""

    connection: str
    kind: str
    ok: bool
    steps: list[ConnectionTestStep]


class PreviewRun(BaseModel):
    """One upcoming run: when (in the report's timezone, and UTC), the half-open period it covers,
    the file name it would write and, for e-mail, the subject."""

    scheduled_at: datetime
    scheduled_at_utc: datetime
    period_start: datetime
    period_end: datetime
    period_start_utc: datetime
    period_end_utc: datetime
    file_name: str
    subject: str | None


class PreviewAnswer(BaseModel):
    timezone: str
    schedule: str
    runs: list[PreviewRun]


def definition_body_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """(the request body's OpenAPI entry, the component schemas it refers to) for a report definition."""
    from report_platform.reports.definition import ReportDefinition

    schema = ReportDefinition.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.pop("$defs", {})
    components["ReportDefinition"] = schema
    body = {
        "required": True,
        "description": "A report definition: the YAML's structure as JSON (docs/report-definitions.md).",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReportDefinition"}}},
    }
    return body, components
