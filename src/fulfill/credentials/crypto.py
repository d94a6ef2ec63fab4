"""Encryption at rest for connector secrets: AES-256-GCM with keys from ``FULFILL_SECRETS_KEY``.

A key is 32 random bytes in URL-safe base64 (``new_key()``). The setting may hold several,
comma-separated: the first encrypts, every one decrypts, so a key is rotated by putting the new
one first and re-encrypting (``fulfill credentials rekey``) before the old one is dropped.

A sealed value is ``v1.{key_id}.{base64url(nonce || ciphertext+tag)}``. The associated data binds
it to its row (tenant, account, connector), so a ciphertext copied onto another row does not
decrypt. Nothing here ever logs or formats a key or a plaintext.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
_NONCE_BYTES = 12
_VERSION = "v1"


class SecretsKeyError(ValueError):
    """The configured key is malformed, missing, or not the one a value was sealed with."""


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def key_id(key: bytes) -> str:
    """A short, non-secret name of a key (stored next to each value it sealed)."""
    return hashlib.sha256(b"fulfill-secrets-key-id:" + key).hexdigest()[:12]


def parse_keys(value: str) -> list[bytes]:
    """The keys of a ``FULFILL_SECRETS_KEY`` value; [] when it is empty."""
    keys: list[bytes] = []
    for position, part in enumerate(p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except ValueError:
            raw = b""
        if len(raw) != KEY_BYTES:
            raise SecretsKeyError(
                f"FULFILL_SECRETS_KEY: key {position + 1} is not {KEY_BYTES} bytes in URL-safe base64 "
                "(`fulfill credentials new-key` prints a valid one)"
            )
        keys.append(raw)
    return keys


@dataclass(frozen=True)
class SecretBox:
    keys: tuple[bytes, ...] = field(repr=False)

    @classmethod
    def from_setting(cls, value: str) -> SecretBox:
        return cls(tuple(parse_keys(value)))

    @property
    def configured(self) -> bool:
        return bool(self.keys)

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(key_id(key) for key in self.keys)

    @property
    def primary_key_id(self) -> str:
        return key_id(self._primary())

    def seal(self, plaintext: bytes, associated_data: bytes) -> str:
        key = self._primary()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext, associated_data)
        body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")
        return f"{_VERSION}.{key_id(key)}.{body}"

    def open(self, sealed: str, associated_data: bytes) -> bytes:
        try:
            version, wanted, body = sealed.split(".", 2)
        except ValueError:
            raise SecretsKeyError("a stored secret is not in a known format") from None
        if version != _VERSION:
            raise SecretsKeyError("a stored secret is not in a known format")
        key = next((k for k in self.keys if key_id(k) == wanted), None)
        if key is None:
            raise SecretsKeyError(
                f"a stored secret was encrypted with key {wanted}, which FULFILL_SECRETS_KEY does not hold"
            )
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        try:
            return AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], associated_data)
        except InvalidTag:
            raise SecretsKeyError(
                "a stored secret does not decrypt (altered, or moved to another row)"
            ) from None

    def _primary(self) -> bytes:
        if not self.keys:
            raise SecretsKeyError("FULFILL_SECRETS_KEY is not set: connector credentials cannot be stored")
        return self.keys[0]
