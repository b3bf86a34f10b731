"""``/meta/connect``: first connect, long-poll hold, event delivery, expiry, auth, cookies."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sfstream.emulator import Emulator

from .conftest import EXPIRY, HOLD, LONG_HOLD, Bayeux, events_of, meta_of, password_token

FIRST_ADVICE = {"interval": 0, "timeout": round(HOLD * 1000), "reconnect": "retry"}


async def test_first_connect_is_answered_at_once_with_advice(bayeux: Bayeux) -> None:
    await bayeux.handshake()
    started = time.monotonic()
    [reply] = await bayeux.connect()
    assert time.monotonic() - started < HOLD
    assert reply == {
        "clientId": bayeux.client_id,
        "channel": "/meta/connect",
        "id": "2",
        "successful": True,
        "advice": FIRST_ADVICE,
    }


async def test_default_advice_is_salesforces(http: aiohttp.ClientSession) -> None:
    async with Emulator() as org:
        client = Bayeux(http, org, await password_token(http, org))
        await client.handshake()
        [reply] = await client.connect()
        assert reply["advice"] == {"interval": 0, "timeout": 110000, "reconnect": "retry"}


async def test_later_connects_are_held_for_the_hold_time(bayeux: Bayeux) -> None:
    await bayeux.start()
    started = time.monotonic()
    [reply] = await bayeux.connect()
    elapsed = time.monotonic() - started
    assert HOLD * 0.9 <= elapsed < HOLD + 0.5
    assert reply == {
        "clientId": bayeux.client_id,
        "channel": "/meta/connect",
        "id": "3",
        "successful": True,
    }


async def test_advice_timeout_zero_answers_at_once(bayeux: Bayeux) -> None:
    await bayeux.start()
    started = time.monotonic()
    [reply] = await bayeux.connect(advice={"timeout": 0})
    assert time.monotonic() - started < HOLD
    assert reply["advice"] == FIRST_ADVICE


async def test_held_connect_returns_with_events_first(long_hold: tuple[Emulator, Bayeux]) -> None:
    org, bayeux = long_hold
    await bayeux.start("/event/Order__e")

    async def publish_soon() -> None:
        await asyncio.sleep(0.05)
        await org.publish("/event/Order__e", {"N__c": 1})

    task = asyncio.create_task(publish_soon())
    started = time.monotonic()
    replies = await bayeux.connect()
    await task
    assert time.monotonic() - started < LONG_HOLD / 2
    assert [m["channel"] for m in replies] == ["/event/Order__e", "/meta/connect"]
    assert replies[0]["data"]["payload"]["N__c"] == 1
    assert replies[-1]["successful"]


async def test_one_reply_carries_many_events(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start("/event/Order__e")
    await org.publish_many("/event/Order__e", [{"N__c": n} for n in range(500)])
    replies = await bayeux.connect()
    events = events_of(replies)
    assert [e["data"]["payload"]["N__c"] for e in events] == list(range(500))
    assert [e["data"]["event"]["replayId"] for e in events] == list(range(1, 501))
    assert replies[-1]["channel"] == "/meta/connect"


async def test_max_batch_splits_a_backlog(http: aiohttp.ClientSession) -> None:
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"]}, max_batch=3, hold_time=HOLD
    ) as org:
        client = Bayeux(http, org, await password_token(http, org))
        for n in range(7):
            await org.publish("/event/Order__e", {"N__c": n})
        first = events_of(await client.start("/event/Order__e", replay=-2))
        second = events_of(await client.connect())
        third = events_of(await client.connect())
        assert [len(first), len(second), len(third)] == [3, 3, 1]


async def test_events_from_several_channels_share_the_budget(
    http: aiohttp.ClientSession,
) -> None:
    async with Emulator(
        events={"A__e": ["Amount__c", "N__c"], "B__e": ["Amount__c", "N__c"]},
        max_batch=4,
        hold_time=HOLD,
    ) as org:
        client = Bayeux(http, org, await password_token(http, org))
        for n in range(3):
            await org.publish("/event/A__e", {"N__c": n})
            await org.publish("/event/B__e", {"N__c": n})
        replies = await client.start("/event/A__e", "/event/B__e", replay=-2)
        replies += await client.connect()
        received = [(m["channel"], m["data"]["payload"]["N__c"]) for m in events_of(replies)]
        assert sorted(received) == sorted(
            [(c, n) for c in ("/event/A__e", "/event/B__e") for n in range(3)]
        )
        for channel in ("/event/A__e", "/event/B__e"):
            assert [n for c, n in received if c == channel] == [0, 1, 2]


async def test_connect_and_subscribe_in_one_post(bayeux: Bayeux, org: Emulator) -> None:
    # jsforce's first connect and subscribe arrive in one POST.
    await org.publish("/event/Order__e", {"N__c": 1})
    await bayeux.handshake()
    replies = await bayeux.send(
        bayeux.message("/meta/connect", connectionType="long-polling", advice={"timeout": 0}),
        bayeux.message(
            "/meta/subscribe",
            subscription="/event/Order__e",
            ext={"replay": {"/event/Order__e": -2}},
        ),
    )
    assert [m["channel"] for m in replies] == [
        "/event/Order__e",
        "/meta/connect",
        "/meta/subscribe",
    ]
    assert all(m.get("successful", True) for m in replies)
    # a connect batched with other messages is not held
    started = time.monotonic()
    replies = await bayeux.send(
        bayeux.message("/meta/connect", connectionType="long-polling"),
        bayeux.message("/meta/unsubscribe", subscription="/event/Order__e"),
    )
    assert time.monotonic() - started < HOLD
    assert meta_of(replies, "/meta/unsubscribe")["successful"]


async def test_session_expires_without_reconnect(bayeux: Bayeux) -> None:
    await bayeux.start()
    await asyncio.sleep(EXPIRY + 0.2)
    [reply] = await bayeux.connect()
    assert reply == {
        "channel": "/meta/connect",
        "id": "3",
        "error": "403::Unknown client",
        "successful": False,
        "advice": {"interval": 0, "reconnect": "handshake"},
    }
    # after a new handshake all is well again
    await bayeux.start()


async def test_expired_sessions_are_swept(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start()
    assert org.session_count == 1
    await asyncio.sleep(EXPIRY + 0.8)
    assert org.session_count == 0


async def test_connecting_keeps_the_session_alive(bayeux: Bayeux) -> None:
    await bayeux.start()
    deadline = time.monotonic() + EXPIRY * 1.5
    while time.monotonic() < deadline:
        [reply] = await bayeux.connect()
        assert reply["successful"], reply


async def test_subscribe_requests_keep_the_session_alive(bayeux: Bayeux) -> None:
    await bayeux.start()
    for _ in range(3):
        await asyncio.sleep(EXPIRY * 0.6)
        assert (await bayeux.subscribe("/event/Order__e"))["successful"]


async def test_unknown_and_missing_client_ids(bayeux: Bayeux) -> None:
    await bayeux.handshake()
    bayeux.client_id = "nosuchclient"
    [reply] = await bayeux.connect()
    assert reply["error"] == "403::Unknown client"
    assert reply["advice"] == {"interval": 0, "reconnect": "handshake"}
    assert "clientId" not in reply
    [reply] = await bayeux.send({"channel": "/meta/subscribe", "subscription": "/event/Order__e"})
    assert reply == {
        "channel": "/meta/subscribe",
        "error": "403::Client has not completed handshake",
        "successful": False,
    }


async def test_cookie_required_after_handshake(org: Emulator, token: str) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        client = Bayeux(http, org, token)
        assert (await client.handshake())["successful"]
        [reply] = await client.connect()
        assert reply == {
            "clientId": client.client_id,
            "channel": "/meta/connect",
            "id": "2",
            "error": f"400::Client {{{client.client_id}}} has established a session, "
            "but no BAYEUX_BROWSER cookie present",
            "successful": False,
        }
        reply = await client.subscribe("/event/Order__e")
        assert "BAYEUX_BROWSER" in reply["error"]


async def test_cookie_check_can_be_turned_off(http: aiohttp.ClientSession) -> None:
    async with Emulator(require_cookie=False, hold_time=HOLD) as org:
        token = await password_token(http, org)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as bare:
            client = Bayeux(bare, org, token)
            [reply] = await client.start()
            assert reply["successful"]


async def test_revoked_token_answers_held_connect_at_once(
    long_hold: tuple[Emulator, Bayeux],
) -> None:
    org, bayeux = long_hold
    await bayeux.start()

    async def revoke_soon() -> None:
        await asyncio.sleep(0.05)
        org.revoke_tokens()

    task = asyncio.create_task(revoke_soon())
    started = time.monotonic()
    [reply] = await bayeux.connect()
    await task
    assert time.monotonic() - started < LONG_HOLD / 2
    assert reply == {
        "clientId": bayeux.client_id,
        "channel": "/meta/connect",
        "id": "3",
        "error": "401::Authentication invalid",
        "successful": False,
        "advice": {"reconnect": "none", "interval": 0},
    }
    [reply] = await bayeux.connect()
    assert reply["error"] == "401::Authentication invalid"
    reply = await bayeux.subscribe("/event/Order__e")
    assert reply["error"] == "401::Authentication invalid"


async def test_connect_without_a_token(bayeux: Bayeux) -> None:
    await bayeux.start()
    bayeux.token = ""
    [reply] = await bayeux.connect()
    assert reply["error"] == "401::Authentication invalid"
    assert reply["advice"] == {"reconnect": "none", "interval": 0}


async def test_a_new_token_works_on_an_existing_session(
    bayeux: Bayeux, http: aiohttp.ClientSession, org: Emulator
) -> None:
    await bayeux.start()
    bayeux.token = await password_token(http, org)
    assert (await bayeux.connect())[-1]["successful"]


async def test_only_long_polling(bayeux: Bayeux) -> None:
    await bayeux.handshake()
    [reply] = await bayeux.connect(connectionType="websocket")
    assert reply["error"] == "400::Invalid connection type {websocket}"
    assert reply["successful"] is False


async def test_a_second_connect_releases_the_first(long_hold: tuple[Emulator, Bayeux]) -> None:
    _, bayeux = long_hold
    await bayeux.start()
    first = asyncio.create_task(bayeux.connect())
    await asyncio.sleep(0.05)
    started = time.monotonic()
    second = asyncio.create_task(bayeux.connect())
    [first_reply] = await first
    assert time.monotonic() - started < LONG_HOLD / 2
    assert first_reply["successful"]
    second.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await second


async def test_disconnect(bayeux: Bayeux) -> None:
    await bayeux.start()
    held = asyncio.create_task(bayeux.connect())
    await asyncio.sleep(0.05)
    [reply] = await bayeux.send(bayeux.message("/meta/disconnect"))
    assert reply == {
        "clientId": bayeux.client_id,
        "channel": "/meta/disconnect",
        "id": reply["id"],
        "successful": True,
    }
    [released] = await held
    assert released["error"] == "403::Unknown client"
    [after] = await bayeux.connect()
    assert after["error"] == "403::Unknown client"


async def test_other_channels(bayeux: Bayeux) -> None:
    await bayeux.start()
    [reply] = await bayeux.send(bayeux.message("/meta/ping"))
    assert reply["error"] == "400::Unknown meta channel {/meta/ping}"
    [reply] = await bayeux.send(bayeux.message("/event/Order__e", data={"x": 1}))
    assert reply["successful"] is False
    assert reply["error"] == "403::Publish is not allowed on channel {/event/Order__e}"
    [reply] = await bayeux.send({"id": "9", "clientId": bayeux.client_id})
    assert reply["error"] == "400::Channel name not specified"


async def test_events_survive_a_client_that_gave_up(clock: Any) -> None:
    # Served without handler cancellation (a runner of our own around build_app()): the held
    # connect notices the closed connection when events arrive and keeps them for later.
    org = Emulator(events={"Order__e": ["Amount__c", "N__c"]}, hold_time=1.0, clock=clock)
    runner = web.AppRunner(org.build_app(), handler_cancellation=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    org.set_base_url(f"http://127.0.0.1:{runner.addresses[0][1]}")
    token = org.issue_access_token()
    headers = {"Authorization": f"Bearer {token}"}
    url = org.cometd_url()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:

            async def send(
                messages: list[dict[str, Any]], timeout: float = 5
            ) -> list[dict[str, Any]]:
                async with http.post(
                    url,
                    json=messages,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as response:
                    result: list[dict[str, Any]] = await response.json()
                    return result

            [hello] = await send(
                [
                    {
                        "channel": "/meta/handshake",
                        "version": "1.0",
                        "supportedConnectionTypes": ["long-polling"],
                    }
                ]
            )
            cid = hello["clientId"]
            connect = {
                "channel": "/meta/connect",
                "clientId": cid,
                "connectionType": "long-polling",
            }
            await send(
                [{"channel": "/meta/subscribe", "clientId": cid, "subscription": "/event/Order__e"}]
            )
            await send([connect])
            with pytest.raises(TimeoutError):
                await send([connect], timeout=0.1)
            await asyncio.sleep(0.05)
            await org.publish("/event/Order__e", {"N__c": 1})
            await asyncio.sleep(0.05)
            replies = await send([connect])
            assert [m["channel"] for m in replies] == ["/event/Order__e", "/meta/connect"]
    finally:
        await runner.cleanup()
