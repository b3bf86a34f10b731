"""Transport security: TLS verification on by default, no credentials through redirects, no
token in errors.

TLS: the fault proxy serves the emulated org over TLS on 127.0.0.1 with a self-signed
certificate made here with ``cryptography``. The client refuses it by default, and accepts it
when given an ``ssl.SSLContext`` that trusts it through ``session=`` (an aiohttp session whose
connector carries the context: token requests and CometD alike).

Redirects: the token endpoint and the CometD endpoint answer 302/307 towards another loopback
address (127.0.0.2); the redirect is not followed and nothing (certainly no ``Authorization``)
arrives there.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sfstream import (
    AccessTokenAuthenticator,
    AuthenticationError,
    Client,
    PasswordAuthenticator,
    SalesforceStreamingClient,
)
from sfstream.bayeux import ConstantBackoff, LongPollingTransport, Request
from sfstream.exceptions import HTTPStatusError, TransportError

from ._harness import EVENT, ProxiedOrg, Tally
from ._hostile import HostileServer, Received, fixed, response
from ._proxy import FaultKind

# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and the private key), as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sfstream test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def tls_org(certificate: tuple[Path, Path]) -> AsyncIterator[ProxiedOrg]:
    cert_path, key_path = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)
    async with ProxiedOrg(proxy_ssl=server_context) as org:
        assert org.url.startswith("https://127.0.0.1:")
        yield org


def trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def is_certificate_error(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(
            error, ssl.SSLCertVerificationError | aiohttp.ClientConnectorCertificateError
        ):
            return True
        error = error.__cause__
    return False


async def test_the_client_refuses_a_self_signed_certificate(tls_org: ProxiedOrg) -> None:
    client = tls_org.client()
    with pytest.raises(AuthenticationError, match="Network request failed") as info:
        await client.open()
    assert is_certificate_error(info.value)
    assert tls_org.proxy.exchanges == 0  # not a byte of the credentials went out


async def test_the_cometd_endpoint_refuses_it_too(tls_org: ProxiedOrg) -> None:
    token = tls_org.emulator.issue_access_token()
    client = Client(AccessTokenAuthenticator(token, tls_org.url))
    with pytest.raises(TransportError, match=r"(?i)certificate") as info:
        await client.open()
    assert is_certificate_error(info.value)
    assert token not in str(info.value)
    assert tls_org.proxy.exchanges == 0


async def test_a_session_trusting_the_certificate_streams(
    tls_org: ProxiedOrg, certificate: tuple[Path, Path]
) -> None:
    """The documented way: ``session=aiohttp.ClientSession(connector=aiohttp.TCPConnector(
    ssl=context))`` carries the context to the token endpoint and to CometD."""
    connector = aiohttp.TCPConnector(ssl=trusting(certificate))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with tls_org.client(session=session) as client:
            await client.subscribe(EVENT)
            tally = Tally()
            tally.record_published(EVENT, tls_org.publish(EVENT, 1))
            async with asyncio.timeout(5):
                tally.record_delivered(await client.receive())
        assert not session.closed  # the user's session is never closed by the client
    assert tally.lost() == {}


async def test_the_authenticators_ssl_covers_its_token_requests(
    tls_org: ProxiedOrg, certificate: tuple[Path, Path]
) -> None:
    """``PasswordAuthenticator(ssl=context)`` gets a token from a server the context trusts.
    (Today the CometD requests of a ``Client`` built on it still use the system store: see
    the next test.)"""
    credentials = tls_org.credentials()
    auth = PasswordAuthenticator(
        credentials["consumer_key"],
        credentials["consumer_secret"],
        credentials["username"],
        credentials["password"],
        login_url=credentials["login_url"],
        ssl=trusting(certificate),
    )
    await auth.authenticate()
    assert auth.access_token is not None


async def test_a_client_with_a_trusting_authenticator_streams(
    tls_org: ProxiedOrg, certificate: tuple[Path, Path]
) -> None:
    credentials = tls_org.credentials()
    auth = PasswordAuthenticator(
        credentials["consumer_key"],
        credentials["consumer_secret"],
        credentials["username"],
        credentials["password"],
        login_url=credentials["login_url"],
        ssl=trusting(certificate),
    )
    async with Client(auth) as client:
        await client.subscribe(EVENT)


async def test_the_hostname_is_verified_too(
    tls_org: ProxiedOrg, certificate: tuple[Path, Path]
) -> None:
    """A certificate for 127.0.0.1 is refused for ``localhost``, even by a context trusting it."""
    connector = aiohttp.TCPConnector(ssl=trusting(certificate))
    async with aiohttp.ClientSession(connector=connector) as session:
        url = tls_org.url.replace("127.0.0.1", "localhost")
        client = tls_org.client(session=session, login_url=url)
        with pytest.raises(AuthenticationError) as info:
            await client.open()
        assert is_certificate_error(info.value)


async def wait_for(condition: Any, timeout: float = 8.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polling a counter of the proxy
            await asyncio.sleep(0.02)


# -- redirects ---------------------------------------------------------------------------------


@pytest.fixture
async def elsewhere() -> AsyncIterator[HostileServer]:
    """A server on 127.0.0.2 that records whatever reaches it (nothing should)."""
    try:
        server = HostileServer(fixed(200, b"{}"), host="127.0.0.2")
        async with server:
            yield server
    except OSError as error:  # pragma: no cover - a system without 127.0.0.0/8 on lo
        pytest.skip(f"cannot listen on 127.0.0.2: {error}")


def redirecting(target: str, status: int) -> Any:
    reason = "Found" if status == 302 else "Temporary Redirect"

    async def behave(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(response(status, b"", f"Location: {target}{request.path}", reason=reason))
        await writer.drain()

    return behave


@pytest.mark.parametrize("status", [302, 307])
async def test_the_token_endpoint_redirect_is_not_followed(
    elsewhere: HostileServer, status: int
) -> None:
    async with HostileServer(redirecting(elsewhere.url, status)) as login:
        auth = PasswordAuthenticator(
            "key", "consumer-secret", "user", "pass-word", login_url=login.url
        )
        with pytest.raises(AuthenticationError, match=f"HTTP {status}") as info:
            await auth.authenticate()
        assert len(login.requests) == 1
    assert elsewhere.requests == []
    assert "pass-word" not in str(info.value)
    assert "consumer-secret" not in str(info.value)


@pytest.mark.parametrize("status", [302, 307])
async def test_the_cometd_redirect_is_not_followed(elsewhere: HostileServer, status: int) -> None:
    token = "00Dxx0000000001!AQ-token-for-this-instance-only"

    async def salesforce(request: Received, writer: asyncio.StreamWriter) -> None:
        if request.path.startswith("/services/oauth2/token"):
            body = (
                f'{{"access_token": "{token}", "instance_url": "{instance.url}", '
                '"token_type": "Bearer"}'
            ).encode()
            writer.write(response(200, body, "Content-Type: application/json"))
            await writer.drain()
        else:
            await redirecting(elsewhere.url, status)(request, writer)

    async with HostileServer(salesforce) as instance:
        client = SalesforceStreamingClient(
            consumer_key="key",
            consumer_secret="secret",
            username="user",
            password="pass",
            login_url=instance.url,
        )
        with pytest.raises(HTTPStatusError) as info:
            await client.open()
        assert info.value.status == status
        cometd = [r for r in instance.requests if r.path.startswith("/cometd/")]
        assert cometd
        assert cometd[0].headers["authorization"] == f"Bearer {token}"
        token_requests = [r for r in instance.requests if r.path.startswith("/services/")]
        assert all("authorization" not in r.headers for r in token_requests)
    assert elsewhere.requests == []
    assert token not in str(info.value)


async def test_redirects_during_a_session_are_not_followed(
    org: ProxiedOrg, elsewhere: HostileServer
) -> None:
    """An established client answered 307 three times by its CometD endpoint retries the
    endpoint it knows (and recovers); with a session of the user's own too."""
    async with (
        aiohttp.ClientSession() as session,
        org.client(session=session, backoff=ConstantBackoff(0.05)) as client,
    ):
        await client.subscribe(EVENT)
        org.proxy.arm(FaultKind.REDIRECT, path="/cometd", count=3, location=elsewhere.url + "/x")
        await wait_for(lambda: org.proxy.fired[FaultKind.REDIRECT] == 3)
        tally = Tally()
        tally.record_published(EVENT, org.publish(EVENT, 1))
        async with asyncio.timeout(8):
            tally.record_delivered(await client.receive())
        # re-authentication answered by a redirect: refused, not followed
        org.proxy.arm(
            FaultKind.REDIRECT, path="/services/oauth2/token", location=elsewhere.url + "/t"
        )
        org.emulator.revoke_tokens("access")
        with pytest.raises(AuthenticationError, match="HTTP 307"):
            async with asyncio.timeout(8):
                await client.receive()
    assert elsewhere.requests == []


# -- tokens in error messages --------------------------------------------------------------------


@pytest.mark.parametrize(
    "behaviour",
    [
        fixed(200, b"[]", "X-Long: " + "v" * 10_000),
        fixed(200, b"[]", "Content-Length: abc"),
    ],
    ids=["oversized header", "malformed Content-Length"],
)
async def test_a_malformed_response_does_not_put_the_token_in_the_error(behaviour: Any) -> None:
    token = "00Dxx0000000001!AQ-secret-token"
    async with HostileServer(behaviour) as server:
        transport = LongPollingTransport(server.url + "/cometd/67.0")
        request = Request([{"channel": "/meta/connect", "id": "1"}], 5.0)
        try:
            with pytest.raises(TransportError) as info:
                await transport.send(request, {"Authorization": f"Bearer {token}"})
        finally:
            await transport.close()
    assert token not in str(info.value)
    assert token not in repr(info.value)


async def test_a_garbled_reply_does_not_leak_the_token(
    org: ProxiedOrg, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    details: list[str] = []
    async with org.client(on_status=lambda status: details.append(status.detail)) as client:
        await client.subscribe(EVENT)
        org.proxy.arm(FaultKind.GARBLE, contains=b"/meta/connect")
        org.proxy.arm(FaultKind.HUGE_HEADER, contains=b"/meta/connect")
        await wait_for(lambda: not org.proxy.armed)
        tally = Tally()
        tally.record_published(EVENT, org.publish(EVENT, 1))
        async with asyncio.timeout(8):
            tally.record_delivered(await client.receive())
        token = client.auth.access_token
    assert token is not None
    assert token not in caplog.text
    assert not [detail for detail in details if token in detail]
