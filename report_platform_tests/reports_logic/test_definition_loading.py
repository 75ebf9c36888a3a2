"""Reading definitions: one strict YAML loader for every command, and size caps on every input."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

import report_platform.cli.reports  # noqa: F401  (registers the `reports` group on `cli`)
from report_platform.app import _service, registry_service
from report_platform.cli.main import cli
from report_platform.reports.definition import (
    AegisFilters,
    DefinitionError,
    EmailDestination,
    load_definition_file,
    parse_definition,
)
from report_platform.settings import Home

from .conftest import variant

OWNER = "owner@acme.example"
# The documented caps (docs/report-definitions.md, "Limits").
MAX_DEFINITION_BYTES = 256 * 1024
MAX_LIST_ITEMS = 1000
MAX_NESTING_DEPTH = 20
TOO_LARGE = "the definition is larger than 262144 bytes (256 KiB), the limit for a report definition"
# A hang guard, not a benchmark: each of these inputs took minutes or crashed before.
WALL_SECONDS = 5.0

VALID = """\
name: Daily SMS usage
type: sms_usage
workspace: acme-east
schedule: {timezone: America/New_York, frequency: daily, time_of_day: "06:00:00"}
period: {kind: previous_day}
destination:
  type: email
  to: [ops@example.com]
filename_pattern: "{{ReportName}}_{{PeriodStart}}.csv"
"""

SECOND_DESTINATION = """\
destination:
  type: email
  to: [attacker@evil.example]
"""

ALIASED = VALID.replace("  to: [ops@example.com]\n", "  to: &ops [ops@example.com]\n  bcc: *ops\n")

BILLION_LAUGHS = (
    VALID
    + 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


def _nested_yaml(levels: int) -> str:
    return VALID + "description: " + "[" * levels + "]" * levels + "\n"


def _nested_mapping(levels: int) -> dict[str, Any]:
    inner: dict[str, Any] = {}
    for _ in range(levels - 1):
        inner = {"a": inner}
    data = variant()
    data["description"] = inner  # set after the copy: copying 5000 levels would itself recurse too deep
    return data


def _errors(data: Any) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(data)
    return caught.value.errors


def _timed_errors(data: Any) -> list[str]:
    started = time.monotonic()
    errors = _errors(data)
    assert time.monotonic() - started < WALL_SECONDS
    return errors


def test_a_duplicate_key_is_refused_naming_the_key_and_both_lines() -> None:
    assert _errors(VALID + SECOND_DESTINATION) == ["line 10, column 1: duplicate key 'destination' (first on line 6)"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(ALIASED, "line 8, column 7: anchors and aliases (&name, *name) are not allowed", id="alias"),
        pytest.param(VALID + "x: &keep 1\n", "line 10, column 4: anchors and aliases", id="anchor alone"),
        pytest.param(
            VALID.replace("destination:\n", "destination:\n  <<: {connection: default}\n"),
            "line 7, column 3: merge keys (<<) are not allowed",
            id="merge key",
        ),
        pytest.param(VALID + "name2: !!binary aGVsbG8=\n", "line 10, column 8: tags such as '!!binary'", id="binary"),
        pytest.param(
            VALID + "x: !!python/object:os.system ls\n", "line 10, column 4: tags such as '!!python/object", id="py"
        ),
        pytest.param(VALID + "x: !custom 1\n", "line 10, column 4: tags such as '!custom'", id="custom tag"),
        pytest.param(VALID + "? [a, b]\n: x\n", "line 10, column 3: a key must be a plain name", id="list key"),
        pytest.param(VALID + "x: " + "9" * 5000 + "\n", "line 10, column 4: a number of 5000 digits", id="huge number"),
        pytest.param(VALID + "x: é\x00\n", "line 10, column 5: control characters are not allowed", id="nul"),
        pytest.param(
            VALID + "x: \ud800\n", "line 10, column 4: not valid text (surrogates not allowed)", id="surrogate"
        ),
    ],
)
def test_yaml_features_a_definition_does_not_need_are_refused_with_their_line(text: str, expected: str) -> None:
    [message] = _errors(text)
    assert message.startswith(expected) and "\n" not in message, message


def test_a_merge_marker_as_a_value_is_plain_text() -> None:
    definition = parse_definition(VALID.replace("name: Daily SMS usage", "name: <<"))
    assert definition.name == "<<"


def test_an_alias_bomb_is_refused_at_once() -> None:
    assert len(BILLION_LAUGHS.encode()) < 1000
    [message] = _timed_errors(BILLION_LAUGHS)
    assert message == "line 10, column 4: anchors and aliases (&name, *name) are not allowed; write each value out"


def test_text_over_the_size_cap_is_refused_naming_the_cap() -> None:
    text = VALID + "# padding\n" * (MAX_DEFINITION_BYTES // 10)
    assert _timed_errors(text) == [TOO_LARGE]


def test_a_file_over_the_size_cap_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w", encoding="utf-8") as fh:
        fh.write(VALID)
        fh.write("# padding\n" * 5_000_000)  # 50 MB
    started = time.monotonic()
    with pytest.raises(DefinitionError) as caught:
        load_definition_file(path)
    assert time.monotonic() - started < WALL_SECONDS
    assert caught.value.errors == [f"{path}: {TOO_LARGE}"]


@pytest.mark.parametrize("levels", [MAX_NESTING_DEPTH + 5, 5000])
def test_deep_yaml_nesting_is_refused_naming_the_cap(levels: int) -> None:
    [message] = _timed_errors(_nested_yaml(levels))
    assert message.startswith("line 10, column ") and message.endswith(
        f": nested more than {MAX_NESTING_DEPTH} levels deep"
    )
    if levels < 100:  # the first level too many; deeper input may be refused a little further on
        assert message.startswith(f"line 10, column {13 + MAX_NESTING_DEPTH}:")


def test_nesting_up_to_the_cap_is_read() -> None:
    # The root mapping is level 1, so the description holds the rest.
    [message] = _errors(_nested_yaml(MAX_NESTING_DEPTH - 1))
    assert message == "description: must be text, got a list"


def test_5000_levels_of_nesting_in_a_mapping_are_refused_naming_the_cap() -> None:
    [message] = _timed_errors(_nested_mapping(5000))
    assert message == "description" + ".a" * (MAX_NESTING_DEPTH - 1) + (
        f": nested more than {MAX_NESTING_DEPTH} levels deep"
    )


def test_a_self_containing_mapping_is_refused_not_followed_forever() -> None:
    data = variant()
    data["destination"]["cc"] = data["destination"]  # type: ignore[assignment]
    [message] = _timed_errors(data)
    assert message.endswith(f"nested more than {MAX_NESTING_DEPTH} levels deep")


def test_100000_recipients_are_refused_at_once_naming_the_cap() -> None:
    recipients = [f"user{i}@example.com" for i in range(100_000)]
    assert _timed_errors(variant({"destination.to": recipients})) == [
        f"destination.to: at most {MAX_LIST_ITEMS} items are allowed, got 100000"
    ]


def test_the_recipient_cap_holds_when_the_model_is_used_directly() -> None:
    recipients = [f"user{i}@example.com" for i in range(MAX_LIST_ITEMS + 1)]
    with pytest.raises(ValueError, match=f"at most {MAX_LIST_ITEMS} items are allowed, got {MAX_LIST_ITEMS + 1}"):
        EmailDestination.model_validate({"type": "email", "to": recipients})


def test_1000_recipients_in_each_field_are_accepted_and_deduplicated() -> None:
    to = [f"user{i}@example.com" for i in range(MAX_LIST_ITEMS)]
    cc = [address.upper() for address in to[:500]] + [f"copy{i}@example.com" for i in range(500)]
    destination = parse_definition(variant({"destination.to": to, "destination.cc": cc, "destination.bcc": to}))
    assert isinstance(destination.destination, EmailDestination)
    assert destination.destination.to == to
    assert destination.destination.cc == cc  # each field is de-duplicated on its own
    twice = parse_definition(variant({"destination.to": to[:500] + [a.upper() for a in to[:500]]})).destination
    assert isinstance(twice, EmailDestination) and twice.to == to[:500]


def test_workflows_are_capped_and_deduplicated() -> None:
    many = [f"flow-{i}" for i in range(MAX_LIST_ITEMS + 1)]
    with pytest.raises(ValueError, match=f"at most {MAX_LIST_ITEMS} items are allowed"):
        AegisFilters.model_validate({"workflows": many})
    assert AegisFilters.model_validate({"workflows": ["a", "b", "a"]}).workflows == ["a", "b"]


def test_a_mapping_larger_than_the_size_cap_is_refused_naming_the_cap() -> None:
    data = variant({f"field_{i}": "x" * 20 for i in range(20_000)})
    assert _timed_errors(data) == [TOO_LARGE]


def test_thousands_of_problems_are_listed_up_to_50_and_counted() -> None:
    text = VALID + "".join(f"unknown_{i}: 1\n" for i in range(10_000))
    errors = _timed_errors(text)
    assert len(errors) == 51 and all(e.startswith("unknown_") for e in errors[:50])
    assert errors[-1] == "... and 9950 more problems"


@pytest.fixture
def registry_home(home: Home, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    """A fresh data folder with an Owner in the registry and its SMTP connection; no Dagster webserver."""
    monkeypatch.setenv("REPORT_PLATFORM_DAGSTER_URL", "http://127.0.0.1:9")
    smtp = {"host": "127.0.0.1", "port": 9, "security": "none", "from_address": "reports@acme.example"}
    home.connections.write_text(yaml.safe_dump({"smtp": {"default": {**smtp, "organizations": ["acme"]}}}))
    _service.cache_clear()
    registry_service(home).add_user(OWNER, "acme", "owner")
    yield home
    _service.cache_clear()


def _cli(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


FILES = {
    "valid": (VALID, None),
    "unquoted time": (VALID.replace('"06:00:00"', "12:30:00"), None),
    "second destination": (VALID + SECOND_DESTINATION, "line 10, column 1: duplicate key 'destination'"),
    "alias": (ALIASED, "line 8, column 7: anchors and aliases (&name, *name) are not allowed"),
    "alias bomb": (BILLION_LAUGHS, "line 10, column 4: anchors and aliases"),
    "too large": (VALID + "# padding\n" * (MAX_DEFINITION_BYTES // 10), TOO_LARGE),
    "too deep": (_nested_yaml(5000), "line 10, column "),
}


@pytest.mark.parametrize("name", FILES)
def test_validate_create_update_and_render_give_the_same_answer(name: str, registry_home: Home, tmp_path: Path) -> None:
    text, refusal = FILES[name]
    base = tmp_path / "base.yaml"
    base.write_text(VALID, encoding="utf-8")
    report_id = _cli("reports", "create", str(base), "--user", OWNER).stdout.strip()
    path = tmp_path / "candidate.yaml"
    path.write_text(text, encoding="utf-8")

    started = time.monotonic()
    answers = {
        "validate": _cli("reports", "validate", str(path)),
        "create": _cli("reports", "create", str(path), "--user", OWNER),
        "update": _cli("reports", "update", report_id, str(path), "--user", OWNER),
        "render": _cli(
            "reports", "render", "--file", str(path), "--at", "2026-03-09T06:00:00", "--out", str(tmp_path / "out")
        ),
    }
    elapsed = time.monotonic() - started

    codes = {command: result.exit_code for command, result in answers.items()}
    if refusal is None:
        assert codes == dict.fromkeys(answers, 0), {c: r.stderr for c, r in answers.items()}
        return
    assert elapsed < 4 * WALL_SECONDS
    assert codes == dict.fromkeys(answers, 1), {c: r.stderr for c, r in answers.items()}
    messages = {command: result.stderr for command, result in answers.items()}
    assert len(set(messages.values())) == 1, messages
    lines = messages["validate"].splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {refusal}"), lines
    stored = registry_service(registry_home).list_reports(OWNER)
    assert [r.id for r in stored] == [report_id]
    assert registry_service(registry_home).get_report(OWNER, report_id).definition["destination"]["to"] == [
        "ops@example.com"
    ]


def test_an_unquoted_time_is_stored_as_the_time_written(registry_home: Home, tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(VALID.replace('"06:00:00"', "12:30:00"), encoding="utf-8")
    report_id = _cli("reports", "create", str(path), "--user", OWNER).stdout.strip()
    stored = registry_service(registry_home).get_report(OWNER, report_id).definition
    assert stored["schedule"]["time_of_day"] == "12:30:00"
