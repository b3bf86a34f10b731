"""Edge cases of the aiosfstream API a demanding user hits, against the emulated org.

Each test pins a behaviour that once went wrong: a message lost to a cancellation, a storage
error surfacing raw from deep inside, a ``close()`` that did not stop an ``open()`` in flight,
a bad argument failing later, far from where it was given.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest

from sfstream import (
    Client,
    ClientInvalidOperation,
    ConstantReplayId,
    InvalidArgumentError,
    MappingStorage,
    PasswordAuthenticator,
    RefreshTokenAuthenticator,
    ReplayError,
    ReplayMarker,
    ReplayMarkerStorage,
    ReplayMarkerStoragePolicy,
    ReplayOption,
    SalesforceStreamingClient,
    ServerError,
)
from sfstream.emulator import Emulator
from sfstream.testing import ClientFactory, Credentials
from tests.integration.conftest import assert_silent, wait_until

CHANNEL = "/event/Order__e"
WAIT = 5.0


class GatedStorage(ReplayMarkerStorage):
    """A dict storage whose writes wait at a gate while it is closed (a slow database)."""

    def __init__(self) -> None:
        self.markers: dict[str, ReplayMarker] = {}
        self.gate = asyncio.Event()
        self.gate.set()
        self.writing = asyncio.Event()
        self.writes = 0
        self.block_at = 1  # the write (counted from 1) from which the gate applies

    async def get_replay_marker(self, subscription: str) -> ReplayMarker | None:
        return self.markers.get(subscription)

    async def set_replay_marker(self, subscription: str, replay_marker: ReplayMarker) -> None:
        self.writes += 1
        if self.writes >= self.block_at:
            self.writing.set()
            await self.gate.wait()
        self.markers[subscription] = replay_marker


def amount(message: Mapping[str, Any]) -> Any:
    return message["data"]["payload"]["Amount__c"]


async def gated_client(
    emulator: Emulator, factory: ClientFactory, *amounts: int
) -> tuple[GatedStorage, Client]:
    """An open client storing its markers in a :class:`GatedStorage`, subscribed, with one
    event of each of ``amounts`` waiting in it."""
    storage = GatedStorage()
    client = factory(replay=storage)
    await client.open()
    await client.subscribe(CHANNEL)
    for value in amounts:
        await emulator.publish(CHANNEL, {"Amount__c": value})
    await wait_until(lambda: client.pending_count >= len(amounts), WAIT, "the pending events")
    return storage, client


async def cancel_while_storing(storage: GatedStorage, call: Any) -> None:
    """Run ``call`` (a coroutine) until its marker write waits at the gate, then cancel it."""
    task = asyncio.ensure_future(call)
    async with asyncio.timeout(WAIT):
        await storage.writing.wait()  # a message is taken; its marker is being stored
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_receive_cancelled_while_its_marker_is_stored_loses_nothing(
    sfstream_emulator: Emulator, sfstream_client_factory: ClientFactory
) -> None:
    storage, client = await gated_client(sfstream_emulator, sfstream_client_factory, 1, 2)
    storage.gate.clear()
    await cancel_while_storing(storage, client.receive())
    assert client.pending_count >= 1  # the interrupted message still waits
    assert client.has_pending_messages

    storage.gate.set()
    async with asyncio.timeout(WAIT):
        first = await client.receive()
        second = await client.receive()
    assert [amount(first), amount(second)] == [1, 2]
    assert storage.markers[CHANNEL].replay_id == second["data"]["event"]["replayId"]


async def test_async_for_cancelled_while_its_marker_is_stored_loses_nothing(
    sfstream_emulator: Emulator, sfstream_client_factory: ClientFactory
) -> None:
    storage, client = await gated_client(sfstream_emulator, sfstream_client_factory, 1, 2)
    storage.gate.clear()
    await cancel_while_storing(storage, anext(aiter(client)))

    storage.gate.set()
    got = []
    async with asyncio.timeout(WAIT):
        async for message in client:
            got.append(amount(message))
            if len(got) == 2:
                break
    assert got == [1, 2]


async def test_receive_many_cancelled_mid_batch_loses_nothing(
    sfstream_emulator: Emulator, sfstream_client_factory: ClientFactory
) -> None:
    storage, client = await gated_client(sfstream_emulator, sfstream_client_factory, 1, 2, 3)
    storage.block_at = 2  # the first marker is stored, the second one waits
    storage.gate.clear()
    await cancel_while_storing(storage, client.receive_many(10))
    assert client.pending_count == 3

    storage.gate.set()
    got: list[Any] = []
    async with asyncio.timeout(WAIT):
        while len(got) < 3:
            got += [amount(message) for message in await client.receive_many(10)]
    assert got == [1, 2, 3]


@pytest.mark.parametrize("storage", [False, True], ids=["no-markers", "automatic-markers"])
@pytest.mark.parametrize(
    ("max_count", "error", "match"),
    [
        ("3", TypeError, "max_count must be an int, not str"),
        (2.0, TypeError, "max_count must be an int, not float"),
        (True, TypeError, "max_count must be an int, not bool"),
        (0, InvalidArgumentError, "max_count must be at least 1, not 0"),
    ],
)
async def test_receive_many_refuses_a_bad_count_at_the_call(
    sfstream_emulator: Emulator,
    sfstream_client_factory: ClientFactory,
    storage: bool,
    max_count: Any,
    error: type[Exception],
    match: str,
) -> None:
    client = sfstream_client_factory(**({"replay": GatedStorage()} if storage else {}))
    # before: "3" gave "'<' not supported between instances of 'str' and 'int'" from inside,
    # and True was taken as a count of 1
    with pytest.raises(error, match=match):
        await client.receive_many(max_count)  # checked before the client is even open
    await client.open()
    await client.subscribe(CHANNEL)
    await sfstream_emulator.publish(CHANNEL, {"Amount__c": 1})
    await wait_until(lambda: client.pending_count >= 1, WAIT, "a pending message")
    with pytest.raises(error, match=match):
        await client.receive_many(max_count)
    assert client.pending_count == 1  # nothing taken
    async with asyncio.timeout(WAIT):
        assert [amount(message) for message in await client.receive_many(1)] == [1]


def connect_loops() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if "bayeux" in task.get_name()]


async def test_close_while_open_authenticates_leaves_the_client_closed(
    sfstream_emulator: Emulator, sfstream_client_factory: ClientFactory
) -> None:
    client = sfstream_client_factory()
    sfstream_emulator.delay_responses(0.5, target="token")
    opening = asyncio.create_task(client.open())
    await asyncio.sleep(0.1)  # the token request is in flight
    await client.close()
    with pytest.raises(ClientInvalidOperation, match="closed"):
        async with asyncio.timeout(WAIT):
            await opening
    assert client.closed
    await asyncio.sleep(0.6)  # the token would have come by now
    assert client.closed
    assert sfstream_emulator.session_count == 0
    assert connect_loops() == []
    with pytest.raises(ClientInvalidOperation):
        await client.subscribe(CHANNEL)


async def test_close_while_open_handshakes_ends_the_open(
    sfstream_emulator: Emulator, sfstream_client_factory: ClientFactory
) -> None:
    client = sfstream_client_factory()
    await client.auth.authenticate()  # so that open() goes straight to the handshake
    sfstream_emulator.delay_responses(0.5, channel="/meta/handshake")
    opening = asyncio.create_task(client.open())
    await asyncio.sleep(0.1)  # the handshake is in flight
    await client.close()
    with pytest.raises(ClientInvalidOperation, match="closed"):
        async with asyncio.timeout(WAIT):
            await opening
    assert client.closed
    assert connect_loops() == []
    await client.close()  # still idempotent


async def test_open_cancelled_from_outside_is_still_a_cancellation(
    sfstream_emulator: Emulator, sfstream_client_factory: ClientFactory
) -> None:
    client = sfstream_client_factory()
    sfstream_emulator.delay_responses(0.5, target="token")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await client.open()
    assert client.closed
    assert connect_loops() == []


class BrokenStorage(ReplayMarkerStorage):
    """A storage whose database is down: every call raises its driver's own error."""

    async def get_replay_marker(self, subscription: str) -> ReplayMarker | None:
        raise ConnectionRefusedError("replay database unreachable")

    async def set_replay_marker(self, subscription: str, replay_marker: ReplayMarker) -> None:
        raise ConnectionRefusedError("replay database unreachable")


async def test_a_storage_that_cannot_be_read_fails_the_subscribe_with_replay_error(
    sfstream_emulator: Emulator, sfstream_client_factory: ClientFactory
) -> None:
    client = sfstream_client_factory(replay=BrokenStorage())
    await client.open()
    with pytest.raises(ReplayError, match="/event/Order__e") as caught:
        await client.subscribe(CHANNEL)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert client.subscriptions == set()
    # the client is still usable: with a storage that works, the subscription is made
    client.replay_storage = GatedStorage()
    await client.subscribe(CHANNEL)
    await sfstream_emulator.publish(CHANNEL, {"Amount__c": 1})
    async with asyncio.timeout(WAIT):
        assert amount(await client.receive()) == 1


async def test_a_storage_that_cannot_store_fails_the_next_receive_with_replay_error(
    sfstream_emulator: Emulator, sfstream_client_factory: ClientFactory
) -> None:
    storage = GatedStorage()
    client = sfstream_client_factory(replay=storage)
    await client.open()
    await client.subscribe(CHANNEL)
    client.replay_storage = BrokenStorage()
    await sfstream_emulator.publish(CHANNEL, {"Amount__c": 1})
    await sfstream_emulator.publish(CHANNEL, {"Amount__c": 2})
    async with asyncio.timeout(WAIT):
        assert amount(await client.receive()) == 1  # delivered all the same
        with pytest.raises(ReplayError, match="failed to store") as caught:
            await client.receive()
        assert isinstance(caught.value.__cause__, ConnectionRefusedError)
        assert amount(await client.receive()) == 2


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"connection_timeout": "10"}, TypeError, "connection_timeout must be a number or None"),
        ({"connection_timeout": True}, TypeError, "connection_timeout must be a number or None"),
        ({"connection_timeout": float("nan")}, InvalidArgumentError, "connection_timeout"),
        ({"max_pending_count": "5"}, TypeError, "max_pending_count must be a number"),
        ({"max_pending_count": None}, TypeError, "max_pending_count must be a number"),
        ({"max_pending_count": True}, TypeError, "max_pending_count must be a number"),
        ({"max_pending_count": float("nan")}, InvalidArgumentError, "max_pending_count"),
        ({"max_pending_count": float("inf")}, InvalidArgumentError, "max_pending_count"),
        ({"max_response_size": "1MB"}, TypeError, "max_response_size must be an int"),
        ({"max_response_size": 0}, InvalidArgumentError, "max_response_size must be at least 1"),
        ({"max_messages": 1.5}, TypeError, "max_messages must be an int"),
        ({"json_dumps": None}, TypeError, "json_dumps must be callable"),
        ({"json_loads": "json"}, TypeError, "json_loads must be callable"),
        ({"replay_storage_policy": "manual"}, InvalidArgumentError, "AUTOMATIC or MANUAL"),
        ({"replay_storage_policy": 3}, InvalidArgumentError, "AUTOMATIC or MANUAL"),
    ],
)
def test_bad_arguments_fail_at_construction(
    sfstream_credentials: Credentials, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    # before: most of these passed and failed later, inside open(), with e.g.
    # "'<=' not supported between instances of 'str' and 'int'"
    with pytest.raises(error, match=match):
        SalesforceStreamingClient(**sfstream_credentials, **options)
    authenticator = PasswordAuthenticator(
        sfstream_credentials["consumer_key"],
        sfstream_credentials["consumer_secret"],
        sfstream_credentials["username"],
        sfstream_credentials["password"],
        login_url=sfstream_credentials["login_url"],
    )
    with pytest.raises(error, match=match):
        Client(authenticator, **options)


@pytest.mark.parametrize(
    "options",
    [
        {"connection_timeout": None},
        {"connection_timeout": 0},
        {"connection_timeout": 2},
        {"max_pending_count": 0},
        {"max_pending_count": -1},
        {"max_pending_count": 2.0},
        {"replay_storage_policy": 2},
    ],
)
async def test_edge_values_documented_as_accepted_work(
    sfstream_emulator: Emulator, sfstream_client_factory: ClientFactory, options: dict[str, Any]
) -> None:
    client = sfstream_client_factory(**options)
    await client.open()
    await client.subscribe(CHANNEL)
    for value in (1, 2, 3):
        await sfstream_emulator.publish(CHANNEL, {"Amount__c": value})
    async with asyncio.timeout(WAIT):
        got = [amount(await client.receive()) for _ in range(3)]
    assert got == [1, 2, 3]


async def test_replay_fallback_set_on_the_client_is_checked_there(
    sfstream_emulator: Emulator, sfstream_client_factory: ClientFactory
) -> None:
    """aiosfstream documents ``replay_fallback`` as an attribute: a bad value is refused when
    it is set, not later, deep inside a subscribe that Salesforce refused for its replay id."""
    stale = {CHANNEL: ReplayMarker("2020-01-01T00:00:00.000Z", 999_999)}
    client = sfstream_client_factory(replay=stale)
    with pytest.raises(InvalidArgumentError, match="replay_fallback"):
        client.replay_fallback = 7  # type: ignore[assignment]
    with pytest.raises(TypeError, match="replay_fallback"):
        client.replay_fallback = "ALL_EVENTS"  # type: ignore[assignment]
    assert client.replay_fallback is None
    client.replay_fallback = -2  # type: ignore[assignment]
    assert client.replay_fallback is ReplayOption.ALL_EVENTS
    await client.open()
    await client.subscribe(CHANNEL)  # the stale id is refused; the fallback recovers
    assert client.subscriptions == {CHANNEL}
    client.replay_fallback = None
    assert client.replay_fallback is None


def test_replay_storage_and_policy_set_on_the_client_are_checked_there() -> None:
    client = Client(PasswordAuthenticator("key", "secret", "user", "password"))
    # before: "automatic" was taken, and compared unequal to AUTOMATIC: no marker was stored
    with pytest.raises(InvalidArgumentError, match="AUTOMATIC or MANUAL"):
        client.replay_storage_policy = "automatic"  # type: ignore[assignment]
    assert client.replay_storage_policy is ReplayMarkerStoragePolicy.AUTOMATIC
    client.replay_storage_policy = 2  # type: ignore[assignment]
    assert client.replay_storage_policy is ReplayMarkerStoragePolicy.MANUAL
    # before: AttributeError "type object 'dict' has no attribute 'extract_replay_id'"
    with pytest.raises(TypeError, match="MappingStorage"):
        client.replay_storage = {}  # type: ignore[assignment]
    assert isinstance(client.replay_storage, ConstantReplayId)
    storage = MappingStorage({})
    client.replay_storage = storage
    assert client.replay_storage is storage
    client.replay_storage = None
    assert client.replay_storage is None


async def test_an_authenticator_refuses_json_functions_that_are_not_callable(
    sfstream_emulator: Emulator,
) -> None:
    # before: accepted, and open() then failed with "Network request failed: the token
    # endpoint answered HTTP 200 with a body that is not JSON", blaming the server
    for position in (5, 6):
        arguments: list[Any] = [
            sfstream_emulator.consumer_key,
            sfstream_emulator.consumer_secret,
            sfstream_emulator.username,
            sfstream_emulator.password,
            False,
        ]
        arguments += [None] if position == 5 else [json.dumps, None]
        with pytest.raises(TypeError, match="must be callable, not NoneType"):
            PasswordAuthenticator(*arguments, login_url=sfstream_emulator.login_url)
    with pytest.raises(TypeError, match="json_loads must be callable"):
        RefreshTokenAuthenticator("key", "secret", "token", json_loads="json")  # type: ignore[arg-type]


async def test_subscribing_twice_and_unsubscribing_what_is_not_subscribed(
    sfstream_emulator: Emulator, sfstream_client_factory: ClientFactory
) -> None:
    """No defect here; pinned: a second subscribe to a channel delivers each event once, an
    unsubscribe of a channel never subscribed to is a no-op, and a refused publish is a
    ServerError with Salesforce's words."""
    client = sfstream_client_factory()
    await client.open()
    await client.subscribe(CHANNEL)
    await client.subscribe(CHANNEL)
    assert client.subscriptions == {CHANNEL}
    await sfstream_emulator.publish(CHANNEL, {"Amount__c": 1})
    await sfstream_emulator.publish(CHANNEL, {"Amount__c": 2})
    async with asyncio.timeout(WAIT):
        got = [amount(await client.receive()) for _ in range(2)]
    assert got == [1, 2]
    await assert_silent(client)  # no second copy
    await client.unsubscribe("/event/Nope__e")
    assert client.subscriptions == {CHANNEL}
    with pytest.raises(ServerError, match="Publish is not allowed") as refused:
        await client.publish(CHANNEL, {"Amount__c": 3})
    assert refused.value.error_code == 403


async def test_a_receive_cancelled_while_it_waits_loses_nothing(
    sfstream_emulator: Emulator, sfstream_client_factory: ClientFactory
) -> None:
    """No defect here; pinned: the event published after the cancellation is the next one."""
    client = sfstream_client_factory(replay=GatedStorage())
    await client.open()
    await client.subscribe(CHANNEL)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await client.receive()
    await sfstream_emulator.publish(CHANNEL, {"Amount__c": 1})
    async with asyncio.timeout(WAIT):
        assert amount(await client.receive()) == 1
