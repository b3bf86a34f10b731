"""No secret anywhere: everything captured during a full fault campaign is scanned.

Five clients (password, refresh token, JWT bearer, client credentials with HTTP Basic, a given
access token) and the command line (``sfstream listen --debug --trace``, a subprocess) stream
from an org behind the fault proxy while every fault of the campaign catalogue is injected
(network faults, the org's Bayeux and HTTP faults, 401s, token revocations, a restart), then
every token is revoked and bad logins are tried. Captured: every log record of every logger at
DEBUG (with tracebacks), the ``str``/``repr``/traceback of every exception a client raised,
every status detail, the reprs of clients, authenticators, Bayeux clients, engines, transports
and token requests, and the command line's stdout and stderr.

Scanned for: the password, the security token, the consumer secret, the refresh tokens, every
access token the org issued (recorded at the source), the JWT assertions, the private key, and
the HTTP Basic credentials. Any 24-character slice of a secret counts as a leak, so a
truncated secret is caught too.

The faults that make aiohttp raise ``ClientResponseError`` (a garbled status line, a huge
header) are checked for leaks by ``test_security.py``, through the transport and through the
whole client (log lines and status details).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from sfstream import (
    AccessTokenAuthenticator,
    AuthenticationError,
    AuthenticatorBase,
    Client,
    ClientCredentialsAuthenticator,
    JwtBearerAuthenticator,
    PasswordAuthenticator,
    RefreshTokenAuthenticator,
    Status,
    _http,
)
from sfstream._http import ScrubbedError, safe_cause
from sfstream.bayeux import ConstantBackoff, LongPollingTransport, Request
from sfstream.cli._errors import CliError
from sfstream.cli._publish import RestClient, RestError
from sfstream.exceptions import AuthenticationTransportError, TransportError
from sfstream.salesforce import TokenRequest, send_token_request

from ._campaign import FAULTS, CampaignConfig, _Run
from ._harness import EVENT, ProxiedOrg
from ._hostile import Behaviour, HostileServer, Received, endless_headers, endless_slow_body, fixed

CONSUMER_SECRET = "c0nsumer-S3CRET-9f2b-never-shown"
PASSWORD = "pa55-W0RD-a41c-never-shown"
SECURITY_TOKEN = "T0KEN-77xq-never-shown"
REFRESH_TOKEN = "5Aep861-REFRESH-t0ken-never-shown"
#: Every fault of the campaign catalogue, once each.
CAMPAIGN = list(FAULTS)


class Capture(logging.Handler):
    """Every record of every logger, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    levels = {
        name: logging.getLogger(name).level for name in ("", "sfstream", "aiohttp", "asyncio")
    }
    root.addHandler(handler)
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def slices(secret: str, size: int = 24, step: int = 8) -> Iterator[str]:
    if len(secret) <= size:
        yield secret
        return
    for start in range(0, len(secret) - size + 1, step):
        yield secret[start : start + size]
    yield secret[-size:]


def describe(error: BaseException) -> str:
    return "\n".join([str(error), repr(error), "".join(traceback.format_exception(error))])


class Consumer:
    """Receives on one client until told to stop; keeps what it raised."""

    def __init__(self, name: str, client: Client) -> None:
        self.name = name
        self.client = client
        self.received = 0
        self.errors: list[str] = []
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(3):
                    await self.client.receive()
                self.received += 1
            except TimeoutError:
                continue
            except Exception as error:  # documented errors, and anything else: scan them all
                self.errors.append(describe(error))
                if self.client.closed or isinstance(error, AuthenticationError):
                    return
                await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
async def test_no_secret_anywhere_during_a_full_fault_campaign(capture: Capture) -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    org = ProxiedOrg(
        consumer_secret=CONSUMER_SECRET,
        password=PASSWORD,
        security_token=SECURITY_TOKEN,
        refresh_token=REFRESH_TOKEN,
        jwt_public_key=public_pem,
    )
    issued: list[str] = []
    issue_token = org.state.issue_token

    def recording_issue_token(*args: Any, **kwargs: Any) -> str:
        value = issue_token(*args, **kwargs)
        issued.append(value)
        return value

    org.state.issue_token = recording_issue_token  # type: ignore[method-assign]
    assertions: list[str] = []
    statuses: list[Status] = []
    texts: list[str] = []
    async with org:
        key = org.emulator.consumer_key
        username = org.emulator.username
        options: dict[str, Any] = {
            "backoff": ConstantBackoff(0.05),
            "connection_timeout": 5,
            "on_status": statuses.append,
        }
        jwt = JwtBearerAuthenticator(key, username, private_pem, login_url=org.url)
        make_assertion = jwt.make_assertion

        def recording_make_assertion(now: float | None = None) -> str:
            assertion = make_assertion(now)
            assertions.append(assertion)
            return assertion

        jwt.make_assertion = recording_make_assertion  # type: ignore[method-assign]
        clients = {
            "password": org.client(**options),
            "refresh token": Client(
                RefreshTokenAuthenticator(key, CONSUMER_SECRET, REFRESH_TOKEN, login_url=org.url),
                **options,
            ),
            "jwt": Client(jwt, **options),
            "client credentials": Client(
                ClientCredentialsAuthenticator(
                    key, CONSUMER_SECRET, login_url=org.url, basic_auth=True
                ),
                **options,
            ),
            "access token": Client(
                AccessTokenAuthenticator(org.emulator.issue_access_token(), org.url), **options
            ),
        }
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sfstream",
            "listen",
            EVENT,
            "--json",
            "--debug",
            "--trace",
            "--timeout",
            "40",
            "--count",
            "1000000",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={
                **os.environ,
                "SFSTREAM_CONSUMER_KEY": key,
                "SFSTREAM_CONSUMER_SECRET": CONSUMER_SECRET,
                "SFSTREAM_USERNAME": username,
                "SFSTREAM_PASSWORD": PASSWORD,
                "SFSTREAM_SECURITY_TOKEN": SECURITY_TOKEN,
                "SFSTREAM_LOGIN_URL": org.url,
                "NO_COLOR": "1",
            },
        )
        consumers: list[Consumer] = []
        try:
            for name, client in clients.items():
                await client.open()
                await client.subscribe(EVENT)
                consumer = Consumer(name, client)
                consumer.task = asyncio.create_task(consumer.run())
                consumers.append(consumer)
            await asyncio.sleep(1.5)  # the command line logs in and subscribes
            run = _Run(CampaignConfig(), org)
            run.rng = random.Random(7)
            for n, name in enumerate(["emulator restart", *CAMPAIGN]):
                org.publish(EVENT, n)
                if name == "emulator restart":
                    await org.restart(down=0.3)
                else:
                    injector, _weight, is_auth = FAULTS[name]
                    if is_auth:
                        await run._quiet()  # (a 401 stacked on another would stop clients)
                    result = injector(run)
                    if asyncio.iscoroutine(result):
                        await result
                await asyncio.sleep(0.25)
            for n in range(5):
                org.publish(EVENT, 100 + n)
            await asyncio.sleep(1.0)
            # the end: every token revoked, refresh tokens included; bad logins
            org.emulator.revoke_tokens()
            org.publish(EVENT, 200)
            await asyncio.sleep(1.5)
            for auth in (
                PasswordAuthenticator(
                    key, CONSUMER_SECRET, username, PASSWORD + "x", login_url=org.url
                ),
                PasswordAuthenticator(
                    key, CONSUMER_SECRET + "x", username, PASSWORD, login_url=org.url
                ),
                RefreshTokenAuthenticator(key, CONSUMER_SECRET, REFRESH_TOKEN, login_url=org.url),
            ):
                try:
                    await auth.authenticate()
                except AuthenticationError as error:
                    texts.append(describe(error))
                texts.append(repr(auth))
                texts.append(repr(auth.token_request()))
            for client in clients.values():
                texts += [repr(client), repr(client.auth), str(client.stats)]
                bayeux = client._bayeux
                if bayeux is not None:
                    texts += [repr(bayeux), repr(bayeux._engine), repr(bayeux._transport)]
                try:
                    texts.append(repr(client.auth.token_request()))
                except Exception as error:
                    texts.append(describe(error))
            texts += [repr(org.emulator), repr(org.emulator.config)]
        finally:
            for consumer in consumers:
                if consumer.task is not None:
                    consumer.task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await consumer.task
                texts += consumer.errors
            for client in clients.values():
                await client.close()
            if cli.returncode is None:
                cli.terminate()
            cli_out, cli_err = await cli.communicate()
    texts += [status.detail for status in statuses]
    texts += [cli_out.decode(), cli_err.decode()]
    texts += capture.lines
    text = "\n".join(texts)

    access_tokens = set(issued) - {REFRESH_TOKEN}
    pem_lines = [
        line for line in private_pem.splitlines() if len(line) >= 24 and "-----" not in line
    ]
    secrets = {
        "password": PASSWORD,
        "password with token": PASSWORD + SECURITY_TOKEN,
        "security token": SECURITY_TOKEN,
        "consumer secret": CONSUMER_SECRET,
        "refresh token": REFRESH_TOKEN,
        "basic credentials": base64.b64encode(f"{key}:{CONSUMER_SECRET}".encode()).decode(),
        **{f"issued token {n}": token for n, token in enumerate(sorted(access_tokens))},
        **{f"JWT assertion {n}": assertion for n, assertion in enumerate(assertions)},
        **{f"private key line {n}": line for n, line in enumerate(pem_lines)},
    }
    # the campaign did what it says: many tokens, re-authentications, errors, CLI output
    assert len(access_tokens) >= 10, len(access_tokens)
    assert len(assertions) >= 2
    assert sum(1 for s in statuses if s.kind.value == "reauthenticated") >= 3
    assert "Traceback" in text or "AuthenticationError" in text
    assert cli_err, "the command line printed nothing on stderr"
    assert len(capture.lines) > 200
    print(
        f"scanned {len(text)} characters: {len(capture.lines)} log records, "
        f"{len(access_tokens)} access tokens, {len(assertions)} JWT assertions, "
        f"{sum(len(c.errors) for c in consumers)} client errors, {len(statuses)} statuses, "
        f"{len(cli_out.splitlines())} CLI events, {len(cli_err.splitlines())} CLI stderr lines"
    )
    leaks = [
        name for name, secret in secrets.items() if any(piece in text for piece in slices(secret))
    ]
    assert leaks == [], f"secrets found in the captured output: {leaks}"


def test_the_scan_finds_a_truncated_secret() -> None:
    secret = "00D000000000001!AQ" + "x" * 80
    text = f"INFO request failed: Bearer {secret[:40]}..."
    assert any(piece in text for piece in slices(secret))
    assert not any(piece in "nothing to see" for piece in slices(secret))


# -- exception chains: every link of __cause__ / __context__ ------------------------------------

#: An access token as a token endpoint would issue it, and as CometD and REST requests carry it.
ACCESS_TOKEN = "00D5j000000Xyz!AQ0AQaccess-T0KEN-never-shown-f3e1"
CONSUMER_KEY = "3MVG9chainTestConsumerKey"
USERNAME = "chain.tester@example.com"


def chain(error: BaseException) -> list[BaseException]:
    """``error`` and every exception reachable through ``__cause__`` and ``__context__``."""
    links: list[BaseException] = []
    todo = [error]
    while todo:
        current = todo.pop()
        if any(current is link for link in links):
            continue
        links.append(current)
        todo += [link for link in (current.__cause__, current.__context__) if link is not None]
        if isinstance(current, BaseExceptionGroup):
            todo += current.exceptions
    return links


def chain_text(error: BaseException) -> str:
    """The ``repr`` and ``str`` of every link of the chain, and the traceback's text."""
    parts = [part for link in chain(error) for part in (repr(link), str(link))]
    parts.append("".join(traceback.format_exception(error)))
    return "\n".join(parts)


def assert_no_secret(error: BaseException, secrets: dict[str, str]) -> None:
    text = chain_text(error)
    leaks = [name for name, secret in secrets.items() if any(p in text for p in slices(secret))]
    assert leaks == [], f"{leaks} in the chain of {error!r}:\n{text}"


async def _malformed(_request: Received, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 2OO NOT-A-STATUS\r\nContent-Length: 2\r\n\r\n[]")
    await writer.drain()


async def _reset(_request: Received, writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()


async def _reset_mid_body(_request: Received, writer: asyncio.StreamWriter) -> None:
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{"access_token":')
    await writer.drain()
    writer.transport.abort()


def _truncated_token_reply() -> bytes:
    # A token reply cut short: the parser's error must not quote the token it holds.
    return ('{"access_token":"' + ACCESS_TOKEN + '","instance_url":"http://127.0').encode()


#: Faults of a token, CometD or REST endpoint (a raw server: aiohttp's own would refuse most).
FAULTS_OF_AN_ENDPOINT: dict[str, Behaviour] = {
    "malformed HTTP": _malformed,
    "connection reset": _reset,
    "reset mid-body": _reset_mid_body,
    "HTTP 500": fixed(500, b"<html>oops</html>", "Content-Type: text/html", reason="Oops"),
    "HTTP 503 JSON": fixed(503, b'{"error":"unavailable"}', "Content-Type: application/json"),
    "invalid JSON": fixed(200, _truncated_token_reply(), "Content-Type: application/json"),
    "redirect": fixed(
        307, b"", "Location: http://127.0.0.2:9/services/oauth2/token", reason="Redirect"
    ),
    "oversized headers": endless_headers,
    "bad gzip": fixed(200, b"not gzip at all", "Content-Encoding: gzip"),
    "no answer": endless_slow_body,
}


@pytest.fixture(scope="module")
def rsa_key() -> tuple[str, list[str]]:
    """A PEM private key and its lines (each one a secret)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem, [line for line in pem.splitlines() if len(line) >= 24 and "-----" not in line]


AUTHENTICATORS = ["password", "refresh token", "jwt", "client credentials", "basic"]


def make_authenticator(kind: str, url: str, pem: str, assertions: list[str]) -> AuthenticatorBase:
    options: dict[str, Any] = {"login_url": url, "request_timeout": 0.5}
    if kind == "password":
        return PasswordAuthenticator(
            CONSUMER_KEY, CONSUMER_SECRET, USERNAME, PASSWORD + SECURITY_TOKEN, **options
        )
    if kind == "refresh token":
        return RefreshTokenAuthenticator(CONSUMER_KEY, CONSUMER_SECRET, REFRESH_TOKEN, **options)
    if kind == "jwt":
        jwt = JwtBearerAuthenticator(CONSUMER_KEY, USERNAME, pem, **options)
        make_assertion = jwt.make_assertion

        def recording(now: float | None = None) -> str:
            assertions.append(make_assertion(now))
            return assertions[-1]

        jwt.make_assertion = recording  # type: ignore[method-assign]
        return jwt
    return ClientCredentialsAuthenticator(
        CONSUMER_KEY, CONSUMER_SECRET, basic_auth=kind == "basic", **options
    )


def login_secrets(pem_lines: list[str], assertions: list[str]) -> dict[str, str]:
    basic = base64.b64encode(f"{CONSUMER_KEY}:{CONSUMER_SECRET}".encode()).decode()
    return {
        "password": PASSWORD,
        "security token": SECURITY_TOKEN,
        "consumer secret": CONSUMER_SECRET,
        "refresh token": REFRESH_TOKEN,
        "basic credentials": basic,
        "access token": ACCESS_TOKEN,
        **{f"JWT assertion {n}": assertion for n, assertion in enumerate(assertions)},
        **{f"private key line {n}": line for n, line in enumerate(pem_lines)},
    }


async def test_the_faults_make_aiohttp_itself_show_the_credentials() -> None:
    """The scan is not vacuous: aiohttp's own error for malformed HTTP holds the headers."""
    basic = base64.b64encode(f"{CONSUMER_KEY}:{CONSUMER_SECRET}".encode()).decode()
    async with HostileServer(_malformed) as server, aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientResponseError) as info:
            async with session.post(server.url, headers={"Authorization": f"Basic {basic}"}):
                pass
    assert basic in chain_text(info.value)


@pytest.mark.parametrize("fault", list(FAULTS_OF_AN_ENDPOINT))
@pytest.mark.parametrize("kind", AUTHENTICATORS)
async def test_no_secret_in_the_chain_of_a_login_failure(
    kind: str, fault: str, rsa_key: tuple[str, list[str]]
) -> None:
    pem, pem_lines = rsa_key
    assertions: list[str] = []
    async with HostileServer(FAULTS_OF_AN_ENDPOINT[fault]) as server:
        auth = make_authenticator(kind, server.url, pem, assertions)
        with pytest.raises(AuthenticationError) as info:
            await auth.authenticate()
        assert server.requests, "the request reached the server"
    if kind == "jwt":
        assert assertions
    # a network or server fault, not a refusal of the credentials
    assert isinstance(info.value, TransportError) == (fault != "redirect"), repr(info.value)
    assert_no_secret(info.value, login_secrets(pem_lines, assertions))


@pytest.mark.parametrize("fault", list(FAULTS_OF_AN_ENDPOINT))
async def test_no_secret_in_the_chain_of_a_client_that_cannot_log_in(fault: str) -> None:
    """Through ``Client.open()``: client credentials sent as HTTP Basic."""
    async with HostileServer(FAULTS_OF_AN_ENDPOINT[fault]) as server:
        auth = ClientCredentialsAuthenticator(
            CONSUMER_KEY, CONSUMER_SECRET, login_url=server.url, basic_auth=True
        )
        auth.request_timeout = 0.5
        client = Client(auth, connection_timeout=2)
        try:
            with pytest.raises(AuthenticationError) as info:
                await client.open()
        finally:
            await client.close()
    assert_no_secret(info.value, login_secrets([], []))


@pytest.mark.parametrize("fault", list(FAULTS_OF_AN_ENDPOINT))
async def test_no_secret_in_the_chain_of_a_cometd_failure(fault: str) -> None:
    bearer = {"Authorization": f"Bearer {ACCESS_TOKEN}"}
    request = Request(
        [{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []}], 0.5
    )
    async with HostileServer(FAULTS_OF_AN_ENDPOINT[fault]) as server:
        for transport, headers in [
            (LongPollingTransport(server.url + "/cometd/67.0", headers=bearer), None),
            (LongPollingTransport(server.url + "/cometd/67.0"), bearer),
        ]:
            try:
                with pytest.raises(TransportError) as info:
                    await transport.send(request, headers)
            finally:
                await transport.close()
            assert_no_secret(info.value, {"access token": ACCESS_TOKEN})
    assert server.requests[0].headers["authorization"] == f"Bearer {ACCESS_TOKEN}"


@pytest.mark.parametrize("fault", list(FAULTS_OF_AN_ENDPOINT))
async def test_no_secret_in_the_chain_of_a_rest_publish_failure(fault: str) -> None:
    async with HostileServer(FAULTS_OF_AN_ENDPOINT[fault]) as server:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as session:
            rest = RestClient(AccessTokenAuthenticator(ACCESS_TOKEN, server.url), session, "67.0")
            with pytest.raises(Exception) as info:  # noqa: PT011 - CliError or RestError
                await rest.publish_event("Order__e", {"Amount__c": 1})
        assert server.requests[0].headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert isinstance(info.value, CliError | RestError), repr(info.value)
    assert_no_secret(info.value, {"access token": ACCESS_TOKEN})


# -- the scrubbing helpers ------------------------------------------------------------------------


def _response_error(secret: str) -> aiohttp.ClientResponseError:
    headers = CIMultiDictProxy(CIMultiDict({"Authorization": f"Bearer {secret}"}))
    request_info = aiohttp.RequestInfo(URL("https://acme.my.salesforce.com"), "POST", headers)
    return aiohttp.ClientResponseError(request_info, (), status=400, message="Bad status line")


def test_safe_cause_keeps_a_harmless_error() -> None:
    error = ConnectionRefusedError(111, "Connection refused")
    assert safe_cause(error) is error
    assert _http.describe(error) == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert _http.describe(TimeoutError()) == "TimeoutError: timed out"
    assert _http.describe(aiohttp.ServerDisconnectedError()) == (
        "ServerDisconnectedError: Server disconnected"
    )


def test_safe_cause_replaces_an_error_that_shows_the_headers() -> None:
    error = _response_error(ACCESS_TOKEN)
    assert ACCESS_TOKEN in repr(error)
    scrubbed = safe_cause(error)
    assert isinstance(scrubbed, ScrubbedError)
    assert isinstance(scrubbed, ConnectionError)
    assert str(scrubbed) == "ClientResponseError: 400, Bad status line"
    assert (scrubbed.__cause__, scrubbed.__context__, scrubbed.__traceback__) == (None, None, None)


def test_safe_cause_looks_down_the_chain() -> None:
    outer = aiohttp.ClientPayloadError("truncated")
    outer.__context__ = RuntimeError("middle")
    outer.__context__.__cause__ = _response_error(ACCESS_TOKEN)
    scrubbed = safe_cause(outer)
    assert isinstance(scrubbed, ScrubbedError)
    assert str(scrubbed) == "ClientPayloadError"  # its own text is not trusted either
    assert ACCESS_TOKEN not in chain_text(scrubbed)


def test_safe_cause_distrusts_a_chain_too_long_to_inspect() -> None:
    error: BaseException = OSError("first")
    for n in range(40):
        link = OSError(f"link {n}")
        link.__cause__ = error
        error = link
    assert isinstance(safe_cause(error), ScrubbedError)
    short = OSError("one")
    short.__cause__ = OSError("two")
    assert safe_cause(short) is short


def test_safe_cause_of_a_parser_error_quotes_no_body() -> None:
    body = '{"access_token": "' + ACCESS_TOKEN + '", oops'
    with pytest.raises(json.JSONDecodeError) as info:
        json.loads(body)
    scrubbed = safe_cause(info.value)
    assert type(scrubbed) is ValueError
    assert str(scrubbed).startswith("JSONDecodeError: Expecting property name")
    assert ACCESS_TOKEN not in chain_text(scrubbed)


@pytest.mark.parametrize(
    ("error", "kind", "text"),
    [
        (
            aiohttp.ClientOSError(104, "Connection reset by peer"),
            "TransportConnectionClosed",
            "104",
        ),
        (ConnectionResetError(104, "reset"), "TransportConnectionClosed", "reset"),
        (OSError(5, "I/O error"), "TransportError", "OSError: [Errno 5] I/O error"),
        (aiohttp.InvalidURL("http://x:99999"), "TransportError", "InvalidURL"),
        (_response_error(ACCESS_TOKEN), "TransportError", "not valid HTTP: 400, Bad status"),
    ],
)
def test_every_transport_failure_maps_to_the_tree(
    error: BaseException, kind: str, text: str
) -> None:
    transport = LongPollingTransport("http://127.0.0.1:1/cometd/67.0")
    mapped = transport._map_error(error, 5.0)
    assert type(mapped).__name__ == kind
    assert text in str(mapped)
    assert mapped.__cause__ is not None
    assert ACCESS_TOKEN not in chain_text(mapped)


@pytest.mark.parametrize("fault", ["malformed HTTP", "oversized headers", "reset mid-body"])
async def test_no_secret_in_the_chain_of_a_client_whose_cometd_fails(fault: str) -> None:
    """Through ``Client.open()`` with a given token: the handshake carries it as Bearer."""
    async with HostileServer(FAULTS_OF_AN_ENDPOINT[fault]) as server:
        client = Client(
            AccessTokenAuthenticator(ACCESS_TOKEN, server.url),
            connection_timeout=1,
            backoff=ConstantBackoff(0.1),
        )
        try:
            with pytest.raises(TransportError) as info:
                await client.open()
        finally:
            await client.close()
        assert server.requests[0].headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert_no_secret(info.value, {"access token": ACCESS_TOKEN})


@pytest.mark.parametrize("fault", ["malformed HTTP", "oversized headers", "connection reset"])
async def test_the_token_runner_itself_raises_no_secret(fault: str) -> None:
    """``send_token_request`` (public) maps the HTTP library's errors too."""
    async with HostileServer(FAULTS_OF_AN_ENDPOINT[fault]) as server:
        request = TokenRequest(
            server.url + "/services/oauth2/token",
            {"grant_type": "client_credentials"},
            basic_auth=(CONSUMER_KEY, CONSUMER_SECRET),
        )
        with pytest.raises(AuthenticationTransportError, match="Network request failed") as info:
            await send_token_request(request)
    assert_no_secret(info.value, login_secrets([], []))
