"""`destinations:` (a list), `notify_on_failure` and `pause_after_failures` in a definition."""

from __future__ import annotations

import pytest

from report_platform.reports.definition import DefinitionError, parse_definition
from report_platform_tests.samples import sms_definition

EMAIL = {"type": "email", "to": ["ops@example.com"]}
SFTP = {"type": "sftp", "connection": "partner-sftp", "remote_dir": "/inbound"}
S3 = {"type": "s3", "connection": "reports-aws", "bucket": "acme-reports", "prefix": "sms/"}


def _with(**fields) -> dict:
    definition = sms_definition()
    del definition["destination"]
    for key, value in fields.items():
        definition[key] = value
    return definition


def _problems(definition: dict) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(definition)
    return caught.value.errors


def test_several_destinations_parse_in_order_and_round_trip_as_written() -> None:
    definition = parse_definition(_with(destinations=[EMAIL, SFTP, S3], notify_on_failure=["oncall@acme.example"]))
    assert [d.type for d in definition.all_destinations] == ["email", "sftp", "s3"]
    assert definition.destination is None
    assert definition.failure_recipients == ["oncall@acme.example"]
    assert definition.pause_threshold == 5
    written = definition.to_dict()
    assert "destination" not in written and [d["type"] for d in written["destinations"]] == ["email", "sftp", "s3"]
    assert parse_definition(definition.to_yaml()) == definition


def test_a_single_destination_stays_as_written_and_is_the_whole_list() -> None:
    definition = parse_definition(sms_definition(pause_after_failures=3))
    assert [d.type for d in definition.all_destinations] == ["email"]
    assert "destinations" not in definition.to_dict() and "notify_on_failure" not in definition.to_dict()
    assert definition.pause_threshold == 3 and definition.failure_recipients == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"destination": EMAIL, "destinations": [SFTP]},
            "destinations: give either destination (one) or destinations (a list), not both",
        ),
        ({}, "destination: required field is missing (or give destinations: a list of them)"),
        ({"destinations": []}, "destinations: must list at least one destination"),
        ({"destinations": EMAIL}, "destinations: must be a list of destinations, got a mapping"),
        ({"destinations": [SFTP] * 11}, "destinations: at most 10 destinations are allowed, got 11"),
        (
            {"destinations": [SFTP, EMAIL, SFTP]},
            "destinations[2]: the same destination as destinations[0]; list each once",
        ),
        (
            {"destinations": [EMAIL, {**SFTP, "remote": "/x"}]},
            "destinations[1].remote: unknown field; did you mean 'remote_dir'? "
            "(allowed: connection, create_dirs, encrypt_to, manifest, remote_dir, type)",
        ),
        ({"destinations": [EMAIL, {"type": "ftp"}]}, "destinations[1].type: must be one of email, sftp, s3, got 'ftp'"),
        ({"destinations": [{"type": "email", "to": ["bad"]}]}, "destinations[0].to: invalid e-mail address 'bad'"),
        (
            {"destination": EMAIL, "notify_on_failure": ["ops@example.com", "not an address"]},
            "notify_on_failure: invalid e-mail address 'not an address'",
        ),
        (
            {"destination": EMAIL, "notify_on_failure": "a@b.example, c@d.example"},
            "notify_on_failure: invalid e-mail address 'a@b.example, c@d.example'",
        ),
        ({"destination": EMAIL, "pause_after_failures": 0}, "pause_after_failures: must be from 1 to 100, got 0"),
        ({"destination": EMAIL, "pause_after_failures": 101}, "pause_after_failures: must be from 1 to 100, got 101"),
        (
            {"destination": EMAIL, "pause_after_failures": "5"},
            "pause_after_failures: must be a whole number from 1 to 100, got '5'",
        ),
        (
            {"destination": EMAIL, "pause_after_failures": True},
            "pause_after_failures: must be a whole number from 1 to 100, got True",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_field(fields: dict, message: str) -> None:
    assert _problems(_with(**fields)) == [message]


def test_notify_on_failure_gets_the_words_recipients_get() -> None:
    recipients = _problems(_with(destination={"type": "email", "to": ["x@@y"]}))
    notify = _problems(_with(destination=EMAIL, notify_on_failure=["x@@y"]))
    assert recipients == ["destination.to: invalid e-mail address 'x@@y'"]
    assert notify == ["notify_on_failure: invalid e-mail address 'x@@y'"]
