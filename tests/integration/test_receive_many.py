"""#13: ``receive_many()`` hands out what waits, in order, and stores markers as receive() does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sfstream import DefaultMappingStorage, ReplayMarkerStoragePolicy, ReplayOption
from sfstream.emulator import Emulator
from sfstream.exceptions import InvalidArgumentError, ReplayError

from .conftest import WAIT, ClientFactory, payload_values

CHANNEL = "/event/Order__e"


async def drain_in_batches(client: Any, count: int, most: int) -> None:
    """``receive_many(most)`` until ``count`` events came: Amount__c 0, 1, ... in order, in
    batches of ``most`` at most, and batches, not one event at a time."""
    seen: list[Any] = []
    sizes: list[int] = []
    while len(seen) < count:
        async with asyncio.timeout(WAIT):
            batch = await client.receive_many(most)
        sizes.append(len(batch))
        seen += payload_values(batch)
    assert seen == list(range(count))
    assert max(sizes) <= most
    assert len(sizes) < count


async def test_receive_many_batches_in_order_and_stores_markers(
    org: Emulator, client_factory: ClientFactory
) -> None:
    published = await org.publish_many(CHANNEL, [{"Amount__c": n} for n in range(250)])
    markers: dict[str, Any] = {}
    # AUTOMATIC storage of every marker, everything retained first
    client = client_factory(replay=DefaultMappingStorage(markers, ReplayOption.ALL_EVENTS))
    await client.open()
    with pytest.raises(InvalidArgumentError, match="max_count"):
        await client.receive_many(0)
    await client.subscribe(CHANNEL)
    await drain_in_batches(client, 250, 50)
    # the marker of the last event handed out was stored before its batch was returned
    assert markers[CHANNEL].replay_id == published[-1].replay_id


@pytest.mark.parametrize("replay", [ReplayOption.ALL_EVENTS, "manual"])
async def test_receive_many_without_markers_to_store_hands_out_the_driver_batches(
    org: Emulator, client_factory: ClientFactory, replay: Any
) -> None:
    await org.publish_many(CHANNEL, [{"Amount__c": n} for n in range(250)])
    if replay == "manual":  # a storage, but the application stores the markers itself
        markers: dict[str, Any] = {}
        client = client_factory(
            replay=DefaultMappingStorage(markers, ReplayOption.ALL_EVENTS),
            replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL,
        )
    else:
        markers = {}
        client = client_factory(replay=replay)
    await client.open()
    await client.subscribe(CHANNEL)
    await drain_in_batches(client, 250, 50)
    assert markers == {}  # nothing stored by the client
    # a storage failure recorded earlier is raised before anything is handed out
    client._backlog.append(ReplayError("the storage failed"))
    with pytest.raises(ReplayError, match="the storage failed"):
        await client.receive_many(10)


async def test_storage_and_policy_set_later_apply_from_the_next_event(
    org: Emulator, client_factory: ClientFactory
) -> None:
    """#13: the client works out once whether it stores markers, and again whenever
    ``replay_storage`` or ``replay_storage_policy`` is set: ``async for``, ``receive()`` and
    ``receive_many()`` follow the new setting from the next event on."""
    published = await org.publish_many(CHANNEL, [{"Amount__c": n} for n in range(6)])
    first: dict[str, Any] = {}
    client = client_factory(replay=DefaultMappingStorage(first, ReplayOption.ALL_EVENTS))
    await client.open()
    await client.subscribe(CHANNEL)

    async def next_event() -> Any:
        async with asyncio.timeout(WAIT):
            return await anext(aiter(client))

    assert payload_values([await next_event()]) == [0]
    assert first[CHANNEL].replay_id == published[0].replay_id  # AUTOMATIC: stored

    client.replay_storage_policy = ReplayMarkerStoragePolicy.MANUAL
    assert client.replay_storage_policy is ReplayMarkerStoragePolicy.MANUAL
    assert payload_values([await next_event()]) == [1]
    async with asyncio.timeout(WAIT):
        assert payload_values([await client.receive()]) == [2]
    assert first[CHANNEL].replay_id == published[0].replay_id  # MANUAL: nothing stored

    second: dict[str, Any] = {}
    storage = DefaultMappingStorage(second, ReplayOption.ALL_EVENTS)
    client.replay_storage = storage
    client.replay_storage_policy = ReplayMarkerStoragePolicy.AUTOMATIC
    assert client.replay_storage is storage
    assert payload_values([await next_event()]) == [3]
    assert second[CHANNEL].replay_id == published[3].replay_id  # the new storage
    async with asyncio.timeout(WAIT):
        assert payload_values([await client.receive()]) == [4]
    assert second[CHANNEL].replay_id == published[4].replay_id

    client.replay_storage = None  # nothing to store any more
    async with asyncio.timeout(WAIT):
        assert payload_values(await client.receive_many(10)) == [5]
    assert second[CHANNEL].replay_id == published[4].replay_id
    assert first[CHANNEL].replay_id == published[0].replay_id
