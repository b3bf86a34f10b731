"""sfstream's BayeuxClient against a real Faye 1.4.3 server and the CometD JavaScript client.

Every message here crosses a real third-party peer; the Faye server's wire log (stderr, shown by
pytest for a failing test) tells what was said. Each test runs over long polling and over
WebSocket (Faye serves both on the same endpoint).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sfstream.bayeux import BayeuxClient, Status, StatusKind
from sfstream.exceptions import HTTPStatusError, ServerError, TransportTimeoutError

from ._peers import FayeServer, StartCometd

pytestmark = pytest.mark.interop

#: Seconds a test waits for one message before failing.
RECEIVE_WITHIN = 10.0


@pytest.fixture(params=["long-polling", "websocket"])
def connection_type(request: pytest.FixtureRequest) -> str:
    """The connection type the BayeuxClient of the test uses."""
    return str(request.param)


async def receive(client: BayeuxClient, within: float = RECEIVE_WITHIN) -> dict[str, Any]:
    """The client's next message, or a test failure after ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            message = await client.receive()
    except TimeoutError:
        pytest.fail(f"BayeuxClient received no message within {within} s")
    return dict(message)


async def faye_client_id(faye: FayeServer, channel: str) -> str:
    """The clientId under which the Faye server saw the subscription to ``channel``."""
    return await faye.wait_for_subscription(channel)


async def test_handshake_subscribe_and_receive_server_publishes(
    faye: FayeServer, connection_type: str
) -> None:
    async with BayeuxClient(
        faye.url, connection_types=(connection_type,), connection_timeout=10.0
    ) as client:
        closed_while_open = client.closed
        assert not closed_while_open
        assert client.connection_type == connection_type
        handshake = await faye.wait_for(lambda line: line.get("event") == "handshake")

        await client.subscribe("/plain")
        await client.subscribe("/w/*")
        await client.subscribe("/x/**")
        assert client.subscriptions == {"/plain", "/w/*", "/x/**"}
        await faye.wait_for_subscriptions(
            {"/plain", "/w/*", "/x/**"}, client_id=handshake["clientId"]
        )

        await faye.publish("/plain", {"n": 1})
        message = await receive(client)
        assert message["channel"] == "/plain"
        assert message["data"] == {"n": 1}

        # /w/* matches one segment only: /w/a/b is published first and must never arrive.
        await faye.publish("/w/a/b", {"n": 2})
        await faye.publish("/w/a", {"n": 3})
        message = await receive(client)
        assert (message["channel"], message["data"]) == ("/w/a", {"n": 3})

        # /x/** matches any depth, and the message carries the concrete channel.
        await faye.publish("/x/a/b/c", {"n": 4})
        message = await receive(client)
        assert (message["channel"], message["data"]) == ("/x/a/b/c", {"n": 4})

        await faye.publish("/plain", {"n": 5, "text": "unicode é ✓", "list": [1, None, True]})
        message = await receive(client)
        assert message["data"] == {"n": 5, "text": "unicode é ✓", "list": [1, None, True]}
        assert client.pending_count == 0
    assert client.closed
    await faye.wait_for(
        lambda line: (
            line.get("event") == "disconnect" and line.get("clientId") == handshake["clientId"]
        ),
        what="the client's /meta/disconnect",
    )


async def test_publish_and_receive_own_message(faye: FayeServer, connection_type: str) -> None:
    async with BayeuxClient(
        faye.url, connection_types=(connection_type,), connection_timeout=10.0
    ) as client:
        await client.subscribe("/echo")
        client_id = await faye_client_id(faye, "/echo")

        reply = await client.publish("/echo", {"text": "hello"})
        assert reply["channel"] == "/echo"
        assert reply["successful"] is True

        message = await receive(client)
        assert (message["channel"], message["data"]) == ("/echo", {"text": "hello"})
        published = await faye.wait_for(lambda line: line.get("event") == "publish")
        assert published["clientId"] == client_id

        # Publishing on a channel nobody listens to succeeds too, and delivers nothing.
        reply = await client.publish("/nobody/listens", [1, 2, 3])
        assert reply["successful"] is True
        await client.publish("/echo", "marker")
        assert (await receive(client))["data"] == "marker"


async def test_async_iteration(faye: FayeServer, connection_type: str) -> None:
    async with BayeuxClient(
        faye.url, connection_types=(connection_type,), connection_timeout=10.0
    ) as client:
        await client.subscribe("/many")
        for n in range(5):
            await faye.publish("/many", {"n": n})
        received: list[Any] = []
        async with asyncio.timeout(RECEIVE_WITHIN):
            async for message in client:
                received.append(message["data"]["n"])
                if len(received) == 5:
                    break
        assert received == [0, 1, 2, 3, 4]


async def test_unsubscribe_stops_delivery(faye: FayeServer, connection_type: str) -> None:
    async with BayeuxClient(
        faye.url, connection_types=(connection_type,), connection_timeout=10.0
    ) as client:
        await client.subscribe("/keep")
        await client.subscribe("/drop")
        client_id = await faye_client_id(faye, "/drop")
        await faye.publish("/drop", {"before": True})
        assert (await receive(client))["channel"] == "/drop"

        await client.unsubscribe("/drop")
        assert client.subscriptions == {"/keep"}
        await faye.wait_for_subscriptions({"/keep"}, client_id=client_id)

        await faye.publish("/drop", {"after": True})
        await client.publish("/drop", {"after": True, "by": "us"})
        await faye.publish("/keep", {"marker": True})
        message = await receive(client)
        assert (message["channel"], message["data"]) == ("/keep", {"marker": True})
        assert client.pending_count == 0


async def test_refused_subscription_and_publish_raise_server_error(
    faye: FayeServer, connection_type: str
) -> None:
    # faye_server.mjs refuses every subscription and publish under /denied/.
    async with BayeuxClient(
        faye.url, connection_types=(connection_type,), connection_timeout=10.0
    ) as client:
        with pytest.raises(ServerError, match="Subscription denied"):
            await client.subscribe("/denied/x")
        assert "/denied/x" not in client.subscriptions
        with pytest.raises(ServerError, match="Publish denied"):
            await client.publish("/denied/x", {"n": 1})

        # The session is still good.
        await client.subscribe("/fine")
        await faye.publish("/fine", {"n": 1})
        assert (await receive(client))["data"] == {"n": 1}


async def test_faye_restart_mid_stream(faye: FayeServer, connection_type: str) -> None:
    async with BayeuxClient(
        faye.url, connection_types=(connection_type,), connection_timeout=30.0
    ) as client:
        await client.subscribe("/r/plain")
        await client.subscribe("/r/w/*")
        old_id = await faye_client_id(faye, "/r/w/*")
        await faye.publish("/r/plain", {"n": 1})
        assert (await receive(client))["data"] == {"n": 1}

        # The server goes away (its held connect is cut) and comes back on the same port
        # knowing no client: ours must retry, get 401 Unknown client with advice to
        # handshake, handshake again and resubscribe, all by itself.
        await faye.stop()
        await asyncio.sleep(1.0)
        await faye.start()

        new_id = await faye.wait_for_subscription("/r/plain", within=25)
        assert new_id != old_id
        await faye.wait_for_subscription("/r/w/*", client_id=new_id, within=10)
        assert client.subscriptions == {"/r/plain", "/r/w/*"}
        assert not client.closed

        await faye.publish("/r/plain", {"n": 2})
        await faye.publish("/r/w/x", {"n": 3})
        message = await receive(client, within=15)
        assert (message["channel"], message["data"]) == ("/r/plain", {"n": 2})
        message = await receive(client, within=15)
        assert (message["channel"], message["data"]) == ("/r/w/x", {"n": 3})

        # And it can still publish in the new session.
        reply = await client.publish("/r/plain", {"n": 4})
        assert reply["successful"] is True
        assert (await receive(client))["data"] == {"n": 4}


@pytest.mark.parametrize("js_transport", ["long-polling", "websocket"])
async def test_cometd_js_client_and_bayeux_client_exchange_messages(
    faye: FayeServer, cometd_client: StartCometd, js_transport: str, connection_type: str
) -> None:
    js = await cometd_client(faye.url, transport=js_transport)
    assert (await js.subscribe("/to/js/**"))["successful"] is True

    async with BayeuxClient(
        faye.url, connection_types=(connection_type,), connection_timeout=10.0
    ) as client:
        await client.subscribe("/to/py")

        # Python -> JavaScript
        reply = await client.publish("/to/js/greeting", {"text": "hello from Python", "n": 1})
        assert reply["successful"] is True
        message = await js.receive()
        assert message["channel"] == "/to/js/greeting"
        assert message["data"] == {"text": "hello from Python", "n": 1}
        assert message["subscription"] == "/to/js/**"

        # JavaScript -> Python
        js_reply = await js.publish("/to/py", {"text": "hello from JavaScript", "n": 2})
        assert js_reply["successful"] is True
        message = await receive(client)
        assert (message["channel"], message["data"]) == (
            "/to/py",
            {"text": "hello from JavaScript", "n": 2},
        )

        # A round trip: each side answers what it received.
        for n in range(3, 6):
            await js.publish("/to/py", {"n": n})
            data = (await receive(client))["data"]
            await client.publish("/to/js/echo", data)
            assert (await js.receive())["data"] == {"n": n}

    disconnect = await js.disconnect()
    assert disconnect["successful"] is True


async def test_receive_raises_when_the_server_stays_down(
    faye: FayeServer, connection_type: str
) -> None:
    async with BayeuxClient(
        faye.url, connection_types=(connection_type,), connection_timeout=2.0
    ) as client:
        await client.subscribe("/down")
        await faye.stop()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TransportTimeoutError):
            async with asyncio.timeout(20):
                await client.receive()
        assert loop.time() - started < 15
    assert client.closed


async def test_slow_consumer_outlives_its_faye_session(
    node_peers: None, connection_type: str
) -> None:
    # Faye forgets a client 2 x timeout after its last connect. A consumer that stops reading
    # makes the client stop polling (max_pending_count); when it reads again the session is gone
    # and the client must start a new one and subscribe again by itself.
    server = FayeServer(timeout=1.0)
    await server.start()
    try:
        async with BayeuxClient(
            server.url,
            connection_types=(connection_type,),
            connection_timeout=15.0,
            max_pending_count=2,
        ) as client:
            await client.subscribe("/slow")
            old_id = await server.wait_for_subscription("/slow")
            await server.publish("/slow", {"n": 0})
            await server.publish("/slow", {"n": 1})

            # Nobody reads: with both messages pending the client must stop polling, and Faye
            # then drops the session.
            await server.wait_for(
                lambda line: line.get("event") == "disconnect" and line.get("clientId") == old_id,
                within=15,
                what="Faye dropping the idle client",
            )
            assert client.pending_count == 2
            assert [(await receive(client))["data"]["n"] for _ in range(2)] == [0, 1]

            # Reading again resumes polling: 401 Unknown client, new handshake, resubscription.
            new_id = await server.wait_for(
                lambda line: line.get("event") == "subscribe" and line.get("clientId") != old_id,
                within=15,
                what="a new session's subscription",
            )
            assert new_id["channel"] == "/slow"
            await server.publish("/slow", {"n": 2})
            assert (await receive(client, within=15))["data"] == {"n": 2}
    finally:
        await server.stop()
    assert server.concurrent_connects() == []


async def test_large_messages(faye: FayeServer, connection_type: str) -> None:
    sent = {"blob": "x" * 600_000, "items": list(range(10_000))}  # a request body under 1 MiB
    delivered = {"blob": "y" * 3_000_000, "text": "é" * 1000}  # a reply body over 1 MiB
    async with BayeuxClient(
        faye.url, connection_types=(connection_type,), connection_timeout=10.0
    ) as client:
        await client.subscribe("/big")
        reply = await client.publish("/big", sent)
        assert reply["successful"] is True
        assert (await receive(client))["data"] == sent
        await faye.publish("/big", delivered)
        assert (await receive(client))["data"] == delivered


async def test_publish_over_one_mebibyte(faye: FayeServer, connection_type: str) -> None:
    payload = {"blob": "x" * 1_100_000}
    async with BayeuxClient(
        faye.url, connection_types=(connection_type,), connection_timeout=10.0
    ) as client:
        await client.subscribe("/big")
        reply = await client.publish("/big", payload)
        assert reply["successful"] is True
        assert (await receive(client))["data"] == payload


async def test_fallback_to_long_polling_when_faye_refuses_the_upgrade(node_peers: None) -> None:
    server = FayeServer(timeout=5.0, websocket=False)
    await server.start()
    statuses: list[Status] = []
    try:
        async with BayeuxClient(
            server.url, connection_types=("websocket", "long-polling"), on_status=statuses.append
        ) as client:
            assert client.connection_type == "long-polling"
            await client.subscribe("/fb/*")
            await server.wait_for_subscription("/fb/*")
            await server.publish("/fb/a", {"n": 1})
            assert (await receive(client))["data"] == {"n": 1}
            assert (await client.publish("/fb/b", {"n": 2}))["successful"] is True
            assert (await receive(client))["data"] == {"n": 2}
        fallback = [s for s in statuses if s.kind is StatusKind.FALLBACK]
        assert len(fallback) == 1
        assert "websocket -> long-polling" in fallback[0].detail
        assert "HTTP 400" in fallback[0].detail

        # WebSocket alone has nothing to fall back to: the refusal is the error.
        with pytest.raises(HTTPStatusError, match="refused the WebSocket upgrade: HTTP 400"):
            await BayeuxClient(server.url, connection_types=("websocket",)).open()
    finally:
        await server.stop()
