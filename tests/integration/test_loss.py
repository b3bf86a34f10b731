"""Issue #10: the client loss paths an outside fault campaign found, each against the emulator.

1. two filtered subscriptions to one PushTopic keep their own resume positions (session loss and
   restart with a durable storage);
2. a 401 on a resubscription (or on the user's subscribe) re-authenticates and subscribes again;
3. a gap-safe resubscription uses the org's clock (its HTTP ``Date``), never the local one;
6. deliveries on channels nobody subscribed to are dropped and never stored;
7. ``open()`` cancelled after the handshake ends the session on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shelve
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sfstream import (
    Client,
    DefaultMappingStorage,
    ReplayMarker,
    ReplayMarkerStorage,
    ReplayOption,
    SalesforceStreamingClient,
    SqliteStorage,
    StatusKind,
)
from sfstream.bayeux import ConstantBackoff, Extension, Message
from sfstream.emulator import Emulator, SystemClock
from tests.integration.conftest import StatusRecorder, wait_until

TOPIC = "/topic/Acc"
PARTNER = f"{TOPIC}?Type=Partner"
CUSTOMER = f"{TOPIC}?Type=Customer"
EVENT = "/event/Order__e"


def make_client(org: Emulator, **kwargs: Any) -> SalesforceStreamingClient:
    kwargs.setdefault("backoff", ConstantBackoff(0.05))
    kwargs.setdefault("connection_timeout", 10)
    return SalesforceStreamingClient(
        consumer_key=org.consumer_key,
        consumer_secret=org.consumer_secret,
        username=org.username,
        password=org.password,
        login_url=org.login_url,
        **kwargs,
    )


async def receive(client: Client, timeout: float = 5.0) -> Message:
    async with asyncio.timeout(timeout):
        return await client.receive()


def number(message: Message) -> int:
    return int(message["data"]["payload"]["N__c"])


# -- 1. two filtered subscriptions to one PushTopic -------------------------------------------


@pytest.fixture
async def accounts() -> AsyncIterator[tuple[Emulator, dict[str, set[str]]]]:
    """An org with 100 retained Partner and 100 Customer account events; batches of 10."""
    async with Emulator(hold_time=0.2, session_expiry=5.0, max_batch=10) as org:
        org.create_push_topic("Acc", "SELECT Id, Name, Type FROM Account")
        ids: dict[str, set[str]] = {PARTNER: set(), CUSTOMER: set()}
        for n in range(100):
            for kind, channel in (("Partner", PARTNER), ("Customer", CUSTOMER)):
                ids[channel].add(
                    org.create_record("Account", {"Name": f"{kind} {n}", "Type": kind})
                )
        yield org, ids


def record(seen: dict[str, set[str]], message: Message) -> None:
    channel = message["channel"]
    sobject = message["data"]["sobject"]
    assert channel == f"{TOPIC}?Type={sobject['Type']}"  # labelled with the filter
    assert sobject["Id"] not in seen[channel], "delivered twice"
    seen[channel].add(sobject["Id"])


async def test_two_filtered_subscriptions_resume_each_after_its_own_last_event(
    accounts: tuple[Emulator, dict[str, set[str]]],
) -> None:
    org, ids = accounts
    seen: dict[str, set[str]] = {PARTNER: set(), CUSTOMER: set()}
    async with make_client(org, replay=ReplayOption.ALL_EVENTS) as client:
        await client.subscribe(PARTNER)
        await client.subscribe(CUSTOMER)
        received = 0
        while seen != ids:
            record(seen, await receive(client))
            received += 1
            if received % 15 == 0:
                org.expire_sessions()
        assert client.stats[StatusKind.SESSION_LOST] >= 5


@contextlib.asynccontextmanager
async def durable_storage(kind: str, path: Path) -> AsyncIterator[ReplayMarkerStorage]:
    """The replay storage a restarted process opens again: the same file each time."""
    if kind == "shelve":
        with shelve.open(str(path / "replay.db")) as shelf:
            yield DefaultMappingStorage(shelf, ReplayOption.ALL_EVENTS)
    else:
        async with SqliteStorage(
            path / "replay.sqlite3", default_id=ReplayOption.ALL_EVENTS
        ) as storage:
            yield storage


async def stored_keys(kind: str, path: Path) -> set[str]:
    if kind == "shelve":
        with shelve.open(str(path / "replay.db")) as shelf:
            return set(shelf)
    async with durable_storage(kind, path) as storage:
        return {
            channel
            for channel in (PARTNER, CUSTOMER, TOPIC)
            if await storage.get_replay_marker(channel) is not None
        }


@pytest.mark.parametrize("kind", ["shelve", "sqlite"])
async def test_two_filtered_subscriptions_resume_across_restarts(
    accounts: tuple[Emulator, dict[str, set[str]]], kind: str, tmp_path: Path
) -> None:
    org, ids = accounts
    seen: dict[str, set[str]] = {PARTNER: set(), CUSTOMER: set()}
    for _run in range(8):  # each run takes 35 events, then the process "restarts"
        if seen == ids:
            break
        async with (
            durable_storage(kind, tmp_path) as storage,
            make_client(org, replay=storage) as client,
        ):
            await client.subscribe(PARTNER)
            await client.subscribe(CUSTOMER)
            for _ in range(35):
                if seen == ids:
                    break
                record(seen, await receive(client))
    assert seen == ids
    # one marker per subscription, under its full name (none under the plain topic)
    assert await stored_keys(kind, tmp_path) == {PARTNER, CUSTOMER}


async def test_the_emulator_refuses_a_replay_map_keyed_by_the_filtered_name(
    accounts: tuple[Emulator, dict[str, set[str]]],
) -> None:
    from sfstream.exceptions import ServerError

    class FilteredKey(Extension):
        def outgoing(self, message: Message) -> None:
            if message.get("channel") == "/meta/subscribe":
                message["ext"] = {"replay": {PARTNER: -1}}

    org, _ids = accounts
    async with make_client(org, extensions=[FilteredKey()]) as client:
        with pytest.raises(ServerError) as refused:
            await client.subscribe(PARTNER)
    assert refused.value.error == (
        "400::The replayId for channel {/topic/Acc} wasn't found using the provided replay ID "
        "map {{/topic/Acc?Type=Partner=-1}}. Ensure that the channel name you provided in the "
        "replay map is valid and matches the channel name used for subscribing."
    )


# -- 2. a 401 on a subscribe -------------------------------------------------------------------


@pytest.fixture
async def org() -> AsyncIterator[Emulator]:
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"]}, hold_time=0.2, session_expiry=40.0
    ) as emulator:
        yield emulator


async def test_a_401_on_a_resubscription_reauthenticates_and_loses_nothing(org: Emulator) -> None:
    statuses = StatusRecorder()
    async with make_client(org, on_status=statuses) as client:
        await client.subscribe(EVENT)
        await org.publish(EVENT, {"N__c": 0})
        assert number(await receive(client)) == 0
        org.authentication_invalid(channel="/meta/subscribe")
        org.expire_sessions()
        for n in range(1, 6):
            await org.publish(EVENT, {"N__c": n})
        assert [number(await receive(client)) for _ in range(5)] == [1, 2, 3, 4, 5]
        assert client.subscriptions == {EVENT}
        await org.publish(EVENT, {"N__c": 6})
        assert number(await receive(client)) == 6
    assert StatusKind.REAUTHENTICATED in statuses.kinds
    assert StatusKind.RESUBSCRIBE_FAILED not in statuses.kinds


async def test_a_401_on_the_users_subscribe_reauthenticates(org: Emulator) -> None:
    statuses = StatusRecorder()
    async with make_client(org, on_status=statuses) as client:
        org.authentication_invalid(channel="/meta/subscribe")
        await client.subscribe(EVENT)
        await org.publish(EVENT, {"N__c": 1})
        assert number(await receive(client)) == 1
    assert statuses.kinds.count(StatusKind.REAUTHENTICATED) == 1


async def test_a_401_on_the_users_subscribe_fetches_one_token_only(org: Emulator) -> None:
    from sfstream.exceptions import ServerError

    statuses = StatusRecorder()
    async with make_client(org, on_status=statuses) as client:
        org.authentication_invalid(2, channel="/meta/subscribe")  # refused twice
        with pytest.raises(ServerError, match="401::Authentication invalid"):
            await client.subscribe(EVENT)
        assert client.subscriptions == set()
    assert statuses.kinds.count(StatusKind.REAUTHENTICATED) == 1


async def test_a_401_on_a_resubscription_twice_fetches_one_token_and_reports_it(
    org: Emulator,
) -> None:
    from sfstream.exceptions import ServerError

    statuses = StatusRecorder()
    async with make_client(org, on_status=statuses) as client:
        await client.subscribe(EVENT)
        org.authentication_invalid(2, channel="/meta/subscribe")
        org.expire_sessions()
        with pytest.raises(ServerError, match="401::Authentication invalid"):
            await receive(client)
    assert statuses.kinds.count(StatusKind.REAUTHENTICATED) == 1
    assert [s.channel for s in statuses.of(StatusKind.RESUBSCRIBE_FAILED)] == [EVENT]


# -- 3. the org's clock, not the local one ---------------------------------------------------


@pytest.mark.parametrize(
    "skew", [-7200.0, -60.0, 7200.0], ids=["2h-behind", "1m-behind", "2h-ahead"]
)
async def test_gap_safe_resubscription_uses_the_orgs_clock(
    skew: float, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sfstream.salesforce")
    statuses = StatusRecorder()
    clock = SystemClock(skew - 600)
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"]}, hold_time=0.2, clock=clock
    ) as org:
        await org.publish(EVENT, {"N__c": -1})  # retained, long before the subscription
        org.advance_clock(600)  # from now on the org's clock is `skew` seconds off ours
        assert abs(org.clock.time() - time.time() - skew) < 5
        async with make_client(org, on_status=statuses) as client:  # NEW_EVENTS
            await client.subscribe(EVENT)
            org.expire_sessions()  # lost before its first event
            for n in range(10):
                await org.publish(EVENT, {"N__c": n})
            assert [number(await receive(client)) for _ in range(10)] == list(range(10))
            await asyncio.sleep(0.3)
            assert not client.has_pending_messages
    # the old event was replayed by the gap-safe resubscription, and skipped with a status
    assert [s.channel for s in statuses.of(StatusKind.EVENTS_SKIPPED)] == [EVENT]
    assert any("skipped event" in r.getMessage() for r in caplog.records if r.levelname == "INFO")


# -- 6. deliveries nobody subscribed to --------------------------------------------------------


class Relabel(Extension):
    """Moves deliveries of ``/event/Shipment__e`` to a channel nobody subscribed to (as if the
    server had sent them there)."""

    def incoming(self, message: Message) -> bool | None:
        if message.get("channel") == "/event/Shipment__e":
            message["channel"] = "/event/Never__e"
        return None


async def test_a_delivery_on_an_unsubscribed_channel_is_dropped_and_not_stored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "sfstream.salesforce")
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"], "Shipment__e": ["Amount__c", "N__c"]},
        hold_time=0.2,
    ) as org:
        shelf: dict[str, ReplayMarker] = {}
        async with make_client(org, replay=shelf, extensions=[Relabel()]) as client:
            await client.subscribe(EVENT)
            await client.subscribe("/event/Shipment__e")
            await org.publish("/event/Shipment__e", {"N__c": 1})
            await org.publish(EVENT, {"N__c": 2})
            message = await receive(client)
            assert message["channel"] == EVENT
            assert number(message) == 2
            assert client.stats[StatusKind.DELIVERY_DROPPED] == 1
        assert set(shelf) == {EVENT}
    assert any(
        r.levelno == logging.DEBUG and "/event/Never__e" in r.getMessage() for r in caplog.records
    )


# -- 7. open() cancelled after the handshake ---------------------------------------------------


async def test_open_cancelled_after_the_handshake_ends_the_session(org: Emulator) -> None:
    org.delay_responses(3.0, channel="/meta/connect")  # the first connect hangs
    client = make_client(org)
    opening = asyncio.create_task(client.open())
    await wait_until(lambda: org.session_count == 1, what="the handshake")
    await asyncio.sleep(0.2)  # the first connect is on its way
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    await wait_until(lambda: org.session_count == 0, 2.5, "the disconnect")
    assert client.closed


async def test_open_cancelled_at_any_point_leaves_no_session(org: Emulator) -> None:
    """Cancel ``open()`` after 0, 1, 2, ... turns of the event loop: through the token
    request, the handshake (in flight: the server has made the session, its reply is not read
    yet), the subscriptions and the first connect. No session may be left on the server."""
    left: list[int] = []
    for turns in range(120):
        client = make_client(org)
        opening = asyncio.create_task(client.open())
        for _ in range(turns):
            await asyncio.sleep(0)
        opening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await opening
        await client.close()  # a no-op after a cancelled open(), a disconnect after one done
        with contextlib.suppress(pytest.fail.Exception):
            await wait_until(lambda: org.session_count == 0, 2.5, "the disconnect")
        if org.session_count:
            left.append(turns)
            org.expire_sessions()
    assert left == [], f"sessions left on the server when cancelled after {left} turns"


async def test_a_401_on_a_resubscription_without_a_new_token_is_reported(org: Emulator) -> None:
    from sfstream import AccessTokenAuthenticator, AuthenticationError

    statuses = StatusRecorder()
    auth = AccessTokenAuthenticator(org.issue_access_token(), org.instance_url)
    async with Client(auth, backoff=ConstantBackoff(0.05), on_status=statuses) as client:
        await client.subscribe(EVENT)
        org.authentication_invalid(channel="/meta/subscribe")
        org.expire_sessions()
        with pytest.raises(AuthenticationError):
            await receive(client)
    assert [s.channel for s in statuses.of(StatusKind.RESUBSCRIBE_FAILED)] == [EVENT]


async def test_a_failed_subscribe_leaves_no_subscription_behind(org: Emulator) -> None:
    from sfstream.exceptions import ServerError

    async with make_client(org) as client:
        with pytest.raises(ServerError):
            await client.subscribe("/event/Missing__e")
        assert not client._replay.attributed("/event/Missing__e")
        await client.subscribe(EVENT)
        await org.publish(EVENT, {"N__c": 1})
        assert number(await receive(client)) == 1
        await client.unsubscribe(EVENT)
        await client.subscribe(EVENT)  # within the client's life: resumes after event 1
        await org.publish(EVENT, {"N__c": 2})
        assert number(await receive(client)) == 2
