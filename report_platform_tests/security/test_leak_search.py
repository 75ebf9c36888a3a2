"""The search the leak tests rely on finds a secret in every form it looks for, and only then."""

from __future__ import annotations

import base64
import json
import urllib.parse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from report_platform_tests.security.leaks import Secret, distinctive, leaks


def _key() -> str:
    private = ed25519.Ed25519PrivateKey.generate()
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()


def test_a_secret_is_found_in_every_form_a_text_may_carry_it() -> None:
    password = Secret("password", distinctive("pw"))
    carried = {
        "plain": password.value,
        "URL-encoded": urllib.parse.quote(password.value, safe=""),
        "form-encoded": urllib.parse.quote_plus(password.value),
        "base64": base64.b64encode(password.value.encode()).decode(),
        "URL-safe base64": base64.urlsafe_b64encode(password.value.encode()).decode().rstrip("="),
        "JSON": json.dumps({"password": password.value}),
    }
    for form, text in carried.items():
        assert leaks(f"... {text} ...", [password]), form
        assert leaks(f"... {text} ...".encode(), [password]), form
    assert urllib.parse.quote(password.value, safe="") != password.value  # the forms differ


def test_each_line_of_a_private_keys_body_is_found_on_its_own() -> None:
    key = Secret("key", _key())
    body = [line for line in key.value.splitlines() if not line.startswith("-----")]
    assert len(body) >= 3
    for line in body:
        if len(line) >= 16:
            assert leaks(f"error near {line}", [key]) == [f"key as line {body.index(line) + 1} of its body"]
    assert leaks("-----BEGIN OPENSSH PRIVATE KEY-----", [key]) == []  # the armour is in every key


def test_text_without_the_secret_is_clean() -> None:
    password = Secret("password", distinctive("pw"))
    assert leaks("smtp connection 'default': 535 authentication failed for 'reports'", [password]) == []
    assert "pw-" not in repr(password)  # an assertion message names the secret, never shows it
