"""The authenticators, under the module name aiosfstream used (``aiosfstream.auth``)."""

from __future__ import annotations

from sfstream.salesforce._auth import (
    AccessTokenAuthenticator,
    AuthenticatorBase,
    ClientCredentialsAuthenticator,
    JwtBearerAuthenticator,
    PasswordAuthenticator,
    RefreshTokenAuthenticator,
)

__all__ = [
    "AccessTokenAuthenticator",
    "AuthenticatorBase",
    "ClientCredentialsAuthenticator",
    "JwtBearerAuthenticator",
    "PasswordAuthenticator",
    "RefreshTokenAuthenticator",
]
