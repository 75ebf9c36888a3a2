"""POST /api/v1/connections/{name}/test: an Owner checks a connection of their organisation against
the real server (OpenSSH sshd); everyone else is refused, other tenants' names are 404."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from report_platform_tests.web.conftest import ADMIN, GLOBEX_OWNER, OWNER, USER, Console, make_console

KEY_VARIABLE = "WEB_TEST_SFTP_KEY"


@pytest.fixture
def console(tmp_path: Path, sshd_shared, monkeypatch: pytest.MonkeyPatch) -> Console:  # noqa: ANN001
    console = make_console(tmp_path / "home")
    monkeypatch.setenv(KEY_VARIABLE, sshd_shared.client_key_text)
    sftp = {
        "host": sshd_shared.host,
        "port": sshd_shared.port,
        "username": sshd_shared.username,
        "private_key_env": KEY_VARIABLE,
        "host_key": sshd_shared.host_key,
        "timeout": 10,
    }
    connections = yaml.safe_load(console.home.connections.read_text())
    connections["sftp"] = {
        "partner-sftp": {**sftp, "organizations": ["acme"]},
        "globex-sftp": {**sftp, "organizations": ["globex"]},
        "nobody-home": {**sftp, "port": 9, "organizations": ["acme"]},
    }
    console.home.connections.write_text(yaml.safe_dump(connections))
    return console


def _probe_folder(sshd_shared) -> Path:  # noqa: ANN001
    folder = sshd_shared.root_dir / f"web-probe-{id(object())}"
    folder.mkdir()
    return folder


def test_an_owner_proves_write_access_and_the_probe_leaves_nothing_behind(console: Console, sshd_shared) -> None:  # noqa: ANN001
    folder = _probe_folder(sshd_shared)
    answer = console.signed_in(OWNER).post(
        "/api/v1/connections/partner-sftp/test", json={"kind": "sftp", "remote_dir": str(folder)}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["connection"], body["kind"], body["ok"]) == ("partner-sftp", "sftp", True)
    assert [s["step"] for s in body["steps"]] == [
        "secrets",
        "connect",
        "host key",
        "login",
        "write",
        "rename",
        "remove",
    ]
    assert list(folder.iterdir()) == []
    assert "PRIVATE KEY" not in answer.text and sshd_shared.client_key_text.strip()[40:80] not in answer.text


def test_a_failing_connection_is_an_answer_naming_the_step_not_an_error(console: Console) -> None:
    answer = console.signed_in(OWNER).post("/api/v1/connections/nobody-home/test", json={"kind": "sftp"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ok"] is False
    assert [(s["step"], s["ok"]) for s in body["steps"]] == [("secrets", True), ("connect", False)]
    assert "refused" in body["steps"][-1]["detail"]


@pytest.mark.parametrize(
    ("who", "status"),
    [(ADMIN, 403), (USER, 403), (None, 401), (GLOBEX_OWNER, 404)],
    ids=["admin", "user", "anon", "globex"],
)
def test_only_an_owner_of_an_organisation_that_may_use_it_can_test_it(
    console: Console, sshd_shared, who: str | None, status: int
) -> None:  # noqa: ANN001
    folder = _probe_folder(sshd_shared)
    client = console.signed_in(who) if who else console.anonymous()
    answer = client.post("/api/v1/connections/partner-sftp/test", json={"kind": "sftp", "remote_dir": str(folder)})
    assert answer.status_code == status, answer.text
    assert list(folder.iterdir()) == []
    if status == 404:
        assert "partner-sftp" in answer.json()["detail"] and "globex-sftp" not in answer.text


def test_another_tenants_connection_and_an_unknown_one_are_404_without_their_names_listed(console: Console) -> None:
    owner = console.signed_in(OWNER)
    for name in ("globex-sftp", "no-such-connection"):
        answer = owner.post(f"/api/v1/connections/{name}/test", json={"kind": "sftp"})
        assert answer.status_code == 404, answer.text
        assert "globex-sftp" not in answer.text or name == "globex-sftp"
    # The kind is part of the name: the SMTP connection is not an SFTP one.
    assert owner.post("/api/v1/connections/default/test", json={"kind": "sftp"}).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "sftp", "remote_dir": "/inbound/../etc"}, "remote_dir"),
        ({"kind": "s3"}, "bucket"),
        ({"kind": "s3", "bucket": "Not_A_Bucket"}, "bucket"),
        ({"kind": "ftp"}, "kind"),
        ({"kind": "sftp", "password": "x"}, "password"),
    ],
)
def test_a_bad_folder_bucket_or_field_is_422_by_field(console: Console, body: dict, field: str) -> None:
    connections = yaml.safe_load(console.home.connections.read_text())
    connections["s3"] = {
        "acme-s3": {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9", "organizations": ["acme"]}
    }
    console.home.connections.write_text(yaml.safe_dump(connections))
    name = "acme-s3" if body.get("kind") == "s3" else "partner-sftp"
    answer = console.signed_in(OWNER).post(f"/api/v1/connections/{name}/test", json=body)
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == [field]


def test_a_cookie_session_needs_its_csrf_token(console: Console) -> None:
    browser = console.browser(OWNER)
    del browser.headers["X-CSRF-Token"]
    assert browser.post("/api/v1/connections/partner-sftp/test", json={"kind": "sftp"}).status_code == 403
