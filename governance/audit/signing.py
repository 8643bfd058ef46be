"""Warden's audit signing key: Ed25519, from WARDEN_AUDIT_SIGNING_KEY (PEM text or a file).

It signs each audit checkpoint and each export's statement, so whoever holds the public key
(GET /api/v1/audit/public-key) can check an export alone, and cannot forge one: unlike the
chain's HMAC key, checking needs no secret. The system check warden.E004 names what is
wrong with the key at start-up.
"""

import base64
import functools
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from django.conf import settings
from django.core.checks import Error, register
from django.db.models import Max, Min

from governance.audit.verifier import key_id
from governance.models import AuditCheckpoint


class SigningKeyProblem(ValueError):
    """The signing key is missing or unusable; the message says which and how to fix it."""


def _pem(value: str) -> bytes:
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    path = Path(value)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningKeyProblem(
            f"WARDEN_AUDIT_SIGNING_KEY names {path}, which cannot be read ({exc.strerror})"
        ) from exc


def load_signing_key(value: str) -> Ed25519PrivateKey:
    """The private key of `value` (PEM text or a path); raises SigningKeyProblem."""
    if not value:
        raise SigningKeyProblem(
            "WARDEN_AUDIT_SIGNING_KEY is not set: Warden cannot sign audit checkpoints. Set "
            "it to an Ed25519 private key in PEM, or the path of one (docs/operators.md)"
        )
    try:
        key = serialization.load_pem_private_key(_pem(value), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyProblem(
            f"WARDEN_AUDIT_SIGNING_KEY is not an unencrypted PEM private key ({exc})"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyProblem(
            f"WARDEN_AUDIT_SIGNING_KEY is a {type(key).__name__.removeprefix('_')}, not an "
            "Ed25519 key (openssl genpkey -algorithm ed25519)"
        )
    return key


@functools.cache
def _key(value: str) -> Ed25519PrivateKey:
    return load_signing_key(value)


def signing_key() -> Ed25519PrivateKey:
    return _key(settings.WARDEN_AUDIT_SIGNING_KEY)


def public_key() -> Ed25519PublicKey:
    return signing_key().public_key()


def public_key_pem(key: Ed25519PublicKey | None = None) -> str:
    return (
        (key or public_key())
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def public_key_raw_hex(key: Ed25519PublicKey | None = None) -> str:
    raw = (key or public_key()).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return raw.hex()


def public_key_from_raw_hex(value: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(value))


def current_key_id() -> str:
    return key_id(public_key())


def published_keys() -> list[dict[str, Any]]:
    """Every key that signed a checkpoint (keys rotate), newest last, with the span of
    checkpoints it signed; the present key even before it signed any."""
    spans = (
        AuditCheckpoint.objects.values("key_id", "public_key")
        .annotate(first=Min("tree_size"), last=Max("tree_size"))
        .order_by("first")
    )
    keys = [
        {
            "key_id": span["key_id"],
            "public_key_pem": public_key_pem(public_key_from_raw_hex(span["public_key"])),
            "first_checkpoint": span["first"],
            "last_checkpoint": span["last"],
        }
        for span in spans
    ]
    if current_key_id() not in {key["key_id"] for key in keys}:
        keys.append(
            {
                "key_id": current_key_id(),
                "public_key_pem": public_key_pem(),
                "first_checkpoint": None,
                "last_checkpoint": None,
            }
        )
    return keys


def sign(note: bytes) -> str:
    """The base64 Ed25519 signature of `note`."""
    return base64.b64encode(signing_key().sign(note)).decode()


@register()
def check_signing_key(app_configs, **kwargs) -> list:
    """At start-up: a missing or unusable signing key is named, not found at the first
    checkpoint."""
    try:
        load_signing_key(settings.WARDEN_AUDIT_SIGNING_KEY)
    except SigningKeyProblem as problem:
        return [Error(str(problem), id="warden.E004")]
    return []
