"""The peers among themselves: the CometD JavaScript client through a Faye server.

These prove the harness (scripts and fixtures) and give a baseline for the tests of our own
client: whatever fails in ``test_faye.py`` but passes here is ours.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from ._peers import CometdClient, FayeServer, PeerError, StartCometd

pytestmark = pytest.mark.interop


async def test_faye_server_publishes_to_cometd_subscriptions(
    faye: FayeServer, cometd_client: StartCometd
) -> None:
    client = await cometd_client(faye.url)
    for channel in ("/plain", "/w/*", "/x/**"):
        reply = await client.subscribe(channel)
        assert reply["successful"] is True, reply
    await faye.wait_for_subscriptions({"/plain", "/w/*", "/x/**"}, client_id=client.client_id)

    await faye.publish("/plain", {"n": 1})
    message = await client.receive()
    assert (message["channel"], message["data"]) == ("/plain", {"n": 1})

    await faye.publish("/w/a/b", {"n": 2})  # too deep for /w/*: must not arrive
    await faye.publish("/w/a", {"n": 3})
    message = await client.receive()
    assert (message["channel"], message["data"], message["subscription"]) == (
        "/w/a",
        {"n": 3},
        "/w/*",
    )

    await faye.publish("/x/a/b", {"n": 4})
    message = await client.receive()
    assert (message["channel"], message["data"], message["subscription"]) == (
        "/x/a/b",
        {"n": 4},
        "/x/**",
    )
    assert client.messages.empty()


async def test_two_cometd_clients_exchange_messages(
    faye: FayeServer, cometd_client: StartCometd
) -> None:
    alice = await cometd_client(faye.url)
    bob = await cometd_client(faye.url)
    assert (await alice.subscribe("/to/alice"))["successful"] is True
    assert (await bob.subscribe("/to/bob"))["successful"] is True

    assert (await alice.publish("/to/bob", {"text": "hi bob"}))["successful"] is True
    assert (await bob.receive())["data"] == {"text": "hi bob"}
    assert (await bob.publish("/to/alice", {"text": "hi alice"}))["successful"] is True
    assert (await alice.receive())["data"] == {"text": "hi alice"}

    assert (await bob.unsubscribe("/to/bob"))["successful"] is True
    await alice.publish("/to/bob", {"text": "gone"})
    await faye.publish("/to/alice", {"text": "marker"})
    assert (await alice.receive())["data"] == {"text": "marker"}
    with pytest.raises(PeerError):
        await bob.receive(within=0.5)

    reply = await alice.disconnect()
    assert reply["successful"] is True
    assert alice.returncode == 0


async def test_faye_restart_on_same_port(faye: FayeServer, cometd_client: StartCometd) -> None:
    client = await cometd_client(faye.url)
    assert (await client.subscribe("/after/restart"))["successful"] is True
    url, old_id = faye.url, client.client_id

    await faye.stop()
    assert not faye.running
    await asyncio.sleep(0.5)
    await faye.start()
    assert faye.url == url

    # The new server forgot the client: it must handshake again and re-subscribe (the script does
    # it in a /meta/handshake listener, as CometD applications must). The CometD client backs off
    # +1 s, +2 s ... before it finds the server again.
    new_id = await faye.wait_for_subscription("/after/restart", within=20)
    assert new_id != old_id
    await faye.publish("/after/restart", {"n": 1})
    message = await client.receive()
    assert message["data"] == {"n": 1}


async def test_cometd_client_reports_refused_subscription(
    faye: FayeServer, cometd_client: StartCometd
) -> None:
    client = await cometd_client(faye.url)
    reply = await client.subscribe("/denied/x")  # faye_server.mjs refuses /denied/**
    assert reply["successful"] is False, reply
    assert reply["error"] == "403:/denied/x:Subscription denied"
    reply = await client.publish("/denied/x", {"n": 1})
    assert reply["successful"] is False, reply
    assert reply["error"] == "403:/denied/x:Publish denied"


async def test_cometd_client_fails_to_start_without_server(node_peers: None) -> None:
    client = CometdClient("http://127.0.0.1:9/bayeux")
    try:
        with pytest.raises(PeerError):
            async with asyncio.timeout(30):
                await client.start()
    finally:
        await client.stop()
    assert not client.running


async def test_faye_server_reports_concurrent_connects(faye: FayeServer) -> None:
    """The detector behind the ``faye`` fixture's overlapping-connect check works."""
    faye.check_concurrent_connects = False

    async def post(session: aiohttp.ClientSession, message: dict[str, Any]) -> Any:
        async with session.post(faye.url, json=[message]) as response:
            assert response.status == 200
            return await response.json()

    async with aiohttp.ClientSession() as session:
        handshake = await post(
            session,
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
            },
        )
        client_id = handshake[0]["clientId"]
        connect = {
            "channel": "/meta/connect",
            "clientId": client_id,
            "connectionType": "long-polling",
        }
        first = await post(session, {**connect, "id": "1", "advice": {"timeout": 0}})
        assert first[0]["successful"] is True

        # Two connects at once: Faye holds one and would never answer it.
        tasks = [
            asyncio.create_task(post(session, {**connect, "id": ident})) for ident in ("2", "3")
        ]
        try:
            line = await faye.wait_for(lambda line: line.get("event") == "concurrent-connect")
            assert line["clientId"] == client_id
            assert line["id"] in ("2", "3")
            assert faye.concurrent_connects() == [line]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
