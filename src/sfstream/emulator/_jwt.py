"""The JWT bearer flow's checks: an RS256 signature against the connected app's certificate.

``cryptography`` is imported only here and only when a key is configured or generated, so the
emulator runs without it unless the JWT flow is used (``pip install '.[jwt]'`` in the sfstream
checkout).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    PublicKey = RSAPublicKey
else:
    PublicKey = Any

__all__ = ["JWTError", "PublicKey", "generate_key_pair", "load_public_key", "verify_assertion"]

#: How far in the future ``exp`` may be: Salesforce asks for "within 3 minutes".
MAX_EXP_SECONDS = 180.0
#: Clock skew tolerated on top of that.
LEEWAY_SECONDS = 5.0


class JWTError(Exception):
    """The assertion was refused: ``error`` / ``description`` are Salesforce's pair."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


def _cryptography() -> Any:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the JWT bearer flow needs the 'cryptography' package: "
            "pip install '.[jwt]' in the sfstream checkout"
        ) from None
    return x509, hashes, serialization, padding, rsa


def load_public_key(pem: str | bytes) -> PublicKey:
    """Load an RSA public key from a PEM certificate or a PEM public key."""
    x509, _, serialization, _, rsa = _cryptography()
    data = pem.encode() if isinstance(pem, str) else pem
    if b"BEGIN CERTIFICATE" in data:
        key = x509.load_pem_x509_certificate(data).public_key()
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the JWT bearer flow needs an RSA key (RS256)")
    return cast("PublicKey", key)


def generate_key_pair() -> tuple[str, PublicKey]:
    """A fresh 2048-bit RSA key: the private key as PKCS#8 PEM, and its public key."""
    _, _, serialization, _, rsa = _cryptography()
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, private.public_key()


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify_assertion(
    assertion: str,
    key: PublicKey | None,
    *,
    consumer_key: str,
    audiences: Collection[str],
    now: float,
) -> str:
    """Check a JWT bearer assertion; returns the username (``prn`` wins over ``sub``).

    Raises JWTError with the pair Salesforce answers: ``invalid_grant`` / ``invalid assertion``
    (malformed, not RS256, bad signature, no key configured), ``invalid_client_id`` /
    ``client identifier invalid`` (``iss``), ``invalid_grant`` / ``audience is invalid``,
    ``invalid_grant`` / ``expired authorization code`` (``exp`` past, missing or too far ahead).
    """
    invalid = JWTError("invalid_grant", "invalid assertion")
    parts = assertion.split(".")
    if len(parts) != 3 or key is None:
        raise invalid
    try:
        header = json.loads(_b64decode(parts[0]))
        claims = json.loads(_b64decode(parts[1]))
        signature = _b64decode(parts[2])
    except (ValueError, binascii.Error):
        raise invalid from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise invalid
    if header.get("alg") != "RS256":
        raise invalid
    _, hashes, _, padding, _ = _cryptography()
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(
            signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        raise invalid from None
    if claims.get("iss") != consumer_key:
        raise JWTError("invalid_client_id", "client identifier invalid")
    audience = claims.get("aud")
    audience_list = audience if isinstance(audience, list) else [audience]
    wanted = {a.rstrip("/") for a in audiences}
    if not any(isinstance(a, str) and a.rstrip("/") in wanted for a in audience_list):
        raise JWTError("invalid_grant", "audience is invalid")
    exp = claims.get("exp")
    try:
        expires = (
            float(exp) if isinstance(exp, int | float | str) and not isinstance(exp, bool) else None
        )
    except ValueError:
        expires = None
    if expires is None or expires < now or expires > now + MAX_EXP_SECONDS + LEEWAY_SECONDS:
        raise JWTError("invalid_grant", "expired authorization code")
    subject = claims.get("prn", claims.get("sub"))
    if not isinstance(subject, str) or not subject:
        raise invalid
    return subject
