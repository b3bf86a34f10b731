"""``/services/oauth2/token`` and ``/services/oauth2/revoke``: Salesforce's OAuth 2.0 endpoint.

Grants: ``password``, ``refresh_token`` (optionally rotating), the JWT bearer grant
(``urn:ietf:params:oauth:grant-type:jwt-bearer``, RS256) and ``client_credentials`` (client id
and secret in the body or in HTTP Basic). Successes carry ``access_token``, ``instance_url``
(this emulator), ``id``, ``token_type``, ``issued_at`` (milliseconds, as a string),
``signature`` and ``scope`` (and ``api_instance_url`` for client credentials); failures are
Salesforce's ``{"error", "error_description"}`` pairs with HTTP 400. Nothing here logs a credential.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from sfstream.emulator._config import Context
from sfstream.emulator._http import bearer_token, json_response
from sfstream.emulator._jwt import JWTError, verify_assertion
from sfstream.emulator._state import User

__all__ = ["OAuthEndpoint"]

logger = logging.getLogger("sfstream.emulator")

JWT_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Audiences a JWT may name besides the emulator's own login URL.
SALESFORCE_AUDIENCES: Final = ("https://login.salesforce.com", "https://test.salesforce.com")


class _OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.status = status


def _same(given: str | None, expected: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


class OAuthEndpoint:
    """The token, revoke and identity endpoints."""

    def __init__(self, context: Context) -> None:
        self.context = context

    async def token(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-www-form-urlencoded":
            return self._error(_OAuthError("unsupported_grant_type", "grant type not supported"))
        form: dict[str, str] = dict(request.query.items())
        form.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        grant = form.get("grant_type")
        try:
            if grant == "password":
                body = self._password(form)
            elif grant == "refresh_token":
                body = self._refresh(form, request)
            elif grant == JWT_GRANT:
                body = self._jwt(form)
            elif grant == "client_credentials":
                body = self._client_credentials(form, request)
            else:
                raise _OAuthError("unsupported_grant_type", "grant type not supported")
        except _OAuthError as exc:
            logger.debug("token request refused (%s): %s", grant, exc.description)
            return self._error(exc)
        logger.debug("token issued (%s)", grant)
        return json_response(body)

    @staticmethod
    def _error(exc: _OAuthError) -> web.Response:
        return json_response(
            {"error": exc.error, "error_description": exc.description}, status=exc.status
        )

    def _check_client(
        self, client_id: str | None, client_secret: str | None, *, secret_required: bool
    ) -> None:
        config = self.context.config
        if not _same(client_id, config.consumer_key):
            raise _OAuthError("invalid_client_id", "client identifier invalid")
        if client_secret is None and not secret_required:
            return
        if not _same(client_secret, config.consumer_secret):
            raise _OAuthError("invalid_client", "invalid client credentials")

    @staticmethod
    def _basic(request: web.Request) -> tuple[str | None, str | None]:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic" or not value:
            return None, None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        client_id, colon, client_secret = decoded.partition(":")
        return (client_id, client_secret) if colon else (None, None)

    def _password(self, form: Mapping[str, str]) -> dict[str, Any]:
        config = self.context.config
        self._check_client(form.get("client_id"), form.get("client_secret"), secret_required=True)
        username = form.get("username", "")
        password = form.get("password", "")
        user = self.context.state.user_by_name(username)
        if user is not None and user.id == self.context.primary_user_id and config.security_token:
            if not password.endswith(config.security_token):
                raise _OAuthError("invalid_grant", "authentication failure")
            password = password[: -len(config.security_token)]
        user = self.context.state.check_password(username, password)
        if user is None:
            raise _OAuthError("invalid_grant", "authentication failure")
        return self._issue(user)

    def _refresh(self, form: Mapping[str, str], request: web.Request) -> dict[str, Any]:
        client_id, client_secret = self._basic(request)
        if client_id is None:
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
        self._check_client(client_id, client_secret, secret_required=False)
        value = form.get("refresh_token")
        outcome = (
            None
            if not value
            else self.context.state.refresh(
                value, now=self.context.now(), rotate=self.context.config.refresh_token_rotation
            )
        )
        if outcome is None:
            raise _OAuthError("invalid_grant", "expired access/refresh token")
        user, access, new_refresh = outcome
        body = self._issue(user, access=access)
        body["scope"] = "refresh_token api"
        if new_refresh is not None:
            body["refresh_token"] = new_refresh
        return body

    def _jwt(self, form: Mapping[str, str]) -> dict[str, Any]:
        context = self.context
        try:
            username = verify_assertion(
                form.get("assertion", ""),
                context.config.jwt_key,
                consumer_key=context.config.consumer_key,
                audiences=(*SALESFORCE_AUDIENCES, context.base_url),
                now=context.now(),
            )
        except JWTError as exc:
            raise _OAuthError(exc.error, exc.description) from None
        user = context.state.user_by_name(username)
        if user is None:
            raise _OAuthError("invalid_grant", "user hasn't approved this consumer")
        return self._issue(user, signed=False)

    def _client_credentials(self, form: Mapping[str, str], request: web.Request) -> dict[str, Any]:
        client_id, client_secret = self._basic(request)
        if client_id is None:
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
        self._check_client(client_id, client_secret, secret_required=True)
        if not self.context.config.client_credentials:
            raise _OAuthError("invalid_grant", "no client credentials user enabled")
        user = self.context.state.users[self.context.primary_user_id]
        body = self._issue(user)
        # The client credentials flow adds the API host (wire evidence E20); the emulator
        # serves the API itself.
        body["api_instance_url"] = self.context.base_url
        return body

    def _issue(
        self, user: User, *, access: str | None = None, signed: bool = True
    ) -> dict[str, Any]:
        context = self.context
        now = context.now()
        if access is None:
            access = context.state.issue_token("access", user.id, now)
        identity = f"{context.base_url}/id/{context.state.org_id}/{user.id}"
        issued_at = str(int(now * 1000))
        body: dict[str, Any] = {"access_token": access}
        if signed:
            mac = hmac.new(
                context.config.consumer_secret.encode(),
                (identity + issued_at).encode(),
                hashlib.sha256,
            )
            body["signature"] = base64.b64encode(mac.digest()).decode()
        body.update(
            {
                "scope": "api",
                "instance_url": context.base_url,
                "id": identity,
                "token_type": "Bearer",
                "issued_at": issued_at,
            }
        )
        return body

    async def revoke(self, request: web.Request) -> web.Response:
        values: dict[str, str] = dict(request.query.items())
        if request.method == "POST":
            values.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        token = values.get("token")
        if not token or self.context.state.token(token) is None:
            return json_response(
                {
                    "error": "unsupported_token_type",
                    "error_description": "this token type is not supported",
                },
                status=400,
            )
        self.context.state.revoke(token)
        logger.debug("a token was revoked over /services/oauth2/revoke")
        return web.Response(status=200)

    async def identity(self, request: web.Request) -> web.Response:
        context = self.context
        record = context.state.valid_access_token(
            bearer_token(request), context.now(), context.config.token_lifetime
        )
        if record is None:
            return web.Response(status=403, text="Bad_OAuth_Token")
        user = context.state.users.get(request.match_info["user"])
        if user is None or request.match_info["org"] != context.state.org_id:
            return web.Response(status=404, text="Bad_Id")
        return json_response(
            {
                "id": f"{context.base_url}/id/{context.state.org_id}/{user.id}",
                "user_id": user.id,
                "organization_id": context.state.org_id,
                "username": user.username,
                "display_name": user.username.partition("@")[0],
                "active": True,
                "urls": {
                    "rest": f"{context.base_url}/services/data/v{{version}}/",
                    "sobjects": f"{context.base_url}/services/data/v{{version}}/sobjects/",
                    "query": f"{context.base_url}/services/data/v{{version}}/query/",
                },
            }
        )
