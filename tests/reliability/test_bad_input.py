"""Bad input from the user gets a clear error at the call site.

Malformed channel names, wrong replay types, operations on an unopened or closed client,
missing credentials and plain ``http://`` URLs to remote hosts. What is accepted today but
should not be is specified with ``xfail(strict=True)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sfstream import (
    AccessTokenAuthenticator,
    AuthenticationError,
    Client,
    ClientCredentialsAuthenticator,
    ClientInvalidOperation,
    ConstantReplayId,
    DefaultMappingStorage,
    JwtBearerAuthenticator,
    PasswordAuthenticator,
    RefreshTokenAuthenticator,
    ReplayMarkerStoragePolicy,
    ReplayOption,
    SalesforceStreamingClient,
)
from sfstream.bayeux import BayeuxClient, MockTransport, Request
from sfstream.emulator import Emulator

from ._hostile import HostileServer, fixed

LOOPBACK = "http://127.0.0.1:9"


def password_auth(**options: Any) -> PasswordAuthenticator:
    return PasswordAuthenticator("key", "secret", "user", "pass", login_url=LOOPBACK, **options)


@pytest.fixture
async def org() -> AsyncIterator[Emulator]:
    async with Emulator(events={"Order__e": ["Amount__c", "N__c"]}, hold_time=0.2) as emulator:
        yield emulator


def streaming_client(org: Emulator, **options: Any) -> SalesforceStreamingClient:
    credentials: dict[str, Any] = {
        "consumer_key": org.consumer_key,
        "consumer_secret": org.consumer_secret,
        "username": org.username,
        "password": org.password,
        "login_url": org.login_url,
    }
    return SalesforceStreamingClient(**{**credentials, **options})


# -- channel names -------------------------------------------------------------------------------

BAD_CHANNELS = [
    ("no-slash", ValueError, "invalid channel name"),
    ("", ValueError, "invalid channel name"),
    ("/foo bar", ValueError, "invalid channel name"),
    ("/foo//bar", ValueError, "invalid channel name"),
    ("/foo/**/bar", ValueError, "invalid channel name"),
    ("/foo/\n", ValueError, "invalid channel name"),
    ("/meta/connect", ValueError, "meta channel"),
    ("/meta/*", ValueError, "meta channel"),
]


@pytest.mark.parametrize(
    ("channel", "error", "match"), BAD_CHANNELS, ids=[c[0] or "empty" for c in BAD_CHANNELS]
)
async def test_malformed_channels_are_refused_by_the_salesforce_client(
    org: Emulator, channel: str, error: type[Exception], match: str
) -> None:
    async with streaming_client(org) as client:
        with pytest.raises(error, match=match):
            await client.subscribe(channel)
        with pytest.raises(error, match=match):
            await client.unsubscribe(channel)
        assert client.subscriptions == set()


@pytest.mark.parametrize(
    ("channel", "error", "match"), BAD_CHANNELS, ids=[c[0] or "empty" for c in BAD_CHANNELS]
)
async def test_malformed_channels_are_refused_by_the_bayeux_client(
    channel: str, error: type[Exception], match: str
) -> None:
    async with BayeuxClient(LOOPBACK, transport=MockTransport(answer)) as client:
        with pytest.raises(error, match=match):
            await client.subscribe(channel)
        with pytest.raises((ValueError, TypeError)):
            await client.publish(channel, {"x": 1})


def answer(request: Request) -> list[Any]:
    message = request.messages[0]
    reply = {"channel": message["channel"], "id": message["id"], "successful": True}
    if message["channel"] == "/meta/handshake":
        reply |= {"clientId": "c1", "supportedConnectionTypes": ["long-polling"]}
    return [reply]


async def test_a_channel_that_is_not_a_string_is_a_type_error_for_bayeux() -> None:
    async with BayeuxClient(LOOPBACK, transport=MockTransport(answer)) as client:
        with pytest.raises(TypeError, match="must be a str, not int"):
            await client.subscribe(5)  # type: ignore[arg-type]


async def test_a_channel_that_is_not_a_string_is_a_type_error(org: Emulator) -> None:
    async with streaming_client(org) as client:
        with pytest.raises(TypeError, match="must be a str"):
            await client.subscribe(5)  # type: ignore[arg-type]


# -- replay options --------------------------------------------------------------------------------


@pytest.mark.parametrize("replay", ["all", 1.5, True, object(), [1]], ids=repr)
def test_wrong_replay_types_are_refused(replay: Any) -> None:
    with pytest.raises(TypeError, match="replay must be"):
        Client(password_auth(), replay=replay)


@pytest.mark.parametrize("fallback", ["all", 1.5, object()], ids=repr)
def test_wrong_replay_fallback_types_are_refused(fallback: Any) -> None:
    with pytest.raises(TypeError, match="replay_fallback must be"):
        Client(password_auth(), replay_fallback=fallback)


def test_a_storage_policy_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="not a valid ReplayMarkerStoragePolicy"):
        Client(password_auth(), replay_storage_policy="MANUAL")  # type: ignore[arg-type]


@pytest.mark.parametrize("default", ["all", 1.5, True, None], ids=repr)
def test_wrong_default_ids_are_refused(default: Any) -> None:
    with pytest.raises(TypeError, match="default_id must be"):
        DefaultMappingStorage({}, default)
    with pytest.raises(TypeError, match="default_id must be"):
        ConstantReplayId(default)


@pytest.mark.parametrize("fallback", [5, True, 0], ids=repr)
def test_a_replay_fallback_that_is_no_replay_option_is_refused(fallback: int) -> None:
    with pytest.raises((TypeError, ValueError), match="replay_fallback"):
        Client(password_auth(), replay_fallback=fallback)  # type: ignore[arg-type]


def test_a_replay_id_below_minus_two_is_refused() -> None:
    with pytest.raises(ValueError, match="replay"):
        Client(password_auth(), replay=-3)


# -- lifecycle -------------------------------------------------------------------------------------


async def test_operations_on_an_unopened_client(org: Emulator) -> None:
    client = streaming_client(org)
    for operation in (
        client.subscribe("/event/Order__e"),
        client.unsubscribe("/event/Order__e"),
        client.publish("/event/Order__e", {}),
        client.receive(),
    ):
        with pytest.raises(ClientInvalidOperation, match="not open"):
            await operation


async def test_operations_on_a_closed_client(org: Emulator) -> None:
    client = streaming_client(org)
    async with client:
        await client.subscribe("/event/Order__e")
    await client.close()  # idempotent
    for operation in (
        client.subscribe("/event/Order__e"),
        client.unsubscribe("/event/Order__e"),
        client.publish("/event/Order__e", {}),
        client.receive(),
    ):
        with pytest.raises(ClientInvalidOperation, match="closed"):
            await operation
    with pytest.raises(ClientInvalidOperation, match="closed"):
        await client.open()
    assert [message async for message in client] == []


async def test_opening_twice(org: Emulator) -> None:
    async with streaming_client(org) as client:
        with pytest.raises(ClientInvalidOperation, match="already open"):
            await client.open()


async def test_a_client_closed_before_it_was_opened_cannot_open(org: Emulator) -> None:
    client = streaming_client(org)
    await client.close()
    with pytest.raises(ClientInvalidOperation, match="closed"):
        await client.open()


def test_an_authenticator_that_is_not_one() -> None:
    with pytest.raises(TypeError, match="authenticator must be an AuthenticatorBase"):
        Client("user:password")  # type: ignore[arg-type]


def test_loop_is_deprecated() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.warns(DeprecationWarning, match="loop argument is ignored"):
            Client(password_auth(), loop=loop)
    finally:
        loop.close()


# -- credentials -----------------------------------------------------------------------------------


def test_an_empty_access_token_is_refused() -> None:
    with pytest.raises(ValueError, match="access_token must not be empty"):
        AccessTokenAuthenticator("", "https://acme.my.salesforce.com")


def test_a_jwt_key_that_is_neither_pem_nor_a_file_is_refused() -> None:
    with pytest.raises(ValueError, match=r"neither PEM text .* nor the path"):
        JwtBearerAuthenticator("key", "user", "not a key and not a file")


def test_client_credentials_need_a_my_domain() -> None:
    with pytest.raises(ValueError, match="My Domain"):
        ClientCredentialsAuthenticator("key", "secret", login_url="https://login.salesforce.com")


async def test_a_missing_refresh_token_fails_authentication() -> None:
    auth = RefreshTokenAuthenticator("key", None, "", login_url=LOOPBACK)
    with pytest.raises(AuthenticationError, match="no refresh token"):
        await auth.authenticate()


async def test_wrong_credentials_fail_at_open_with_salesforce_words(org: Emulator) -> None:
    client = streaming_client(org, password="wrong")
    with pytest.raises(AuthenticationError, match="invalid_grant") as info:
        await client.open()
    assert "wrong" not in str(info.value)


@pytest.mark.parametrize(
    "credentials",
    [
        {"consumer_key": "", "consumer_secret": "s", "username": "u", "password": "p"},
        {"consumer_key": "k", "consumer_secret": "s", "username": "", "password": "p"},
        {"consumer_key": None, "consumer_secret": None, "username": None, "password": None},
    ],
    ids=["empty key", "empty username", "None"],
)
def test_missing_credentials_are_refused_at_construction(credentials: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        SalesforceStreamingClient(**credentials, login_url=LOOPBACK)


# -- plain http ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://login.salesforce.com",
        "HTTP://ACME.MY.SALESFORCE.COM",
        "http://0.0.0.0:8080",
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
        "http://10.0.0.1",
        "ftp://127.0.0.1",
        "127.0.0.1:8080",
    ],
)
def test_plain_http_to_a_remote_host_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="login_url") as info:
        PasswordAuthenticator("key", "secret", "user", "pass", login_url=url)
    with pytest.raises(ValueError, match="instance_url"):
        AccessTokenAuthenticator("token", url)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://127.9.9.9", "http://localhost:1", "http://[::1]:8080"]
)
def test_plain_http_to_loopback_is_accepted(url: str) -> None:
    PasswordAuthenticator("key", "secret", "user", "pass", login_url=url)
    AccessTokenAuthenticator("token", url)


def test_credentials_in_a_url_are_refused_without_echo() -> None:
    with pytest.raises(ValueError, match="must not contain a user name or password") as info:
        PasswordAuthenticator("k", "s", "u", "p", login_url="https://user:hunter2@acme.example")
    assert "hunter2" not in str(info.value)


async def test_a_token_reply_naming_a_plain_http_instance_is_refused() -> None:
    body = (
        b'{"access_token": "00Dxx!tok", "instance_url": "http://evil.example.com", '
        b'"token_type": "Bearer"}'
    )
    async with HostileServer(fixed(200, body, "Content-Type: application/json")) as server:
        auth = PasswordAuthenticator("k", "s", "u", "p", login_url=server.url)
        with pytest.raises(AuthenticationError, match=r"instance_url .* plain http") as info:
            await auth.authenticate()
    assert "00Dxx!tok" not in str(info.value)
    assert auth.access_token is None


def test_the_storage_policy_enum_is_accepted_by_value() -> None:
    client = Client(password_auth(), replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL)
    assert client.replay_storage_policy is ReplayMarkerStoragePolicy.MANUAL
    assert Client(password_auth(), replay=ReplayOption.ALL_EVENTS).replay_storage is not None
