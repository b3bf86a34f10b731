"""sfstream's BayeuxClient against the CometD project's Node.js server (cometd-nodejs-server 1.2.1).

What that server does not support is asserted as a refusal, never skipped: it has no WebSocket
(its handshake offers long polling only and an upgrade request gets HTTP 400), so a client that
prefers WebSocket falls back, and one that speaks only WebSocket gets the refusal as its error.
Its acknowledgement extension is supported and tested.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sfstream.bayeux import (
    AckExtension,
    BayeuxClient,
    ConstantBackoff,
    Extension,
    Message,
    Status,
    StatusKind,
)
from sfstream.exceptions import HTTPStatusError

from ._peers import CometdServer, StartCometd

pytestmark = pytest.mark.interop

#: CometD's long-poll hold in seconds.
HOLD = 2.0
RECEIVE_WITHIN = 10.0


async def receive(client: BayeuxClient, within: float = RECEIVE_WITHIN) -> dict[str, Any]:
    try:
        async with asyncio.timeout(within):
            return dict(await client.receive())
    except TimeoutError:
        pytest.fail(f"BayeuxClient received no message within {within} s")


class Recorder(Extension):
    """Keeps every message in and out."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.received: list[Message] = []

    def outgoing(self, message: Message) -> None:
        self.sent.append(dict(message))  # type: ignore[arg-type]

    def incoming(self, message: Message) -> bool | None:
        self.received.append(dict(message))  # type: ignore[arg-type]
        return None

    def replies(self, channel: str) -> list[Message]:
        return [m for m in self.received if m["channel"] == channel]


@pytest.fixture
async def cometd(node_peers: None) -> AsyncIterator[CometdServer]:
    server = CometdServer(timeout=HOLD)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


async def test_handshake_subscribe_publish_and_its_advice(cometd: CometdServer) -> None:
    recorder = Recorder()
    async with BayeuxClient(cometd.url, extensions=[recorder]) as client:
        assert client.connection_type == "long-polling"
        await client.subscribe("/chat/*")
        await client.subscribe("/deep/**")
        client_id = await cometd.wait_for_subscription("/deep/**")
        assert client_id == client.client_id

        await cometd.publish("/chat/a", {"n": 1})
        message = await receive(client)
        assert (message["channel"], message["data"]) == ("/chat/a", {"n": 1})
        await cometd.publish("/chat/a/b", {"n": 2})  # one segment only: never delivered
        await cometd.publish("/deep/a/b", {"n": 3})
        assert (await receive(client))["data"] == {"n": 3}

        reply = await client.publish("/chat/me", {"n": 4})
        assert reply["successful"] is True
        assert (await receive(client))["data"] == {"n": 4}
        published = await cometd.wait_for(lambda line: line.get("event") == "publish")
        assert (published["clientId"], published["data"]) == (client_id, {"n": 4})

        await client.unsubscribe("/chat/*")
        await cometd.wait_for_subscriptions({"/deep/**"}, client_id=client_id)

    handshake = recorder.replies("/meta/handshake")[0]
    assert handshake["supportedConnectionTypes"] == ["long-polling"]
    # Its advice: hold connects for its timeout, reconnect at once.
    assert handshake["advice"] == {"reconnect": "retry", "timeout": int(HOLD * 1000), "interval": 0}
    connects = recorder.replies("/meta/connect")
    assert connects
    assert all(m["successful"] for m in connects)
    assert client.closed


async def test_websocket_is_refused_and_the_client_falls_back(cometd: CometdServer) -> None:
    statuses: list[Status] = []
    async with BayeuxClient(
        cometd.url, connection_types=("websocket", "long-polling"), on_status=statuses.append
    ) as client:
        assert client.connection_type == "long-polling"
        await client.subscribe("/fb")
        await cometd.wait_for_subscription("/fb")
        await cometd.publish("/fb", "after fallback")
        assert (await receive(client))["data"] == "after fallback"
    fallback = [s for s in statuses if s.kind is StatusKind.FALLBACK]
    assert len(fallback) == 1
    assert "refused the WebSocket upgrade: HTTP 400" in fallback[0].detail

    # WebSocket alone: the refusal is the error.
    with pytest.raises(HTTPStatusError, match="HTTP 400") as info:
        await BayeuxClient(cometd.url, connection_types=("websocket",)).open()
    assert info.value.status == 400


async def test_server_restart_mid_stream(cometd: CometdServer) -> None:
    recorder = Recorder()
    # The first retry of a failed connect goes at once; with a 3 s backoff after that, the
    # restarted server is up before the client has failed often enough to give up on its
    # session (handshake_after), so its next connect meets the new server's refusal.
    client = BayeuxClient(
        cometd.url, connection_timeout=30.0, extensions=[recorder], backoff=ConstantBackoff(3.0)
    )
    async with client:
        await client.subscribe("/r/*")
        old_id = await cometd.wait_for_subscription("/r/*")
        await cometd.publish("/r/a", {"n": 1})
        assert (await receive(client))["data"] == {"n": 1}

        await cometd.stop()
        await asyncio.sleep(0.5)
        await cometd.start()

        new_id = await cometd.wait_for_subscription("/r/*", within=25)
        assert new_id != old_id
        await cometd.publish("/r/b", {"n": 2})
        assert (await receive(client, within=15))["data"] == {"n": 2}

    # The new server did not know the session: CometD's refusal, with advice to handshake.
    refused = [m for m in recorder.replies("/meta/connect") if not m.get("successful")]
    assert refused
    assert refused[0]["error"].startswith("402::")
    assert refused[0]["advice"]["reconnect"] == "handshake"


async def test_cometd_js_client_and_bayeux_client_through_the_cometd_server(
    cometd: CometdServer, cometd_client: StartCometd
) -> None:
    js = await cometd_client(cometd.url)
    assert (await js.subscribe("/to/js"))["successful"] is True
    async with BayeuxClient(cometd.url) as client:
        await client.subscribe("/to/py")
        await cometd.wait_for_subscription("/to/py")
        await client.publish("/to/js", {"from": "python"})
        assert (await js.receive())["data"] == {"from": "python"}
        await js.publish("/to/py", {"from": "javascript"})
        assert (await receive(client))["data"] == {"from": "javascript"}


class LoseOneReply(Extension):
    """Loses the next connect reply that carries deliveries, with those deliveries, as a
    dropped connection would: registered after :class:`AckExtension`, it sees replies first."""

    def __init__(self) -> None:
        self.armed = False
        self.dropping = False
        self.lost: list[Any] = []

    def incoming(self, message: Message) -> bool | None:
        channel = message["channel"]
        if self.armed and not channel.startswith("/meta/"):
            self.dropping = True
            self.lost.append(message.get("data"))
            return False
        if channel == "/meta/connect" and self.dropping:
            message.pop("ext", None)  # its batch number never arrived
            self.armed = self.dropping = False
        return None


async def test_ack_extension_makes_the_server_resend_what_a_lost_reply_carried(
    node_peers: None,
) -> None:
    server = CometdServer(timeout=HOLD, ack=True)
    await server.start()
    # Outgoing hooks run in registration order: the recorder last sees what goes on the wire.
    ack, lose, recorder = AckExtension(), LoseOneReply(), Recorder()
    try:
        async with BayeuxClient(server.url, extensions=[ack, lose, recorder]) as client:
            assert ack.enabled  # the server said ext.ack: true
            await client.subscribe("/acked")
            await server.wait_for_subscription("/acked")
            await server.publish("/acked", {"n": 1})
            assert (await receive(client))["data"] == {"n": 1}
            acked = ack.batch
            assert acked > 0

            lose.armed = True
            await server.publish("/acked", {"n": 2})
            # The reply carrying n=2 is lost; the next connect acknowledges the batch before
            # it, so the server sends n=2 again.
            assert (await receive(client))["data"] == {"n": 2}
            assert lose.lost == [{"n": 2}]
            assert client.pending_count == 0
        connects = [m for m in recorder.sent if m["channel"] == "/meta/connect"]
        assert all(isinstance(m["ext"]["ack"], int) for m in connects)
        assert next(m for m in recorder.sent if m["channel"] == "/meta/handshake")["ext"] == {
            "ack": True
        }
    finally:
        await server.stop()


async def test_without_the_server_extension_acks_stay_off(cometd: CometdServer) -> None:
    ack, recorder = AckExtension(), Recorder()
    async with BayeuxClient(cometd.url, extensions=[ack, recorder]) as client:
        await client.subscribe("/plain")
        await cometd.wait_for_subscription("/plain")
        await cometd.publish("/plain", 1)
        assert (await receive(client))["data"] == 1
    assert not ack.enabled
    assert all(
        "ack" not in m.get("ext", {}) for m in recorder.sent if m["channel"] == "/meta/connect"
    )


class CuttingRelay:
    """A TCP relay on 127.0.0.1 in front of a server: bytes pass both ways until it is armed;
    then the first chunk from the server that contains ``marker`` is never passed on, and both
    sides of that connection are cut, as a network losing a reply does."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.marker: bytes | None = None
        self.cut = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, watch: bool
        ) -> None:
            try:
                while chunk := await source.read(65536):
                    if watch and self.marker is not None and self.marker in chunk:
                        self.marker = None
                        self.cut += 1
                        break
                    sink.write(chunk)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()
                up_writer.close()

        task = asyncio.ensure_future(
            asyncio.gather(
                pipe(reader, up_writer, watch=False), pipe(up_reader, writer, watch=True)
            )
        )
        self._tasks.add(task)
        try:
            await task
        finally:
            self._tasks.discard(task)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()


@pytest.mark.parametrize("with_ack", [True, False], ids=["with ack", "without ack"])
async def test_a_reply_lost_on_the_network_is_sent_again_only_with_acks(
    node_peers: None, with_ack: bool
) -> None:
    # A real loss, not a simulated one: the connect reply carrying n=2 is cut on its way by a
    # relay. With AckExtension the next connect acknowledges the batch before it, so the CometD
    # server sends n=2 again; without it, n=2 is gone and the next message is n=3.
    server = CometdServer(timeout=HOLD, ack=True)
    await server.start()
    assert server.port is not None
    relay = CuttingRelay(server.port)
    port = await relay.start()
    url = f"http://127.0.0.1:{port}/cometd"
    extensions: list[Extension] = [AckExtension()] if with_ack else []
    statuses: list[Status] = []
    try:
        async with BayeuxClient(
            url,
            extensions=extensions,
            backoff=ConstantBackoff(0.2),
            on_status=statuses.append,
            connection_timeout=30.0,
        ) as client:
            await client.subscribe("/acked")
            await server.wait_for_subscription("/acked")
            await server.publish("/acked", {"n": 1})
            assert (await receive(client))["data"] == {"n": 1}
            await asyncio.sleep(0.2)  # the next connect is held by the server

            relay.marker = b'"n":2'
            await server.publish("/acked", {"n": 2})
            async with asyncio.timeout(10):
                while StatusKind.CONNECTION_LOST not in [s.kind for s in statuses]:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            assert relay.cut == 1
            await server.publish("/acked", {"n": 3})
            received = [(await receive(client))["data"]["n"]]
            if with_ack:
                received.append((await receive(client))["data"]["n"])
        assert received == ([2, 3] if with_ack else [3])
        assert client.pending_count == 0
    finally:
        await relay.close()
        await server.stop()
