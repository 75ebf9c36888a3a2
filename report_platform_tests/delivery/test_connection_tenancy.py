"""Connections belong to organisations: who may name one is checked when a report is saved and
again when it is delivered."""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from report_platform.app import known_names, registry_service
from report_platform.delivery import ConfigurationError, Connections
from report_platform.domain.tenancy import load_tenancy
from report_platform.registry.errors import RegistryError
from report_platform.reports.definition import DefinitionError, KnownNames, load_definition_file, parse_definition
from report_platform.settings import Home
from report_platform_tests.registry_setup import fresh_registry
from report_platform_tests.samples import sms_definition

ROOT = Path(__file__).resolve().parents[2]
ACME_OWNER = "owner@acme.example"
GLOBEX_OWNER = "owner@globex.example"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFnAphZQG3Eea3rxL9sdpoLCgxC+anAWuVhdYXrKQYhF"


def _sftp(organizations: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "username": "upload",
        "private_key_env": "PARTNER_SFTP_KEY",
        "host_key": HOST_KEY,
        "organizations": organizations,
    }


CONNECTIONS: dict[str, Any] = {
    "smtp": {
        "default": {"host": "127.0.0.1", "from_address": "reports@acme.example", "organizations": ["acme"]},
        "globex-mail": {"host": "127.0.0.1", "from_address": "reports@globex.example", "organizations": ["globex"]},
    },
    "sftp": {"partner-sftp": _sftp(["acme"]), "globex-sftp": _sftp(["globex"])},
    "s3": {"shared-s3": {"region": "us-east-1", "organizations": "*"}},
}


def _write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _loaded(tmp_path: Path, data: Any = CONNECTIONS) -> Connections:
    return Connections.load(_write(tmp_path / "connections.yaml", data))


def _globex(**changes: Any) -> dict[str, Any]:
    return sms_definition(workspace="globex-main", **changes)


SFTP_PARTNER = {"type": "sftp", "connection": "partner-sftp", "remote_dir": "/inbound"}
FORBIDDEN = "destination.connection: connection 'partner-sftp' is not available to organization 'globex'"


def test_a_connection_without_organizations_is_refused_naming_it_and_the_fix(tmp_path):
    data = copy.deepcopy(CONNECTIONS)
    del data["sftp"]["partner-sftp"]["organizations"]
    with pytest.raises(ConfigurationError) as info:
        _loaded(tmp_path, data)
    message = str(info.value)
    assert "sftp.partner-sftp.organizations" in message
    assert "organizations: [acme]" in message and "'*'" in message
    assert "\n" not in message


@pytest.mark.parametrize("written", ["*", ["*"]])
def test_star_written_on_purpose_lets_every_organization_use_the_connection(tmp_path, written):
    data = copy.deepcopy(CONNECTIONS)
    data["sftp"]["partner-sftp"]["organizations"] = written
    connections = _loaded(tmp_path, data)
    for organization in ("acme", "globex", "initech"):
        connections.require_allowed("sftp", "partner-sftp", organization)


@pytest.mark.parametrize(
    ("organizations", "message"),
    [
        ([], "at least one organization"),
        (["*", "acme"], "'*' already means every organization"),
        ("acme", "a list of organization ids"),
        ([""], "must not be empty"),
        ([7], "organization ids are text"),
    ],
)
def test_malformed_organization_lists_are_refused(tmp_path, organizations, message):
    data = copy.deepcopy(CONNECTIONS)
    data["sftp"]["partner-sftp"]["organizations"] = organizations
    with pytest.raises(ConfigurationError, match=message) as info:
        _loaded(tmp_path, data)
    assert "sftp.partner-sftp.organizations" in str(info.value)


def test_delivery_recheck_accepts_a_listed_organization_and_refuses_any_other(tmp_path):
    connections = _loaded(tmp_path)
    connections.require_allowed("sftp", "partner-sftp", "acme")
    with pytest.raises(ConfigurationError) as info:
        connections.require_allowed("sftp", "partner-sftp", "globex")
    assert str(info.value) == "connection 'partner-sftp' is not available to organization 'globex'"


def test_delivery_recheck_of_an_unknown_name_lists_only_what_that_organization_may_use(tmp_path):
    connections = _loaded(tmp_path)
    with pytest.raises(ConfigurationError) as info:
        connections.require_allowed("sftp", "nope", "globex")
    assert str(info.value) == "no sftp connection named 'nope' available to organization 'globex' (known: globex-sftp)"


def test_delivery_recheck_without_a_name_checks_the_default_smtp_connection(tmp_path):
    connections = _loaded(tmp_path)
    connections.require_allowed("smtp", None, "acme")
    with pytest.raises(ConfigurationError, match="connection 'default' is not available to organization 'globex'"):
        connections.require_allowed("smtp", None, "globex")


@pytest.fixture
def platform(home: Home, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    """A data folder with the demo tenancy (acme, globex), an Owner of each and CONNECTIONS."""
    monkeypatch.setenv("REPORT_PLATFORM_DAGSTER_URL", "http://127.0.0.1:9")  # no webserver to reload
    monkeypatch.delenv("REPORT_PLATFORM_REGISTRY_URL", raising=False)
    _write(home.connections, CONNECTIONS)
    with fresh_registry(home, [(ACME_OWNER, "acme", "owner"), (GLOBEX_OWNER, "globex", "owner")]):
        yield home


@pytest.fixture
def rp(platform: Home, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`report-platform <args>` as a real process; a definition dict is written to a file first."""

    def run(*args: str | dict[str, Any]) -> subprocess.CompletedProcess[str]:
        argv = []
        for n, arg in enumerate(args):
            argv.append(str(_write(tmp_path / f"definition-{n}.yaml", arg)) if isinstance(arg, dict) else arg)
        return subprocess.run(
            [sys.executable, "-m", "report_platform.cli.main", *argv],
            cwd=ROOT,
            env={**os.environ},
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


def test_validate_refuses_a_connection_of_another_organization(rp):
    result = rp("reports", "validate", _globex(destination=SFTP_PARTNER))
    assert result.returncode != 0
    assert FORBIDDEN in result.stderr


def test_create_refuses_a_connection_of_another_organization_and_stores_nothing(rp, platform):
    result = rp("reports", "create", _globex(destination=SFTP_PARTNER), "--user", GLOBEX_OWNER)
    assert result.returncode != 0
    assert result.stderr.startswith("error:") and FORBIDDEN in result.stderr
    assert registry_service(platform).list_reports(GLOBEX_OWNER) == []


def test_an_organization_may_create_reports_on_its_own_and_shared_connections(rp):
    own = _globex(destination={**SFTP_PARTNER, "connection": "globex-sftp"})
    assert rp("reports", "create", own, "--user", GLOBEX_OWNER).stdout.startswith("rpt_")
    shared = {"type": "s3", "connection": "shared-s3", "bucket": "globex-reports"}
    assert rp("reports", "validate", _globex(destination=shared)).returncode == 0


def test_update_to_a_connection_of_another_organization_is_refused_and_changes_nothing(platform):
    service = registry_service(platform)
    own = _globex(destination={**SFTP_PARTNER, "connection": "globex-sftp"})
    report_id = service.create_report(GLOBEX_OWNER, own)
    with pytest.raises(RegistryError, match=FORBIDDEN):
        service.update_report(GLOBEX_OWNER, report_id, _globex(destination=SFTP_PARTNER))
    assert service.get_report(GLOBEX_OWNER, report_id).definition["destination"]["connection"] == "globex-sftp"


def test_email_without_a_connection_is_checked_against_the_default_smtp_connection(platform):
    service = registry_service(platform)
    assert service.create_report(ACME_OWNER, sms_definition()).startswith("rpt_")
    with pytest.raises(RegistryError, match="connection 'default',.* is not available to organization 'globex'"):
        service.create_report(GLOBEX_OWNER, _globex())
    named = _globex(destination={**sms_definition()["destination"], "connection": "globex-mail"})
    assert service.create_report(GLOBEX_OWNER, named).startswith("rpt_")


def test_unknown_connection_lists_only_the_names_this_organization_may_use(platform):
    with pytest.raises(RegistryError) as info:
        registry_service(platform).create_report(
            GLOBEX_OWNER, _globex(destination={**SFTP_PARTNER, "connection": "nope"})
        )
    message = str(info.value)
    assert "destination.connection: unknown sftp connection 'nope' (known: globex-sftp)" in message
    assert "partner-sftp" not in message


def test_a_billing_report_is_checked_against_its_organization(platform):
    billing = sms_definition(
        name="Monthly billing",
        type="billing",
        workspace=None,
        organization="globex",
        destination=SFTP_PARTNER,
        schedule={"timezone": "UTC", "frequency": "monthly", "day_of_month": 1, "time_of_day": "02:00:00"},
        period={"kind": "previous_month"},
        filename_pattern="{{ReportName}}_{{PeriodStart}}.xlsx",
    )
    del billing["workspace"]
    with pytest.raises(RegistryError, match=FORBIDDEN):
        registry_service(platform).create_report(GLOBEX_OWNER, billing)


def test_every_connection_a_definition_names_is_checked():
    known = KnownNames(
        organizations={"globex": frozenset({"globex-main"})},
        connections={"smtp": {"default": frozenset({"*"})}, "s3": {"acme-s3": frozenset({"acme"})}},
    )
    email = {"type": "email", "to": ["ops@example.com"]}
    definition = _globex(
        destination={**email, "large_files": {"connection": "acme-s3", "bucket": "b-b-b"}},
        destinations=[email, {"type": "s3", "connection": "acme-s3", "bucket": "b-b-b"}],
    )
    with pytest.raises(DefinitionError) as info:
        parse_definition(definition, known)
    errors = info.value.errors
    refused = "connection 'acme-s3' is not available to organization 'globex'"
    assert f"destination.large_files.connection: {refused}" in errors
    assert f"destinations[1].connection: {refused}" in errors


def test_unknown_organizations_in_connections_are_warned_about(platform, caplog):
    data = copy.deepcopy(CONNECTIONS)
    data["sftp"]["partner-sftp"]["organizations"] = ["acme", "acmee"]
    _write(platform.connections, data)
    with caplog.at_level(logging.WARNING):
        registry_service(platform).create_report(ACME_OWNER, sms_definition(destination=SFTP_PARTNER))
    assert "sftp connection 'partner-sftp' lists organization 'acmee', which does not exist" in caplog.text


def test_the_demo_reports_pass_against_the_connections_the_demo_prepares(tmp_path):
    home = Home(tmp_path / "home")
    prepared = subprocess.run(
        [sys.executable, "-m", "report_platform_devservers.serve", "--prepare",
         "--smtp-port", "0", "--sftp-port", "0", "--s3-port", "0"],
        env=os.environ | {"REPORT_PLATFORM_HOME": str(home.root)},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr
    known = known_names(load_tenancy(home.root), Connections.load(home.connections))
    files = sorted((ROOT / "demo" / "reports").glob("*.yaml"))
    assert files
    for path in files:
        load_definition_file(path, known)
