"""The Salesforce client against the emulator under every fault it can inject.

Property for every fault: each event published on a durable channel reaches the consumer
exactly once (no loss, no duplicate), in replay-id order per channel, and the client never stops
silently.
"""

from __future__ import annotations

import asyncio
import logging
import random
import shelve
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from sfstream import (
    AuthenticationError,
    Client,
    PasswordAuthenticator,
    ReplayMarkerStoragePolicy,
    ReplayOption,
    SalesforceStreamingClient,
    Status,
    StatusKind,
)
from sfstream.bayeux import ConstantBackoff, Message
from sfstream.emulator import Emulator

EVENT = "/event/Order__e"
TOPIC = "/topic/AccountUpdates"
GENERIC = "/u/Notifications"
CDC = "/data/AccountChangeEvent"

Arm = Callable[[Emulator], object]


@pytest.fixture
async def org() -> AsyncIterator[Emulator]:
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"]}, hold_time=0.2, session_expiry=1.0
    ) as emulator:
        emulator.create_push_topic("AccountUpdates", "SELECT Id, Name FROM Account")
        emulator.create_streaming_channel("/u/Notifications")
        yield emulator


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


def replay_id(message: Message) -> int:
    return int(message["data"]["event"]["replayId"])


async def test_the_four_channel_kinds(org: Emulator) -> None:
    async with make_client(org) as client:
        for channel in (EVENT, TOPIC, GENERIC, CDC):
            await client.subscribe(channel)
        await org.publish(EVENT, {"N__c": 1})
        record_id = org.create_record("Account", {"Name": "Acme"})
        await org.publish(GENERIC, "hello")
        got: dict[str, Message] = {}
        while len(got) < 4:
            message = await receive(client)
            got[message["channel"]] = message
    event = got[EVENT]["data"]
    assert event["payload"]["N__c"] == 1
    assert {"CreatedDate", "CreatedById"} <= set(event["payload"])
    assert event["event"]["EventUuid"]
    topic = got[TOPIC]["data"]
    assert topic["event"]["type"] == "created"
    assert topic["sobject"] == {"Id": record_id, "Name": "Acme"}
    assert got[GENERIC]["data"]["payload"] == "hello"
    header = got[CDC]["data"]["payload"]["ChangeEventHeader"]
    assert header["changeType"] == "CREATE"
    assert header["recordIds"] == [record_id]
    assert isinstance(header["commitTimestamp"], int)


FAULTS: dict[str, Arm] = {
    "session expiry": lambda org: org.expire_sessions(),
    "unknown client, advice handshake": lambda org: org.unknown_client(),
    "unknown client, advice none": lambda org: org.unknown_client(reconnect="none"),
    "server /meta/disconnect": lambda org: org.push_disconnect(),
    "401 authentication invalid": lambda org: org.authentication_invalid(),
    "token revoked": lambda org: org.revoke_tokens("access"),
    "503 behind a 401": lambda org: org.server_busy(),
    "daily limit": lambda org: org.daily_limit_exceeded(),
    "connection limit on the new handshake": lambda org: (
        org.expire_sessions(),
        org.connection_limit(),
    ),
    "concurrent user limit on the new handshake": lambda org: (
        org.expire_sessions(),
        org.concurrent_user_limit(),
    ),
    "HTTP 500": lambda org: org.http_error(500),
    "HTTP 502": lambda org: org.http_error(502),
    "HTTP 401 (REST style)": lambda org: org.http_error(401),
    "invalid JSON": lambda org: org.invalid_json(),
    "connection dropped mid-response": lambda org: org.drop_connection(when="mid_response"),
    "connection dropped before the response": lambda org: org.drop_connection(
        when="before_response"
    ),
    "slow responses": lambda org: org.delay_responses(0.3, count=3),
}


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
async def test_each_fault_loses_and_duplicates_nothing(org: Emulator, fault: str) -> None:
    statuses: list[Status] = []
    async with make_client(org, on_status=statuses.append) as client:
        await client.subscribe(EVENT)
        for n in range(5):
            await org.publish(EVENT, {"N__c": n})
        received = [number(await receive(client)) for _ in range(5)]
        FAULTS[fault](org)
        for n in range(5, 15):
            await org.publish(EVENT, {"N__c": n})
            await asyncio.sleep(0.02)
        received += [number(await receive(client, timeout=8)) for _ in range(10)]
        await asyncio.sleep(0.3)
        assert not client.has_pending_messages
        assert client.subscriptions == {EVENT}
    assert received == list(range(15))
    assert not [s for s in statuses if s.kind is StatusKind.STOPPED]


@pytest.mark.parametrize(
    ("fault", "token_requests"),
    [
        ("401 authentication invalid", 2),
        ("token revoked", 2),
        ("HTTP 401 (REST style)", 2),
        ("503 behind a 401", 1),
        ("session expiry", 1),
        ("unknown client, advice handshake", 1),
        ("unknown client, advice none", 1),
    ],
)
async def test_only_401s_cost_a_token_request(
    org: Emulator, fault: str, token_requests: int
) -> None:
    async with make_client(org) as client:
        await client.subscribe(EVENT)
        FAULTS[fault](org)
        await asyncio.sleep(0.6)
        await org.publish(EVENT, {"N__c": 1})
        assert number(await receive(client)) == 1
        assert client.auth.generation == token_requests


async def test_handshake_denied_with_a_401_reason_reauthenticates(org: Emulator) -> None:
    async with make_client(org) as client:
        await client.subscribe(EVENT)
        org.fail_next(
            "403::Handshake denied",
            channel="/meta/handshake",
            failure_reason="401::Authentication invalid",
            advice={"reconnect": "none"},
        )
        org.expire_sessions()
        await asyncio.sleep(0.6)
        await org.publish(EVENT, {"N__c": 7})
        assert number(await receive(client)) == 7
        assert client.auth.generation == 2
        assert client.stats[StatusKind.REAUTHENTICATED] == 1


async def test_a_second_refusal_after_reauthentication_raises(org: Emulator) -> None:
    async with make_client(org) as client:
        await client.subscribe(EVENT)
        org.authentication_invalid(count=None)
        org.authentication_invalid(count=None, channel="/meta/handshake")
        with pytest.raises(AuthenticationError, match="again after re-authentication"):
            await receive(client)
        assert client.auth.generation == 2


async def test_a_revoked_refresh_token_raises_authentication_error(org: Emulator) -> None:
    from sfstream import RefreshTokenAuthenticator

    assert org.refresh_token is not None
    auth = RefreshTokenAuthenticator(
        org.consumer_key, org.consumer_secret, org.refresh_token, login_url=org.login_url
    )
    async with Client(auth, backoff=ConstantBackoff(0.05)) as client:
        await client.subscribe(EVENT)
        org.revoke_tokens()  # access and refresh tokens
        with pytest.raises(AuthenticationError) as info:
            await receive(client)
    assert info.value.error == "invalid_grant"
    assert org.refresh_token not in str(info.value)


async def test_slow_consumer_pauses_and_resumes_without_loss(org: Emulator) -> None:
    async with make_client(org, max_pending_count=5) as client:
        await client.subscribe(EVENT)
        for n in range(30):
            await org.publish(EVENT, {"N__c": n})
        await asyncio.sleep(0.3)
        # the client stopped polling; wait past the session expiry while paused
        await asyncio.sleep(1.5)
        await org.publish(EVENT, {"N__c": 30})
        received: list[int] = []
        while len(received) < 31:
            received.append(number(await receive(client)))
            await asyncio.sleep(0.005)
        assert client.stats[StatusKind.PAUSED] >= 1
        assert client.stats[StatusKind.SESSION_LOST] >= 1
    assert received == list(range(31))


async def test_random_fault_mix_on_two_channels(org: Emulator) -> None:
    rng = random.Random(20261129)
    arms = list(FAULTS.values())
    seen: dict[str, list[int]] = {EVENT: [], CDC: []}
    expected: dict[str, list[int]] = {EVENT: [], CDC: []}

    async def consume(client: Client, total: int) -> None:
        while sum(map(len, seen.values())) < total:
            message = await receive(client, timeout=10)
            seen[message["channel"]].append(replay_id(message))

    async with make_client(org) as client:
        await client.subscribe(EVENT)
        await client.subscribe(CDC)
        consumer = asyncio.create_task(consume(client, 120))
        for n in range(60):
            expected[EVENT].append((await org.publish(EVENT, {"N__c": n})).replay_id)
            expected[CDC].append((await org.publish(CDC, {"Name": f"A{n}"})).replay_id)
            if n % 6 == 3:
                rng.choice(arms)(org)
            await asyncio.sleep(0.01)
        await consumer
    for channel in (EVENT, CDC):
        assert seen[channel] == expected[channel]  # every event, once, in replay-id order


async def test_durable_manual_storage_loses_nothing_across_restarts(
    org: Emulator, tmp_path: Path
) -> None:
    path = str(tmp_path / "replay.db")
    published = [(await org.publish(EVENT, {"N__c": -1})).replay_id]  # before the first run
    processed: list[int] = []
    with shelve.open(path) as shelf:
        async with make_client(
            org,
            replay=shelf,
            replay_fallback=ReplayOption.ALL_EVENTS,
            replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL,
        ) as client:
            await client.subscribe(EVENT)
            storage = client.replay_storage
            assert storage is not None
            for n in range(10):
                published.append((await org.publish(EVENT, {"N__c": n})).replay_id)
            for _ in range(6):
                message = await receive(client)
                async with storage(message):
                    processed.append(number(message))
            # the next message fails to process: its marker is not stored
            message = await receive(client)
            with pytest.raises(RuntimeError):
                async with storage(message):
                    raise RuntimeError("processing failed")
    for n in range(10, 15):  # while no client runs
        published.append((await org.publish(EVENT, {"N__c": n})).replay_id)
    with shelve.open(path) as shelf:
        async with make_client(
            org, replay=shelf, replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL
        ) as client:
            await client.subscribe(EVENT)
            storage = client.replay_storage
            assert storage is not None
            while len(processed) < 15:
                message = await receive(client)
                async with storage(message):
                    processed.append(number(message))
        assert shelf[EVENT].replay_id == published[-1]
    # the first run started with NEW_EVENTS semantics for an empty shelf: the event published
    # before it is not expected; every later one is processed exactly once, in order
    assert processed == list(range(15))


async def test_filtered_pushtopic_markers_are_keyed_by_the_subscription(org: Emulator) -> None:
    markers: dict[str, Any] = {}
    async with make_client(org, replay=markers) as client:
        await client.subscribe(f"{TOPIC}?Name=Acme")
        org.create_record("Account", {"Name": "Acme"})
        message = await receive(client)
        assert message["data"]["sobject"]["Name"] == "Acme"
        assert message["channel"] == f"{TOPIC}?Name=Acme"
    assert list(markers) == [f"{TOPIC}?Name=Acme"]


async def test_a_resubscription_resumes_after_the_last_received_event_with_new_events(
    org: Emulator,
) -> None:
    async with make_client(org) as client:  # replay=NEW_EVENTS, the default
        await client.subscribe(EVENT)
        await org.publish(EVENT, {"N__c": 1})
        assert number(await receive(client)) == 1
        org.expire_sessions()
        # published while the session is gone: a -1 resubscription would lose it
        await org.publish(EVENT, {"N__c": 2})
        assert number(await receive(client)) == 2


SECRETS_DEBUG_FAULTS = ["token revoked", "401 authentication invalid", "session expiry"]


async def test_no_secret_in_logs_reprs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"]},
        hold_time=0.2,
        session_expiry=1.0,
        consumer_secret="c0nsumer-S3CRET-9f2b",
        password="pa55-W0RD-a41c",
        security_token="T0KEN-77xq",
    ) as org:
        await check_no_secret_leaks(org, caplog)


async def check_no_secret_leaks(org: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tokens: set[str] = set()
    errors: list[str] = []
    client = make_client(org)
    async with client:
        await client.subscribe(EVENT)
        for name in SECRETS_DEBUG_FAULTS:
            assert client.auth.access_token is not None
            tokens.add(client.auth.access_token)
            FAULTS[name](org)
            await org.publish(EVENT, {"N__c": 1})
            await receive(client)
        assert client.auth.access_token is not None
        tokens.add(client.auth.access_token)
        reprs = [repr(client), repr(client.auth), str(client.stats)]
    bad = PasswordAuthenticator(
        org.consumer_key,
        "wrong-secret-value",
        org.username,
        "wrong-password-value",
        login_url=org.login_url,
    )
    try:
        await bad.authenticate()
    except AuthenticationError as error:
        errors += [str(error), repr(error)]
    reprs.append(repr(bad))
    secrets = {
        org.password,
        org.consumer_secret,
        "T0KEN-77xq",
        "wrong-secret-value",
        "wrong-password-value",
    }
    secrets |= tokens
    assert len(tokens) >= 3
    text = "\n".join([caplog.text, *reprs, *errors])
    for secret in secrets:
        assert secret not in text
