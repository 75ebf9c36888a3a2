"""A destination a report can save is exactly one delivery accepts: both check it with delivery's models."""

from __future__ import annotations

from typing import Any

import pytest

from report_platform.delivery import ConfigurationError, parse_destination
from report_platform.delivery import destinations as delivery_destinations
from report_platform.reports.definition import DefinitionError, EmailDestination, parse_definition

from .conftest import S3_KMS, variant

SAVED = [
    pytest.param({}, id="email"),
    pytest.param(
        {"destination": {"type": "sftp", "connection": "partner-sftp", "remote_dir": "/inbound", "create_dirs": True}},
        id="sftp",
    ),
    pytest.param({"destination": S3_KMS}, id="s3"),
]


@pytest.mark.parametrize("changes", SAVED)
def test_a_saved_destination_is_delivered_as_saved(changes: dict[str, Any]) -> None:
    saved = parse_definition(variant(changes)).destination
    # What a run hands to delivery (scheduling/requests.py): the saved destination as JSON.
    delivered = parse_destination(saved.model_dump(mode="json", exclude_none=True))
    assert delivered.model_dump() == saved.model_dump()


def test_the_report_email_destination_is_delivery_s_with_template_checks() -> None:
    assert issubclass(EmailDestination, delivery_destinations.EmailDestination)
    with pytest.raises(DefinitionError, match="destination.subject_template: unknown token"):
        parse_definition(variant({"destination.subject_template": "{{Report}}"}))


@pytest.mark.parametrize(
    ("destination", "problem"),
    [
        ({"type": "s3", "connection": "c", "bucket": "acme", "server_side_encryption": "aws:kms:dsse"}, "AES256"),
        ({"type": "s3", "connection": "c", "bucket": "Not_A_Bucket"}, "must be an S3 bucket name"),
        ({"type": "sftp", "connection": "c", "remote_dir": "/in/../etc"}, "without '..' parts"),
        ({"type": "email", "to": ["Ops <ops@example.com>"]}, "invalid e-mail address"),
        ({"type": "email", "to": ["ops@example.com"], "reply_to": "x@example.com"}, "Extra inputs"),
    ],
)
def test_delivery_refuses_what_a_report_could_not_save(destination: dict[str, Any], problem: str) -> None:
    with pytest.raises(DefinitionError):
        parse_definition(variant({"destination": destination}))
    with pytest.raises(ConfigurationError, match=f"invalid destination: .*{problem}"):
        parse_destination(destination)
