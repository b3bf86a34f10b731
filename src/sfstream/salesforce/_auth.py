"""Authenticators: get an OAuth 2.0 access token from Salesforce for the streaming client.

Each token flow is two pure steps and nothing else: :meth:`AuthenticatorBase.token_request`
builds a :class:`TokenRequest` (token URL, form fields, HTTP Basic credentials or not) and
:meth:`AuthenticatorBase.parse_token_response` turns the endpoint's ``(status, JSON body)`` into
the token fields or an :class:`~sfstream.exceptions.AuthenticationError`. One runner,
:func:`send_token_request`, does the HTTP: a form-encoded POST over aiohttp with a short explicit
timeout, no redirects, and a bounded JSON body. :meth:`AuthenticatorBase.authenticate` ties them
together behind a single-flight lock, so concurrent 401s cause one token request.

How a client uses an authenticator:

1. ``await auth.authenticate()`` before the handshake; then ``auth.instance_url`` gives the
   CometD host and :meth:`~AuthenticatorBase.authorization_header` the ``Authorization`` value
   for every CometD request (read it for each request: it changes after re-authentication).
2. When the server says the token is no longer valid (``401::Authentication invalid``,
   ``403::Handshake denied`` with a 401 ``failureReason``, a REST 401), and only then: if
   :attr:`~AuthenticatorBase.can_refresh` is False, raise
   :class:`~sfstream.exceptions.AuthenticationError`; otherwise remember
   :attr:`~AuthenticatorBase.generation` from before the refused request, and call
   ``authenticate()`` again unless the generation has changed meanwhile (another task already
   got a new token), then handshake again. A second refusal of a fresh token is an
   AuthenticationError.

Migrated aiosfstream authenticators that override ``async _authenticate() -> (status, body)``
keep working: :meth:`~AuthenticatorBase.authenticate` calls that hook, whose default
implementation is ``send_token_request(self.token_request(), ...)``.

No secret (password, client secret, access or refresh token, private key, JWT assertion) ever
appears in a repr, a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import os
import ssl as ssl_module
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import aiohttp
from yarl import URL

from sfstream._http import describe, read_limited, safe_cause
from sfstream.bayeux._codec import check_json
from sfstream.exceptions import (
    AuthenticationError,
    AuthenticationTransportError,
    ClientInvalidOperation,
    InvalidArgumentError,
    TransportError,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

__all__ = [
    "DEFAULT_TOKEN_TIMEOUT",
    "JWT_BEARER_GRANT_TYPE",
    "JWT_LIFETIME",
    "MAX_TOKEN_RESPONSE_SIZE",
    "PRODUCTION_LOGIN_URL",
    "SANDBOX_LOGIN_URL",
    "TOKEN_PATH",
    "AccessTokenAuthenticator",
    "AuthenticatorBase",
    "ClientCredentialsAuthenticator",
    "JsonDumper",
    "JsonLoader",
    "JwtBearerAuthenticator",
    "PasswordAuthenticator",
    "RefreshTokenAuthenticator",
    "TokenRequest",
    "check_url",
    "send_token_request",
]

logger = logging.getLogger(__name__)

#: Where production orgs log in (``sandbox=False`` and no ``login_url``).
PRODUCTION_LOGIN_URL: Final = "https://login.salesforce.com"
#: Where sandbox orgs log in (``sandbox=True`` and no ``login_url``).
SANDBOX_LOGIN_URL: Final = "https://test.salesforce.com"
#: The OAuth 2.0 token endpoint's path on a login host.
TOKEN_PATH: Final = "/services/oauth2/token"  # noqa: S105 (a path, not a password)
#: Seconds a token request may take, connection included.
DEFAULT_TOKEN_TIMEOUT: Final = 30.0
#: Bytes of a token endpoint reply that are read at most (a token reply is well under 4 KiB).
MAX_TOKEN_RESPONSE_SIZE: Final = 1024 * 1024
#: ``grant_type`` of the JWT bearer flow.
JWT_BEARER_GRANT_TYPE: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Seconds a JWT assertion is valid; Salesforce accepts at most three minutes.
JWT_LIFETIME: Final = 150

#: Serialises a JSON value (``json.dumps``, ``ujson.dumps``, ``orjson.dumps``).
JsonDumper = Callable[[Any], str | bytes]
#: Parses JSON text (``json.loads``, ``orjson.loads``, ``ujson.loads``).
JsonLoader = Callable[[str], Any]

_LOGIN_HOSTS: Final = frozenset({"login.salesforce.com", "test.salesforce.com"})
_SANDBOX_HOST_SUFFIX: Final = ".sandbox.my.salesforce.com"
#: Token reply fields kept as attributes; anything else goes to ``extra``.
_TOKEN_FIELDS: Final = frozenset(
    {
        "access_token",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
        "signature",
        "scope",
        "refresh_token",
    }
)
_MAX_DESCRIPTION: Final = 300


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str) -> URL:
    """Parse ``url`` and refuse what could leak credentials.

    ``https://`` is required; plain ``http://`` is accepted only for loopback hosts
    (``127.0.0.0/8``, ``::1``, ``localhost``), where the emulator runs. A URL carrying a user
    name or password is refused without echoing it.

    Args:
        url: the URL to check.
        what: the name of the URL in error messages (``"login_url"``, ``"instance_url"``).

    Raises:
        InvalidArgumentError: the URL is not acceptable; the message says why (a ValueError).
    """
    parsed = URL(url)
    if parsed.user is not None or parsed.password is not None:
        raise InvalidArgumentError(f"{what} must not contain a user name or password")
    host = parsed.host
    if not host or parsed.scheme not in ("https", "http"):
        raise InvalidArgumentError(f"{what} must be an absolute https:// URL, got {url!r}")
    if parsed.scheme == "http" and not _is_loopback(host):
        raise InvalidArgumentError(
            f"{what} {url!r} uses plain http: credentials and tokens are only sent over https "
            f"(http is accepted for loopback hosts only, such as an emulator on 127.0.0.1)"
        )
    return parsed


def _token_url(login_url: URL) -> URL:
    """The token endpoint of a login URL; a URL already ending in the token path is kept."""
    url = login_url.with_query(None).with_fragment(None)
    path = url.path.rstrip("/")
    if path.endswith(TOKEN_PATH):
        return url.with_path(path)
    return url.with_path(path + TOKEN_PATH)


@dataclass(frozen=True, slots=True, repr=False)
class TokenRequest:
    """One POST to a token endpoint, as a value: what a flow wants sent, with no IO.

    Attributes:
        url: the token endpoint.
        form: the form fields, sent ``application/x-www-form-urlencoded``.
        basic_auth: ``(client_id, client_secret)`` to send as HTTP Basic credentials, or None.
    """

    url: str
    form: Mapping[str, str]
    basic_auth: tuple[str, str] | None = None

    @property
    def grant_type(self) -> str | None:
        """The ``grant_type`` form field."""
        return self.form.get("grant_type")

    def __repr__(self) -> str:
        # Field names only: the values are credentials.
        return (
            f"TokenRequest(url={self.url!r}, grant_type={self.grant_type!r}, "
            f"fields={sorted(self.form)!r}, basic_auth={self.basic_auth is not None})"
        )


async def _read_token_reply(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The decoded body, at most ``limit`` bytes of it (a compressed reply included)."""

    def too_large(_declared: int | None) -> AuthenticationTransportError:
        return AuthenticationTransportError(
            f"Network request failed: the token endpoint's reply exceeds {limit} bytes",
            status=response.status,
        )

    return await read_limited(response, limit, too_large)


async def _post(
    session: aiohttp.ClientSession,
    request: TokenRequest,
    *,
    request_timeout: float,
    ssl: ssl_module.SSLContext | bool,
    json_loads: JsonLoader,
    max_size: int,
) -> tuple[int, Any]:
    headers = {"Accept": "application/json"}
    if request.basic_auth is not None:
        credentials = ":".join(request.basic_auth).encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
    async with session.post(
        request.url,
        data=dict(request.form),
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=request_timeout),
        ssl=ssl,
        # A redirected POST could carry the credentials to another host.
        allow_redirects=False,
    ) as response:
        raw = await _read_token_reply(response, max_size)
        status = response.status
        content_type = response.content_type
        charset = response.charset or "utf-8"
    if not raw.strip():
        return status, None
    try:
        body = json_loads(raw.decode(charset))
    except (ValueError, TypeError, LookupError) as exc:
        # The parser's error may quote the body (which may hold a token): chain a stand-in,
        # raised out of the except block so the original is not the __context__ either.
        error: AuthenticationError
        if 300 <= status < 500:
            # a redirect or a refusal (a wrong login URL, a proxy): not the network's fault
            error = AuthenticationError(
                f"Authentication failed (HTTP {status}): the token endpoint answered with a "
                f"body that is not JSON ({content_type})",
                status=status,
            )
        else:
            error = AuthenticationTransportError(
                f"Network request failed: the token endpoint answered HTTP {status} with a "
                f"body that is not JSON ({content_type})",
                status=status,
            )
        error.__cause__ = ValueError(f"{type(exc).__name__}: the body is not JSON")
    else:
        return status, body
    raise error


async def send_token_request(
    request: TokenRequest,
    *,
    session: aiohttp.ClientSession | None = None,
    request_timeout: float = DEFAULT_TOKEN_TIMEOUT,
    ssl: ssl_module.SSLContext | bool = True,
    json_loads: JsonLoader = json.loads,
    max_size: int = MAX_TOKEN_RESPONSE_SIZE,
) -> tuple[int, Any]:
    """POST ``request`` to its token endpoint; the runner every built-in flow goes through.

    Args:
        request: what to send.
        session: the aiohttp session to use (never closed here); None opens a short-lived
            one for this request.
        request_timeout: seconds for the whole request, connection included.
        ssl: an SSL context, or True for default verification (False disables it).
        json_loads: parses the reply body.
        max_size: bytes of the reply read at most.

    Returns:
        The HTTP status and the decoded JSON body (None for an empty body). Redirects are not
        followed: a 3xx status is returned as is.

    Raises:
        AuthenticationTransportError: the request failed (connection, TLS, timeout, malformed
            HTTP; the cause is chained, scrubbed of the request headers), the body is too
            large (decoded bytes count: a compressed reply is inflated only as far as
            ``max_size``), or is not JSON with a 2xx or 5xx status.
        AuthenticationError: the body is not JSON with a 3xx or 4xx status.
    """
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("requesting a token from %s (grant_type=%s)", request.url, request.grant_type)
    kwargs: dict[str, Any] = {
        "request_timeout": request_timeout,
        "ssl": ssl,
        "json_loads": json_loads,
        "max_size": max_size,
    }
    try:
        if session is not None:
            return await _post(session, request, **kwargs)
        async with aiohttp.ClientSession() as own_session:
            return await _post(own_session, request, **kwargs)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        error = _network_failure(request.url, exc)
    # Raised out of the except block: aiohttp's error (whose repr holds the request
    # headers, HTTP Basic credentials included) must not become the __context__.
    raise error


def _network_failure(token_url: str, exc: BaseException) -> AuthenticationTransportError:
    """Our error for a token request that failed, chained to a scrubbed cause."""
    error = AuthenticationTransportError(
        f"Network request failed: no token from {token_url} ({describe(exc)})"
    )
    error.__cause__ = safe_cause(exc)
    return error


def _error_fields(body: Any) -> tuple[str | None, str | None]:
    """Salesforce's ``error`` / ``error_description`` (or a REST error's code and message)."""
    if isinstance(body, list) and body and isinstance(body[0], Mapping):
        body = {"error": body[0].get("errorCode"), "error_description": body[0].get("message")}
    if not isinstance(body, Mapping):
        return None, None
    error = body.get("error")
    description = body.get("error_description")
    return (
        error if isinstance(error, str) else None,
        description if isinstance(description, str) else None,
    )


def _require_text(**values: Any) -> None:
    """Refuse missing credentials at the call site, without echoing any value."""
    for name, value in values.items():
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, not {type(value).__name__}")
        if not value:
            raise InvalidArgumentError(f"{name} must not be empty")


def _optional_str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


class AuthenticatorBase:
    """Base class of authenticators: runs a token flow and keeps its result.

    A subclass implements :meth:`token_request` (the pure step that builds the POST), or, as
    in aiosfstream, overrides ``async _authenticate() -> (status, body)``. The class cannot be
    instantiated without one of them.

    After a successful :meth:`authenticate` the token reply's fields are attributes:
    ``access_token``, ``instance_url``, ``id`` (the identity URL), ``token_type``,
    ``issued_at`` (milliseconds since the epoch, as a string), ``signature``, ``scope`` and
    ``refresh_token`` (when the reply has them; other fields are in ``extra``). Before, they
    are None. A failed authentication leaves the attributes of the last success untouched.

    Args:
        sandbox: log in to a sandbox (``https://test.salesforce.com``) instead of production
            (``https://login.salesforce.com``).
        json_dumps: serialises JSON (kept for aiosfstream compatibility; token requests are
            form-encoded).
        json_loads: parses the token endpoint's JSON replies.
        login_url: the login host to use instead: your My Domain
            (``https://acme.my.salesforce.com``) or an emulator's URL. ``sandbox`` then only
            chooses the JWT audience. A URL ending in ``/services/oauth2/token`` is used as is.
        session: an aiohttp session for the token requests (proxy, ``trust_env``, SSL
            settings); it is never closed by the authenticator. None opens a short-lived
            session per token request. The attribute may be set later, e.g. by a client that
            was given a session, as long as the session outlives its use here.
        ssl: an SSL context for the token requests, or True for default verification.
        request_timeout: seconds a token request may take.

    Raises:
        InvalidArgumentError: ``login_url`` is not https (or http on a loopback host).
        TypeError: the class implements neither ``token_request()`` nor ``_authenticate()``.
    """

    #: Marks whether the authentication is done for a sandbox org.
    sandbox: bool
    #: JSON serialiser.
    json_dumps: JsonDumper
    #: JSON parser for token replies.
    json_loads: JsonLoader
    #: The login URL (production, sandbox, My Domain or an emulator).
    login_url: str
    #: The token endpoint the flow posts to.
    token_url: str
    #: aiohttp session used for token requests, or None for a short-lived one per request.
    session: aiohttp.ClientSession | None
    #: SSL context (or True/False) for token requests.
    ssl: ssl_module.SSLContext | bool
    #: Seconds a token request may take.
    request_timeout: float

    #: OAuth access token (a secret).
    access_token: str | None
    #: The org's instance URL, e.g. ``https://acme.my.salesforce.com``.
    instance_url: str | None
    #: Identity URL of the user (``https://login.salesforce.com/id/<org>/<user>``).
    id: str | None
    #: Token type; Salesforce sends ``Bearer``.
    token_type: str | None
    #: When the token was issued, milliseconds since the epoch as a string.
    issued_at: str | None
    #: Salesforce's HMAC signature of ``id`` and ``issued_at``.
    signature: str | None
    #: Scopes granted to the token.
    scope: str | None
    #: Refresh token (a secret): the credential of :class:`RefreshTokenAuthenticator`, or one
    #: a token reply carried.
    refresh_token: str | None
    #: Token reply fields without an attribute of their own (e.g. ``sfdc_community_url``).
    extra: dict[str, Any]

    def __init__(
        self,
        sandbox: bool = False,
        json_dumps: JsonDumper = json.dumps,
        json_loads: JsonLoader = json.loads,
        *,
        login_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        ssl: ssl_module.SSLContext | bool = True,
        request_timeout: float = DEFAULT_TOKEN_TIMEOUT,
    ) -> None:
        cls = type(self)
        if (
            cls.token_request is AuthenticatorBase.token_request
            and cls._authenticate is AuthenticatorBase._authenticate
        ):
            raise TypeError(
                f"Can't instantiate {cls.__name__}: an authenticator implements "
                f"token_request() or overrides _authenticate()"
            )
        check_json(json_dumps, json_loads)  # (json_loads=None failed at login, as "not JSON")
        self.sandbox = sandbox
        self.json_dumps = json_dumps
        self.json_loads = json_loads
        if login_url is None:
            login = URL(SANDBOX_LOGIN_URL if sandbox else PRODUCTION_LOGIN_URL)
        else:
            login = check_url(login_url, "login_url")
        self.login_url = str(login)
        self.token_url = str(_token_url(login))
        self.session = session
        self.ssl = ssl
        self.request_timeout = request_timeout
        self.access_token = None
        self.instance_url = None
        self.id = None
        self.token_type = None
        self.issued_at = None
        self.signature = None
        self.scope = None
        self.refresh_token = None
        self.extra = {}
        self._generation = 0
        self._attempts = 0
        self._last_error: AuthenticationError | None = None
        # Created on first use inside a running loop, never in __init__.
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    # -- what a client reads ----------------------------------------------------------------

    @property
    def can_refresh(self) -> bool:
        """True if :meth:`authenticate` can get a new token after the current one is refused.

        False for :class:`AccessTokenAuthenticator`: a client then raises
        :class:`~sfstream.exceptions.AuthenticationError` on a 401 instead of retrying.
        """
        return True

    @property
    def authenticated(self) -> bool:
        """True once an access token is held."""
        return self.access_token is not None

    @property
    def generation(self) -> int:
        """How many times a token was obtained; compare before and after a refused request."""
        return self._generation

    def authorization_header(self) -> str:
        """The ``Authorization`` header value for CometD and REST requests.

        ``"{token_type} {access_token}"``, the token type defaulting to ``Bearer``.

        Raises:
            ClientInvalidOperation: no token yet; call :meth:`authenticate` first.
        """
        if not self.access_token:
            raise ClientInvalidOperation("no access token yet: call authenticate() first")
        return f"{self.token_type or 'Bearer'} {self.access_token}"

    # -- the pure steps ---------------------------------------------------------------------

    def token_request(self) -> TokenRequest:
        """Build the token request of this flow (pure: no IO).

        Raises:
            NotImplementedError: the subclass overrides ``_authenticate()`` instead.
        """
        raise NotImplementedError(f"{type(self).__name__} overrides _authenticate() instead")

    def parse_token_response(self, status: int, body: Any) -> dict[str, Any]:
        """Check a token endpoint reply and return its fields (pure: no IO, no state change).

        Args:
            status: the HTTP status.
            body: the decoded JSON body (None if it was empty).

        Returns:
            The reply's fields; ``access_token`` and ``instance_url`` are present and valid.

        Raises:
            AuthenticationError: the endpoint refused (``error``, ``error_description`` and
                ``status`` carry Salesforce's answer) or the reply is unusable.
            AuthenticationTransportError: the endpoint failed (HTTP 5xx).
        """
        if status != 200:
            error, description = _error_fields(body)
            detail = ": ".join(part for part in (error, description) if part)
            if len(detail) > _MAX_DESCRIPTION:
                detail = detail[:_MAX_DESCRIPTION] + "..."
            kind = AuthenticationTransportError if status >= 500 else AuthenticationError
            raise kind(
                f"Authentication failed (HTTP {status})" + (f": {detail}" if detail else ""),
                error=error,
                error_description=description,
                status=status,
            )
        if not isinstance(body, Mapping):
            raise AuthenticationError(
                "Authentication failed: the token reply is not a JSON object", status=status
            )
        for name in ("access_token", "instance_url"):
            value = body.get(name)
            if not isinstance(value, str) or not value:
                raise AuthenticationError(
                    f"Authentication failed: the token reply has no {name}", status=status
                )
        try:
            check_url(body["instance_url"], "instance_url")
        except ValueError as exc:
            raise AuthenticationError(
                f"Authentication failed: the token reply's {exc}", status=status
            ) from None
        return dict(body)

    # -- IO ---------------------------------------------------------------------------------

    async def _authenticate(self) -> tuple[int, Any]:
        """Run the token request; return the HTTP status and the JSON body.

        The hook aiosfstream authenticators override. The default sends
        :meth:`token_request` with :func:`send_token_request`.
        """
        return await send_token_request(
            self.token_request(),
            session=self.session,
            request_timeout=self.request_timeout,
            ssl=self.ssl,
            json_loads=self.json_loads,
        )

    def _get_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        return self._lock

    async def authenticate(self) -> None:
        """Get a token and set the attributes from the reply.

        Single-flight: callers that arrive while a token request is running wait for it and
        share its outcome (its token, or its error) instead of sending another.

        Raises:
            AuthenticationError: the token endpoint refused the credentials (with
                Salesforce's ``error``, ``error_description`` and the HTTP ``status``).
            AuthenticationTransportError: no token because of the network or the server
                ("Network request failed ..."; an AuthenticationError and a TransportError;
                the cause is chained, scrubbed of request headers).
        """
        attempts = self._attempts
        async with self._get_lock():
            if self._attempts != attempts:
                # A request finished while we waited for the lock: share its outcome.
                error = self._last_error
                if error is not None:
                    kind = (
                        AuthenticationTransportError
                        if isinstance(error, TransportError)
                        else AuthenticationError
                    )
                    raise kind(
                        str(error),
                        error=error.error,
                        error_description=error.error_description,
                        status=error.status,
                    ) from error
                return
            try:
                self._apply(await self._fetch())
            except AuthenticationError as exc:
                self._last_error = exc
                self._attempts += 1
                raise
            self._last_error = None
            self._attempts += 1

    async def _fetch(self) -> dict[str, Any]:
        try:
            status, body = await self._authenticate()
        except AuthenticationError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            # an overridden _authenticate() that lets the HTTP library's errors through
            error = _network_failure(self.token_url, exc)
        else:
            return self.parse_token_response(status, body)
        # Raised out of the except block: aiohttp's error (whose repr holds the request
        # headers, HTTP Basic credentials included) must not become the __context__.
        raise error

    def _apply(self, fields: Mapping[str, Any]) -> None:
        self.access_token = fields["access_token"]
        self.instance_url = fields["instance_url"]
        self.id = _optional_str(fields.get("id"))
        self.token_type = _optional_str(fields.get("token_type"))
        self.issued_at = _optional_str(fields.get("issued_at"))
        self.signature = _optional_str(fields.get("signature"))
        self.scope = _optional_str(fields.get("scope"))
        refresh_token = fields.get("refresh_token")
        if isinstance(refresh_token, str) and refresh_token:
            if self.refresh_token is not None and refresh_token != self.refresh_token:
                logger.debug("the token reply rotated the refresh token")
            self.refresh_token = refresh_token
        self.extra = {key: value for key, value in fields.items() if key not in _TOKEN_FIELDS}
        self._generation += 1
        logger.debug("authenticated; instance %s", self.instance_url)

    # -- repr -------------------------------------------------------------------------------

    def _repr_fields(self) -> list[str]:
        return [f"login_url={self.login_url!r}"]

    def __repr__(self) -> str:
        fields = self._repr_fields()
        if self.instance_url is not None:
            fields.append(f"instance_url={self.instance_url!r}")
        fields.append(f"access_token={'<set>' if self.access_token else '<unset>'}")
        return f"{type(self).__name__}({', '.join(fields)})"


class PasswordAuthenticator(AuthenticatorBase):
    """The OAuth 2.0 username-password flow (``grant_type=password``).

    Salesforce discourages this flow; new orgs may have it turned off (the endpoint then
    answers ``invalid_grant`` / ``authentication failure``).

    Args:
        consumer_key: the connected app's consumer key (OAuth ``client_id``).
        consumer_secret: the connected app's consumer secret (OAuth ``client_secret``).
        username: the Salesforce user name (``user@acme.com.sandboxname`` on a sandbox).
        password: the password, followed by the user's security token when required.
        sandbox, json_dumps, json_loads, login_url, session, ssl, request_timeout: as for
            :class:`AuthenticatorBase`.
    """

    #: OAuth2 client id.
    client_id: str
    #: OAuth2 client secret.
    client_secret: str
    #: Salesforce username.
    username: str
    #: Salesforce password.
    password: str

    def __init__(
        self,
        consumer_key: str,
        consumer_secret: str,
        username: str,
        password: str,
        sandbox: bool = False,
        json_dumps: JsonDumper = json.dumps,
        json_loads: JsonLoader = json.loads,
        *,
        login_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        ssl: ssl_module.SSLContext | bool = True,
        request_timeout: float = DEFAULT_TOKEN_TIMEOUT,
    ) -> None:
        super().__init__(
            sandbox,
            json_dumps,
            json_loads,
            login_url=login_url,
            session=session,
            ssl=ssl,
            request_timeout=request_timeout,
        )
        _require_text(
            consumer_key=consumer_key,
            consumer_secret=consumer_secret,
            username=username,
            password=password,
        )
        self.client_id = consumer_key
        self.client_secret = consumer_secret
        self.username = username
        self.password = password

    def token_request(self) -> TokenRequest:
        """The ``grant_type=password`` POST."""
        return TokenRequest(
            self.token_url,
            {
                "grant_type": "password",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "username": self.username,
                "password": self.password,
            },
        )

    def _repr_fields(self) -> list[str]:
        return [f"username={self.username!r}", *super()._repr_fields()]


class RefreshTokenAuthenticator(AuthenticatorBase):
    """The OAuth 2.0 refresh token flow (``grant_type=refresh_token``).

    With refresh token rotation enabled on the connected app, every token reply carries a new
    refresh token and invalidates the old one: the reply's token replaces
    :attr:`refresh_token`, so the next refresh uses it. Persist it if you need it across
    restarts.

    Args:
        consumer_key: the connected app's consumer key (OAuth ``client_id``).
        consumer_secret: the consumer secret, or None if the app does not require one.
        refresh_token: a refresh token obtained by another flow (e.g. the web server flow).
        sandbox, json_dumps, json_loads, login_url, session, ssl, request_timeout: as for
            :class:`AuthenticatorBase`.
    """

    #: OAuth2 client id.
    client_id: str
    #: OAuth2 client secret (None if the app does not require one).
    client_secret: str | None

    def __init__(
        self,
        consumer_key: str,
        consumer_secret: str | None,
        refresh_token: str,
        sandbox: bool = False,
        json_dumps: JsonDumper = json.dumps,
        json_loads: JsonLoader = json.loads,
        *,
        login_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        ssl: ssl_module.SSLContext | bool = True,
        request_timeout: float = DEFAULT_TOKEN_TIMEOUT,
    ) -> None:
        super().__init__(
            sandbox,
            json_dumps,
            json_loads,
            login_url=login_url,
            session=session,
            ssl=ssl,
            request_timeout=request_timeout,
        )
        self.client_id = consumer_key
        self.client_secret = consumer_secret
        self.refresh_token = refresh_token

    def token_request(self) -> TokenRequest:
        """The ``grant_type=refresh_token`` POST, with the current (maybe rotated) token."""
        if not self.refresh_token:
            raise AuthenticationError("no refresh token to authenticate with")
        form = {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "refresh_token": self.refresh_token,
        }
        if self.client_secret is not None:
            form["client_secret"] = self.client_secret
        return TokenRequest(self.token_url, form)


def _require_jwt() -> None:
    try:
        import cryptography  # noqa: F401
        import jwt  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "JwtBearerAuthenticator needs PyJWT with cryptography: "
            "install the extra with pip install '.[jwt]' in the sfstream checkout"
        ) from exc


def _key_bytes(private_key: str | bytes | os.PathLike[str]) -> bytes:
    if isinstance(private_key, os.PathLike):
        return Path(private_key).read_bytes()
    if isinstance(private_key, bytes):
        return private_key
    if "-----BEGIN" in private_key:
        return private_key.encode()
    # A path given as a string. Never echo the string, not even in a chained exception: it
    # may be a key without its header.
    data: bytes | None
    try:
        data = Path(private_key).read_bytes()
    except (OSError, ValueError):
        data = None
    if data is None:
        raise InvalidArgumentError(
            "private_key is neither PEM text (-----BEGIN ... PRIVATE KEY-----) "
            "nor the path of a readable file"
        )
    return data


def _load_rsa_key(
    private_key: str | bytes | os.PathLike[str], password: str | bytes | None
) -> RSAPrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    data = _key_bytes(private_key)
    secret = password.encode() if isinstance(password, str) else password
    try:
        key = serialization.load_pem_private_key(data, password=secret)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(
            "private_key could not be loaded as a PEM private key "
            "(wrong format, or a missing or wrong private_key_password)"
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidArgumentError(
            "private_key must be an RSA key: the JWT bearer flow signs with RS256"
        )
    return key


class JwtBearerAuthenticator(AuthenticatorBase):
    """The OAuth 2.0 JWT bearer flow: a JWT signed with your key (RS256), no password.

    The connected app holds the certificate of ``private_key`` and the user must be
    pre-authorised for it (otherwise Salesforce answers ``invalid_grant`` / ``user hasn't
    approved this consumer``). Needs the ``jwt`` extra: ``pip install '.[jwt]'`` in the sfstream
    checkout.

    Each :meth:`token_request` signs a fresh assertion with the claims ``iss`` (the consumer
    key), ``sub`` (the user name), ``aud`` (:attr:`audience`) and ``exp`` (now plus
    :data:`JWT_LIFETIME` seconds, within Salesforce's three minutes).

    Args:
        consumer_key: the connected app's consumer key (the JWT issuer).
        username: the Salesforce user name the token is for (the JWT subject).
        private_key: the RSA private key as PEM text or bytes, or the path of a PEM file.
        private_key_password: the password of an encrypted key.
        audience: the ``aud`` claim. By default ``https://test.salesforce.com`` if
            ``sandbox`` is True or ``login_url`` is a sandbox host; the login URL's origin
            for a loopback ``login_url`` (an emulator); else ``https://login.salesforce.com``
            (also right for a production My Domain).
        sandbox, json_dumps, json_loads, login_url, session, ssl, request_timeout: as for
            :class:`AuthenticatorBase`.

    Raises:
        ImportError: PyJWT or cryptography is missing (the message names the extra).
        InvalidArgumentError: the key cannot be loaded or is not an RSA key; ``login_url`` is
            refused.
        OSError: the key file given as a path object cannot be read.
    """

    #: OAuth2 client id (the JWT issuer).
    client_id: str
    #: Salesforce username (the JWT subject).
    username: str
    #: The JWT audience.
    audience: str

    def __init__(
        self,
        consumer_key: str,
        username: str,
        private_key: str | bytes | os.PathLike[str],
        *,
        private_key_password: str | bytes | None = None,
        audience: str | None = None,
        sandbox: bool = False,
        json_dumps: JsonDumper = json.dumps,
        json_loads: JsonLoader = json.loads,
        login_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        ssl: ssl_module.SSLContext | bool = True,
        request_timeout: float = DEFAULT_TOKEN_TIMEOUT,
    ) -> None:
        super().__init__(
            sandbox,
            json_dumps,
            json_loads,
            login_url=login_url,
            session=session,
            ssl=ssl,
            request_timeout=request_timeout,
        )
        _require_jwt()
        self.client_id = consumer_key
        self.username = username
        self._private_key = _load_rsa_key(private_key, private_key_password)
        self.audience = audience if audience is not None else self._default_audience()

    def _default_audience(self) -> str:
        login = URL(self.login_url)
        host = login.host or ""
        if self.sandbox or host == "test.salesforce.com" or host.endswith(_SANDBOX_HOST_SUFFIX):
            return SANDBOX_LOGIN_URL
        if _is_loopback(host):
            return str(login.origin())
        return PRODUCTION_LOGIN_URL

    def make_assertion(self, now: float | None = None) -> str:
        """Sign a JWT assertion (a secret: never log it).

        Args:
            now: the issue time in seconds since the epoch; None for the current time.
        """
        import jwt

        issued = time.time() if now is None else now
        claims = {
            "iss": self.client_id,
            "sub": self.username,
            "aud": self.audience,
            "exp": int(issued) + JWT_LIFETIME,
        }
        return jwt.encode(claims, self._private_key, algorithm="RS256")

    def token_request(self) -> TokenRequest:
        """The jwt-bearer POST with a freshly signed assertion."""
        return TokenRequest(
            self.token_url,
            {"grant_type": JWT_BEARER_GRANT_TYPE, "assertion": self.make_assertion()},
        )

    def _repr_fields(self) -> list[str]:
        return [
            f"username={self.username!r}",
            f"audience={self.audience!r}",
            *super()._repr_fields(),
        ]


class ClientCredentialsAuthenticator(AuthenticatorBase):
    """The OAuth 2.0 client credentials flow: the app's own key and secret, no user login.

    The token runs as the connected app's "Run As" user. Salesforce serves this flow only on
    the org's My Domain, hence the required ``login_url``.

    Args:
        consumer_key: the connected app's consumer key (OAuth ``client_id``).
        consumer_secret: the connected app's consumer secret.
        login_url: the org's My Domain URL (``https://acme.my.salesforce.com``) or an
            emulator's URL; ``login.salesforce.com`` and ``test.salesforce.com`` are refused.
        basic_auth: send the key and secret as HTTP Basic credentials instead of form fields.
        json_dumps, json_loads, session, ssl, request_timeout: as for :class:`AuthenticatorBase`.

    Raises:
        InvalidArgumentError: ``login_url`` is a generic login host, or not https.
    """

    #: OAuth2 client id.
    client_id: str
    #: OAuth2 client secret.
    client_secret: str
    #: Whether the credentials go in an HTTP Basic header.
    basic_auth: bool

    def __init__(
        self,
        consumer_key: str,
        consumer_secret: str,
        *,
        login_url: str,
        basic_auth: bool = False,
        json_dumps: JsonDumper = json.dumps,
        json_loads: JsonLoader = json.loads,
        session: aiohttp.ClientSession | None = None,
        ssl: ssl_module.SSLContext | bool = True,
        request_timeout: float = DEFAULT_TOKEN_TIMEOUT,
    ) -> None:
        super().__init__(
            False,
            json_dumps,
            json_loads,
            login_url=login_url,
            session=session,
            ssl=ssl,
            request_timeout=request_timeout,
        )
        if URL(self.login_url).host in _LOGIN_HOSTS:
            raise InvalidArgumentError(
                "the client credentials flow needs your org's My Domain URL as login_url "
                "(e.g. https://acme.my.salesforce.com), not a generic login host"
            )
        self.client_id = consumer_key
        self.client_secret = consumer_secret
        self.basic_auth = basic_auth

    def token_request(self) -> TokenRequest:
        """The ``grant_type=client_credentials`` POST (credentials in the form or Basic)."""
        if self.basic_auth:
            return TokenRequest(
                self.token_url,
                {"grant_type": "client_credentials"},
                basic_auth=(self.client_id, self.client_secret),
            )
        return TokenRequest(
            self.token_url,
            {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            },
        )


class AccessTokenAuthenticator(AuthenticatorBase):
    """An access token you already hold, e.g. from ``sf org display --json``.

    :meth:`authenticate` makes no request: it only (re)sets the attributes. The token cannot
    be renewed, so :attr:`can_refresh` is False: when the server refuses it, a client raises
    :class:`~sfstream.exceptions.AuthenticationError` instead of trying again.

    Args:
        access_token: the access token (or session id).
        instance_url: the org's instance URL, e.g. ``https://acme.my.salesforce.com``.
        token_type: the ``Authorization`` scheme.
        json_dumps, json_loads: as for :class:`AuthenticatorBase`.

    Raises:
        InvalidArgumentError: ``instance_url`` is not https (or http on a loopback host), or
            the token is empty.
    """

    def __init__(
        self,
        access_token: str,
        instance_url: str,
        *,
        token_type: str = "Bearer",  # noqa: S107 (a scheme, not a password)
        json_dumps: JsonDumper = json.dumps,
        json_loads: JsonLoader = json.loads,
    ) -> None:
        super().__init__(False, json_dumps, json_loads)
        if not access_token:
            raise InvalidArgumentError("access_token must not be empty")
        check_url(instance_url, "instance_url")
        self._token = access_token
        self._instance_url = instance_url
        self._token_type = token_type
        self._apply(self._fields())

    def _fields(self) -> dict[str, Any]:
        return {
            "access_token": self._token,
            "instance_url": self._instance_url,
            "token_type": self._token_type,
        }

    @property
    def can_refresh(self) -> bool:
        """Always False: a given token cannot be renewed."""
        return False

    async def _authenticate(self) -> tuple[int, Any]:
        """No request: the token is already known."""
        return 200, self._fields()

    def _repr_fields(self) -> list[str]:
        return []
