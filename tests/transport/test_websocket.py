"""WebSocketTransport, and BayeuxClient over WebSocket, against real aiohttp servers on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp import web
from aiohttp.test_utils import TestServer

from sfstream.bayeux import (
    BayeuxClient,
    ConstantBackoff,
    Message,
    Request,
    Status,
    StatusKind,
    WebSocketTransport,
)
from sfstream.exceptions import (
    HTTPStatusError,
    ProtocolError,
    TransportConnectionClosed,
    TransportError,
    TransportInvalidOperation,
    TransportTimeoutError,
)
from tests.driver.fake_server import FakeBayeuxServer
from tests.reliability.test_secrets import chain_text
from tests.reliability.test_security import certificate  # noqa: F401 - a fixture

JSON = dict[str, Any]
#: Called with the socket and each decoded frame the client sent.
OnFrame = Callable[[web.WebSocketResponse, list[JSON]], Awaitable[None]]

HANDSHAKE = Request([{"channel": "/meta/handshake", "id": "1"}], timeout=5)


def ok(messages: list[JSON]) -> list[JSON]:
    return [{"channel": m["channel"], "id": m["id"], "successful": True} for m in messages]


class Site:
    """An aiohttp server on 127.0.0.1 with ``/bayeux`` routes; records upgrade requests."""

    def __init__(self) -> None:
        self.servers: list[TestServer] = []
        self.upgrades: list[web.Request] = []
        self.sockets: list[web.WebSocketResponse] = []

    async def start(
        self,
        on_frame: OnFrame | None = None,
        *,
        post: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None,
        prepare: Callable[[web.WebSocketResponse], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        autoping: bool = True,
    ) -> str:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        if on_frame is not None:

            async def upgrade(request: web.Request) -> web.WebSocketResponse:
                self.upgrades.append(request)
                ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024, autoping=autoping)
                if prepare is not None:
                    prepare(ws)
                await ws.prepare(request)
                self.sockets.append(ws)
                async for frame in ws:
                    if frame.type is aiohttp.WSMsgType.TEXT:
                        await on_frame(ws, json.loads(frame.data))
                return ws

            app.router.add_get("/bayeux", upgrade)
        if post is not None:
            app.router.add_post("/bayeux", post)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server(ssl=ssl_context)
        self.servers.append(server)
        return str(server.make_url("/bayeux"))

    async def close(self) -> None:
        for server in self.servers:
            await server.close()


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    site = Site()
    yield site
    await site.close()


async def answer_ok(ws: web.WebSocketResponse, messages: list[JSON]) -> None:
    await ws.send_str(json.dumps(ok(messages)))


async def silent(ws: web.WebSocketResponse, messages: list[JSON]) -> None:
    pass


# -- the transport -------------------------------------------------------------------------


async def test_sends_frames_and_matches_replies_with_the_upgrade_headers(site: Site) -> None:
    url = await site.start(answer_ok)
    transport = WebSocketTransport(url, headers={"X-Extra": "1"})
    try:
        replies = await transport.send(HANDSHAKE, {"Authorization": "Bearer abc"})
        batch = Request([{"channel": "/a", "id": "2"}, {"channel": "/b", "id": "3"}], timeout=5)
        assert [m["id"] for m in await transport.send(batch, {"Authorization": "Bearer abc"})] == [
            "2",
            "3",
        ]
    finally:
        await transport.close()
    assert replies == [{"channel": "/meta/handshake", "id": "1", "successful": True}]
    assert transport.sockets_opened == 1
    assert (site.upgrades[0].headers["X-Extra"], site.upgrades[0].headers["Authorization"]) == (
        "1",
        "Bearer abc",
    )
    assert repr(transport) == f"<WebSocketTransport {url}>"
    assert (transport.connection_type, transport.duplex) == ("websocket", True)


async def test_new_headers_open_a_new_socket(site: Site) -> None:
    url = await site.start(answer_ok)
    transport = WebSocketTransport(url)
    try:
        await transport.send(HANDSHAKE, {"Authorization": "old"})
        await transport.send(HANDSHAKE, {"Authorization": "old"})
        await transport.send(HANDSHAKE, {"Authorization": "new"})
    finally:
        await transport.close()
    assert transport.sockets_opened == 2
    assert [r.headers["Authorization"] for r in site.upgrades] == ["old", "new"]


async def test_credentials_in_the_url_go_as_basic_auth_and_are_never_shown(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """As over long polling: a Basic ``Authorization`` header on the upgrade, which a request's
    own (in any spelling) replaces, and no password in the URL kept and shown."""
    url = await site.start(answer_ok)
    secret = "s3cret-Pw"
    caplog.set_level("DEBUG", logger="sfstream")
    transport = WebSocketTransport(url.replace("http://", f"http://user:{secret}@"))
    try:
        await transport.send(HANDSHAKE)
        await transport.send(HANDSHAKE, {"authorization": "Bearer given"})
    finally:
        await transport.close()
    basic = "Basic " + base64.b64encode(f"user:{secret}".encode()).decode()
    assert [r.headers.getall("Authorization") for r in site.upgrades] == [
        [basic],
        ["Bearer given"],
    ]
    assert repr(transport) == f"<WebSocketTransport {url}>"
    assert secret not in caplog.text


async def test_a_frame_answering_nothing_is_pushed_and_deliveries_never_answer(
    site: Site,
) -> None:
    async def on_frame(ws: web.WebSocketResponse, messages: list[JSON]) -> None:
        # Faye echoes the publisher's id in deliveries: an id alone does not make a reply.
        await ws.send_str(json.dumps([{"channel": "/chat", "id": "7", "data": {"n": 1}}]))
        await ws.send_str(json.dumps([{"channel": "/chat", "data": {"n": 2}}]))
        await ws.send_str(json.dumps(ok(messages)))

    url = await site.start(on_frame)
    transport = WebSocketTransport(url)
    try:
        replies = await transport.send(Request([{"channel": "/chat", "id": "7"}], timeout=5))
        # Frames already read are joined into one batch, within the limit given.
        first = await transport.receive_pushed(1)
        second = await transport.receive_pushed()
    finally:
        await transport.close()
    assert replies == [{"channel": "/chat", "id": "7", "successful": True}]
    assert [m["data"] for m in first] == [{"n": 1}]
    assert [m["data"] for m in second] == [{"n": 2}]


async def test_pushed_frames_read_ahead_are_joined(site: Site) -> None:
    async def on_frame(ws: web.WebSocketResponse, messages: list[JSON]) -> None:
        for n in range(5):
            await ws.send_str(json.dumps([{"channel": "/chat", "data": n}]))
        await answer_ok(ws, messages)

    url = await site.start(on_frame)
    transport = WebSocketTransport(url)
    try:
        await transport.send(HANDSHAKE)
        assert [m["data"] for m in await transport.receive_pushed()] == [0, 1, 2, 3, 4]
    finally:
        await transport.close()


async def test_deliveries_in_a_reply_frame_go_with_the_reply(site: Site) -> None:
    async def on_frame(ws: web.WebSocketResponse, messages: list[JSON]) -> None:
        await ws.send_str(json.dumps([{"channel": "/a", "data": 1}, *ok(messages)]))

    url = await site.start(on_frame)
    transport = WebSocketTransport(url)
    try:
        request = Request([{"channel": "/meta/connect", "id": "4"}], timeout=5, long_poll=True)
        replies = await transport.send(request)
    finally:
        await transport.close()
    assert [m["channel"] for m in replies] == ["/meta/connect", "/a"]


async def test_a_batch_answered_over_several_frames_waits_for_every_reply(site: Site) -> None:
    async def on_frame(ws: web.WebSocketResponse, messages: list[JSON]) -> None:
        for reply in ok(messages):
            await ws.send_str(json.dumps([reply]))

    url = await site.start(on_frame)
    transport = WebSocketTransport(url)
    batch = Request([{"channel": "/a", "id": "1"}, {"channel": "/b", "id": "2"}], timeout=5)
    try:
        replies = await transport.send(batch)
        assert await transport.send(Request([{"channel": "/c"}], timeout=5)) == []
    finally:
        await transport.close()
    assert [m["id"] for m in replies] == ["1", "2"]


async def test_a_refused_upgrade_is_an_http_status_error(site: Site) -> None:
    async def post(request: web.Request) -> web.Response:
        return web.json_response([])

    url = await site.start(post=post)
    transport = WebSocketTransport(url)
    try:
        with pytest.raises(
            HTTPStatusError, match="refused the WebSocket upgrade: HTTP 405"
        ) as info:
            await transport.send(HANDSHAKE, {"Authorization": "Bearer secret-token"})
    finally:
        await transport.close()
    assert info.value.status == 405
    assert "secret-token" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None  # aiohttp's error holds the request headers


async def test_no_server_is_a_transport_error() -> None:
    transport = WebSocketTransport("http://127.0.0.1:9/bayeux")
    token = "secret-" + "token"  # not written out, as the traceback quotes this source line
    try:
        with pytest.raises(TransportError, match="cannot connect") as info:
            await transport.send(HANDSHAKE, {"Authorization": f"Bearer {token}"})
    finally:
        await transport.close()
    assert token not in chain_text(info.value)
    assert info.value.__context__ is None


async def test_a_held_connect_without_reply_times_out_and_drops_the_socket(site: Site) -> None:
    url = await site.start(silent)
    transport = WebSocketTransport(url)
    try:
        connect = Request([{"channel": "/meta/connect", "id": "2"}], timeout=0.3, long_poll=True)
        with pytest.raises(TransportTimeoutError, match=r"within 0\.3 s"):
            await transport.send(connect)
        with pytest.raises(TransportTimeoutError):
            await transport.send(connect)
    finally:
        await transport.close()
    assert transport.sockets_opened == 2


async def test_a_control_request_timeout_keeps_the_socket(site: Site) -> None:
    url = await site.start(silent)
    transport = WebSocketTransport(url)
    try:
        for _ in range(2):
            with pytest.raises(TransportTimeoutError):
                await transport.send(Request([{"channel": "/a", "id": "1"}], timeout=0.2))
    finally:
        await transport.close()
    assert transport.sockets_opened == 1


async def test_the_server_closing_the_socket_fails_waiting_requests_and_the_next_reopens(
    site: Site,
) -> None:
    frames = 0

    async def on_frame(ws: web.WebSocketResponse, messages: list[JSON]) -> None:
        nonlocal frames
        frames += 1
        if frames == 1:
            await ws.close()
        else:
            await answer_ok(ws, messages)

    url = await site.start(on_frame)
    transport = WebSocketTransport(url)
    try:
        with pytest.raises(TransportConnectionClosed, match="closed the WebSocket"):
            await transport.send(HANDSHAKE)
        assert await transport.send(HANDSHAKE) == ok([{"channel": "/meta/handshake", "id": "1"}])
    finally:
        await transport.close()
    assert transport.sockets_opened == 2


async def test_a_frame_over_the_limit_is_refused(site: Site) -> None:
    async def on_frame(ws: web.WebSocketResponse, messages: list[JSON]) -> None:
        await ws.send_str(json.dumps([{**ok(messages)[0], "blob": "x" * 5000}]))

    url = await site.start(on_frame)
    transport = WebSocketTransport(url, max_response_size=1000)
    try:
        with pytest.raises(ProtocolError, match="larger than the limit of 1000 bytes"):
            await transport.send(HANDSHAKE)
    finally:
        await transport.close()


async def test_a_message_over_the_limit_or_a_malformed_frame_is_refused(site: Site) -> None:
    async def on_frame(ws: web.WebSocketResponse, messages: list[JSON]) -> None:
        if messages[0]["channel"] == "/big":
            await ws.send_str(json.dumps([{**ok(messages)[0], "blob": "x" * 5000}]))
        elif messages[0]["channel"] == "/bad":
            await ws.send_str("not json")
        else:
            await answer_ok(ws, messages)

    url = await site.start(on_frame)
    transport = WebSocketTransport(url, max_message_size=1000)
    try:
        with pytest.raises(ProtocolError, match="1000"):
            await transport.send(Request([{"channel": "/big", "id": "1"}], timeout=5))
        with pytest.raises(ProtocolError):
            await transport.send(Request([{"channel": "/bad", "id": "2"}], timeout=5))
        # The socket survives both.
        assert await transport.send(HANDSHAKE) == ok([{"channel": "/meta/handshake", "id": "1"}])
    finally:
        await transport.close()
    assert transport.sockets_opened == 1


async def test_large_frames_are_decoded_with_the_collector_paused(site: Site) -> None:
    big = {"blob": "é" * 200_000}

    async def on_frame(ws: web.WebSocketResponse, messages: list[JSON]) -> None:
        await ws.send_str(json.dumps([{**ok(messages)[0], "ext": big}]))

    url = await site.start(on_frame)
    transport = WebSocketTransport(url)
    try:
        replies = await transport.send(HANDSHAKE)
    finally:
        await transport.close()
    assert replies[0]["ext"] == big


async def test_cookies_of_the_upgrade_go_with_the_next_upgrade_until_a_new_session(
    site: Site,
) -> None:
    url = await site.start(answer_ok, prepare=lambda ws: ws.set_cookie("BAYEUX_BROWSER", "b1"))
    transport = WebSocketTransport(url)
    try:
        await transport.send(HANDSHAKE, {"Authorization": "1"})
        await transport.send(HANDSHAKE, {"Authorization": "2"})
        transport.new_session()
        await transport.send(HANDSHAKE, {"Authorization": "3"})
    finally:
        await transport.close()
    assert [r.cookies.get("BAYEUX_BROWSER") for r in site.upgrades] == [None, "b1", None]


async def test_a_users_session_is_used_and_never_closed(site: Site) -> None:
    url = await site.start(answer_ok)
    async with aiohttp.ClientSession(headers={"X-From-Session": "yes"}) as session:
        transport = WebSocketTransport(url, session=session)
        await transport.send(HANDSHAKE)
        transport.new_session()
        await transport.close()
        await transport.close()
        assert not session.closed
    assert site.upgrades[0].headers["X-From-Session"] == "yes"


async def test_a_closed_transport_refuses_everything(site: Site) -> None:
    url = await site.start(silent)
    transport = WebSocketTransport(url)
    waiting = asyncio.create_task(transport.send(Request([{"channel": "/a", "id": "1"}], 5)))
    while not site.sockets:  # noqa: ASYNC110 - polling the server's list of sockets
        await asyncio.sleep(0.01)
    await transport.close()
    with pytest.raises(TransportInvalidOperation):
        await waiting
    with pytest.raises(TransportInvalidOperation):
        await transport.send(HANDSHAKE)
    with pytest.raises(TransportInvalidOperation):
        await transport.receive_pushed()


async def test_tls_is_verified_and_a_users_context_or_session_trusts_a_server(
    site: Site,
    certificate: tuple[Path, Path],  # noqa: F811
) -> None:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(*certificate)
    url = await site.start(answer_ok, ssl_context=server_context)
    assert url.startswith("https://")
    refusing = WebSocketTransport(url)
    try:
        with pytest.raises(TransportError, match="cannot connect"):
            await refusing.send(HANDSHAKE)
    finally:
        await refusing.close()

    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    with_context = WebSocketTransport(url, ssl=trusting)
    try:
        assert await with_context.send(HANDSHAKE) == ok([dict(HANDSHAKE.messages[0])])
    finally:
        await with_context.close()
    connector = aiohttp.TCPConnector(ssl=trusting)
    async with aiohttp.ClientSession(connector=connector) as session:
        # The user's session brings the trusting context (the transport's default ssl=True
        # leaves the connector's settings in force).
        with_session = WebSocketTransport(url, session=session)
        try:
            assert await with_session.send(HANDSHAKE) == ok([dict(HANDSHAKE.messages[0])])
        finally:
            await with_session.close()


@pytest.mark.parametrize("bad", ["ftp://host/bayeux", "/relative"])
def test_the_url_must_be_absolute_http_or_ws(bad: str) -> None:
    with pytest.raises(ValueError, match="absolute http"):
        WebSocketTransport(bad)


# -- BayeuxClient over WebSocket -------------------------------------------------------------


def bayeux_site(fake: FakeBayeuxServer) -> OnFrame:
    """A Bayeux server over WebSocket: each frame is answered by ``fake`` in its own task (a
    held connect must not hold the control requests behind it)."""
    tasks: set[asyncio.Task[None]] = set()

    async def on_frame(ws: web.WebSocketResponse, messages: list[JSON]) -> None:
        long_poll = any(m["channel"] == "/meta/connect" for m in messages)

        async def answer() -> None:
            replies = await fake(Request(messages, 30, long_poll))  # type: ignore[arg-type]
            if not ws.closed:
                await ws.send_str(json.dumps(replies))

        task = asyncio.create_task(answer())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return on_frame


def bayeux_post(fake: FakeBayeuxServer) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def post(request: web.Request) -> web.Response:
        messages = await request.json()
        return web.json_response(await fake(Request(messages, 30)))

    return post


def ws_client(url: str, statuses: list[Status] | None = None, **kwargs: Any) -> BayeuxClient:
    kwargs.setdefault("backoff", ConstantBackoff(0.01))
    kwargs.setdefault("connection_types", ("websocket", "long-polling"))
    return BayeuxClient(url, on_status=statuses.append if statuses is not None else None, **kwargs)


async def receive(client: BayeuxClient) -> Message:
    async with asyncio.timeout(5):
        return await client.receive()


async def test_client_over_websocket_subscribes_publishes_and_receives(site: Site) -> None:
    fake = FakeBayeuxServer(connection_types=("long-polling", "websocket"))
    url = await site.start(bayeux_site(fake))
    async with ws_client(url) as client:
        assert client.connection_type == "websocket"
        await client.subscribe("/chat/**")
        reply = await client.publish("/chat/a", {"n": 1})
        assert reply["successful"] is True
        assert (await receive(client))["data"] == {"n": 1}
        fake.publish("/chat/b/c", {"n": 2})
        assert (await receive(client))["channel"] == "/chat/b/c"
        await client.unsubscribe("/chat/**")
    connects = [m for r in fake.requests for m in r.messages if m["channel"] == "/meta/connect"]
    assert {m["connectionType"] for m in connects} == {"websocket"}
    assert fake.requests[0].messages[0]["supportedConnectionTypes"] == ["websocket", "long-polling"]
    assert fake.count("/meta/disconnect") == 1


async def test_pushed_deliveries_reach_the_client_while_its_connect_is_held(site: Site) -> None:
    fake = FakeBayeuxServer(hold=30.0, connection_types=("websocket",))
    url = await site.start(bayeux_site(fake))
    async with ws_client(url, connection_types=("websocket",)) as client:
        await client.subscribe("/push")
        await asyncio.sleep(0.1)  # the second connect is held now
        await site.sockets[0].send_str(json.dumps([{"channel": "/push", "data": {"n": 1}}]))
        assert (await receive(client))["data"] == {"n": 1}
        assert client.state.value == "polling"


async def test_pushed_messages_wait_in_the_socket_while_the_consumer_is_slow(site: Site) -> None:
    fake = FakeBayeuxServer(hold=30.0, connection_types=("websocket",))
    url = await site.start(bayeux_site(fake))
    statuses: list[Status] = []
    async with ws_client(
        url, statuses, connection_types=("websocket",), max_pending_count=2
    ) as client:
        await client.subscribe("/push")
        for n in range(30):
            await site.sockets[0].send_str(json.dumps([{"channel": "/push", "data": n}]))
        await asyncio.sleep(0.3)
        assert client.pending_count == 2  # the rest waits in the transport and the socket
        assert [(await receive(client))["data"] for _ in range(30)] == list(range(30))


async def test_the_server_not_offering_websocket_moves_the_session_to_long_polling(
    site: Site,
) -> None:
    fake = FakeBayeuxServer(connection_types=("long-polling",))
    url = await site.start(bayeux_site(fake), post=bayeux_post(fake))
    statuses: list[Status] = []
    async with ws_client(url, statuses) as client:
        assert client.connection_type == "long-polling"
        await client.subscribe("/a")
        fake.publish("/a", 1)
        assert (await receive(client))["data"] == 1
    fallbacks = [s for s in statuses if s.kind is StatusKind.FALLBACK]
    assert len(fallbacks) == 1
    assert "websocket -> long-polling: the server does not offer websocket" in fallbacks[0].detail
    handshakes = [r for r in fake.requests if r.messages[0]["channel"] == "/meta/handshake"]
    assert len(handshakes) == 1  # the session moved, no new handshake
    assert len(site.upgrades) == 1


async def test_a_refused_upgrade_falls_back_to_long_polling(site: Site) -> None:
    fake = FakeBayeuxServer(connection_types=("long-polling",))
    url = await site.start(post=bayeux_post(fake))
    statuses: list[Status] = []
    async with ws_client(url, statuses) as client:
        assert client.connection_type == "long-polling"
        await client.subscribe("/a")
        fake.publish("/a", 1)
        assert (await receive(client))["data"] == 1
    assert [s.kind for s in statuses][:2] == [StatusKind.FALLBACK, StatusKind.CONNECTED]
    assert "HTTP 405" in statuses[0].detail
    assert fake.requests[0].messages[0]["supportedConnectionTypes"] == ["long-polling"]


async def test_websocket_only_with_a_refused_upgrade_raises(site: Site) -> None:
    fake = FakeBayeuxServer()
    url = await site.start(post=bayeux_post(fake))
    client = ws_client(url, connection_types=("websocket",))
    with pytest.raises(HTTPStatusError, match="405"):
        await client.open()
    assert client.closed


async def test_no_fallback_once_websocket_worked(site: Site) -> None:
    fake = FakeBayeuxServer(connection_types=("websocket", "long-polling"))
    url = await site.start(bayeux_site(fake), post=bayeux_post(fake))
    statuses: list[Status] = []
    async with ws_client(url, statuses, connection_timeout=30) as client:
        await client.subscribe("/a")
        await site.sockets[0].close()
        async with asyncio.timeout(5):
            while StatusKind.RECONNECTED not in [s.kind for s in statuses]:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        # The fake's connect held on the old socket may still wait for events: let it end.
        await asyncio.sleep(fake.hold * 4)
        fake.publish("/a", 1)
        assert (await receive(client))["data"] == 1
        assert client.connection_type == "websocket"
    assert StatusKind.FALLBACK not in [s.kind for s in statuses]
    assert len(site.upgrades) == 2


async def test_a_silent_socket_is_dropped_within_the_advice_timeout_plus_the_margin(
    site: Site,
) -> None:
    # The server stops answering without closing anything (a half-open connection): the held
    # connect times out after advice.timeout (0.5 s) + the engine's 15 s margin, the socket is
    # dropped, and the next connect opens a new one.
    fake = FakeBayeuxServer(hold=0.5, connection_types=("websocket",))
    answering = bayeux_site(fake)
    silent = False

    async def on_frame(ws: web.WebSocketResponse, messages: list[JSON]) -> None:
        if not (silent and ws is site.sockets[0]):  # only the first socket goes silent
            await answering(ws, messages)

    url = await site.start(on_frame)
    statuses: list[Status] = []

    async with ws_client(
        url, statuses, connection_types=("websocket",), connection_timeout=60
    ) as client:
        await client.subscribe("/a")
        await asyncio.sleep(0.7)  # a connect is held with the 0.5 s advice now
        silent = True
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(25):
            while StatusKind.CONNECTION_LOST not in [s.kind for s in statuses]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert loop.time() - started < 0.5 + 15 + 2
        fake.publish("/a", "after")
        assert (await receive(client))["data"] == "after"
    assert len(site.upgrades) == 2


# -- a user's session: proxy settings ------------------------------------------------------


class ForwardProxy:
    """A plain HTTP forward proxy on 127.0.0.1: reads each connection's first request line
    (absolute-form, as clients send through a proxy), connects to the host it names and pipes
    bytes both ways. Records the request lines it forwarded."""

    def __init__(self) -> None:
        self.request_lines: list[str] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.readline()
        line = first.decode("latin-1").strip()
        self.request_lines.append(line)
        target = yarl.URL(line.split(" ")[1])
        up_reader, up_writer = await asyncio.open_connection(target.host, target.port)
        up_writer.write(first)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        both = asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        task = asyncio.ensure_future(both)
        self._tasks.add(task)
        await task

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()


@pytest.mark.parametrize("connection_type", ["websocket", "long-polling"])
async def test_the_proxy_of_a_users_session_carries_both_transports(
    site: Site, connection_type: str
) -> None:
    fake = FakeBayeuxServer(connection_types=("websocket", "long-polling"))
    url = await site.start(bayeux_site(fake), post=bayeux_post(fake))
    proxy = ForwardProxy()
    proxy_url = await proxy.start()
    try:
        async with aiohttp.ClientSession(proxy=proxy_url) as session:
            client = ws_client(url, session=session, connection_types=(connection_type,))
            async with client:
                assert client.connection_type == connection_type
                await client.subscribe("/chat")
                fake.publish("/chat", {"n": 1})
                assert (await receive(client))["data"] == {"n": 1}
            assert not session.closed
    finally:
        await proxy.close()
    method = "GET" if connection_type == "websocket" else "POST"
    assert proxy.request_lines, "nothing went through the proxy"
    assert all(line.startswith(f"{method} {url} ") for line in proxy.request_lines)
    if connection_type == "websocket":
        assert len(site.upgrades) == 1  # the upgrade itself came through the proxy


# -- audit of #12: what a pushed frame does when no request waits --------------------------------


CONNECT = Request([{"channel": "/meta/connect", "id": "9"}], timeout=5, long_poll=True)


async def test_a_malformed_pushed_frame_with_no_request_waiting_fails_the_next_connect(
    site: Site,
) -> None:
    async def on_frame(ws: web.WebSocketResponse, messages: list[JSON]) -> None:
        await answer_ok(ws, messages)
        if messages[0]["channel"] == "/meta/handshake":
            await ws.send_str(json.dumps([{"channel": "/a", "data": 1}]))
            await ws.send_str("not json")  # answers nothing: no request waits for it

    url = await site.start(on_frame)
    transport = WebSocketTransport(url)
    try:
        await transport.send(HANDSHAKE)
        async with asyncio.timeout(5):
            # What came before the bad frame is delivered.
            assert [m["data"] for m in await transport.receive_pushed()] == [1]
        while transport._refused is None:  # noqa: ASYNC110 - the reader has not got there yet
            await asyncio.sleep(0.01)
        # A control request is not blamed for it; the next held connect is, once.
        assert await transport.send(Request([{"channel": "/b", "id": "3"}], timeout=5)) == ok(
            [{"channel": "/b", "id": "3"}]
        )
        with pytest.raises(ProtocolError, match="not valid JSON"):
            await transport.send(CONNECT)
        assert await transport.send(CONNECT) == ok([dict(CONNECT.messages[0])])
    finally:
        await transport.close()
    assert transport.sockets_opened == 1


async def test_a_pushed_frame_over_the_limit_with_no_request_waiting_fails_the_next_connect(
    site: Site,
) -> None:
    async def on_frame(ws: web.WebSocketResponse, messages: list[JSON]) -> None:
        await answer_ok(ws, messages)
        if len(site.sockets) == 1:
            await ws.send_str(json.dumps([{"channel": "/a", "data": "x" * 5000}]))

    url = await site.start(on_frame)
    transport = WebSocketTransport(url, max_response_size=1000)
    try:
        await transport.send(HANDSHAKE)
        async with asyncio.timeout(5):
            while transport._refused is None:  # noqa: ASYNC110 - waiting for the reader
                await asyncio.sleep(0.01)
        with pytest.raises(ProtocolError, match="larger than the limit of 1000 bytes"):
            await transport.send(CONNECT)
        assert await transport.send(CONNECT) == ok([dict(CONNECT.messages[0])])
    finally:
        await transport.close()
    assert transport.sockets_opened == 2  # the socket closed with code 1009 and was reopened


async def test_a_bad_frame_while_paused_by_backpressure_is_a_failed_connect_as_in_long_polling(
    site: Site,
) -> None:
    # While the consumer is slow the client sends no connect, so no request waits on the
    # socket: a bad frame must fail the next connect (reported, retried), as a bad long-polling
    # reply does, never vanish without a word.
    fake = FakeBayeuxServer(hold=30.0, connection_types=("websocket",))
    url = await site.start(bayeux_site(fake))
    statuses: list[Status] = []
    async with ws_client(
        url, statuses, connection_types=("websocket",), max_pending_count=1
    ) as client:
        await client.subscribe("/push")
        ws = site.sockets[0]
        await ws.send_str(json.dumps([{"channel": "/push", "data": 1}]))
        async with asyncio.timeout(5):
            while client.pending_count < 1:  # noqa: ASYNC110 - waiting for the delivery
                await asyncio.sleep(0.01)
            # The held connect ends: polling stays paused, nothing waits on the socket.
            fake.publish("/push", 2)
            while client.pending_count < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await ws.send_str("not json")
        await asyncio.sleep(0.2)
        assert [(await receive(client))["data"] for _ in range(2)] == [1, 2]
        async with asyncio.timeout(5):
            while StatusKind.CONNECTION_LOST not in [s.kind for s in statuses]:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        lost = next(s for s in statuses if s.kind is StatusKind.CONNECTION_LOST)
        assert "not valid JSON" in lost.detail
        fake.publish("/push", 3)
        assert (await receive(client))["data"] == 3


async def test_a_frame_read_ahead_survives_a_new_socket_for_new_headers(site: Site) -> None:
    # The reader holds a frame while the buffer of pushed frames is full; new headers then open
    # a new socket (the old one is closed and its reader cancelled): that frame must not be lost.
    count = 12

    async def on_frame(ws: web.WebSocketResponse, messages: list[JSON]) -> None:
        await answer_ok(ws, messages)
        if len(site.sockets) == 1:
            for n in range(count):
                await ws.send_str(json.dumps([{"channel": "/a", "data": n}]))

    url = await site.start(on_frame)
    transport = WebSocketTransport(url)
    try:
        await transport.send(HANDSHAKE, {"Authorization": "old"})
        await asyncio.sleep(0.3)  # the reader fills its buffer and waits with one more frame
        await transport.send(HANDSHAKE, {"Authorization": "new"})
        got: list[Any] = []
        async with asyncio.timeout(5):
            while len(got) < 9:
                got += [m["data"] for m in await transport.receive_pushed()]
    finally:
        await transport.close()
    assert transport.sockets_opened == 2
    # Every frame read from the first socket is handed over, in order (those still in the
    # kernel's buffer when it closed are the server's to send again: CometD's ack does).
    assert got == list(range(len(got)))
    assert len(got) >= 9


async def test_a_socket_that_drops_at_once_after_the_upgrade_falls_back_to_long_polling(
    site: Site,
) -> None:
    # A proxy that lets the upgrade through and then cuts the socket: the upgrade succeeded,
    # the socket failed before it carried a reply, so the client falls back as CometD's does.
    fake = FakeBayeuxServer(connection_types=("websocket", "long-polling"))

    async def cut(ws: web.WebSocketResponse, messages: list[JSON]) -> None:
        await ws.close()

    url = await site.start(cut, post=bayeux_post(fake))
    statuses: list[Status] = []
    async with ws_client(url, statuses) as client:
        assert client.connection_type == "long-polling"
        await client.subscribe("/a")
        fake.publish("/a", 1)
        assert (await receive(client))["data"] == 1
    fallbacks = [s for s in statuses if s.kind is StatusKind.FALLBACK]
    assert len(fallbacks) == 1
    assert fallbacks[0].detail.startswith("websocket -> long-polling: ")
    assert "closed the WebSocket" in fallbacks[0].detail
    assert len(site.upgrades) == 1
    # The handshake was made again over long polling, offering long polling only.
    handshakes = [r for r in fake.requests if r.messages[0]["channel"] == "/meta/handshake"]
    assert [h.messages[0]["supportedConnectionTypes"] for h in handshakes] == [["long-polling"]]


async def test_a_server_that_stops_answering_pings_is_found_by_the_heartbeat(site: Site) -> None:
    # A peer that no longer answers pings (a dead NAT entry, a frozen server): the heartbeat
    # closes the socket and fails the held connect long before its own timeout.
    url = await site.start(silent, autoping=False)
    transport = WebSocketTransport(url, heartbeat=0.2)
    connect = Request([{"channel": "/meta/connect", "id": "2"}], timeout=30, long_poll=True)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        with pytest.raises(TransportConnectionClosed):
            await transport.send(connect)
        assert loop.time() - started < 10  # the heartbeat, not the connect's 30 s timeout
    finally:
        await transport.close()
