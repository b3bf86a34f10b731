"""Authenticators: the pure token flows stepped by hand, and the runner against a token endpoint.

The endpoint is a small ``aiohttp.web`` app on loopback that checks each grant type's form
fields as Salesforce does (the JWT's signature and claims with PyJWT) and answers with
Salesforce's fields and errors.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from multidict import CIMultiDict, CIMultiDictProxy
from pytest_aiohttp import AiohttpServer
from yarl import URL

from sfstream.exceptions import (
    AuthenticationError,
    AuthenticationTransportError,
    ClientInvalidOperation,
    InvalidArgumentError,
    TransportError,
)
from sfstream.salesforce._auth import (
    JWT_BEARER_GRANT_TYPE,
    JWT_LIFETIME,
    AccessTokenAuthenticator,
    AuthenticatorBase,
    ClientCredentialsAuthenticator,
    JwtBearerAuthenticator,
    PasswordAuthenticator,
    RefreshTokenAuthenticator,
    TokenRequest,
    check_url,
    send_token_request,
)

CONSUMER_KEY = "3MVG9lKcPoNINVBIPJjdw1J9LLM82Hn"
CONSUMER_SECRET = "CONSUMER-SECRET-1955279925675241571"
USERNAME = "testuser@example.com"
PASSWORD = "PASSWORD-hunter2+SECURITYTOKEN"
REFRESH_TOKEN = "REFRESH-TOKEN-5Aep861TSESvWeug_xvFHRBTTbf"
GIVEN_ACCESS_TOKEN = "00Dxx0000001gPL!GIVEN-ACCESS-TOKEN-AR8AQ"
KEY_PASSWORD = "KEY-PASSWORD-correct-horse"
IDENTITY_URL = "https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P"
ISSUED_AT = "1278448832702"
SIGNATURE = "0CmxinZir53Yex7nE0TD+zMpvIWYGb/bdJh6XfOH6EQ="


@dataclass(frozen=True)
class Keys:
    """An RSA key pair made for the test run, and its PEM forms."""

    private: rsa.RSAPrivateKey
    pem: bytes
    encrypted_pem: bytes

    @property
    def public(self) -> rsa.RSAPublicKey:
        return self.private.public_key()

    @property
    def secret_lines(self) -> list[str]:
        """Lines of the key's base64 body: none may ever be logged."""
        lines = self.pem.decode().splitlines()
        return [line for line in lines if not line.startswith("-----")]


@pytest.fixture(scope="module")
def keys() -> Keys:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    encrypted = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
    )
    return Keys(private, pem, encrypted)


@dataclass
class Seen:
    """One request the endpoint received."""

    form: dict[str, str]
    authorization: str | None
    content_type: str


@dataclass
class TokenEndpoint:
    """A Salesforce OAuth token endpoint, strict about each grant type's fields."""

    public_key: rsa.RSAPublicKey
    base_url: str = ""
    audience: str = ""
    rotate: bool = False
    mode: str = "normal"
    hold: asyncio.Event | None = None
    received: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[Seen] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    refresh_tokens: set[str] = field(default_factory=lambda: {REFRESH_TOKEN})

    @property
    def login_url(self) -> str:
        return self.base_url

    @property
    def token_url(self) -> str:
        return self.base_url + "/services/oauth2/token"

    def error(self, error: str, description: str, status: int = 400) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=status)

    def success(self, **extra: Any) -> web.Response:
        token = f"00Dxx0000001gPL!ISSUED-ACCESS-TOKEN-{len(self.issued) + 1}"
        self.issued.append(token)
        body = {
            "access_token": token,
            "instance_url": self.base_url,
            "id": IDENTITY_URL,
            "token_type": "Bearer",
            "issued_at": ISSUED_AT,
            "signature": SIGNATURE,
            "scope": "api refresh_token",
            **extra,
        }
        return web.json_response(body)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.seen.append(Seen(form, request.headers.get("Authorization"), request.content_type))
        self.received.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.mode == "html500":
            return web.Response(
                status=500, text="<html><body>Server error</body></html>", content_type="text/html"
            )
        if self.mode == "redirect":
            raise web.HTTPTemporaryRedirect("/elsewhere")
        if self.mode == "slow":
            await asyncio.sleep(5)
        if self.mode == "huge":
            return web.Response(body=b" " * (2 * 1024 * 1024), content_type="application/json")
        if self.mode == "empty":
            return web.Response(status=200)
        if request.content_type != "application/x-www-form-urlencoded":
            return self.error("unsupported_grant_type", "grant type not supported")
        grant = form.get("grant_type")
        if grant == "password":
            return self.password(form)
        if grant == "refresh_token":
            return self.refresh(form)
        if grant == JWT_BEARER_GRANT_TYPE:
            return self.jwt_bearer(form)
        if grant == "client_credentials":
            return self.client_credentials(form, request.headers.get("Authorization"))
        return self.error("unsupported_grant_type", "grant type not supported")

    def password(self, form: dict[str, str]) -> web.Response:
        if set(form) != {"grant_type", "client_id", "client_secret", "username", "password"}:
            return self.error("invalid_request", f"unexpected fields {sorted(form)}")
        if form["client_id"] != CONSUMER_KEY:
            return self.error("invalid_client_id", "client identifier invalid")
        if form["client_secret"] != CONSUMER_SECRET:
            return self.error("invalid_client", "invalid client credentials")
        if form["username"] != USERNAME or form["password"] != PASSWORD:
            return self.error("invalid_grant", "authentication failure")
        return self.success()

    def refresh(self, form: dict[str, str]) -> web.Response:
        if form.get("client_id") != CONSUMER_KEY:
            return self.error("invalid_client_id", "client identifier invalid")
        if "client_secret" in form and form["client_secret"] != CONSUMER_SECRET:
            return self.error("invalid_client", "invalid client credentials")
        token = form.get("refresh_token", "")
        if token not in self.refresh_tokens:
            return self.error("invalid_grant", "expired access/refresh token")
        if not self.rotate:
            return self.success()
        self.refresh_tokens.discard(token)
        rotated = f"REFRESH-TOKEN-ROTATED-{len(self.issued) + 1}"
        self.refresh_tokens.add(rotated)
        self.issued.append(rotated)
        return self.success(refresh_token=rotated)

    def jwt_bearer(self, form: dict[str, str]) -> web.Response:
        if set(form) != {"grant_type", "assertion"}:
            return self.error("invalid_request", f"unexpected fields {sorted(form)}")
        try:
            claims = jwt.decode(
                form["assertion"],
                self.public_key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=CONSUMER_KEY,
                options={"require": ["exp", "iss", "sub", "aud"]},
            )
        except jwt.InvalidAudienceError:
            return self.error("invalid_grant", "audience is invalid")
        except jwt.PyJWTError:
            return self.error("invalid_grant", "invalid assertion")
        if claims["exp"] - time.time() > 180:
            return self.error("invalid_grant", "expiration time is too far in the future")
        if claims["sub"] != USERNAME:
            return self.error("invalid_grant", "user hasn't approved this consumer")
        return self.success()

    def client_credentials(self, form: dict[str, str], authorization: str | None) -> web.Response:
        if authorization is not None:
            scheme, _, encoded = authorization.partition(" ")
            user, _, secret = base64.b64decode(encoded).decode().partition(":")
            if scheme != "Basic" or set(form) != {"grant_type"}:
                return self.error("invalid_request", "mixed credentials")
        else:
            user, secret = form.get("client_id", ""), form.get("client_secret", "")
        if user != CONSUMER_KEY or secret != CONSUMER_SECRET:
            return self.error("invalid_client", "invalid client credentials")
        return self.success()


@pytest.fixture
async def endpoint(aiohttp_server: AiohttpServer, keys: Keys) -> TokenEndpoint:
    token_endpoint = TokenEndpoint(keys.public)
    app = web.Application()
    app.router.add_post("/services/oauth2/token", token_endpoint.handle)
    server = await aiohttp_server(app)
    token_endpoint.base_url = str(server.make_url("")).rstrip("/")
    token_endpoint.audience = token_endpoint.base_url
    return token_endpoint


def password_auth(login_url: str | None = None, **kwargs: Any) -> PasswordAuthenticator:
    return PasswordAuthenticator(
        CONSUMER_KEY, CONSUMER_SECRET, USERNAME, PASSWORD, login_url=login_url, **kwargs
    )


def all_text(exc: BaseException) -> str:
    """What a traceback would show of an exception and its whole chain: every message and
    repr (the source lines of the frames are code, not runtime values, and would echo the
    test's own literals on Python 3.13)."""
    parts = [repr(exc)]
    current: BaseException | None = exc
    while current is not None:
        parts += [str(current), *traceback.format_exception_only(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


# -- URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "token_url"),
    [
        ({}, "https://login.salesforce.com/services/oauth2/token"),
        ({"sandbox": True}, "https://test.salesforce.com/services/oauth2/token"),
        (
            {"login_url": "https://acme.my.salesforce.com"},
            "https://acme.my.salesforce.com/services/oauth2/token",
        ),
        (
            {"login_url": "https://acme.my.salesforce.com/"},
            "https://acme.my.salesforce.com/services/oauth2/token",
        ),
        (
            {"login_url": "https://acme.my.salesforce.com/services/oauth2/token/?x=1#frag"},
            "https://acme.my.salesforce.com/services/oauth2/token",
        ),
        (
            {"login_url": "https://acme--dev.sandbox.my.salesforce.com", "sandbox": True},
            "https://acme--dev.sandbox.my.salesforce.com/services/oauth2/token",
        ),
        (
            {"login_url": "https://example.com/sf"},
            "https://example.com/sf/services/oauth2/token",
        ),
        ({"login_url": "http://127.0.0.1:8080"}, "http://127.0.0.1:8080/services/oauth2/token"),
        ({"login_url": "http://127.1.2.3"}, "http://127.1.2.3/services/oauth2/token"),
        ({"login_url": "http://[::1]:9000"}, "http://[::1]:9000/services/oauth2/token"),
        ({"login_url": "http://LOCALHOST:9000"}, "http://localhost:9000/services/oauth2/token"),
    ],
)
def test_token_url_selection(kwargs: dict[str, Any], token_url: str) -> None:
    auth = password_auth(**kwargs)
    assert auth.token_url == token_url
    assert auth.token_request().url == token_url
    assert auth.sandbox is kwargs.get("sandbox", False)


@pytest.mark.parametrize(
    "url",
    ["http://login.salesforce.com", "http://10.0.0.1:8080", "http://localhost.example.com"],
)
def test_plain_http_is_refused_except_on_loopback(url: str) -> None:
    with pytest.raises(InvalidArgumentError, match=r"plain http.*loopback"):
        password_auth(url)
    with pytest.raises(InvalidArgumentError, match="plain http"):
        AccessTokenAuthenticator(GIVEN_ACCESS_TOKEN, url)


@pytest.mark.parametrize("url", ["ftp://acme.my.salesforce.com", "acme.my.salesforce.com", ""])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(InvalidArgumentError, match="absolute https") as info:
        password_auth(url)
    assert isinstance(info.value, ValueError)


def test_urls_with_credentials_are_refused_without_echo() -> None:
    with pytest.raises(InvalidArgumentError, match="user name or password") as info:
        password_auth(f"https://me:{PASSWORD}@acme.my.salesforce.com")
    assert PASSWORD not in all_text(info.value)


def test_check_url_returns_the_parsed_url() -> None:
    assert check_url("https://acme.my.salesforce.com/x", "login_url").host == (
        "acme.my.salesforce.com"
    )


# -- the pure steps --------------------------------------------------------------------------


def test_password_token_request() -> None:
    request = password_auth().token_request()
    assert request.url == "https://login.salesforce.com/services/oauth2/token"
    assert dict(request.form) == {
        "grant_type": "password",
        "client_id": CONSUMER_KEY,
        "client_secret": CONSUMER_SECRET,
        "username": USERNAME,
        "password": PASSWORD,
    }
    assert request.basic_auth is None
    assert request.grant_type == "password"


def test_password_authenticator_documented_attributes() -> None:
    auth = PasswordAuthenticator(CONSUMER_KEY, CONSUMER_SECRET, USERNAME, PASSWORD, True)
    assert (auth.client_id, auth.client_secret, auth.username, auth.password) == (
        CONSUMER_KEY,
        CONSUMER_SECRET,
        USERNAME,
        PASSWORD,
    )
    assert auth.sandbox is True
    assert auth.access_token is None
    assert auth.instance_url is None
    assert auth.id is auth.token_type is auth.issued_at is auth.signature is None
    assert not auth.authenticated
    assert auth.can_refresh
    assert auth.generation == 0


def test_refresh_token_request_with_and_without_secret() -> None:
    auth = RefreshTokenAuthenticator(CONSUMER_KEY, CONSUMER_SECRET, REFRESH_TOKEN, sandbox=True)
    assert (auth.client_id, auth.client_secret, auth.refresh_token) == (
        CONSUMER_KEY,
        CONSUMER_SECRET,
        REFRESH_TOKEN,
    )
    request = auth.token_request()
    assert request.url == "https://test.salesforce.com/services/oauth2/token"
    assert dict(request.form) == {
        "grant_type": "refresh_token",
        "client_id": CONSUMER_KEY,
        "client_secret": CONSUMER_SECRET,
        "refresh_token": REFRESH_TOKEN,
    }
    public = RefreshTokenAuthenticator(CONSUMER_KEY, None, REFRESH_TOKEN)
    assert "client_secret" not in public.token_request().form


def test_refresh_token_request_without_a_token() -> None:
    auth = RefreshTokenAuthenticator(CONSUMER_KEY, CONSUMER_SECRET, "")
    with pytest.raises(AuthenticationError, match="no refresh token"):
        auth.token_request()


def test_client_credentials_token_request_in_body_and_basic() -> None:
    login = "https://acme.my.salesforce.com"
    body = ClientCredentialsAuthenticator(CONSUMER_KEY, CONSUMER_SECRET, login_url=login)
    assert body.basic_auth is False
    assert dict(body.token_request().form) == {
        "grant_type": "client_credentials",
        "client_id": CONSUMER_KEY,
        "client_secret": CONSUMER_SECRET,
    }
    basic = ClientCredentialsAuthenticator(
        CONSUMER_KEY, CONSUMER_SECRET, login_url=login, basic_auth=True
    )
    request = basic.token_request()
    assert dict(request.form) == {"grant_type": "client_credentials"}
    assert request.basic_auth == (CONSUMER_KEY, CONSUMER_SECRET)
    assert request.url == login + "/services/oauth2/token"


@pytest.mark.parametrize("host", ["login.salesforce.com", "test.salesforce.com"])
def test_client_credentials_needs_my_domain(host: str) -> None:
    with pytest.raises(InvalidArgumentError, match="My Domain"):
        ClientCredentialsAuthenticator(CONSUMER_KEY, CONSUMER_SECRET, login_url=f"https://{host}")


def test_client_credentials_login_url_is_required() -> None:
    with pytest.raises(TypeError):
        ClientCredentialsAuthenticator(CONSUMER_KEY, CONSUMER_SECRET)  # type: ignore[call-arg]


def test_jwt_assertion_claims_and_signature(keys: Keys) -> None:
    auth = JwtBearerAuthenticator(CONSUMER_KEY, USERNAME, keys.pem)
    now = 1_700_000_000.7
    assertion = auth.make_assertion(now)
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == "RS256"
    claims = jwt.decode(
        assertion,
        keys.public,
        algorithms=["RS256"],
        audience="https://login.salesforce.com",
        options={"verify_exp": False},
    )
    assert claims == {
        "iss": CONSUMER_KEY,
        "sub": USERNAME,
        "aud": "https://login.salesforce.com",
        "exp": 1_700_000_000 + JWT_LIFETIME,
    }
    assert 0 < JWT_LIFETIME <= 180


def test_jwt_token_request_uses_the_current_time(keys: Keys) -> None:
    auth = JwtBearerAuthenticator(CONSUMER_KEY, USERNAME, keys.pem)
    before = time.time()
    request = auth.token_request()
    assert set(request.form) == {"grant_type", "assertion"}
    assert request.grant_type == JWT_BEARER_GRANT_TYPE
    claims = jwt.decode(
        request.form["assertion"],
        keys.public,
        algorithms=["RS256"],
        audience="https://login.salesforce.com",
    )
    assert before + JWT_LIFETIME - 1 <= claims["exp"] <= time.time() + JWT_LIFETIME


@pytest.mark.parametrize(
    ("kwargs", "audience"),
    [
        ({}, "https://login.salesforce.com"),
        ({"sandbox": True}, "https://test.salesforce.com"),
        ({"login_url": "https://acme.my.salesforce.com"}, "https://login.salesforce.com"),
        ({"login_url": "https://test.salesforce.com"}, "https://test.salesforce.com"),
        (
            {"login_url": "https://acme--dev.sandbox.my.salesforce.com"},
            "https://test.salesforce.com",
        ),
        ({"login_url": "http://127.0.0.1:8123/"}, "http://127.0.0.1:8123"),
        ({"audience": "https://acme.my.site.com/customers"}, "https://acme.my.site.com/customers"),
    ],
)
def test_jwt_audience(keys: Keys, kwargs: dict[str, Any], audience: str) -> None:
    auth = JwtBearerAuthenticator(CONSUMER_KEY, USERNAME, keys.pem, **kwargs)
    assert auth.audience == audience


def test_jwt_key_forms(keys: Keys, tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    path.write_bytes(keys.pem)
    for private_key in (keys.pem, keys.pem.decode(), path, str(path)):
        auth = JwtBearerAuthenticator(CONSUMER_KEY, USERNAME, private_key)
        jwt.decode(
            auth.make_assertion(),
            keys.public,
            algorithms=["RS256"],
            audience="https://login.salesforce.com",
        )
    encrypted = JwtBearerAuthenticator(
        CONSUMER_KEY, USERNAME, keys.encrypted_pem, private_key_password=KEY_PASSWORD
    )
    jwt.decode(
        encrypted.make_assertion(),
        keys.public,
        algorithms=["RS256"],
        audience="https://login.salesforce.com",
    )


def test_jwt_key_errors_never_echo_the_key(keys: Keys, tmp_path: Path) -> None:
    body = "".join(keys.secret_lines)
    with pytest.raises(InvalidArgumentError, match=r"neither PEM text .* nor the path") as info:
        JwtBearerAuthenticator(CONSUMER_KEY, USERNAME, body)
    assert not any(line in all_text(info.value) for line in keys.secret_lines)
    with pytest.raises(InvalidArgumentError, match="could not be loaded") as info:
        JwtBearerAuthenticator(
            CONSUMER_KEY, USERNAME, keys.encrypted_pem, private_key_password="WRONG-PASSWORD-7x"
        )
    assert "WRONG-PASSWORD-7x" not in all_text(info.value)
    with pytest.raises(ValueError, match="could not be loaded"):
        JwtBearerAuthenticator(CONSUMER_KEY, USERNAME, b"-----BEGIN PRIVATE KEY-----\nAAAA\n")
    with pytest.raises(FileNotFoundError):
        JwtBearerAuthenticator(CONSUMER_KEY, USERNAME, tmp_path / "missing.key")
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(InvalidArgumentError, match="RSA key"):
        JwtBearerAuthenticator(CONSUMER_KEY, USERNAME, ec_key)


@pytest.mark.parametrize("module", ["jwt", "cryptography"])
def test_jwt_without_the_extra(keys: Keys, monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r"'\.\[jwt\]' in the sfstream checkout"):
        JwtBearerAuthenticator(CONSUMER_KEY, USERNAME, keys.pem)


def test_parse_success_is_pure() -> None:
    auth = password_auth()
    fields = auth.parse_token_response(
        200,
        {
            "access_token": "tok",
            "instance_url": "https://acme.my.salesforce.com",
            "issued_at": ISSUED_AT,
        },
    )
    assert fields["access_token"] == "tok"
    assert auth.access_token is None


@pytest.mark.parametrize(
    ("status", "body", "error", "description", "message"),
    [
        (
            400,
            {"error": "invalid_grant", "error_description": "authentication failure"},
            "invalid_grant",
            "authentication failure",
            r"^Authentication failed \(HTTP 400\): invalid_grant: authentication failure$",
        ),
        (
            400,
            {"error": "invalid_client_id", "error_description": "client identifier invalid"},
            "invalid_client_id",
            "client identifier invalid",
            "invalid_client_id: client identifier invalid",
        ),
        (
            400,
            {"error": "unsupported_grant_type", "error_description": "grant type not supported"},
            "unsupported_grant_type",
            "grant type not supported",
            "unsupported_grant_type",
        ),
        (
            401,
            [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
            "INVALID_SESSION_ID",
            "Session expired or invalid",
            r"HTTP 401\): INVALID_SESSION_ID: Session expired",
        ),
        (503, None, None, None, r"^Authentication failed \(HTTP 503\)$"),
        (400, {"error": 42}, None, None, r"^Authentication failed \(HTTP 400\)$"),
        (
            400,
            {"error": "invalid_grant", "error_description": "x" * 1000},
            "invalid_grant",
            "x" * 1000,
            r"x\.\.\.$",
        ),
    ],
)
def test_parse_refusals(
    status: int, body: Any, error: str | None, description: str | None, message: str
) -> None:
    with pytest.raises(AuthenticationError, match=message) as info:
        password_auth().parse_token_response(status, body)
    assert info.value.error == error
    assert info.value.error_description == description
    assert info.value.status == status
    assert len(str(info.value)) < 400
    # a 5xx is the server failing, not the credentials
    assert isinstance(info.value, AuthenticationTransportError) == (status >= 500)
    assert isinstance(info.value, TransportError) == (status >= 500)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "not a JSON object"),
        (None, "not a JSON object"),
        ({"instance_url": "https://acme.my.salesforce.com"}, "no access_token"),
        ({"access_token": "", "instance_url": "https://a.my.salesforce.com"}, "no access_token"),
        ({"access_token": "tok"}, "no instance_url"),
        ({"access_token": "tok", "instance_url": "http://evil.example.com"}, "plain http"),
    ],
)
def test_parse_unusable_success(body: Any, message: str) -> None:
    with pytest.raises(AuthenticationError, match=message) as info:
        password_auth().parse_token_response(200, body)
    assert info.value.status == 200


def test_token_request_repr_hides_values() -> None:
    request = TokenRequest(
        "https://x.my.salesforce.com/services/oauth2/token",
        {"grant_type": "password", "password": PASSWORD},
        basic_auth=(CONSUMER_KEY, CONSUMER_SECRET),
    )
    text = repr(request)
    assert PASSWORD not in text
    assert CONSUMER_SECRET not in text
    assert "grant_type='password'" in text
    assert "basic_auth=True" in text


def test_base_class_needs_a_flow() -> None:
    with pytest.raises(TypeError, match="token_request"):
        AuthenticatorBase()

    class Incomplete(AuthenticatorBase):
        pass

    with pytest.raises(TypeError, match="Incomplete"):
        Incomplete()


def test_authorization_header_before_authentication() -> None:
    with pytest.raises(ClientInvalidOperation, match="authenticate"):
        password_auth().authorization_header()


# -- the runner against the endpoint ---------------------------------------------------------


async def test_password_flow(endpoint: TokenEndpoint) -> None:
    auth = password_auth(endpoint.login_url)
    await auth.authenticate()
    assert auth.access_token == endpoint.issued[-1]
    assert auth.instance_url == endpoint.base_url
    assert auth.id == IDENTITY_URL
    assert auth.token_type == "Bearer"
    assert auth.issued_at == ISSUED_AT
    assert auth.signature == SIGNATURE
    assert auth.scope == "api refresh_token"
    assert auth.refresh_token is None
    assert auth.extra == {}
    assert auth.authenticated
    assert auth.generation == 1
    assert auth.authorization_header() == f"Bearer {endpoint.issued[-1]}"
    (seen,) = endpoint.seen
    assert seen.content_type == "application/x-www-form-urlencoded"
    assert seen.form["grant_type"] == "password"
    assert seen.authorization is None


@pytest.mark.parametrize(
    ("kwargs", "error", "description"),
    [
        ({"password": "wrong"}, "invalid_grant", "authentication failure"),
        ({"consumer_key": "unknown"}, "invalid_client_id", "client identifier invalid"),
        ({"consumer_secret": "wrong"}, "invalid_client", "invalid client credentials"),
    ],
)
async def test_password_flow_refused(
    endpoint: TokenEndpoint, kwargs: dict[str, str], error: str, description: str
) -> None:
    values = {
        "consumer_key": CONSUMER_KEY,
        "consumer_secret": CONSUMER_SECRET,
        "username": USERNAME,
        "password": PASSWORD,
    }
    values.update(kwargs)
    auth = PasswordAuthenticator(
        values["consumer_key"],
        values["consumer_secret"],
        values["username"],
        values["password"],
        login_url=endpoint.login_url,
    )
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate()
    assert (info.value.error, info.value.error_description, info.value.status) == (
        error,
        description,
        400,
    )
    assert str(info.value) == f"Authentication failed (HTTP 400): {error}: {description}"
    assert not auth.authenticated
    assert auth.generation == 0


async def test_failure_keeps_the_last_token(endpoint: TokenEndpoint) -> None:
    auth = password_auth(endpoint.login_url)
    await auth.authenticate()
    token = auth.access_token
    auth.password = "changed"
    with pytest.raises(AuthenticationError):
        await auth.authenticate()
    assert auth.access_token == token
    assert auth.generation == 1


async def test_unsupported_grant_type(endpoint: TokenEndpoint) -> None:
    status, body = await send_token_request(
        TokenRequest(endpoint.token_url, {"grant_type": "authorization_code"})
    )
    assert status == 400
    with pytest.raises(AuthenticationError, match="unsupported_grant_type") as info:
        password_auth().parse_token_response(status, body)
    assert info.value.error_description == "grant type not supported"


async def test_refresh_token_flow_without_rotation(endpoint: TokenEndpoint) -> None:
    auth = RefreshTokenAuthenticator(
        CONSUMER_KEY, CONSUMER_SECRET, REFRESH_TOKEN, login_url=endpoint.login_url
    )
    await auth.authenticate()
    await auth.authenticate()
    assert auth.refresh_token == REFRESH_TOKEN
    assert [seen.form["refresh_token"] for seen in endpoint.seen] == [REFRESH_TOKEN] * 2
    assert auth.generation == 2


async def test_refresh_token_rotation(endpoint: TokenEndpoint) -> None:
    endpoint.rotate = True
    auth = RefreshTokenAuthenticator(
        CONSUMER_KEY, CONSUMER_SECRET, REFRESH_TOKEN, login_url=endpoint.login_url
    )
    await auth.authenticate()
    first_rotation = auth.refresh_token
    assert first_rotation is not None
    assert first_rotation.startswith("REFRESH-TOKEN-ROTATED-")
    assert first_rotation not in auth.extra.values()
    await auth.authenticate()  # with the rotated token: the old one is no longer valid
    assert auth.refresh_token != first_rotation
    assert [seen.form["refresh_token"] for seen in endpoint.seen] == [
        REFRESH_TOKEN,
        first_rotation,
    ]
    stale = RefreshTokenAuthenticator(
        CONSUMER_KEY, CONSUMER_SECRET, REFRESH_TOKEN, login_url=endpoint.login_url
    )
    with pytest.raises(AuthenticationError, match="expired access/refresh token"):
        await stale.authenticate()


async def test_refresh_token_without_secret(endpoint: TokenEndpoint) -> None:
    auth = RefreshTokenAuthenticator(
        CONSUMER_KEY, None, REFRESH_TOKEN, login_url=endpoint.login_url
    )
    await auth.authenticate()
    assert "client_secret" not in endpoint.seen[0].form


async def test_jwt_bearer_flow(endpoint: TokenEndpoint, keys: Keys) -> None:
    auth = JwtBearerAuthenticator(CONSUMER_KEY, USERNAME, keys.pem, login_url=endpoint.login_url)
    assert auth.audience == endpoint.base_url
    await auth.authenticate()
    assert auth.access_token == endpoint.issued[-1]
    assert endpoint.seen[0].form["grant_type"] == JWT_BEARER_GRANT_TYPE


async def test_jwt_bearer_refusals(endpoint: TokenEndpoint, keys: Keys) -> None:
    wrong_audience = JwtBearerAuthenticator(
        CONSUMER_KEY,
        USERNAME,
        keys.pem,
        login_url=endpoint.login_url,
        audience="https://login.salesforce.com",
    )
    with pytest.raises(AuthenticationError, match="audience is invalid"):
        await wrong_audience.authenticate()
    other_user = JwtBearerAuthenticator(
        CONSUMER_KEY, "someone@example.com", keys.pem, login_url=endpoint.login_url
    )
    with pytest.raises(AuthenticationError, match="hasn't approved"):
        await other_user.authenticate()
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    forged = JwtBearerAuthenticator(CONSUMER_KEY, USERNAME, other_key, login_url=endpoint.login_url)
    with pytest.raises(AuthenticationError, match="invalid assertion"):
        await forged.authenticate()


@pytest.mark.parametrize("basic_auth", [False, True])
async def test_client_credentials_flow(endpoint: TokenEndpoint, basic_auth: bool) -> None:
    auth = ClientCredentialsAuthenticator(
        CONSUMER_KEY, CONSUMER_SECRET, login_url=endpoint.login_url, basic_auth=basic_auth
    )
    await auth.authenticate()
    assert auth.access_token == endpoint.issued[-1]
    (seen,) = endpoint.seen
    if basic_auth:
        assert seen.form == {"grant_type": "client_credentials"}
        assert seen.authorization is not None
        assert seen.authorization.startswith("Basic ")
    else:
        assert seen.form["client_secret"] == CONSUMER_SECRET
        assert seen.authorization is None


async def test_client_credentials_refused(endpoint: TokenEndpoint) -> None:
    auth = ClientCredentialsAuthenticator(
        CONSUMER_KEY, "wrong", login_url=endpoint.login_url, basic_auth=True
    )
    with pytest.raises(AuthenticationError, match="invalid_client"):
        await auth.authenticate()


async def test_server_error_with_html(endpoint: TokenEndpoint) -> None:
    endpoint.mode = "html500"
    with pytest.raises(AuthenticationError, match=r"^Network request failed") as info:
        await password_auth(endpoint.login_url).authenticate()
    assert info.value.status == 500
    assert "HTTP 500" in str(info.value)
    assert "text/html" in str(info.value)
    assert isinstance(info.value, AuthenticationTransportError)
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.__context__ is None


async def test_empty_success_body(endpoint: TokenEndpoint) -> None:
    endpoint.mode = "empty"
    with pytest.raises(AuthenticationError, match="not a JSON object"):
        await password_auth(endpoint.login_url).authenticate()


async def test_redirects_are_not_followed(endpoint: TokenEndpoint) -> None:
    endpoint.mode = "redirect"
    with pytest.raises(AuthenticationError, match=r"HTTP 307") as info:
        await password_auth(endpoint.login_url).authenticate()
    assert info.value.status == 307
    assert not isinstance(info.value, TransportError)
    assert len(endpoint.seen) == 1


async def test_oversized_reply(endpoint: TokenEndpoint) -> None:
    endpoint.mode = "huge"
    with pytest.raises(AuthenticationTransportError, match="exceeds"):
        await password_auth(endpoint.login_url).authenticate()


async def test_timeout(endpoint: TokenEndpoint) -> None:
    endpoint.mode = "slow"
    auth = password_auth(endpoint.login_url, request_timeout=0.2)
    with pytest.raises(AuthenticationError, match=r"^Network request failed") as info:
        await auth.authenticate()
    assert isinstance(info.value, AuthenticationTransportError)
    assert isinstance(info.value.__cause__, TimeoutError)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused(closed_port: int) -> None:
    auth = password_auth(f"http://127.0.0.1:{closed_port}")
    with pytest.raises(AuthenticationError, match=r"^Network request failed") as info:
        await auth.authenticate()
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectionError)
    assert info.value.status is None
    assert str(closed_port) in str(info.value)
    # "network down" is told from "bad password" by its type
    assert isinstance(info.value, AuthenticationTransportError)
    assert isinstance(info.value, TransportError)
    assert info.value.__context__ is None


async def test_users_session_is_used_and_left_open(endpoint: TokenEndpoint) -> None:
    async with aiohttp.ClientSession(headers={"X-Proxy-Tag": "mine"}) as session:
        auth = password_auth(endpoint.login_url, session=session)
        await auth.authenticate()
        assert not session.closed
        await auth.authenticate()
    assert len(endpoint.seen) == 2


async def test_custom_json_loads(endpoint: TokenEndpoint) -> None:
    calls: list[str] = []

    def loads(text: str) -> Any:
        calls.append(text)
        return orjson.loads(text)

    auth = PasswordAuthenticator(
        CONSUMER_KEY,
        CONSUMER_SECRET,
        USERNAME,
        PASSWORD,
        False,
        orjson_dumps,
        loads,
        login_url=endpoint.login_url,
    )
    await auth.authenticate()
    assert len(calls) == 1
    assert auth.json_dumps is orjson_dumps


def orjson_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def test_single_flight(endpoint: TokenEndpoint) -> None:
    endpoint.hold = asyncio.Event()
    auth = password_auth(endpoint.login_url)
    first = asyncio.create_task(auth.authenticate())
    second = asyncio.create_task(auth.authenticate())
    await endpoint.received.wait()
    endpoint.hold.set()
    await asyncio.gather(first, second)
    assert len(endpoint.seen) == 1
    assert auth.generation == 1
    await auth.authenticate()  # a later call is a new request
    assert len(endpoint.seen) == 2


async def test_single_flight_shares_the_failure(endpoint: TokenEndpoint) -> None:
    endpoint.hold = asyncio.Event()
    auth = PasswordAuthenticator(
        CONSUMER_KEY, CONSUMER_SECRET, USERNAME, "wrong", login_url=endpoint.login_url
    )
    tasks = [asyncio.create_task(auth.authenticate()) for _ in range(3)]
    await endpoint.received.wait()
    endpoint.hold.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert len(endpoint.seen) == 1
    assert all(isinstance(result, AuthenticationError) for result in results)
    shared = [result for result in results if isinstance(result, AuthenticationError)]
    assert {(error.error, error.status) for error in shared} == {("invalid_grant", 400)}


async def test_single_flight_shares_a_network_failure_as_one(endpoint: TokenEndpoint) -> None:
    endpoint.hold = asyncio.Event()
    endpoint.mode = "html500"
    auth = password_auth(endpoint.login_url)
    tasks = [asyncio.create_task(auth.authenticate()) for _ in range(3)]
    await endpoint.received.wait()
    endpoint.hold.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert len(endpoint.seen) == 1
    assert all(isinstance(result, AuthenticationTransportError) for result in results), results


async def test_single_flight_after_a_cancelled_request(endpoint: TokenEndpoint) -> None:
    endpoint.hold = asyncio.Event()
    auth = password_auth(endpoint.login_url)
    first = asyncio.create_task(auth.authenticate())
    second = asyncio.create_task(auth.authenticate())
    await endpoint.received.wait()
    first.cancel()
    await asyncio.sleep(0.05)
    endpoint.hold.set()
    await second  # the waiter made its own request instead of trusting a cancelled one
    assert first.cancelled()
    assert len(endpoint.seen) == 2
    assert auth.authenticated


# -- aiosfstream's _authenticate hook --------------------------------------------------------


class CustomAuthenticator(AuthenticatorBase):
    """An aiosfstream-style authenticator that overrides only ``_authenticate``."""

    def __init__(self, result: tuple[int, Any] | BaseException) -> None:
        super().__init__()
        self.result = result
        self.calls = 0

    async def _authenticate(self) -> tuple[int, Any]:
        self.calls += 1
        await asyncio.sleep(0)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


async def test_custom_authenticate_override() -> None:
    auth = CustomAuthenticator(
        (
            200,
            {
                "access_token": "custom-token",
                "instance_url": "https://acme.my.salesforce.com",
                "token_type": None,
                "issued_at": 1278448832702,
                "sfdc_community_url": "https://acme.my.site.com",
                "scope": ["api"],
                "refresh_token": "issued-with-the-token",
            },
        )
    )
    await auth.authenticate()
    assert auth.access_token == "custom-token"
    assert auth.issued_at == "1278448832702"
    assert auth.token_type is None
    assert auth.authorization_header() == "Bearer custom-token"
    assert auth.extra == {"sfdc_community_url": "https://acme.my.site.com"}
    assert auth.scope is None  # not a string: not kept
    assert auth.refresh_token == "issued-with-the-token"
    with pytest.raises(NotImplementedError):
        auth.token_request()


async def test_custom_authenticate_refused() -> None:
    auth = CustomAuthenticator((401, {"error": "invalid_grant", "error_description": "nope"}))
    with pytest.raises(AuthenticationError, match="nope") as info:
        await auth.authenticate()
    assert info.value.status == 401


@pytest.mark.parametrize(
    "error",
    [aiohttp.ClientConnectionError("down"), ValueError("bad json"), TimeoutError(), OSError()],
)
async def test_custom_authenticate_network_errors(error: BaseException) -> None:
    auth = CustomAuthenticator(error)
    with pytest.raises(AuthenticationTransportError, match=r"^Network request failed") as info:
        await auth.authenticate()
    assert info.value.__cause__ is error
    assert info.value.__context__ is None


async def test_a_cause_holding_the_request_headers_is_scrubbed() -> None:
    """An aiohttp error carrying request_info (with the headers) is not chained as is."""
    headers = CIMultiDictProxy(CIMultiDict({"Authorization": f"Basic {PASSWORD}"}))
    info_ = aiohttp.RequestInfo(URL("https://acme.my.salesforce.com"), "POST", headers)
    error = aiohttp.ClientResponseError(info_, (), status=400, message="Bad status line")
    assert PASSWORD in repr(error)
    auth = CustomAuthenticator(error)
    with pytest.raises(AuthenticationTransportError, match="ClientResponseError") as info:
        await auth.authenticate()
    assert PASSWORD not in all_text(info.value)
    assert isinstance(info.value.__cause__, ConnectionError)
    assert "400, Bad status line" in str(info.value.__cause__)


def test_authenticator_built_before_the_loop() -> None:
    auth = CustomAuthenticator(
        (200, {"access_token": "t", "instance_url": "https://acme.my.salesforce.com"})
    )

    async def twice() -> None:
        await asyncio.gather(auth.authenticate(), auth.authenticate())

    asyncio.run(twice())
    asyncio.run(twice())  # a second loop gets its own lock
    assert auth.calls == 2


# -- AccessTokenAuthenticator ----------------------------------------------------------------


async def test_access_token_authenticator() -> None:
    auth = AccessTokenAuthenticator(GIVEN_ACCESS_TOKEN, "https://acme.my.salesforce.com")
    assert not auth.can_refresh
    assert auth.authorization_header() == f"Bearer {GIVEN_ACCESS_TOKEN}"
    await auth.authenticate()
    assert auth.access_token == GIVEN_ACCESS_TOKEN
    assert auth.instance_url == "https://acme.my.salesforce.com"
    oauth = AccessTokenAuthenticator(
        GIVEN_ACCESS_TOKEN, "http://127.0.0.1:8000", token_type="OAuth"
    )
    assert oauth.authorization_header() == f"OAuth {GIVEN_ACCESS_TOKEN}"
    with pytest.raises(InvalidArgumentError, match="empty"):
        AccessTokenAuthenticator("", "https://acme.my.salesforce.com")


# -- secrets ---------------------------------------------------------------------------------


async def test_no_secret_in_reprs_logs_or_errors(
    endpoint: TokenEndpoint, keys: Keys, caplog: pytest.LogCaptureFixture, closed_port: int
) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint.rotate = True
    login = endpoint.login_url
    authenticators: list[AuthenticatorBase] = [
        password_auth(login),
        RefreshTokenAuthenticator(CONSUMER_KEY, CONSUMER_SECRET, REFRESH_TOKEN, login_url=login),
        JwtBearerAuthenticator(
            CONSUMER_KEY,
            USERNAME,
            keys.encrypted_pem,
            private_key_password=KEY_PASSWORD,
            login_url=login,
        ),
        ClientCredentialsAuthenticator(CONSUMER_KEY, CONSUMER_SECRET, login_url=login),
        ClientCredentialsAuthenticator(
            CONSUMER_KEY, CONSUMER_SECRET, login_url=login, basic_auth=True
        ),
        AccessTokenAuthenticator(GIVEN_ACCESS_TOKEN, endpoint.base_url),
    ]
    texts: list[str] = []
    assertions: list[str] = []
    for auth in authenticators:
        texts += [repr(auth), str(auth)]
        if not isinstance(auth, AccessTokenAuthenticator):
            request = auth.token_request()
            texts.append(repr(request))
            assertions += [v for k, v in request.form.items() if k == "assertion"]
        await auth.authenticate()
        texts += [repr(auth), str(auth)]
        assert "access_token=<set>" in repr(auth)
    # Refusals and network failures.
    failing: list[AuthenticatorBase] = [
        PasswordAuthenticator(
            CONSUMER_KEY, CONSUMER_SECRET, USERNAME, PASSWORD + "x", login_url=login
        ),
        RefreshTokenAuthenticator(CONSUMER_KEY, CONSUMER_SECRET, REFRESH_TOKEN, login_url=login),
        password_auth(f"http://127.0.0.1:{closed_port}"),
        JwtBearerAuthenticator(
            CONSUMER_KEY, USERNAME, keys.pem, login_url=f"http://127.0.0.1:{closed_port}"
        ),
    ]
    for auth in failing:
        with pytest.raises(AuthenticationError) as info:
            await auth.authenticate()
        texts += [all_text(info.value), repr(auth)]
    endpoint.mode = "html500"
    with pytest.raises(AuthenticationError) as info:
        await password_auth(login).authenticate()
    texts.append(all_text(info.value))
    texts.append(caplog.text)
    texts += [record.getMessage() for record in caplog.records]
    everything = "\n".join(texts)
    secrets = [
        PASSWORD,
        CONSUMER_SECRET,
        REFRESH_TOKEN,
        GIVEN_ACCESS_TOKEN,
        KEY_PASSWORD,
        *endpoint.issued,
        *keys.secret_lines,
        *assertions,
    ]
    assert len(assertions) == 1
    assert len(endpoint.issued) >= 6
    leaked = [secret for secret in secrets if secret in everything]
    assert leaked == []
    assert "requesting a token from" in caplog.text
    assert "rotated the refresh token" in caplog.text
    assert USERNAME in repr(authenticators[0])
