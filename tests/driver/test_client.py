"""BayeuxClient driven through MockTransport: the asyncio driver without sockets."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from sfstream.bayeux import (
    BayeuxClient,
    ConstantBackoff,
    Extension,
    Message,
    MockTransport,
    Request,
    State,
    StatusKind,
)
from sfstream.exceptions import (
    AuthenticationError,
    ClientError,
    ClientInvalidOperation,
    HTTPStatusError,
    InvalidArgumentError,
    ProtocolError,
    ServerError,
    TransportConnectionClosed,
    TransportError,
    TransportTimeoutError,
)

from .fake_server import FakeBayeuxServer

URL = "http://127.0.0.1:9/bayeux"


def make_client(server: Any, **kwargs: Any) -> BayeuxClient:
    kwargs.setdefault("backoff", ConstantBackoff(0.01))
    return BayeuxClient(URL, transport=MockTransport(server), **kwargs)


def first(request: Request) -> Message:
    return request.messages[0]


async def receive(client: BayeuxClient, timeout: float = 2.0) -> Message:
    async with asyncio.timeout(timeout):
        return await client.receive()


@pytest.fixture
def server() -> FakeBayeuxServer:
    return FakeBayeuxServer()


async def test_open_subscribe_receive_close(server: FakeBayeuxServer) -> None:
    client = make_client(server)
    assert (client.closed, client.connection_type) == (True, None)
    await client.open()
    assert (client.closed, client.connection_type) == (False, "long-polling")
    assert client.state in (State.CONNECTED, State.POLLING)
    await client.subscribe("/chat/*")
    assert client.subscriptions == {"/chat/*"}
    server.publish("/chat/room", {"text": "hi"})
    message = await receive(client)
    assert message == {"channel": "/chat/room", "data": {"text": "hi"}}
    await client.close()
    assert client.closed
    assert client.state is State.DISCONNECTED
    assert server.count("/meta/disconnect") == 1
    assert server.sessions == {}


async def test_handshake_and_first_connect_shapes(server: FakeBayeuxServer) -> None:
    async with make_client(server) as client:
        await client.subscribe("/a")
        server.publish("/a", 1)
        await receive(client)
    handshake = first(server.requests[0])
    assert handshake["channel"] == "/meta/handshake"
    assert handshake["version"] == "1.0"
    assert handshake["supportedConnectionTypes"] == ["long-polling"]
    connects = [first(r) for r in server.requests if first(r)["channel"] == "/meta/connect"]
    assert connects[0]["advice"] == {"timeout": 0}
    assert connects[0]["connectionType"] == "long-polling"
    assert all("advice" not in c for c in connects[1:])
    held = [r for r in server.requests if r.long_poll][1:]
    # the held connect waits for the server's advised hold (50 ms) plus the poll margin
    assert held
    assert all(r.timeout == pytest.approx(0.05 + 15.0) for r in held)
    assert all(first(r)["clientId"] == "client1" for r in server.requests[1:])


async def test_messages_arrive_in_order_and_async_iteration_ends_on_close(
    server: FakeBayeuxServer,
) -> None:
    client = make_client(server)
    await client.open()
    await client.subscribe("/n")
    for n in range(10):
        server.publish("/n", n)
    received = [(await receive(client))["data"] for _ in range(10)]
    assert received == list(range(10))
    server.publish("/n", "last")
    await asyncio.sleep(0.1)  # let the loop fetch it
    await client.close()
    # a message received before close is still delivered, then the iteration ends
    assert [m["data"] async for m in client] == ["last"]


async def test_rehandshake_after_unknown_client_restores_every_subscription(
    server: FakeBayeuxServer,
) -> None:
    async with make_client(server) as client:
        await client.subscribe("/a")
        await client.subscribe("/b/**")
        first_id = client.client_id
        server.forget_all()
        server.publish("/a", "lost")  # nobody is subscribed any more: this one is gone
        await asyncio.sleep(0.2)
        assert client.client_id != first_id
        server.publish("/a", 1)
        server.publish("/b/c/d", 2)
        got = {(m["channel"], m["data"]) for m in [await receive(client), await receive(client)]}
        assert got == {("/a", 1), ("/b/c/d", 2)}
        assert client.subscriptions == {"/a", "/b/**"}
    # the new session asked for an immediate first connect again
    handshakes = [
        i for i, r in enumerate(server.requests) if first(r)["channel"] == "/meta/handshake"
    ]
    assert len(handshakes) == 2
    after = [first(r) for r in server.requests[handshakes[1] :]]
    assert [m["channel"] for m in after[:4]] == [
        "/meta/handshake",
        "/meta/subscribe",
        "/meta/subscribe",
        "/meta/connect",
    ]
    assert after[3]["advice"] == {"timeout": 0}


async def test_server_disconnect_leads_to_a_new_handshake(server: FakeBayeuxServer) -> None:
    def push_disconnect(request: Request) -> list[Message]:
        return [{"channel": "/meta/disconnect", "successful": True}]

    async with make_client(server) as client:
        await client.subscribe("/a")
        server.script.append(push_disconnect)
        await asyncio.sleep(0.3)
        server.publish("/a", "after")
        assert (await receive(client))["data"] == "after"
        assert not client.closed
    assert server.count("/meta/handshake") == 2


async def test_close_during_long_poll_leaves_no_task(server: FakeBayeuxServer) -> None:
    server.hold = 30.0
    client = make_client(server)
    await client.open()
    await asyncio.sleep(0.05)
    assert client.state is State.POLLING
    before = asyncio.all_tasks()
    await asyncio.wait_for(client.close(), 5)
    after = asyncio.all_tasks()
    assert not {t for t in after - before if not t.done()}
    assert all("bayeux" not in t.get_name() for t in asyncio.all_tasks())
    await client.close()  # idempotent


async def test_close_logs_no_cancelled_error(
    server: FakeBayeuxServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.hold = 30.0
    caplog.set_level(logging.DEBUG)
    async with make_client(server):
        await asyncio.sleep(0.05)
    assert "CancelledError" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_cancelling_a_receive_does_not_break_the_client(server: FakeBayeuxServer) -> None:
    async with make_client(server) as client:
        await client.subscribe("/a")
        task = asyncio.create_task(client.receive())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server.publish("/a", "still")
        assert (await receive(client))["data"] == "still"


async def test_backpressure_pauses_polling_and_loses_nothing(server: FakeBayeuxServer) -> None:
    async with make_client(server, max_pending_count=2) as client:
        await client.subscribe("/n")
        for n in range(5):
            server.publish("/n", n)
        await asyncio.sleep(0.1)
        assert client.pending_count == 5  # one reply carried them all
        assert client.has_pending_messages
        connects = server.count("/meta/connect")
        await asyncio.sleep(0.3)
        assert server.count("/meta/connect") == connects  # paused
        assert [(await receive(client))["data"] for _ in range(3)] == [0, 1, 2]
        await asyncio.sleep(0.1)
        assert server.count("/meta/connect") == connects  # 2 still wait: the bound
        assert (await receive(client))["data"] == 3
        await asyncio.sleep(0.1)
        assert server.count("/meta/connect") > connects  # resumed below the bound
        assert (await receive(client))["data"] == 4


async def test_connection_timeout_raises_from_receive_and_recovers_later(
    server: FakeBayeuxServer,
) -> None:
    down = {"on": False}

    def maybe_fail(request: Request) -> list[Message] | None:
        if down["on"]:
            raise TransportConnectionClosed("down")
        return None

    class Flaky:
        async def __call__(self, request: Request) -> list[Message]:
            maybe_fail(request)
            return await server(request)

    async with make_client(Flaky(), connection_timeout=0.3) as client:
        await client.subscribe("/a")
        down["on"] = True
        started = asyncio.get_running_loop().time()
        with pytest.raises(TransportTimeoutError, match=r"within 0\.3 s"):
            await receive(client, timeout=5)
        assert 0.25 <= asyncio.get_running_loop().time() - started < 3
        down["on"] = False
        await asyncio.sleep(0.2)  # the new session is made and resubscribed
        server.publish("/a", "back")
        assert (await receive(client, timeout=5))["data"] == "back"


async def test_connection_timeout_none_waits(server: FakeBayeuxServer) -> None:
    down = {"on": False}

    async def handler(request: Request) -> list[Message]:
        if down["on"]:
            raise TransportError("refused")
        return await server(request)

    async with make_client(handler, connection_timeout=None) as client:
        down["on"] = True
        with pytest.raises(TimeoutError):  # receive() itself keeps waiting
            await receive(client, timeout=0.3)
        down["on"] = False


async def test_timeout_error_again_after_a_whole_window(server: FakeBayeuxServer) -> None:
    down = {"on": False}

    async def handler(request: Request) -> list[Message]:
        if down["on"]:
            raise TransportError("refused")
        return await server(request)

    async with make_client(handler, connection_timeout=0.2) as client:
        down["on"] = True
        with pytest.raises(TransportTimeoutError):
            await receive(client)
        started = asyncio.get_running_loop().time()
        with pytest.raises(TransportTimeoutError):
            await receive(client)
        assert asyncio.get_running_loop().time() - started >= 0.15


async def test_open_fails_fast_on_refused_handshake() -> None:
    def refuse(request: Request) -> list[Message]:
        return [
            {
                "channel": "/meta/handshake",
                "id": first(request)["id"],
                "successful": False,
                "error": "403::Handshake denied",
                "advice": {"reconnect": "none"},
            }
        ]

    transport = MockTransport(refuse)
    client = BayeuxClient(URL, transport=transport)
    with pytest.raises(ServerError) as info:
        await client.open()
    assert info.value.error_code == 403
    assert info.value.error_message == "Handshake denied"
    assert client.closed
    assert len(transport.requests) == 1
    with pytest.raises(ClientInvalidOperation):
        await client.open()


async def test_open_fails_fast_on_network_error() -> None:
    def down(request: Request) -> list[Message]:
        raise TransportError("cannot connect to 127.0.0.1:9")

    client = BayeuxClient(URL, transport=MockTransport(down))
    with pytest.raises(TransportError, match="cannot connect"):
        await client.open()
    with pytest.raises(ClientInvalidOperation):
        await client.receive()


async def test_open_refuses_a_server_without_long_polling() -> None:
    def websocket_only(request: Request) -> list[Message]:
        return [
            {
                "channel": "/meta/handshake",
                "id": first(request)["id"],
                "successful": True,
                "clientId": "c1",
                "supportedConnectionTypes": ["websocket"],
            }
        ]

    with pytest.raises(ClientError, match="connection types"):
        await BayeuxClient(URL, transport=MockTransport(websocket_only)).open()


async def test_malformed_reply_stops_open_with_protocol_error() -> None:
    def no_client_id(request: Request) -> list[Message]:
        return [{"channel": "/meta/handshake", "id": first(request)["id"], "successful": True}]

    with pytest.raises(ProtocolError, match="clientId"):
        await BayeuxClient(URL, transport=MockTransport(no_client_id)).open()


async def test_reauthenticates_once_then_raises(server: FakeBayeuxServer) -> None:
    calls: list[int] = []

    async def reauthenticate() -> None:
        calls.append(1)

    def auth_invalid(request: Request) -> list[Message]:
        return [
            {
                "channel": first(request)["channel"],
                "id": first(request)["id"],
                "successful": False,
                "error": "401::Authentication invalid",
                "advice": {"reconnect": "none", "interval": 0},
            }
        ]

    async with make_client(server, reauthenticate=reauthenticate) as client:
        await client.subscribe("/a")
        server.script.append(auth_invalid)  # the next connect: token revoked
        await asyncio.sleep(0.2)
        assert calls == [1]
        server.publish("/a", "after refresh")
        assert (await receive(client))["data"] == "after refresh"
        # now the refreshed token is refused too, on connect and on the new handshake
        server.script.extend([auth_invalid, auth_invalid])
        with pytest.raises(AuthenticationError, match="again after re-authentication"):
            await receive(client)
        assert calls == [1, 1]
        with pytest.raises(ClientInvalidOperation):
            await client.subscribe("/b")


async def test_failed_reauthentication_stops_the_client(server: FakeBayeuxServer) -> None:
    async def reauthenticate() -> None:
        raise AuthenticationError("invalid_grant: authentication failure")

    def auth_invalid(request: Request) -> list[Message]:
        return [
            {
                "channel": "/meta/connect",
                "id": first(request)["id"],
                "successful": False,
                "error": "401::Authentication invalid",
                "advice": {"reconnect": "none"},
            }
        ]

    async with make_client(server, reauthenticate=reauthenticate) as client:
        server.script.append(auth_invalid)
        with pytest.raises(AuthenticationError, match="invalid_grant"):
            await receive(client)


async def test_unknown_client_does_not_reauthenticate(server: FakeBayeuxServer) -> None:
    calls: list[int] = []

    async def reauthenticate() -> None:
        calls.append(1)

    async with make_client(server, reauthenticate=reauthenticate) as client:
        await client.subscribe("/a")
        server.forget_all()
        await asyncio.sleep(0.2)
        server.publish("/a", 1)
        await receive(client)
    assert calls == []


async def test_http_401_reauthenticates(server: FakeBayeuxServer) -> None:
    calls: list[int] = []

    async def reauthenticate() -> None:
        calls.append(1)

    def http_401(request: Request) -> list[Message]:
        raise HTTPStatusError("HTTP 401", status=401)

    async with make_client(server, reauthenticate=reauthenticate) as client:
        await client.subscribe("/a")
        server.script.append(http_401)
        await asyncio.sleep(0.2)
        server.publish("/a", 1)
        await receive(client)
    assert calls == [1]


async def test_server_failing_without_advice_is_retried_with_backoff() -> None:
    seen: list[float] = []
    server = FakeBayeuxServer()

    async def failing(request: Request) -> list[Message]:
        message = first(request)
        if message["channel"] == "/meta/connect" and server.count("/meta/connect") >= 1:
            seen.append(asyncio.get_running_loop().time())
            server.requests.append(request)
            server.channels_seen.append("/meta/connect")
            return [{"channel": "/meta/connect", "id": message["id"], "successful": False}]
        return await server(request)

    async with make_client(failing, backoff=ConstantBackoff(0.1)):
        await asyncio.sleep(0.55)
    # at most one retry per 0.1 s, not thousands a second
    assert 3 <= len(seen) <= 7


async def test_refused_resubscription_is_raised_by_receive(server: FakeBayeuxServer) -> None:
    refusals = {"n": 0}

    def refuse_subscribe(request: Request) -> list[Message] | None:
        return None

    async def handler(request: Request) -> list[Message]:
        message = first(request)
        if message["channel"] == "/meta/subscribe" and server.count("/meta/handshake") > 1:
            refusals["n"] += 1
            server.requests.append(request)
            return [
                {
                    "channel": "/meta/subscribe",
                    "id": message["id"],
                    "subscription": message["subscription"],
                    "successful": False,
                    "error": "400::The replayId {5} you provided was invalid.",
                }
            ]
        return await server(request)

    async with make_client(handler) as client:
        await client.subscribe("/a")
        await client.subscribe("/b")
        server.forget_all()
        with pytest.raises(ServerError) as info:
            await receive(client)
        assert info.value.error_code == 400
        with pytest.raises(ServerError):
            await receive(client)
        assert client.subscriptions == set()
    assert refusals["n"] == 2


async def test_resubscribe_hook_retries_a_refused_resubscription(
    server: FakeBayeuxServer,
) -> None:
    hooked: list[str] = []

    def hook(channel: str, error: ServerError) -> bool:
        hooked.append(channel)
        return True

    refused = {"done": False}

    async def handler(request: Request) -> list[Message]:
        message = first(request)
        if (
            message["channel"] == "/meta/subscribe"
            and server.count("/meta/handshake") > 1
            and not refused["done"]
        ):
            refused["done"] = True
            return [
                {
                    "channel": "/meta/subscribe",
                    "id": message["id"],
                    "subscription": message["subscription"],
                    "successful": False,
                    "error": "400::The replayId {5} you provided was invalid.",
                }
            ]
        return await server(request)

    async with make_client(handler, on_resubscribe_failed=hook) as client:
        await client.subscribe("/a")
        server.forget_all()
        await asyncio.sleep(0.2)
        server.publish("/a", "ok")
        assert (await receive(client))["data"] == "ok"
        assert client.subscriptions == {"/a"}
    assert hooked == ["/a"]


async def test_subscribe_refused_raises_server_error(server: FakeBayeuxServer) -> None:
    def refuse(request: Request) -> list[Message]:
        return [
            {
                "channel": "/meta/subscribe",
                "id": first(request)["id"],
                "subscription": "/nope",
                "successful": False,
                "error": "400::The channel you requested to subscribe to does not exist {/nope}",
            }
        ]

    async with make_client(server) as client:
        server.script.append(refuse)
        with pytest.raises(ServerError, match="does not exist"):
            await client.subscribe("/nope")
        assert client.subscriptions == set()


async def test_subscribe_transport_error_raises(server: FakeBayeuxServer) -> None:
    def fail(request: Request) -> list[Message]:
        raise TransportConnectionClosed("reset")

    async with make_client(server) as client:
        server.hold = 5
        await asyncio.sleep(0.05)  # a connect is now held, so the next request is ours
        server.script.append(fail)
        with pytest.raises(TransportConnectionClosed):
            await client.subscribe("/a")
        assert client.subscriptions == set()


async def test_invalid_channel_is_refused_at_the_call_site(server: FakeBayeuxServer) -> None:
    async with make_client(server) as client:
        with pytest.raises(ValueError, match="invalid channel name"):
            await client.subscribe("no-slash")
        with pytest.raises(ValueError, match="meta channel"):
            await client.subscribe("/meta/connect")
        with pytest.raises(ValueError, match="meta channel"):
            await client.publish("/meta/connect", {})


async def test_unsubscribe_stops_deliveries(server: FakeBayeuxServer) -> None:
    async with make_client(server) as client:
        await client.subscribe("/a")
        await client.subscribe("/b")
        await client.unsubscribe("/a")
        assert client.subscriptions == {"/b"}
        server.publish("/a", "dropped")
        server.publish("/b", "kept")
        assert (await receive(client))["data"] == "kept"
        assert not client.has_pending_messages


async def test_unsubscribe_refused_raises(server: FakeBayeuxServer) -> None:
    def refuse(request: Request) -> list[Message]:
        return [
            {
                "channel": "/meta/unsubscribe",
                "id": first(request)["id"],
                "subscription": "/a",
                "successful": False,
                "error": "400::nope",
            }
        ]

    async with make_client(server) as client:
        await client.subscribe("/a")
        server.hold = 5
        await asyncio.sleep(0.05)
        server.script.append(refuse)
        with pytest.raises(ServerError, match="nope"):
            await client.unsubscribe("/a")


async def test_publish_returns_the_reply_and_raises_on_refusal(server: FakeBayeuxServer) -> None:
    async with make_client(server) as client:
        await client.subscribe("/a")
        reply = await client.publish("/a", {"x": 1})
        assert reply["successful"] is True
        assert (await receive(client))["data"] == {"x": 1}
        server.hold = 5
        await asyncio.sleep(0.05)

        def refuse(request: Request) -> list[Message]:
            return [
                {
                    "channel": "/a",
                    "id": first(request)["id"],
                    "successful": False,
                    "error": "407::Failed to publish",
                }
            ]

        server.script.append(refuse)
        with pytest.raises(ServerError, match="Failed to publish"):
            await client.publish("/a", {})

        def silent(request: Request) -> list[Message]:
            return []

        server.script.append(silent)
        with pytest.raises(ProtocolError, match="did not answer"):
            await client.publish("/a", {})


async def test_operations_on_unopened_or_closed_client() -> None:
    client = BayeuxClient(URL, transport=MockTransport(FakeBayeuxServer()))
    with pytest.raises(ClientInvalidOperation, match="not open"):
        await client.subscribe("/a")
    with pytest.raises(ClientInvalidOperation, match="not open"):
        await client.receive()
    await client.close()
    with pytest.raises(ClientInvalidOperation):
        await client.open()
    with pytest.raises(ClientInvalidOperation, match="closed"):
        await client.publish("/a", 1)


def test_client_built_outside_a_running_loop() -> None:
    server = FakeBayeuxServer()
    client = make_client(server)  # no loop is running here

    async def main() -> Any:
        async with client:
            await client.subscribe("/a")
            server.publish("/a", "ok")
            return (await receive(client))["data"]

    assert asyncio.run(main()) == "ok"


async def test_headers_provider_is_called_for_every_request(server: FakeBayeuxServer) -> None:
    tokens = iter(range(1000))
    transport = MockTransport(server)
    client = BayeuxClient(
        URL, transport=transport, headers=lambda: {"Authorization": f"Bearer t{next(tokens)}"}
    )
    async with client:
        await client.subscribe("/a")
    values = [h["Authorization"] for h in transport.headers]
    assert values[:3] == ["Bearer t0", "Bearer t1", "Bearer t2"]
    assert len(set(values)) == len(values)


async def test_static_headers_and_transport_sessions(server: FakeBayeuxServer) -> None:
    transport = MockTransport(server)
    async with BayeuxClient(URL, transport=transport, headers={"X-Test": "1"}) as client:
        server.forget_all()
        server.publish("/x", 0)
        await asyncio.sleep(0.2)
        assert client.state in (State.CONNECTED, State.POLLING)
    assert all(h == {"X-Test": "1"} for h in transport.headers)
    assert transport.sessions == 2  # one cookie jar per Bayeux session
    assert not transport.closed  # the client does not close a transport it did not create


async def test_extensions_see_outgoing_and_incoming_messages(server: FakeBayeuxServer) -> None:
    class Recorder(Extension):
        def __init__(self) -> None:
            self.out: list[str] = []
            self.incoming_channels: list[str] = []

        def outgoing(self, message: Message) -> None:
            self.out.append(message["channel"])
            message.setdefault("ext", {})["tag"] = "x"

        def incoming(self, message: Message) -> None:
            self.incoming_channels.append(message["channel"])

    recorder = Recorder()
    async with make_client(server, extensions=[recorder]) as client:
        await client.subscribe("/a")
        server.publish("/a", 1)
        await receive(client)
    assert recorder.out[:3] == ["/meta/handshake", "/meta/connect", "/meta/subscribe"]
    assert "/a" in recorder.incoming_channels
    assert all(first(r).get("ext") == {"tag": "x"} for r in server.requests)


async def test_subscribe_waits_for_the_next_session(server: FakeBayeuxServer) -> None:
    async with make_client(server) as client:
        server.forget_all()
        server.hold = 0.2
        # the client does not know yet: its subscribe is refused as unknown, the session is
        # made again, and the subscription with it
        await asyncio.wait_for(client.subscribe("/late"), 3)
        assert client.subscriptions == {"/late"}
        server.publish("/late", "ok")
        assert (await receive(client))["data"] == "ok"


async def test_repr_and_state(server: FakeBayeuxServer) -> None:
    client = make_client(server)
    assert "unopened" in repr(client)
    async with client:
        assert "open" in repr(client)
        assert client.client_id == "client1"
    assert "closed" in repr(client)


async def test_status_events_and_stats(server: FakeBayeuxServer) -> None:
    from sfstream.bayeux import Status, StatusKind

    seen: list[Status] = []
    async with make_client(server, on_status=seen.append, max_pending_count=1) as client:
        await client.subscribe("/a")
        server.forget_all()
        await asyncio.sleep(0.2)
        server.publish("/a", 1)
        server.publish("/a", 2)
        await asyncio.sleep(0.2)
        assert (await receive(client))["data"] == 1
        assert (await receive(client))["data"] == 2
        await asyncio.sleep(0.1)
    kinds = [s.kind for s in seen]
    assert kinds[0] is StatusKind.CONNECTED
    assert kinds[-1] is StatusKind.CLOSED
    for kind in (
        StatusKind.SESSION_LOST,
        StatusKind.CONNECTION_LOST,
        StatusKind.RECONNECTED,
        StatusKind.PAUSED,
        StatusKind.RESUMED,
    ):
        assert kind in kinds
        assert client.stats[kind] == kinds.count(kind)
    lost = next(s for s in seen if s.kind is StatusKind.SESSION_LOST)
    assert "403::Unknown client" in lost.detail


async def test_a_failing_status_callback_is_logged_not_raised(
    server: FakeBayeuxServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(status: object) -> None:
        raise RuntimeError("oops")

    async with make_client(server, on_status=broken) as client:
        await client.subscribe("/a")
    assert "on_status callback failed" in caplog.text


async def test_cancelling_the_task_inside_async_with_still_disconnects(
    server: FakeBayeuxServer,
) -> None:
    server.hold = 30.0
    transport = MockTransport(server)
    client = BayeuxClient(URL, transport=transport)

    async def consume() -> None:
        async with client:
            await client.subscribe("/a")
            async for _ in client:
                pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.closed
    assert server.count("/meta/disconnect") == 1
    assert server.sessions == {}


async def test_cancelling_close_itself_is_honoured(server: FakeBayeuxServer) -> None:
    server.hold = 30.0
    gate = asyncio.Event()

    async def slow_disconnect(request: Request) -> list[Message]:
        if first(request)["channel"] == "/meta/disconnect":
            await gate.wait()
        return await server(request)

    owned = BayeuxClient(URL, transport=MockTransport(slow_disconnect))
    await owned.open()
    closing = asyncio.create_task(owned.close())
    await asyncio.sleep(0.05)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert owned.closed


# -- #13: the poller is not starved by a fast consumer; a cut-off reply costs no backoff ----


async def test_next_connect_goes_out_while_the_consumer_still_has_messages(
    server: FakeBayeuxServer,
) -> None:
    async with make_client(server, max_pending_count=100) as client:
        await client.subscribe("/a")
        for n in range(1000):
            server.publish("/a", n)
        first_message = await receive(client)  # the whole backlog arrives in one reply
        assert first_message["data"] == 0
        connects = server.count("/meta/connect")
        received = 1
        # A consumer that never finds the queue empty: it never waits for anything itself.
        while client.pending_count > 1:
            message = await client.receive()
            assert message["data"] == received
            received += 1
        # Polling paused at 100 waiting messages; once below, the next connect went out
        # while the consumer was still working through the queue.
        assert server.count("/meta/connect") > connects
        assert client.stats[StatusKind.PAUSED] >= 1


async def test_receive_yields_to_the_loop_between_queued_messages(
    server: FakeBayeuxServer,
) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async with make_client(server, max_pending_count=0) as client:
        await client.subscribe("/a")
        for n in range(500):
            server.publish("/a", n)
        await receive(client)
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        for _ in range(400):
            await client.receive()
        task.cancel()
        # other tasks (the connect loop among them) ran while 400 queued messages were taken
        assert ticks - before >= 400 // 64


async def test_a_transport_that_answers_at_once_does_not_starve_the_loop() -> None:
    """Only a reply from the network lets the next connect go out without a turn of the
    loop (#13): a transport of the user's that answers without awaiting is spaced out."""

    def at_once(request: Request) -> list[Message]:
        return [
            {
                "channel": m["channel"],
                "id": m["id"],
                "successful": True,
                "clientId": "c1",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
                "advice": {"reconnect": "retry", "interval": 0, "timeout": 0},
            }
            for m in request.messages
        ]

    transport = MockTransport(at_once)
    async with BayeuxClient(URL, transport=transport) as client:
        for _ in range(50):
            await asyncio.sleep(0)  # a spinning connect loop would keep the loop
        connects = sum(first(r)["channel"] == "/meta/connect" for r in transport.requests)
        assert client.stats[StatusKind.STOPPED] == 0
    # the connect loop ran meanwhile, reply after reply, one turn of the loop each
    assert 10 < connects <= 2 * 50


async def test_cut_off_reply_is_retried_at_once_then_backs_off(
    server: FakeBayeuxServer,
) -> None:
    failures = {"left": 0}
    failed_at: list[float] = []

    async def handler(request: Request) -> list[Message]:
        if first(request)["channel"] == "/meta/connect" and failures["left"] > 0:
            failures["left"] -= 1
            failed_at.append(asyncio.get_running_loop().time())
            raise TransportConnectionClosed("the reply was cut off mid-body")
        return await server(request)

    # A backoff far longer than the test's bounded waits: any wait for it would fail the test.
    async with make_client(handler, backoff=ConstantBackoff(30.0)) as client:
        await client.subscribe("/a")
        failures["left"] = 1
        server.publish("/a", "first")  # answers the held connect; the next one is cut off
        assert (await receive(client))["data"] == "first"
        server.publish("/a", "after the cut")
        assert (await receive(client))["data"] == "after the cut"
        assert len(failed_at) == 1
        # two failures in a row: the first is retried at once, the second waits for backoff
        failures["left"] = 2
        server.publish("/a", "third")
        assert (await receive(client))["data"] == "third"
        server.publish("/a", "fourth")
        with pytest.raises(TimeoutError):
            await receive(client, timeout=0.3)
        assert len(failed_at) == 3


async def test_receive_nowait_serves_the_queue_in_slices(server: FakeBayeuxServer) -> None:
    async with make_client(server, max_pending_count=0) as client:
        assert client.receive_nowait() is None  # nothing waits
        await client.subscribe("/a")
        for n in range(40):
            server.publish("/a", n)
        assert (await receive(client))["data"] == 0
        taken = [0]
        while len(taken) < 40:
            message = client.receive_nowait()
            if message is None:  # the connect loop's turn: receive() yields, then serves
                message = await receive(client)
            taken.append(message["data"])
        assert taken == list(range(40))
        assert client.receive_nowait() is None


async def test_async_for_takes_ready_messages_and_raises_errors_first(
    server: FakeBayeuxServer,
) -> None:
    async with make_client(server) as client:
        await client.subscribe("/a")
        for n in range(3):
            server.publish("/a", n)
        seen = []
        async for message in client:
            seen.append(message["data"])
            if len(seen) == 1:
                client._errors.append(ServerError("resubscription refused"))
                assert client.receive_nowait() is None  # the error goes first
                with pytest.raises(ServerError):
                    await client.__anext__()
            if len(seen) == 3:
                break
        assert seen == [0, 1, 2]


async def test_receive_many_returns_what_waits_in_order(server: FakeBayeuxServer) -> None:
    async with make_client(server, max_pending_count=0) as client:
        with pytest.raises(InvalidArgumentError, match="max_count"):
            await client.receive_many(0)
        await client.subscribe("/a")
        for n in range(40):
            server.publish("/a", n)
        seen: list[int] = []
        while len(seen) < 40:
            async with asyncio.timeout(2):
                batch = await client.receive_many(10)
            assert 1 <= len(batch) <= 10
            seen += [m["data"] for m in batch]
        assert seen == list(range(40))
        # it waits for the next message like receive()
        task = asyncio.create_task(client.receive_many())
        await asyncio.sleep(0.05)
        assert not task.done()
        server.publish("/a", "late")
        async with asyncio.timeout(2):
            assert [m["data"] for m in await task] == ["late"]


def queued_client(length: int, limit: int, until_yield: int, paused: bool) -> BayeuxClient:
    """A client whose queue holds ``length`` messages, in a given serving state (no server)."""
    client = BayeuxClient(
        "http://127.0.0.1:1/cometd", transport=MockTransport(lambda r: []), max_pending_count=limit
    )
    client._capacity = asyncio.Event()
    if paused:
        client._paused = True
    else:
        client._capacity.set()
    client._queue.extend({"channel": "/a", "data": n} for n in range(length))
    client._until_yield = until_yield
    return client


@pytest.mark.parametrize("length", [0, 1, 7, 12])
@pytest.mark.parametrize("limit", [0, 5, 20])
@pytest.mark.parametrize("until_yield", [0, 3, 16])
@pytest.mark.parametrize("paused", [False, True])
async def test_a_batch_takes_what_receive_nowait_would_one_by_one(
    length: int, limit: int, until_yield: int, paused: bool
) -> None:
    for count in (1, 4, 100):
        batch = queued_client(length, limit, until_yield, paused)
        single = queued_client(length, limit, until_yield, paused)
        taken = batch._take_waiting(count)
        one_by_one: list[Message] = []
        while len(one_by_one) < count and (message := single.receive_nowait()) is not None:
            one_by_one.append(message)
        assert taken == one_by_one
        for client in (batch, single):
            assert client._capacity is not None
            assert client._paused is not client._capacity.is_set()
        assert (batch._paused, batch._until_yield, len(batch._queue)) == (
            single._paused,
            single._until_yield,
            len(single._queue),
        )


async def test_a_batch_waits_for_a_pending_error() -> None:
    client = queued_client(5, 0, 16, False)
    client._errors.append(ServerError("resubscription refused"))
    assert client._take_waiting(10) == []
    assert len(client._queue) == 5


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"connection_timeout": "10"}, TypeError, "connection_timeout must be a number or None"),
        ({"connection_timeout": True}, TypeError, "connection_timeout must be a number or None"),
        ({"connection_timeout": [1]}, TypeError, "connection_timeout must be a number or None"),
        ({"connection_timeout": float("nan")}, InvalidArgumentError, "connection_timeout"),
        ({"max_pending_count": "5"}, TypeError, "max_pending_count must be a number"),
        ({"max_pending_count": None}, TypeError, "max_pending_count must be a number"),
        ({"max_pending_count": False}, TypeError, "max_pending_count must be a number"),
        ({"max_pending_count": float("nan")}, InvalidArgumentError, "max_pending_count"),
        ({"max_pending_count": float("inf")}, InvalidArgumentError, "max_pending_count"),
        ({"max_pending_count": float("-inf")}, InvalidArgumentError, "max_pending_count"),
        ({"request_timeout": "30"}, TypeError, "request_timeout must be a number of seconds"),
        ({"request_timeout": True}, TypeError, "request_timeout must be a number of seconds"),
        ({"request_timeout": 0}, InvalidArgumentError, "request_timeout must be a positive"),
        ({"request_timeout": -1.0}, InvalidArgumentError, "request_timeout must be a positive"),
        ({"request_timeout": float("nan")}, InvalidArgumentError, "request_timeout"),
        ({"request_timeout": float("inf")}, InvalidArgumentError, "request_timeout"),
        ({"handshake_after": "3"}, TypeError, "handshake_after must be an int"),
        ({"handshake_after": 2.5}, TypeError, "handshake_after must be an int"),
        ({"handshake_after": 0}, InvalidArgumentError, "handshake_after must be at least 1"),
        ({"max_response_size": 1e6}, TypeError, "max_response_size must be an int"),
        ({"max_response_size": True}, TypeError, "max_response_size must be an int"),
        ({"max_response_size": 0}, InvalidArgumentError, "max_response_size must be at least 1"),
        ({"max_messages": None}, TypeError, "max_messages must be an int"),
        ({"max_messages": -5}, InvalidArgumentError, "max_messages must be at least 1"),
        ({"json_loads": None}, TypeError, "json_loads must be callable, not NoneType"),
        ({"json_dumps": "orjson"}, TypeError, "json_dumps must be callable, not str"),
    ],
)
def test_bad_limits_fail_at_construction(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    # before: accepted, and failed much later inside the connect loop, the transport or
    # receive() ("'<=' not supported between instances of 'str' and 'int'"), or, for NaN and
    # infinity, silently meant no limit at all (a reply limit of 0 refused every reply)
    with pytest.raises(error, match=match):
        BayeuxClient(URL, transport=MockTransport(lambda r: []), **options)


@pytest.mark.parametrize(
    ("connection_timeout", "expected"),
    [(None, None), (0, None), (-1.5, None), (2, 2), (float("inf"), float("inf"))],
)
def test_accepted_connection_timeouts(
    connection_timeout: float | None, expected: float | None
) -> None:
    client = BayeuxClient(
        URL, transport=MockTransport(lambda r: []), connection_timeout=connection_timeout
    )
    assert client.connection_timeout == expected


async def test_a_fractional_max_pending_count_is_rounded_up(server: FakeBayeuxServer) -> None:
    # before: 2.5 was kept as is, and a batch taken while polling was paused failed with
    # "'float' object cannot be interpreted as an integer"
    async with make_client(server, max_pending_count=2.5) as client:
        assert client.max_pending_count == 3
        await client.subscribe("/n")
        for n in range(6):
            server.publish("/n", n)
        for _ in range(200):  # one reply carries them all
            if client.pending_count == 6:
                break
            await asyncio.sleep(0.01)
        assert client.pending_count == 6  # polling is paused: 6 >= 3
        async with asyncio.timeout(2):
            seen: list[int] = []
            while len(seen) < 6:
                seen += [m["data"] for m in await client.receive_many(10)]
        assert seen == list(range(6))


@pytest.mark.parametrize(
    ("max_count", "error", "match"),
    [
        ("3", TypeError, "max_count must be an int, not str"),
        (3.0, TypeError, "max_count must be an int, not float"),
        (True, TypeError, "max_count must be an int, not bool"),
        (None, TypeError, "max_count must be an int, not NoneType"),
        (0, InvalidArgumentError, "max_count must be at least 1, not 0"),
        (-2, InvalidArgumentError, "max_count must be at least 1, not -2"),
    ],
)
async def test_receive_many_refuses_a_count_that_is_not_one(
    server: FakeBayeuxServer, max_count: Any, error: type[Exception], match: str
) -> None:
    async with make_client(server) as client:
        await client.subscribe("/a")
        server.publish("/a", 1)
        for _ in range(200):
            if client.pending_count:
                break
            await asyncio.sleep(0.01)
        assert client.pending_count == 1
        # before: "3" raised a bare TypeError ("'<' not supported between instances of 'str'
        # and 'int'") from inside, and True was taken as 1
        with pytest.raises(error, match=match):
            await client.receive_many(max_count)
        assert client.pending_count == 1  # nothing was taken
        assert [m["data"] for m in await client.receive_many(1)] == [1]


async def test_close_called_by_the_opening_task_itself_ends_the_opening(
    server: FakeBayeuxServer,
) -> None:
    """close() from inside open() (here: the transport answering the handshake) cannot wait
    for the opening to end: it closes the client, and open() says it was closed."""
    client: BayeuxClient

    async def handler(request: Request) -> list[Message]:
        if first(request)["channel"] == "/meta/handshake":
            await client.close()
        return await server(request)

    client = BayeuxClient(URL, transport=MockTransport(handler))
    async with asyncio.timeout(5):
        with pytest.raises(ClientInvalidOperation, match="closed while it was opening"):
            await client.open()
    assert client.closed
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0  # no cancellation left behind
    await client.close()  # idempotent
