"""Every code example of the aiosfstream 0.5.0 documentation, run against the emulator.

Each test holds one example of ``aiosfstream-0.5.0-docs.txt`` as it is printed there, adapted
in two ways only: the import says ``sfstream``, and the client is pointed at the emulator
(``login_url=org.login_url`` and the emulator's credentials instead of ``"<consumer key>"``...).
Where the documentation leaves a placeholder (``# process message``), the test puts the code
that checks what the documentation promises; loops that would run forever are left with
``break`` once the expected messages came, as an application would. Timings are shortened
(``connection_timeout=1`` instead of 60) so that the whole module runs in seconds.

The channel of the examples, ``/topic/foo``, is a PushTopic created on the emulator
(``SELECT Id, Name FROM Account``); creating Account records makes its events flow.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shelve
import sys
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from sfstream import (
    Client,
    DefaultMappingStorage,
    PasswordAuthenticator,
    RefreshTokenAuthenticator,
    ReplayMarker,
    ReplayMarkerStorage,
    ReplayMarkerStoragePolicy,
    ReplayOption,
    SalesforceStreamingClient,
    StatusKind,
)
from sfstream.bayeux import Message
from sfstream.emulator import Emulator
from sfstream.exceptions import (
    AuthenticationError,
    ClientInvalidOperation,
    ServerError,
    TransportTimeoutError,
)
from tests.integration.conftest import (
    EVENTS,
    HOLD_TIME,
    SESSION_EXPIRY,
    WAIT,
    ClientFactory,
    RequestLog,
    assert_silent,
    credentials_of,
    free_port,
    payload_values,
    receive_n,
    wait_until,
)

DAY = 24 * 3600.0
CHANNEL = "/topic/foo"

#: Salesforce's answer to a replay id outside the retention window (the docs quote it).
INVALID_REPLAY_ID = (
    "The replayId {{{}}} you provided was invalid.  Please provide a valid ID, -2 to replay all "
    "events, or -1 to replay only new events."
)


def create_foo_topic(org: Emulator) -> None:
    org.create_push_topic("foo", "SELECT Id, Name FROM Account")


def create_accounts(org: Emulator, *names: str) -> None:
    for name in names:
        org.create_record("Account", {"Name": name})


def names(messages: list[Message]) -> list[str]:
    return [message["data"]["sobject"]["Name"] for message in messages]


class EnoughMessages(Exception):
    """Raised by the test's ``print`` to leave an example that would print forever."""


# -- Chapter 2: Usage ---------------------------------------------------------------------------


# The usage example, as printed (credentials pointed at the emulator).
async def stream_events(org: Emulator) -> None:
    # connect to Streaming API
    async with SalesforceStreamingClient(
        consumer_key=org.consumer_key,
        consumer_secret=org.consumer_secret,
        username=org.username,
        password=org.password,
        login_url=org.login_url,
    ) as client:
        # subscribe to topics
        await client.subscribe("/topic/one")
        await client.subscribe("/topic/two")

        # listen for incoming messages
        async for message in client:
            topic = message["channel"]
            data = message["data"]
            print(f"{topic}: {data}")


def stop_printing_after(count: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make ``print`` in this module record its line, and raise after ``count`` lines."""
    lines: list[str] = []

    def record(*args: Any, **_kwargs: Any) -> None:
        lines.append(" ".join(map(str, args)))
        if len(lines) >= count:
            raise EnoughMessages

    monkeypatch.setattr(sys.modules[__name__], "print", record, raising=False)
    return lines


def create_usage_topics(org: Emulator) -> None:
    org.create_push_topic("one", "SELECT Id, Name FROM Account")
    org.create_push_topic("two", "SELECT Id, LastName FROM Contact")


async def test_usage_example(org: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two PushTopics; records of both objects come out of ``async for`` as channel + data."""
    create_usage_topics(org)
    lines = stop_printing_after(2, monkeypatch)

    async def create_records_once_subscribed() -> None:
        await wait_until(
            lambda: any(len(s["subscriptions"]) == 2 for s in org.sessions()),
            what="both subscriptions",
        )
        org.create_record("Account", {"Name": "Acme"})
        org.create_record("Contact", {"LastName": "Doe"})

    feeder = asyncio.create_task(create_records_once_subscribed())
    with pytest.raises(EnoughMessages):
        async with asyncio.timeout(WAIT):
            await stream_events(org)
    await feeder

    assert sorted(line.split(":", 1)[0] for line in lines) == ["/topic/one", "/topic/two"]
    account = next(line for line in lines if line.startswith("/topic/one: "))
    contact = next(line for line in lines if line.startswith("/topic/two: "))
    assert "'Name': 'Acme'" in account
    assert "'type': 'created'" in account
    assert "'LastName': 'Doe'" in contact
    # Leaving the loop by an exception closed the client: the org has no session left.
    await wait_until(lambda: org.session_count == 0, what="the session to end")


def test_usage_example_main_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``if __name__ == "__main__":`` block: ``get_event_loop().run_until_complete(...)``.

    The emulator runs in its own thread, as a real org runs elsewhere; the script's loop is
    the one a Python 3.11 script has by default (set here explicitly, since pytest's is not).
    """
    lines = stop_printing_after(2, monkeypatch)
    with Emulator(
        events=EVENTS, hold_time=HOLD_TIME, session_expiry=SESSION_EXPIRY
    ).in_thread() as org:
        org.call(create_usage_topics, org.emulator)
        done = threading.Event()

        def create_records_once_subscribed() -> None:
            deadline = time.monotonic() + WAIT
            while not any(len(s["subscriptions"]) == 2 for s in org.call(org.emulator.sessions)):
                if time.monotonic() > deadline or done.is_set():
                    return
                time.sleep(0.01)
            org.call(org.emulator.create_record, "Account", {"Name": "Acme"})
            org.call(org.emulator.create_record, "Contact", {"LastName": "Doe"})

        feeder = threading.Thread(target=create_records_once_subscribed)
        feeder.start()
        asyncio.set_event_loop(asyncio.new_event_loop())
        try:
            # The documentation's main block:
            loop = asyncio.get_event_loop()
            with pytest.raises(EnoughMessages):
                loop.run_until_complete(asyncio.wait_for(stream_events(org.emulator), WAIT))
        finally:
            done.set()
            feeder.join()
            asyncio.get_event_loop().close()
            asyncio.set_event_loop(None)
    assert sorted(line.split(":", 1)[0] for line in lines) == ["/topic/one", "/topic/two"]


# -- 4.1.2 Quickstart: authentication ------------------------------------------------------------


async def test_username_password_authentication_with_salesforce_streaming_client(
    org: Emulator,
) -> None:
    client = SalesforceStreamingClient(
        consumer_key=org.consumer_key,
        consumer_secret=org.consumer_secret,
        username=org.username,
        password=org.password,
        login_url=org.login_url,
    )
    await client.open()
    try:
        await client.subscribe("/event/Order__e")
        await org.publish("/event/Order__e", {"Amount__c": 1})
        assert payload_values(await receive_n(client, 1)) == [1]
    finally:
        await client.close()

    # The password is what is sent: a wrong one is refused with Salesforce's error fields.
    wrong = SalesforceStreamingClient(
        consumer_key=org.consumer_key,
        consumer_secret=org.consumer_secret,
        username=org.username,
        password="not the password",
        login_url=org.login_url,
    )
    with pytest.raises(AuthenticationError) as refused:
        await wrong.open()
    assert (refused.value.error, refused.value.error_description) == (
        "invalid_grant",
        "authentication failure",
    )
    assert "not the password" not in str(refused.value)


async def test_username_password_authentication_with_client_and_password_authenticator(
    org: Emulator,
) -> None:
    auth = PasswordAuthenticator(
        consumer_key=org.consumer_key,
        consumer_secret=org.consumer_secret,
        username=org.username,
        password=org.password,
        login_url=org.login_url,
    )
    client = Client(auth)

    # The documented attributes, and the token reply's fields once authenticated.
    assert (auth.client_id, auth.client_secret) == (org.consumer_key, org.consumer_secret)
    assert (auth.username, auth.password) == (org.username, org.password)
    assert auth.access_token is None
    await client.open()
    try:
        assert auth.instance_url == org.instance_url
        assert auth.access_token
        assert auth.token_type == "Bearer"
        assert auth.id
        assert auth.id.endswith(org.user_id)
        assert auth.issued_at
        assert auth.issued_at.isdigit()
        assert auth.signature
        await client.subscribe("/event/Order__e")
        await org.publish("/event/Order__e", {"Amount__c": 2})
        assert payload_values(await receive_n(client, 1)) == [2]
    finally:
        await client.close()


async def test_refresh_token_authentication(org: Emulator) -> None:
    assert org.refresh_token is not None
    auth = RefreshTokenAuthenticator(
        consumer_key=org.consumer_key,
        consumer_secret=org.consumer_secret,
        refresh_token=org.refresh_token,
        login_url=org.login_url,
    )
    client = Client(auth)

    assert (auth.client_id, auth.client_secret) == (org.consumer_key, org.consumer_secret)
    assert auth.refresh_token == org.refresh_token
    assert auth.token_request().grant_type == "refresh_token"
    await client.open()
    try:
        assert auth.access_token
        assert auth.instance_url == org.instance_url
        await client.subscribe("/event/Order__e")
        await org.publish("/event/Order__e", {"Amount__c": 3})
        assert payload_values(await receive_n(client, 1)) == [3]
    finally:
        await client.close()

    revoked = Client(
        RefreshTokenAuthenticator(
            consumer_key=org.consumer_key,
            consumer_secret=org.consumer_secret,
            refresh_token="5Aep861-not-a-refresh-token",
            login_url=org.login_url,
        )
    )
    with pytest.raises(AuthenticationError) as refused:
        await revoked.open()
    assert refused.value.error == "invalid_grant"


class RecordedTokenRequest(aiohttp.ClientConnectionError):
    """Stops a token request before it leaves the machine (see :func:`token_url_of`)."""


async def token_url_of(client: Client) -> tuple[str, dict[str, str]]:
    """Where ``client.open()`` sends its token request, found without any network traffic.

    The request goes through a session whose trace hook records the URL and aborts it before
    a connection is attempted; the form is the authenticator's (pure) token request.
    """
    seen: list[str] = []

    async def record(
        _session: aiohttp.ClientSession,
        _context: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        seen.append(str(params.url))
        raise RecordedTokenRequest("stopped by the test before connecting")

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(record)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client.auth.session = session
        with pytest.raises(AuthenticationError) as failed:
            await client.open()
    assert "Network request failed" in str(failed.value)
    assert isinstance(failed.value.__cause__, RecordedTokenRequest)
    [url] = seen
    return url, dict(client.auth.token_request().form)


async def test_authentication_on_sandbox_orgs(org: Emulator) -> None:
    """``sandbox=True`` logs in at https://test.salesforce.com.

    A sandbox login cannot reach the emulator (``login_url`` would replace the sandbox host),
    so the test checks where the token request goes, stopping it before it is sent; the rest
    of the flow is the same as production's and is covered by the tests above.
    """
    client = SalesforceStreamingClient(
        consumer_key=org.consumer_key,
        consumer_secret=org.consumer_secret,
        username=f"{org.username}.test",  # "<username>.<sandbox_name>"
        password=org.password,
        sandbox=True,
    )
    url, form = await token_url_of(client)
    assert url == "https://test.salesforce.com/services/oauth2/token"
    assert form["grant_type"] == "password"
    assert form["username"] == f"{org.username}.test"

    # The same for both authenticators, and production without sandbox=True.
    assert (
        PasswordAuthenticator("key", "secret", "user", "password", sandbox=True).token_url
        == "https://test.salesforce.com/services/oauth2/token"
    )
    assert (
        RefreshTokenAuthenticator("key", "secret", "refresh", sandbox=True).token_url
        == "https://test.salesforce.com/services/oauth2/token"
    )
    production = SalesforceStreamingClient(
        consumer_key="key", consumer_secret="secret", username="user", password="password"
    )
    url, _ = await token_url_of(production)
    assert url == "https://login.salesforce.com/services/oauth2/token"

    # sfstream's decision: an explicit login_url (My Domain, the emulator) wins over sandbox.
    both = SalesforceStreamingClient(**credentials_of(org), sandbox=True)
    await both.open()
    try:
        assert both.auth.token_url == org.token_url
        assert not both.closed
    finally:
        await both.close()


# -- 4.1.2 Quickstart: connecting, subscriptions, receiving --------------------------------------


async def test_connecting_with_open_and_close(org: Emulator) -> None:
    client = SalesforceStreamingClient(
        consumer_key=org.consumer_key,
        consumer_secret=org.consumer_secret,
        username=org.username,
        password=org.password,
        login_url=org.login_url,
    )
    assert client.closed
    assert client.connection_type is None
    await client.open()
    # subscribe and receive messsages...
    assert not client.closed
    assert client.connection_type == "long-polling"
    assert org.session_count == 1
    with pytest.raises(ClientInvalidOperation):
        await client.open()
    await client.close()
    assert client.closed
    assert client.connection_type is None
    assert org.session_count == 0  # the session was ended (/meta/disconnect)
    with pytest.raises(ClientInvalidOperation):
        await client.subscribe("/event/Order__e")
    with pytest.raises(ClientInvalidOperation):
        await client.receive()


async def test_connecting_as_async_context_manager(org: Emulator) -> None:
    async with SalesforceStreamingClient(
        consumer_key=org.consumer_key,
        consumer_secret=org.consumer_secret,
        username=org.username,
        password=org.password,
        login_url=org.login_url,
    ) as client:
        # subscribe and receive messsages...
        assert not client.closed
        assert org.session_count == 1
    assert client.closed
    assert org.session_count == 0


async def test_subscriptions(org: Emulator, client_factory: ClientFactory) -> None:
    create_foo_topic(org)
    org.create_push_topic("bar", "SELECT Id, LastName FROM Contact")
    async with client_factory() as client:
        assert client.subscriptions == set()
        await client.subscribe("/topic/foo")
        await client.subscribe("/topic/bar")
        assert client.subscriptions == {"/topic/foo", "/topic/bar"}

        await client.unsubscribe("/topic/foo")
        assert client.subscriptions == {"/topic/bar"}
        create_accounts(org, "not for us")
        org.create_record("Contact", {"LastName": "Doe"})
        [message] = await receive_n(client, 1)
        assert message["channel"] == "/topic/bar"
        await assert_silent(client, 0.5)

        with pytest.raises(ServerError) as refused:
            await client.subscribe("/topic/NoSuchTopic")
        assert refused.value.error_code == 400
        assert client.subscriptions == {"/topic/bar"}


async def test_receiving_messages_with_receive_and_async_for(
    org: Emulator, client_factory: ClientFactory
) -> None:
    create_foo_topic(org)
    async with client_factory() as client:
        await client.subscribe("/topic/foo")
        create_accounts(org, "first", "second", "third")

        message = await client.receive()
        assert message["channel"] == "/topic/foo"
        assert message["data"]["event"]["type"] == "created"
        assert message["data"]["sobject"]["Name"] == "first"

        rest = []
        async with asyncio.timeout(WAIT):
            async for message in client:
                # process message
                rest.append(message)
                if len(rest) == 2:
                    break
        assert names(rest) == ["second", "third"]

    # Messages received before close() stay receivable; then iteration ends.
    async with client_factory() as client:
        await client.subscribe("/topic/foo")
        create_accounts(org, "kept")
        await wait_until(lambda: client.pending_count == 1, what="a pending message")
    assert client.has_pending_messages
    assert names([m async for m in client]) == ["kept"]
    with pytest.raises(ClientInvalidOperation):
        await client.receive()


# -- 4.1.2 Replay of events / 4.1.3 Replay configuration ----------------------------------------


async def test_replay_with_a_shelf_across_client_lifetimes(org: Emulator, tmp_path: Path) -> None:
    """A ``shelve.Shelf`` as ``replay``: the second run continues where the first left off."""
    create_foo_topic(org)
    create_accounts(org, "before the first run")
    path = str(tmp_path / "replay.db")

    with shelve.open(path) as replay:
        async with SalesforceStreamingClient(
            consumer_key=org.consumer_key,
            consumer_secret=org.consumer_secret,
            username=org.username,
            password=org.password,
            login_url=org.login_url,
            replay=replay,
        ) as client:
            await client.subscribe("/topic/foo")
            create_accounts(org, "first run")

            first_run = []
            async with asyncio.timeout(WAIT):
                async for message in client:
                    # process message
                    first_run.append(message)
                    break
        assert replay["/topic/foo"] == ReplayMarker(
            first_run[0]["data"]["event"]["createdDate"], first_run[0]["data"]["event"]["replayId"]
        )
    # Only new events on the first connection: nothing stored, so nothing replayed.
    assert names(first_run) == ["first run"]

    create_accounts(org, "while closed 1", "while closed 2")  # no client is running

    with shelve.open(path) as replay:
        async with SalesforceStreamingClient(
            consumer_key=org.consumer_key,
            consumer_secret=org.consumer_secret,
            username=org.username,
            password=org.password,
            login_url=org.login_url,
            replay=replay,
        ) as client:
            await client.subscribe("/topic/foo")

            second_run = []
            async with asyncio.timeout(WAIT):
                async for message in client:
                    # process message
                    second_run.append(message)
                    if len(second_run) == 2:
                        break
        assert replay["/topic/foo"].replay_id == second_run[-1]["data"]["event"]["replayId"]
    assert names(second_run) == ["while closed 1", "while closed 2"]


async def test_replay_option_all_events(org: Emulator) -> None:
    """``ReplayOption.ALL_EVENTS``: every retained event, every time the client connects."""
    create_foo_topic(org)
    create_accounts(org, "old 1", "old 2")

    for run in range(2):
        async with SalesforceStreamingClient(
            consumer_key=org.consumer_key,
            consumer_secret=org.consumer_secret,
            username=org.username,
            password=org.password,
            login_url=org.login_url,
            replay=ReplayOption.ALL_EVENTS,
        ) as client:
            await client.subscribe("/topic/foo")
            if run == 0:
                create_accounts(org, "new")

            received = []
            async with asyncio.timeout(WAIT):
                async for message in client:
                    # process message
                    received.append(message)
                    if len(received) == 3:
                        break
        assert names(received) == ["old 1", "old 2", "new"]


async def test_default_mapping_storage(org: Emulator, tmp_path: Path) -> None:
    """``DefaultMappingStorage(shelf, ALL_EVENTS)``: everything first, then continue."""
    create_foo_topic(org)
    create_accounts(org, "retained 1", "retained 2")
    path = str(tmp_path / "replay.db")

    async def run(expected: int) -> list[Message]:
        with shelve.open(path) as replay:
            default_mapping = DefaultMappingStorage(replay, ReplayOption.ALL_EVENTS)

            async with SalesforceStreamingClient(
                consumer_key=org.consumer_key,
                consumer_secret=org.consumer_secret,
                username=org.username,
                password=org.password,
                login_url=org.login_url,
                replay=default_mapping,
            ) as client:
                await client.subscribe("/topic/foo")

                received = []
                async with asyncio.timeout(WAIT):
                    async for message in client:
                        # process message
                        received.append(message)
                        if len(received) == expected:
                            break
                await assert_silent(client, 0.3)
        return received

    assert names(await run(2)) == ["retained 1", "retained 2"]
    create_accounts(org, "while closed")
    assert names(await run(1)) == ["while closed"]


class MyReplayMarkerStorage(ReplayMarkerStorage):
    """The documentation's custom storage, backed by a dict that records its calls."""

    def __init__(self) -> None:
        self.markers: dict[str, ReplayMarker] = {}
        self.calls: list[tuple[str, str]] = []

    async def set_replay_marker(self, subscription: str, replay_marker: ReplayMarker) -> None:
        # store *replay_marker* for the given *subscription*
        self.calls.append(("set", subscription))
        self.markers[subscription] = replay_marker

    async def get_replay_marker(self, subscription: str) -> ReplayMarker | None:
        # retrieve the replay marker for the given *subscription*
        self.calls.append(("get", subscription))
        return self.markers.get(subscription)


async def test_custom_replay_marker_storage(org: Emulator) -> None:
    create_foo_topic(org)
    replay = MyReplayMarkerStorage()

    async def run(expected: int, *, create: tuple[str, ...] = ()) -> list[Message]:
        async with SalesforceStreamingClient(
            consumer_key=org.consumer_key,
            consumer_secret=org.consumer_secret,
            username=org.username,
            password=org.password,
            login_url=org.login_url,
            replay=replay,
        ) as client:
            await client.subscribe("/topic/foo")
            create_accounts(org, *create)

            received = []
            async with asyncio.timeout(WAIT):
                async for message in client:
                    # process message
                    received.append(message)
                    if len(received) == expected:
                        break
        return received

    first = await run(2, create=("one", "two"))
    assert names(first) == ["one", "two"]
    assert replay.calls == [
        ("get", "/topic/foo"),
        ("get", "/topic/foo"),
        ("set", "/topic/foo"),
        ("get", "/topic/foo"),
        ("set", "/topic/foo"),
    ]
    assert replay.markers["/topic/foo"] == ReplayMarker(
        first[1]["data"]["event"]["createdDate"], first[1]["data"]["event"]["replayId"]
    )

    create_accounts(org, "three")
    assert names(await run(1)) == ["three"]


# -- 4.1.3 Subscription errors ------------------------------------------------------------------


async def store_a_marker_then_let_it_expire(org: Emulator, replay: shelve.Shelf[Any]) -> int:
    """Run a client that stores a marker, then age the org past the retention window.

    Returns the stored replay id, which Salesforce no longer accepts.
    """
    async with SalesforceStreamingClient(**credentials_of(org), replay=replay) as client:
        await client.subscribe(CHANNEL)
        create_accounts(org, "a day and a minute ago")
        await receive_n(client, 1)
    stored: int = replay[CHANNEL].replay_id
    assert org.advance_clock(DAY + 60) >= 1  # retention purged the event
    create_accounts(org, "retained")
    return stored


async def test_subscription_error_for_a_replay_id_outside_the_retention_window(
    org: Emulator, tmp_path: Path
) -> None:
    create_foo_topic(org)
    with shelve.open(str(tmp_path / "replay.db")) as replay:
        stored = await store_a_marker_then_let_it_expire(org, replay)

        async with SalesforceStreamingClient(**credentials_of(org), replay=replay) as client:
            printed = []
            try:
                await client.subscribe("/topic/foo")

            except ServerError as error:
                printed.append(error.error_message)
            assert printed == [INVALID_REPLAY_ID.format(stored)]
            assert client.subscriptions == set()

            # The documented recovery: discard the marker and subscribe again.
            try:
                await client.subscribe("/topic/foo")

            except ServerError:
                del replay["/topic/foo"]
                await client.subscribe("/topic/foo")
            else:
                pytest.fail("the second subscribe with the expired replay id succeeded")

            assert client.subscriptions == {"/topic/foo"}
            create_accounts(org, "after recovery")
            assert names(await receive_n(client, 1)) == ["after recovery"]
        assert replay[CHANNEL].replay_id > stored


async def test_subscription_error_details(org: Emulator, tmp_path: Path) -> None:
    """The ServerError's parsed fields: code, args and Salesforce's message, as documented."""
    create_foo_topic(org)
    with shelve.open(str(tmp_path / "replay.db")) as replay:
        stored = await store_a_marker_then_let_it_expire(org, replay)
        async with SalesforceStreamingClient(**credentials_of(org), replay=replay) as client:
            with pytest.raises(ServerError) as refused:
                await client.subscribe(CHANNEL)
    error = refused.value
    assert error.error == f"400::{INVALID_REPLAY_ID.format(stored)}"
    assert error.error_code == 400
    assert error.error_args == []
    assert error.error_message == INVALID_REPLAY_ID.format(stored)
    assert error.response is not None
    assert error.response["successful"] is False


async def test_replay_fallback_recovers_from_a_subscription_error(
    org: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    create_foo_topic(org)
    with shelve.open(str(tmp_path / "replay.db")) as replay:
        stored = await store_a_marker_then_let_it_expire(org, replay)

        caplog.set_level(logging.WARNING)
        async with SalesforceStreamingClient(
            consumer_key=org.consumer_key,
            consumer_secret=org.consumer_secret,
            username=org.username,
            password=org.password,
            login_url=org.login_url,
            replay=replay,
            replay_fallback=ReplayOption.ALL_EVENTS,
        ) as client:
            await client.subscribe("/topic/foo")
            create_accounts(org, "new")

            received = []
            async with asyncio.timeout(WAIT):
                async for message in client:
                    # process message
                    received.append(message)
                    if len(received) == 2:
                        break
            assert client.replay_fallback is ReplayOption.ALL_EVENTS
            assert client.stats[StatusKind.REPLAY_FALLBACK] == 1

    # ALL_EVENTS: the retained event first, then the new one.
    assert names(received) == ["retained", "new"]
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "/topic/foo" in warning.getMessage()
    assert INVALID_REPLAY_ID.format(stored) in warning.getMessage()
    assert "ALL_EVENTS" in warning.getMessage()


# -- 4.1.3 ReplayMarkerStoragePolicy -------------------------------------------------------------


class ProcessingFailed(Exception):
    pass


def process(message: Message) -> None:
    """Message processing code raising errors (on records named ``fail...``)."""
    if message["data"]["sobject"]["Name"].startswith("fail"):
        raise ProcessingFailed(message["data"]["sobject"]["Name"])


async def second_run(org: Emulator, path: str, expected: int) -> list[Message]:
    """Open the shelf again and receive what a restarted client replays."""
    with shelve.open(path) as replay:
        async with SalesforceStreamingClient(**credentials_of(org), replay=replay) as client:
            await client.subscribe(CHANNEL)
            messages = await receive_n(client, expected)
            await assert_silent(client, 0.3)
    return messages


async def test_automatic_policy_stores_markers_before_messages_are_processed(
    org: Emulator, tmp_path: Path
) -> None:
    """The default: a message whose processing failed is not replayed after a restart."""
    create_foo_topic(org)
    path = str(tmp_path / "replay.db")
    with shelve.open(path) as replay:
        async with SalesforceStreamingClient(**credentials_of(org), replay=replay) as client:
            assert client.replay_storage_policy is ReplayMarkerStoragePolicy.AUTOMATIC
            await client.subscribe(CHANNEL)
            create_accounts(org, "ok 1", "fail 2", "ok 3")

            async def consume() -> None:
                async for message in client:
                    process(message)

            with pytest.raises(ProcessingFailed):
                await asyncio.wait_for(consume(), WAIT)
        assert replay[CHANNEL].replay_id == 2
    assert names(await second_run(org, path, 1)) == ["ok 3"]


async def test_manual_policy_with_extract_replay_id(org: Emulator, tmp_path: Path) -> None:
    create_foo_topic(org)
    path = str(tmp_path / "replay.db")
    with shelve.open(path) as replay:
        async with SalesforceStreamingClient(
            consumer_key=org.consumer_key,
            consumer_secret=org.consumer_secret,
            username=org.username,
            password=org.password,
            login_url=org.login_url,
            replay=replay,
            replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL,
        ) as client:
            await client.subscribe("/topic/foo")
            create_accounts(org, "ok 1", "fail 2", "ok 3")

            async def consume() -> None:
                async for message in client:
                    # message processing code raising errors...
                    process(message)
                    assert client.replay_storage is not None  # (for mypy)
                    await client.replay_storage.extract_replay_id(message)

            with pytest.raises(ProcessingFailed):
                await asyncio.wait_for(consume(), WAIT)
        assert replay[CHANNEL].replay_id == 1
    # The failed message (and the one after it) come again after a restart.
    assert names(await second_run(org, path, 2)) == ["fail 2", "ok 3"]


async def test_manual_policy_with_the_replay_storage_context_manager(
    org: Emulator, tmp_path: Path
) -> None:
    create_foo_topic(org)
    path = str(tmp_path / "replay.db")
    with shelve.open(path) as replay:
        async with SalesforceStreamingClient(
            consumer_key=org.consumer_key,
            consumer_secret=org.consumer_secret,
            username=org.username,
            password=org.password,
            login_url=org.login_url,
            replay=replay,
            replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL,
        ) as client:
            await client.subscribe("/topic/foo")
            create_accounts(org, "ok 1", "ok 2", "fail 3", "ok 4")
            assert client.replay_storage is not None

            failures = []
            async with asyncio.timeout(WAIT):
                async for message in client:
                    try:
                        async with client.replay_storage(message):
                            # message processing code raising errors...
                            process(message)
                    except ProcessingFailed as failure:
                        failures.append(str(failure))
                    if message["data"]["sobject"]["Name"] == "ok 4":
                        break
            assert failures == ["fail 3"]
        # "ok 4" was stored after "fail 3" failed: markers only move forward.
        assert replay[CHANNEL].replay_id == 4

        async with SalesforceStreamingClient(
            **credentials_of(org),
            replay=replay,
            replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL,
        ) as client:
            await client.subscribe(CHANNEL)
            create_accounts(org, "fail 5", "ok 6")
            storage = client.replay_storage
            assert storage is not None

            async def consume() -> None:
                async for message in client:
                    async with storage(message):
                        process(message)

            with pytest.raises(ProcessingFailed):
                await asyncio.wait_for(consume(), WAIT)
        assert replay[CHANNEL].replay_id == 4  # the block raised: nothing stored
    assert names(await second_run(org, path, 2)) == ["fail 5", "ok 6"]


# -- 4.1.3 Network failures ---------------------------------------------------------------------


async def test_network_failure_with_connection_timeout(org: Emulator) -> None:
    """The server goes away for longer than ``connection_timeout``: TransportTimeoutError."""
    client = SalesforceStreamingClient(
        consumer_key=org.consumer_key,
        consumer_secret=org.consumer_secret,
        username=org.username,
        password=org.password,
        login_url=org.login_url,
        connection_timeout=1,
    )
    await client.open()
    await client.subscribe("/event/Order__e")

    await org.stop()
    started = time.monotonic()
    printed = []
    try:
        message = await asyncio.wait_for(client.receive(), WAIT)

    except TransportTimeoutError:
        printed.append("Connection is lost with the server. Couldn't reconnect in 60 seconds.")
    else:
        pytest.fail(f"receive() returned {message} while the server was down")
    finally:
        await client.close()
    elapsed = time.monotonic() - started
    assert printed
    assert 0.9 <= elapsed < 3.0, elapsed


async def test_network_failures_are_recovered_transparently() -> None:
    """An outage shorter than ``connection_timeout`` (here None: keep trying) is invisible.

    The org restarts on the same address with the same data; the client reconnects,
    resubscribes, and gets what was published during the outage.
    """
    port = free_port()
    options: dict[str, Any] = {
        "port": port,
        "events": EVENTS,
        "hold_time": HOLD_TIME,
        "session_expiry": SESSION_EXPIRY,
    }
    first = Emulator(**options)
    await first.start()
    try:
        client = SalesforceStreamingClient(**credentials_of(first), connection_timeout=None)
        await client.open()
        await client.subscribe("/event/Order__e")
        await first.publish("/event/Order__e", {"Amount__c": 1})
        assert payload_values(await receive_n(client, 1)) == [1]
    finally:
        await first.stop()

    try:
        await first.publish("/event/Order__e", {"Amount__c": 2})  # during the outage
        receiving = asyncio.create_task(client.receive())
        await asyncio.sleep(1.5)  # longer than a 1 s connection_timeout would allow
        assert not receiving.done()
        async with Emulator(**options, state=first.state) as second:
            await second.publish("/event/Order__e", {"Amount__c": 3})
            message = await asyncio.wait_for(receiving, WAIT)
            assert payload_values([message, *await receive_n(client, 1)]) == [2, 3]
            assert client.subscriptions == {"/event/Order__e"}
            await client.close()
    finally:
        await client.close()


# -- 4.1.3 Prefetching --------------------------------------------------------------------------


async def test_prefetching_with_max_pending_count(org: Emulator, org_requests: RequestLog) -> None:
    """Messages are fetched before receive() is called, up to ``max_pending_count``."""
    client = SalesforceStreamingClient(
        consumer_key=org.consumer_key,
        consumer_secret=org.consumer_secret,
        username=org.username,
        password=org.password,
        login_url=org.login_url,
        max_pending_count=42,
    )
    await client.open()
    try:
        await client.subscribe("/event/Order__e")
        assert client.pending_count == 0
        assert not client.has_pending_messages
        for amount in range(60):
            await org.publish("/event/Order__e", {"Amount__c": amount})
            if amount % 6 == 5:
                await asyncio.sleep(HOLD_TIME / 4)  # several replies, as events trickle in

        # Fetched without receive(), until the limit is reached; then polling is suspended.
        await wait_until(lambda: client.pending_count >= 42, what="42 prefetched messages")
        assert client.has_pending_messages
        pending = client.pending_count
        idle_since = time.monotonic()
        await asyncio.sleep(3 * HOLD_TIME)
        assert client.pending_count == pending
        assert org_requests.count("/cometd", since=idle_since) == 0  # suspended

        # Consuming resumes the connection; nothing is lost or repeated.
        received = await receive_n(client, 60)
        assert payload_values(received) == list(range(60))
        assert client.pending_count == 0
    finally:
        await client.close()


# -- 4.1.3 JSON encoder/decoder -----------------------------------------------------------------


async def test_json_encoder_and_decoder(org: Emulator) -> None:
    """``json_dumps``/``json_loads`` (ujson's in the docs; counting wrappers of json here)."""
    calls: Counter[str] = Counter()

    def dumps(obj: Any, *args: Any, **kwargs: Any) -> str:
        calls["dumps"] += 1
        return json.dumps(obj, *args, **kwargs)

    def loads(text: str | bytes, *args: Any, **kwargs: Any) -> Any:
        calls["loads"] += 1
        return json.loads(text, *args, parse_float=Decimal, **kwargs)

    ujson = SimpleNamespace(dumps=dumps, loads=loads)  # stands for `import ujson`

    client = SalesforceStreamingClient(
        consumer_key=org.consumer_key,
        consumer_secret=org.consumer_secret,
        username=org.username,
        password=org.password,
        login_url=org.login_url,
        json_dumps=ujson.dumps,
        json_loads=ujson.loads,
    )
    assert calls == {}
    await client.open()
    try:
        # The token reply, the handshake and the first connect were decoded by json_loads.
        assert calls["loads"] >= 3
        assert calls["dumps"] >= 2
        before = dict(calls)
        await client.subscribe("/event/Order__e")
        await org.publish("/event/Order__e", {"Amount__c": 12.5})
        [message] = await receive_n(client, 1)
        # parse_float=Decimal shows the event itself went through json_loads.
        assert message["data"]["payload"]["Amount__c"] == Decimal("12.5")
        assert calls["dumps"] > before["dumps"]
        assert calls["loads"] > before["loads"]
    finally:
        await client.close()


# -- 4.2.1 Client.publish ------------------------------------------------------------------------


async def test_publish_is_refused_by_salesforce(client_factory: ClientFactory) -> None:
    """The documented warning: Salesforce does not implement publishing over CometD."""
    async with client_factory() as client:
        with pytest.raises(ServerError) as refused:
            await client.publish("/event/Order__e", {"Amount__c": 1})
    assert refused.value.error_code == 403
    assert refused.value.error_message is not None
    assert "Publish is not allowed" in refused.value.error_message
