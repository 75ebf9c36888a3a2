"""`encrypt_to` and `large_files` in a report definition: refused when saved, with the key named."""

from __future__ import annotations

import pytest

from report_platform.reports.definition import DefinitionError, KnownNames, parse_definition
from report_platform_tests.delivery.test_connection_tenancy import (  # noqa: F401
    ACME_OWNER,
    platform,
    rp,
)
from report_platform_tests.samples import sms_definition

KNOWN = KnownNames(
    organizations={"acme": frozenset({"acme-east"})},
    connections={
        "smtp": {"default": frozenset({"*"})},
        "sftp": {"partner-sftp": frozenset({"acme"})},
        "s3": {"shared-s3": frozenset({"*"})},
    },
)


def _sftp(*keys: object) -> dict[str, object]:
    return {"type": "sftp", "connection": "partner-sftp", "remote_dir": "/inbound", "encrypt_to": list(keys)}


def _errors(definition: dict[str, object]) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(definition, KNOWN)
    return caught.value.errors


def test_a_usable_key_is_accepted_and_kept(pgp_keys):
    definition = parse_definition(sms_definition(destination=_sftp(pgp_keys["alice"].public)), KNOWN)
    stored = definition.to_dict()
    assert stored["destination"]["encrypt_to"] == [pgp_keys["alice"].public.strip() + "\n"]
    assert parse_definition(stored).to_dict() == stored


def test_expired_and_signing_only_keys_are_refused_naming_each_key(pgp_keys):
    errors = _errors(
        sms_definition(
            destination=_sftp(pgp_keys["alice"].public, pgp_keys["expired"].public, pgp_keys["signing_only"].public)
        )
    )
    assert errors == [
        f"destination.encrypt_to: key 2 of 3: key {pgp_keys['expired'].fingerprint} (Old <old@partner.example>) "
        "expired on 2020-01-02; ask the recipient for a renewed key",
        f"destination.encrypt_to: key 3 of 3: key {pgp_keys['signing_only'].fingerprint} "
        "(Signer <signer@partner.example>) cannot encrypt (no usable encryption subkey: signing-only, or its "
        "encryption subkeys have expired or been revoked)",
    ]


def test_a_damaged_key_is_refused(pgp_keys):
    lines = pgp_keys["alice"].public.splitlines()
    damaged = "\n".join(lines[:3] + lines[6:])  # armor kept, key packets cut
    errors = _errors(sms_definition(destination=_sftp(damaged)))
    assert len(errors) == 1 and errors[0].startswith("destination.encrypt_to: key 1 of 1: ")
    assert "gpg can read" in errors[0] or "CRC" in errors[0] or "damaged" in errors[0]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("not a key", "must be an ASCII-armored OpenPGP public key starting with -----BEGIN PGP PUBLIC KEY BLOCK-----"),
        ("-----BEGIN PGP PRIVATE KEY BLOCK-----\nxx\n", "is a PRIVATE key; give the recipient's public key"),
        (42, "must be an ASCII-armored OpenPGP public key (gpg --armor --export ID)"),
    ],
)
def test_text_that_is_no_public_key_is_refused_without_echoing_it(key, message):
    errors = _errors(sms_definition(destination=_sftp(key)))
    assert len(errors) == 1
    assert errors[0].startswith(f"destination.encrypt_to: key 1 of 1: {message}")
    assert "xx" not in errors[0]


@pytest.mark.parametrize(
    ("expires", "message"),
    [
        ("8d", "destination.large_files.expires: a download link may live at most 7d, got '8d'"),
        ("10s", "destination.large_files.expires: must be a duration like 12h or 7d, got '10s'"),
        ("30m", "destination.large_files.expires: a download link must live at least 1h, got '30m'"),
    ],
)
def test_large_files_link_lifetime_is_at_most_seven_days(expires, message):
    email = {**sms_definition()["destination"], "large_files": {"connection": "shared-s3", "bucket": "big-files"}}
    assert parse_definition(sms_definition(destination=email), KNOWN).destination.large_files.expires == "7d"
    email["large_files"] = {**email["large_files"], "expires": expires}
    assert _errors(sms_definition(destination=email)) == [message]


def test_reports_validate_names_the_expired_key(rp, pgp_keys):  # noqa: F811
    definition = sms_definition(destination=_sftp(pgp_keys["expired"].public))
    result = rp("reports", "validate", definition)
    assert result.returncode != 0
    assert f"key {pgp_keys['expired'].fingerprint} (Old <old@partner.example>) expired on 2020-01-02" in result.stderr
    assert "Traceback" not in result.stderr
