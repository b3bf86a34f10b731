"""BayeuxClient over a duplex MockTransport (as over WebSocket): pushed messages, choosing
connection types."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sfstream.bayeux import BayeuxClient, ConstantBackoff, MockTransport, Transport
from sfstream.bayeux._events import Request
from sfstream.bayeux._messages import Message
from sfstream.exceptions import TransportInvalidOperation

from .fake_server import FakeBayeuxServer

URL = "http://127.0.0.1:9/bayeux"


def duplex_client(server: FakeBayeuxServer, **kwargs: Any) -> tuple[BayeuxClient, MockTransport]:
    transport = MockTransport(server, duplex=True, connection_type="websocket")
    client = BayeuxClient(URL, transport=transport, backoff=ConstantBackoff(0.01), **kwargs)
    return client, transport


async def test_pushed_deliveries_are_delivered_and_the_handshake_names_the_transport() -> None:
    server = FakeBayeuxServer(hold=30.0, connection_types=("websocket",))
    client, transport = duplex_client(server)
    async with client:
        assert client.connection_type == "websocket"
        await client.subscribe("/chat/*")
        transport.push([{"channel": "/chat/a", "data": {"n": 1}}, {"channel": "/other", "data": 2}])
        async with asyncio.timeout(2):
            message = await client.receive()
        assert (message["channel"], message["data"]) == ("/chat/a", {"n": 1})
    handshake = transport.requests[0].messages[0]
    assert handshake["supportedConnectionTypes"] == ["websocket"]
    connect = transport.requests[1].messages[0]
    assert connect["connectionType"] == "websocket"


async def test_pushed_messages_are_read_only_while_the_queue_has_room() -> None:
    server = FakeBayeuxServer(hold=30.0, connection_types=("websocket",))
    client, transport = duplex_client(server, max_pending_count=2)
    async with client:
        await client.subscribe("/a")
        for n in range(5):
            transport.push([{"channel": "/a", "data": n}])
        await asyncio.sleep(0.1)
        assert client.pending_count == 2
        assert transport._pushed.qsize() == 3  # still with the transport, not read
        received = []
        async with asyncio.timeout(2):
            for _ in range(5):
                received.append((await client.receive())["data"])
        assert received == [0, 1, 2, 3, 4]


async def test_pushed_messages_after_the_engine_stopped_are_ignored() -> None:
    server = FakeBayeuxServer(hold=30.0, connection_types=("websocket",))
    client, transport = duplex_client(server)
    async with client:
        await client.subscribe("/a")
        client._engine.fail()
        transport.push([{"channel": "/a", "data": 1}])
        await asyncio.sleep(0.05)
        assert client.pending_count == 0


def test_a_request_reply_transport_has_no_pushed_messages() -> None:
    transport = MockTransport(lambda request: [])
    assert (transport.duplex, transport.connection_type) == (False, "long-polling")
    with pytest.raises(TransportInvalidOperation, match="only a duplex transport"):
        transport.push([{"channel": "/a", "data": 1}])


async def test_receive_pushed_refuses_on_a_closed_or_request_reply_transport() -> None:
    plain = MockTransport(lambda request: [])
    with pytest.raises(TransportInvalidOperation, match="receives no pushed messages"):
        await plain.receive_pushed()
    duplex = MockTransport(lambda request: [], duplex=True)
    await duplex.close()
    with pytest.raises(TransportInvalidOperation):
        await duplex.receive_pushed()


async def test_a_transport_subclass_without_pushed_messages_still_works() -> None:
    class Plain(Transport):
        async def send(
            self, request: Request, headers: Any = None
        ) -> list[Message]:  # pragma: no cover - not called
            return []

    with pytest.raises(TransportInvalidOperation):
        await Plain().receive_pushed()


@pytest.mark.parametrize(
    "types", [(), ("websocket", "websocket"), ("callback-polling",), ("long-polling", "x")]
)
def test_connection_types_must_be_known_and_distinct(types: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="connection_types must be distinct names"):
        BayeuxClient(URL, connection_types=types)


def test_connection_types_and_a_transport_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="not both"):
        BayeuxClient(URL, transport=MockTransport(lambda r: []), connection_types=("long-polling",))
