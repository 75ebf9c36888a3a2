from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from report_platform.delivery import ConfigurationError, Connections
from report_platform.delivery.connections import read_secret

EXAMPLE = {
    "smtp": {
        "default": {
            "host": "127.0.0.1",
            "port": 2525,
            "security": "starttls",
            "username": "reports",
            "password_env": "SMTP_PASSWORD",
            "from_address": "reports@acme.example",
            "organizations": ["*"],
        }
    },
    "sftp": {
        "partner-sftp": {
            "host": "127.0.0.1",
            "port": 2222,
            "username": "upload",
            "private_key_env": "PARTNER_SFTP_KEY",
            "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFnAphZQG3Eea3rxL9sdpoLCgxC+anAWuVhdYXrKQYhF",
            "organizations": ["acme"],
        }
    },
    "s3": {
        "reports-aws": {
            "region": "us-east-1",
            "endpoint_url": "http://127.0.0.1:9000",
            "access_key_id_env": "AWS_ACCESS_KEY_ID",
            "secret_access_key_env": "AWS_SECRET_ACCESS_KEY",
            "organizations": ["acme"],
        }
    },
}


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "connections.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_product_example_loads(tmp_path):
    conns = Connections.load(_write(tmp_path, EXAMPLE))
    assert conns.get_smtp().port == 2525
    assert conns.get_sftp("partner-sftp").private_key_env == "PARTNER_SFTP_KEY"
    assert conns.get_s3("reports-aws").endpoint_url == "http://127.0.0.1:9000"


def test_missing_file_means_no_connections(tmp_path):
    with pytest.raises(ConfigurationError, match="no sftp connection named 'x'.*known: none"):
        Connections.load(tmp_path / "absent.yaml").get_sftp("x")


def test_unknown_connection_lists_known_names(tmp_path):
    conns = Connections.load(_write(tmp_path, EXAMPLE))
    with pytest.raises(ConfigurationError, match="known: partner-sftp"):
        conns.get_sftp("other")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["sftp"]["partner-sftp"].pop("host_key"), "host_key"),
        (lambda d: d["sftp"]["partner-sftp"].pop("private_key_env"), "private_key_env"),
        (lambda d: d["smtp"]["default"].update(password="hunter2"), "password"),
        (lambda d: d["smtp"]["default"].update(security="tls"), "security"),
        (lambda d: d["s3"]["reports-aws"].pop("secret_access_key_env"), "both"),
    ],
)
def test_invalid_connections_are_refused_with_the_field_named(tmp_path, mutate, message):
    import copy

    data = copy.deepcopy(EXAMPLE)
    mutate(data)
    with pytest.raises(ConfigurationError, match=message) as info:
        Connections.load(_write(tmp_path, data))
    assert "hunter2" not in str(info.value)


def test_missing_secret_names_variable_and_connection(monkeypatch):
    monkeypatch.delenv("NOPE_PASSWORD", raising=False)
    monkeypatch.delenv("NOPE_PASSWORD_FILE", raising=False)
    with pytest.raises(ConfigurationError) as info:
        read_secret("NOPE_PASSWORD", field="password_env", connection="smtp connection 'default'")
    assert "NOPE_PASSWORD" in str(info.value) and "'default'" in str(info.value)


def test_secret_from_file_variable(tmp_path, monkeypatch):
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cr3t\n")
    monkeypatch.delenv("FILE_PASSWORD", raising=False)
    monkeypatch.setenv("FILE_PASSWORD_FILE", str(secret_file))
    assert read_secret("FILE_PASSWORD", field="password_env", connection="c") == "s3cr3t"


def test_models_hold_no_secret_values(tmp_path, monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", "very-secret-value")
    conns = Connections.load(_write(tmp_path, EXAMPLE))
    text = repr(conns) + conns.model_dump_json()
    assert "very-secret-value" not in text
    assert "SMTP_PASSWORD" in text
