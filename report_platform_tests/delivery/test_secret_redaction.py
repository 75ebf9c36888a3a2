"""Secrets never reach a message: key loading that never quotes its variable, and one redaction step
for what the audit log, the CLI, Python logging and Dagster's event log record."""

import base64
import json
import logging
import os
import secrets
import subprocess
import sys
import traceback
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml

from report_platform import redaction
from report_platform.app import registry_service
from report_platform.delivery import Connections, PermanentDeliveryError, SftpConnection, deliver
from report_platform.delivery.connections import read_secret
from report_platform.delivery.errors import TransientDeliveryError
from report_platform.settings import Home
from report_platform_devservers.standins import SshdStandin
from report_platform_tests.scheduling.conftest import (  # noqa: F401
    OWNER,
    USER,
    platform,
    sms_definition,
    store_home,
)

ROOT = Path(__file__).resolve().parents[2]
KEY_VAR = "PARTNER_SFTP_KEY"


def _connections(server: SshdStandin) -> Connections:
    conn = SftpConnection.model_validate(
        {
            "host": server.host,
            "port": server.port,
            "username": server.username,
            "private_key_env": KEY_VAR,
            "host_key": server.host_key,
            "timeout": 10,
            "organizations": ["acme"],
        }
    )
    return Connections(sftp={"partner-sftp": conn})


def _dest(folder: Path) -> dict[str, object]:
    return {"type": "sftp", "connection": "partner-sftp", "remote_dir": str(folder)}


def _whole_chain(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def _secret_forms(value: str) -> list[str]:
    """How a leaked key would show up: itself, its base64, and each line of its text."""
    forms = [value, base64.b64encode(value.encode()).decode()]
    forms += [line for line in value.splitlines() if len(line) > 20 and not line.startswith("-----")]
    return forms


def _leaks(text: str, *values: str) -> list[str]:
    return [form[:40] for value in values for form in _secret_forms(value) if form in text]


@pytest.fixture
def key_text(sshd_shared: SshdStandin) -> str:
    return sshd_shared.client_key_text


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda raw: base64.b64encode(raw).decode(), id="one-line"),
        pytest.param(lambda raw: base64.encodebytes(raw).decode(), id="wrapped-at-76-like-base64"),
        pytest.param(lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("="), id="url-safe-unpadded"),
    ],
)
def test_a_key_given_as_base64_in_its_variable_is_decoded_and_the_file_lands(
    sshd_shared, key_text, make_artifact, monkeypatch, encode, request
):
    target = sshd_shared.root_dir / f"inbound-b64-{request.node.callspec.id}"
    target.mkdir()
    monkeypatch.setenv(KEY_VAR, encode(key_text.encode()))
    artifact = make_artifact("sms.csv")

    deliver(artifact, _dest(target), _connections(sshd_shared))

    assert (target / "sms.csv").read_bytes() == artifact.path.read_bytes()


def test_a_key_written_on_one_line_with_escaped_newlines_is_accepted(sshd_shared, key_text, make_artifact, monkeypatch):
    target = sshd_shared.root_dir / "inbound-escaped"
    target.mkdir()
    monkeypatch.setenv(KEY_VAR, key_text.strip().replace("\n", "\\n"))
    deliver(make_artifact("e.csv"), _dest(target), _connections(sshd_shared))
    assert (target / "e.csv").exists()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            base64.b64encode(b"not a key at all " * 40).decode(),
            "holds neither a PEM/OpenSSH key, nor base64 of one, nor the path",
            id="base64-of-something-else",
        ),
        pytest.param(
            "x" * 5000, "holds neither a PEM/OpenSSH key, nor base64 of one, nor the path", id="too-long-for-a-path"
        ),
        pytest.param(
            "line one of junk\nline two of junk\n" * 50,
            "holds neither a PEM/OpenSSH key, nor base64 of one, nor the path",
            id="several-lines",
        ),
        pytest.param(
            "/etc/no-such-folder/partner_key",
            "holds neither a PEM/OpenSSH key, nor base64 of one, nor the path",
            id="missing-file",
        ),
        pytest.param(
            base64.b64encode(
                b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAnotreallyakey\n-----END OPENSSH PRIVATE KEY-----\n"
            ).decode(),
            "could not be read as ed25519, ECDSA or RSA",
            id="base64-of-a-broken-key",
        ),
    ],
)
def test_a_variable_without_a_usable_key_is_named_and_never_quoted(
    sshd_shared, make_artifact, monkeypatch, value, expected
):
    monkeypatch.setenv(KEY_VAR, value)
    sleeps: list[float] = []
    with pytest.raises(PermanentDeliveryError) as info:
        deliver(make_artifact(), _dest(sshd_shared.root_dir), _connections(sshd_shared), sleep=sleeps.append)
    message = str(info.value)
    assert expected in message and KEY_VAR in message and "sftp connection 'partner-sftp'" in message
    assert _leaks(_whole_chain(info.value), value) == []
    assert sleeps == []  # nothing a retry could fix


def test_a_key_file_that_is_not_text_says_so_without_its_contents(sshd_shared, make_artifact, monkeypatch, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_bytes(b"\xff\xfe" + os.urandom(400))
    monkeypatch.setenv(KEY_VAR, str(key_file))
    with pytest.raises(
        PermanentDeliveryError,
        match=f"the key file named by the private key variable {KEY_VAR} cannot be read \\(not a text file\\)",
    ):
        deliver(make_artifact(), _dest(sshd_shared.root_dir), _connections(sshd_shared))


def test_redact_replaces_a_secret_in_every_form_a_message_quotes_it(monkeypatch):
    value = "-----BEGIN TEST SECRET-----\n" + "\n".join(secrets.token_hex(24) for _ in range(3)) + "\n-----END-----"
    monkeypatch.setenv("RP_TEST_MULTILINE", value)
    read_secret("RP_TEST_MULTILINE", field="password_env", connection="smtp connection 'default'")
    password = "p@ss word/with+chars:" + secrets.token_hex(4)
    redaction.register_secret("RP_TEST_PASSWORD", password)

    quoted = {
        "as is": password,
        "base64": base64.b64encode(password.encode()).decode(),
        "url-safe base64 unpadded": base64.urlsafe_b64encode(password.encode()).decode().rstrip("="),
        "url-encoded": urllib.parse.quote(password, safe=""),
        "form-encoded": urllib.parse.quote_plus(password),
        "repr of a multi-line value": repr(value),
        "json of a multi-line value": json.dumps(value),
        "one line of a multi-line value": value.splitlines()[2],
        "base64 of a multi-line value": base64.b64encode(value.encode()).decode(),
    }
    for form, text in quoted.items():
        clean = redaction.redact(f"login failed ({text}) at 12:00")
        assert text not in clean, form
        assert clean.startswith("login failed (") and clean.endswith(") at 12:00"), form
        assert "[redacted:RP_TEST_" in clean, form
    assert redaction.redact(f"bad {password}") == "bad [redacted:RP_TEST_PASSWORD]"
    assert redaction.redact(f"bad {password}"[:16]) == "bad [redacted:RP_TEST_PASSWORD]"  # cut to fit a column


def test_redact_finds_private_keys_nobody_registered(key_text):
    unregistered = key_text  # read from a file here, never through read_secret
    redaction.forget_secrets()
    for text in (
        unregistered,
        unregistered[:300],  # cut off, as a message truncated to a column's width
        base64.b64encode(unregistered.encode()).decode(),
        repr(unregistered),
    ):
        clean = redaction.redact(f"error: {text}")
        assert _leaks(clean, unregistered) == [], clean
        assert "[redacted:" in clean


def test_redact_leaves_short_values_and_ordinary_text_alone():
    redaction.register_secret("RP_TEST_SHORT", "abc")
    redaction.register_secret("RP_TEST_EMPTY", "")
    text = "sftp connection 'partner': authentication as 'abc' failed (key)"
    assert redaction.redact(text) == text
    assert redaction.redact("") == ""


def test_secrets_named_in_connections_yaml_are_registered_from_the_environment(tmp_path, monkeypatch):
    value = secrets.token_urlsafe(24)
    file_value = secrets.token_urlsafe(24)
    (tmp_path / "s3-secret").write_text(file_value + "\n")
    monkeypatch.setenv("RP_TEST_SMTP_PASSWORD", value)
    monkeypatch.delenv("RP_TEST_S3_SECRET", raising=False)
    monkeypatch.setenv("RP_TEST_S3_SECRET_FILE", str(tmp_path / "s3-secret"))
    connections = tmp_path / "connections.yaml"
    connections.write_text(
        yaml.safe_dump(
            {
                "smtp": {"default": {"host": "h", "password_env": "RP_TEST_SMTP_PASSWORD"}},
                "s3": {"lake": {"secret_access_key_env": "RP_TEST_S3_SECRET", "access_key_id_env": "RP_TEST_UNSET"}},
            }
        )
    )
    redaction.register_configured_secrets(connections)
    assert (
        redaction.redact(f"{value} / {file_value}") == "[redacted:RP_TEST_SMTP_PASSWORD] / [redacted:RP_TEST_S3_SECRET]"
    )


def test_a_redacted_exception_keeps_its_type_and_chain_without_the_secret():
    secret = secrets.token_urlsafe(300)
    redaction.register_secret("RP_TEST_TOKEN", secret)
    try:
        try:
            Path(secret).is_file()
        except OSError as exc:
            raise TransientDeliveryError(f"upload with {secret} failed", destination="sftp") from exc
    except TransientDeliveryError as exc:
        original = exc

    clean = redaction.redacted_exception(original)

    assert type(clean) is TransientDeliveryError and clean.destination == "sftp"
    assert str(clean) == "upload with [redacted:RP_TEST_TOKEN] failed"
    assert isinstance(clean.__cause__, redaction.RedactedError)
    assert str(clean.__cause__).startswith("OSError: [Errno 36] File name too long: '[redacted:RP_TEST_TOKEN]")
    assert secret not in _whole_chain(clean)
    assert clean.__traceback__ is original.__traceback__  # where it happened is kept
    harmless = ValueError("nothing secret here")
    assert redaction.redacted_exception(harmless) is harmless


def test_redacting_errors_reraises_without_the_original_in_the_chain():
    secret = secrets.token_urlsafe(30)
    redaction.register_secret("RP_TEST_BOUNDARY", secret)
    with pytest.raises(RuntimeError) as info, redaction.redacting_errors():
        try:
            raise KeyError(secret)
        except KeyError:
            raise RuntimeError(f"lookup of {secret} failed") from None
    assert secret not in _whole_chain(info.value)
    assert "[redacted:RP_TEST_BOUNDARY]" in str(info.value)


def test_log_records_are_redacted_once_installed(caplog, tmp_path):
    redaction.install(tmp_path / "no-connections.yaml")
    secret = secrets.token_urlsafe(30)
    redaction.register_secret("RP_TEST_LOGGED", secret)
    log = logging.getLogger("report_platform.delivery.sftp")
    with caplog.at_level(logging.DEBUG):
        log.warning("retrying with %s", secret)
        try:
            raise OSError(f"refused {secret}")
        except OSError:
            log.exception("upload failed")
    handler_output = "\n".join(logging.Formatter().format(r) for r in caplog.records)
    assert secret not in caplog.text and secret not in handler_output
    assert "retrying with [redacted:RP_TEST_LOGGED]" in caplog.text
    assert "OSError: refused [redacted:RP_TEST_LOGGED]" in handler_output


def test_a_failing_dagster_materialization_records_no_secret_in_its_event_log(monkeypatch, capfd, tmp_path):
    secret = secrets.token_urlsafe(200)  # longer than a file name may be, like a base64 key
    monkeypatch.setenv("RP_TEST_DAGSTER_KEY", secret)
    redaction.install(tmp_path / "no-connections.yaml")

    @dg.asset
    def leaky_export(context: dg.AssetExecutionContext) -> None:
        key = read_secret("RP_TEST_DAGSTER_KEY", field="private_key_env", connection="sftp connection 'partner'")
        context.log.info(f"loading key {key}")
        logging.getLogger("report_platform.delivery").warning("key %s", key)
        try:
            Path(key).is_file()
        except OSError as exc:
            raise RuntimeError(f"the key {key} is unusable") from exc

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([leaky_export], instance=instance, raise_on_error=False)
        assert not result.success
        records = instance.all_logs(result.run_id)
    stored = "\n".join(dg.serialize_value(r) for r in records)
    assert secret not in stored
    failure = next(r.dagster_event for r in records if r.dagster_event and r.dagster_event.is_step_failure)
    error_text = failure.step_failure_data.error.to_string()
    assert "the key [redacted:RP_TEST_DAGSTER_KEY] is unusable" in error_text
    assert "File name too long: '[redacted:RP_TEST_DAGSTER_KEY]" in error_text
    assert "loading key [redacted:RP_TEST_DAGSTER_KEY]" in stored
    captured = capfd.readouterr()
    assert secret not in captured.err and secret not in captured.out


def test_the_audit_log_stores_run_errors_without_secrets(platform):  # noqa: F811
    secret = secrets.token_urlsafe(40)
    redaction.register_secret("RP_TEST_AUDITED", secret)
    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, sms_definition())
    run_id = service.system.record_run_start(report_id, trigger="schedule", scheduled_at=datetime.now(UTC))
    pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
    service.system.record_run_finish(
        run_id, status="FAILED", error=f"login with {secret} failed: {pem}", note=f"retried {secret}"
    )
    (run,) = service.audit_log(USER, report_id).runs
    assert run.error == "login with [redacted:RP_TEST_AUDITED] failed: [redacted:private key]"
    assert run.note == "retried [redacted:RP_TEST_AUDITED]"


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "report_platform.cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _add_sftp_connection(home: Home, server: SshdStandin) -> None:
    connections = yaml.safe_load(home.connections.read_text()) or {}
    connections["sftp"] = {
        "partner-sftp": {
            "host": server.host,
            "port": server.port,
            "username": server.username,
            "private_key_env": KEY_VAR,
            "host_key": server.host_key,
            "timeout": 10,
            "organizations": ["acme"],
        }
    }
    home.connections.write_text(yaml.safe_dump(connections))


def test_run_now_through_the_cli_with_a_base64_key_delivers_and_leaks_it_nowhere(
    platform,  # noqa: F811
    sshd_shared,
    key_text,
):
    target = sshd_shared.root_dir / "inbound-run-now"
    target.mkdir()
    _add_sftp_connection(platform, sshd_shared)
    encoded = base64.b64encode(key_text.encode()).decode()
    report_id = registry_service(Home.from_env()).create_report(
        OWNER, sms_definition(destination={"type": "sftp", "connection": "partner-sftp", "remote_dir": str(target)})
    )

    ran = _cli("reports", "run-now", report_id, "--user", OWNER, "--json", env={**os.environ, KEY_VAR: encoded})

    (run,) = registry_service(Home.from_env()).audit_log(USER, report_id).runs
    assert _leaks(f"{run.error} {run.note}", encoded, key_text) == []
    assert _leaks(ran.stderr + ran.stdout, encoded, key_text) == []
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert run.status == "SUCCESS" and run.error is None
    (delivered,) = target.iterdir()
    assert delivered.name.endswith(".csv") and delivered.read_bytes().startswith(b"Timestamp,")
    with dg.DagsterInstance.get() as instance:
        stored = "\n".join(dg.serialize_value(r) for r in instance.all_logs(json.loads(ran.stdout)["dagster_run_id"]))
    assert _leaks(stored, encoded, key_text) == []


def test_the_cli_error_line_never_shows_a_configured_secret(platform, tmp_path):  # noqa: F811
    password = secrets.token_urlsafe(24)
    connections = yaml.safe_load(platform.connections.read_text())
    connections["smtp"]["default"] |= {"username": "reports", "password_env": "RP_TEST_CLI_PASSWORD"}
    platform.connections.write_text(yaml.safe_dump(connections))
    # Someone pastes the password where a field belongs: the refusal quotes the field's value.
    definition = tmp_path / "report.yaml"
    definition.write_text(yaml.safe_dump(sms_definition(type=password)))

    ran = _cli(
        "reports", "create", str(definition), "--user", OWNER, env={**os.environ, "RP_TEST_CLI_PASSWORD": password}
    )

    assert ran.returncode == 1 and ran.stderr.startswith("error: ")
    assert password not in ran.stderr
    assert "[redacted:RP_TEST_CLI_PASSWORD]" in ran.stderr


def test_loading_the_code_location_installs_log_redaction(tmp_path):
    probe = (
        "import logging, sys, report_platform.definitions\n"
        "from report_platform.redaction import register_secret\n"
        "register_secret('RP_TEST_PROBE', 'probe-secret-value')\n"
        "logging.basicConfig(stream=sys.stdout, format='%(message)s')\n"
        "logging.getLogger('report_platform.probe').warning('x %s', 'probe-secret-value')\n"
    )
    env = {**os.environ, "REPORT_PLATFORM_HOME": str(tmp_path / "home")}
    env.pop("DAGSTER_HOME", None)
    ran = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip() == "x [redacted:RP_TEST_PROBE]"
