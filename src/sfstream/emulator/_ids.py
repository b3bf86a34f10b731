"""Identifiers as Salesforce shapes them: 18-character record ids, Bayeux client ids, tokens.

Record ids are 15 case-sensitive characters (a 3-character key prefix that names the object type,
then a counter in base 62) followed by the 3-character case-insensitive checksum Salesforce
appends. Client ids are 27 lowercase base-36 characters, as seen in real handshakes. Tokens are
long random strings shaped like Salesforce's (``00D…!…`` access tokens); the org keeps only
their SHA-256 hashes.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import string
from typing import Final

__all__ = [
    "access_token",
    "client_id",
    "event_uuid",
    "hash_secret",
    "random_cookie",
    "record_id",
    "refresh_token",
    "schema_id",
    "to_18",
]

_BASE62: Final = string.digits + string.ascii_uppercase + string.ascii_lowercase
_BASE36: Final = string.digits + string.ascii_lowercase
_CHECKSUM: Final = string.ascii_uppercase + "012345"


def to_18(id15: str) -> str:
    """Append Salesforce's 3-character checksum to a 15-character id."""
    if len(id15) != 15:
        raise ValueError("a Salesforce id has 15 characters before its checksum")
    suffix = []
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix.append(_CHECKSUM[bits])
    return id15 + "".join(suffix)


def record_id(prefix: str, number: int) -> str:
    """The 18-character id of the ``number``-th record of the type with key ``prefix``."""
    if len(prefix) != 3:
        raise ValueError("a key prefix has 3 characters")
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(_BASE62[rest])
    body = "".join(reversed(digits)).rjust(9, "0")
    if len(body) > 9:
        raise ValueError("record counter overflow")
    return to_18(prefix + "000" + body)


def client_id() -> str:
    """A fresh Bayeux clientId: 27 random lowercase base-36 characters (~139 bits)."""
    return "".join(secrets.choice(_BASE36) for _ in range(27))


def access_token(org_id: str) -> str:
    """A fresh access token shaped like Salesforce's: ``<orgId15>!<random>``."""
    return f"{org_id[:15]}!AQ{secrets.token_urlsafe(72)}"


def refresh_token() -> str:
    """A fresh refresh token."""
    return "5Aep861" + secrets.token_urlsafe(60)


def random_cookie() -> str:
    """A random cookie value (``BAYEUX_BROWSER`` and friends)."""
    return secrets.token_hex(16)


def event_uuid() -> str:
    """A platform event's ``EventUuid``: a random (version 4) UUID."""
    raw = bytearray(secrets.token_bytes(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def schema_id(name: str) -> str:
    """A stable 22-character schema id for an event type, like ``dffQ2QLzDNHqwB8_sHMxdA``."""
    digest = hashlib.sha256(name.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22]


def hash_secret(value: str) -> str:
    """The SHA-256 hex digest under which the org remembers a token or password."""
    return hashlib.sha256(value.encode()).hexdigest()
