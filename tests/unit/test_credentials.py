"""Sealing connector secrets (AES-256-GCM, bound to their row) and validating credential input."""

from __future__ import annotations

import base64

import pytest
from pydantic import TypeAdapter, ValidationError

from fulfill.config import Settings
from fulfill.credentials.crypto import SecretBox, SecretsKeyError, new_key, parse_keys
from fulfill.domain.credentials import CredentialInput, SecretRotation
from tests.support.salesforce import OTHER_SECRETS_KEY, SECRETS_KEY, rsa_key_pair

AD = b'["fulfill-credential", "t1", "", "salesforce"]'


def test_a_sealed_secret_opens_with_its_key_and_row_only() -> None:
    box = SecretBox.from_setting(SECRETS_KEY)
    sealed = box.seal(b"s3cr3t", AD)
    assert b"s3cr3t" not in sealed.encode()
    assert sealed.startswith(f"v1.{box.primary_key_id}.")
    assert box.open(sealed, AD) == b"s3cr3t"
    assert box.seal(b"s3cr3t", AD) != sealed  # a fresh nonce every time
    with pytest.raises(SecretsKeyError, match="moved to another row"):
        box.open(sealed, AD.replace(b"t1", b"t2"))
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SecretsKeyError):
        box.open(tampered, AD)
    with pytest.raises(SecretsKeyError, match="does not hold"):
        SecretBox.from_setting(OTHER_SECRETS_KEY).open(sealed, AD)


def test_key_rotation_new_key_first_old_key_still_opens() -> None:
    old = SecretBox.from_setting(OTHER_SECRETS_KEY)
    sealed = old.seal(b"value", AD)
    both = SecretBox.from_setting(f"{SECRETS_KEY}, {OTHER_SECRETS_KEY}")
    assert both.open(sealed, AD) == b"value"
    assert both.seal(b"value", AD).split(".")[1] == SecretBox.from_setting(SECRETS_KEY).primary_key_id


def test_no_key_means_nothing_can_be_sealed() -> None:
    box = SecretBox.from_setting("")
    assert not box.configured
    with pytest.raises(SecretsKeyError, match="FULFILL_SECRETS_KEY is not set"):
        box.seal(b"x", AD)


def test_malformed_keys_are_refused_without_quoting_them() -> None:
    short = base64.urlsafe_b64encode(b"too-short-key").decode()
    with pytest.raises(SecretsKeyError, match="key 1 is not 32 bytes") as caught:
        parse_keys(short)
    assert short not in str(caught.value)
    with pytest.raises(ValidationError) as invalid:
        Settings(secrets_key=f"{SECRETS_KEY},{short}")
    assert "key 2 is not 32 bytes" in str(invalid.value)
    assert short not in str(invalid.value)
    assert len(parse_keys(new_key())) == 1
    assert SECRETS_KEY not in repr(Settings(secrets_key=SECRETS_KEY))
    assert "dGVzd" not in repr(SecretBox.from_setting(SECRETS_KEY))


CREDENTIAL = TypeAdapter(CredentialInput)


def test_credential_input_by_type_and_secrets_hidden() -> None:
    parsed = CREDENTIAL.validate_python(
        {"type": "client_credentials", "client_id": "cid", "client_secret": "hunter2-secret"}
    )
    assert "hunter2-secret" not in repr(parsed)
    assert "hunter2-secret" not in parsed.model_dump_json()
    with pytest.raises(ValidationError):
        CREDENTIAL.validate_python({"type": "client_credentials", "client_id": "cid"})
    with pytest.raises(ValidationError):
        CREDENTIAL.validate_python({"type": "password", "client_id": "cid", "client_secret": "x"})
    with pytest.raises(ValidationError):  # a field of another type
        CREDENTIAL.validate_python(
            {"type": "client_credentials", "client_id": "cid", "client_secret": "x", "refresh_token": "y"}
        )


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://login.salesforce.com", True),
        ("https://acme.my.salesforce.com/", True),
        ("http://127.0.0.1:8900", True),
        ("http://localhost:8900", True),
        ("http://login.salesforce.com", False),
        ("ftp://login.salesforce.com", False),
        ("https://user:pw@login.salesforce.com", False),
        ("https://login.salesforce.com?x=1", False),
        ("not a url", False),
    ],
)
def test_login_urls(url: str, ok: bool) -> None:
    body = {"type": "client_credentials", "client_id": "cid", "client_secret": "x", "login_url": url}
    if ok:
        assert CREDENTIAL.validate_python(body).login_url == url.rstrip("/")
    else:
        with pytest.raises(ValidationError):
            CREDENTIAL.validate_python(body)


def test_private_keys_are_checked_and_never_quoted() -> None:
    private, public = rsa_key_pair()
    body = {"type": "jwt_bearer", "client_id": "cid", "username": "u@x", "private_key": private}
    assert CREDENTIAL.validate_python(body).private_key.get_secret_value() == private
    not_a_key = "-----BEGIN PRIVATE KEY-----\n" + "A" * 120 + "\n-----END PRIVATE KEY-----\n"
    for wrong in (public, not_a_key):
        with pytest.raises(ValidationError) as invalid:
            CREDENTIAL.validate_python({**body, "private_key": wrong})
        assert "RSA private key" in str(invalid.value)
        assert "AAAAAAAA" not in str(invalid.value)
    assert SecretRotation(private_key=private).provided() == {"private_key": private}  # type: ignore[arg-type]
