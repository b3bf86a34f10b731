"""LongPollingTransport against real aiohttp servers on loopback."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sfstream.bayeux import BayeuxClient, LongPollingTransport, Request
from sfstream.exceptions import (
    HTTPStatusError,
    ProtocolError,
    TransportConnectionClosed,
    TransportError,
    TransportInvalidOperation,
    TransportTimeoutError,
)
from tests.driver.fake_server import FakeBayeuxServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ServerFactory = Callable[[Handler], Awaitable[TestServer]]

HANDSHAKE = Request([{"channel": "/meta/handshake", "id": "1"}], timeout=5)


@pytest.fixture
async def serve() -> Any:
    servers: list[TestServer] = []

    async def start(handler: Handler) -> TestServer:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/bayeux", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def url(server: TestServer) -> str:
    return str(server.make_url("/bayeux"))


async def echo_ok(request: web.Request) -> web.Response:
    messages = await request.json()
    return web.json_response(
        [{"channel": m["channel"], "id": m["id"], "successful": True} for m in messages]
    )


async def test_posts_json_and_decodes_the_reply(serve: ServerFactory) -> None:
    seen: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.Response:
        seen["content_type"] = request.headers["Content-Type"]
        seen["custom"] = request.headers.get("X-Extra")
        seen["auth"] = request.headers.get("Authorization")
        seen["body"] = await request.json()
        return await echo_ok_from(seen["body"])

    async def echo_ok_from(messages: list[dict[str, Any]]) -> web.Response:
        return web.json_response([{**m, "successful": True} for m in messages])

    server = await serve(handler)
    transport = LongPollingTransport(url(server), headers={"X-Extra": "1"})
    try:
        replies = await transport.send(HANDSHAKE, {"Authorization": "Bearer abc"})
    finally:
        await transport.close()
    assert replies == [{"channel": "/meta/handshake", "id": "1", "successful": True}]
    assert seen["content_type"] == "application/json"
    assert seen["custom"] == "1"
    assert seen["auth"] == "Bearer abc"
    assert seen["body"] == [{"channel": "/meta/handshake", "id": "1"}]


async def test_cookies_kept_within_a_session_and_dropped_on_new_session(
    serve: ServerFactory,
) -> None:
    cookies: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        cookies.append(request.cookies.get("BAYEUX_BROWSER"))
        response = await echo_ok(request)
        if request.cookies.get("BAYEUX_BROWSER") is None:
            response.set_cookie("BAYEUX_BROWSER", f"b{len(cookies)}", path="/", httponly=True)
        return response

    server = await serve(handler)
    transport = LongPollingTransport(url(server))
    try:
        for _ in range(3):
            await transport.send(HANDSHAKE)
        transport.new_session()
        await transport.send(HANDSHAKE)
        await transport.send(HANDSHAKE)
    finally:
        await transport.close()
    assert cookies == [None, "b1", "b1", None, "b4"]


async def test_session_cookies_join_a_cookie_header_of_the_callers_own(
    serve: ServerFactory,
) -> None:
    received: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        received.append(request.headers.get("Cookie"))
        response = await echo_ok(request)
        response.set_cookie("BAYEUX_BROWSER", "b-1", path="/")
        response.set_cookie("elsewhere", "x", path="/other")  # not for the Bayeux URL
        return response

    server = await serve(handler)
    transport = LongPollingTransport(url(server), headers={"cookie": "mine=1"})
    try:
        await transport.send(HANDSHAKE)
        await transport.send(HANDSHAKE, headers={"X-Extra": "1"})
    finally:
        await transport.close()
    assert received == ["mine=1", "mine=1; BAYEUX_BROWSER=b-1"]


async def test_headers_follow_each_call_though_they_are_reused(serve: ServerFactory) -> None:
    """The merged headers are kept between requests (#13), never past a change: a new
    token, a mapping the caller changed in place, headers dropped, a cookie replaced."""
    received: list[tuple[str | None, str | None, str | None]] = []

    async def handler(request: web.Request) -> web.Response:
        received.append(
            (
                request.headers.get("Authorization"),
                request.headers.get("X-Extra"),
                request.cookies.get("BAYEUX_BROWSER"),
            )
        )
        response = await echo_ok(request)
        if len(received) == 3:
            response.set_cookie("BAYEUX_BROWSER", "second", path="/")
        elif len(received) == 1:
            response.set_cookie("BAYEUX_BROWSER", "first", path="/")
        return response

    server = await serve(handler)
    transport = LongPollingTransport(url(server))
    mutable = {"Authorization": "Bearer 1"}
    try:
        await transport.send(HANDSHAKE, {"Authorization": "Bearer 1"})
        await transport.send(HANDSHAKE, {"Authorization": "Bearer 1"})
        await transport.send(HANDSHAKE, {"Authorization": "Bearer 2"})
        await transport.send(HANDSHAKE, mutable)
        mutable["X-Extra"] = "x"
        await transport.send(HANDSHAKE, mutable)
        await transport.send(HANDSHAKE)
    finally:
        await transport.close()
    assert received == [
        ("Bearer 1", None, None),
        ("Bearer 1", None, "first"),
        ("Bearer 2", None, "first"),
        ("Bearer 1", None, "second"),
        ("Bearer 1", "x", "second"),
        (None, None, "second"),
    ]


async def test_a_cookie_that_expired_is_no_longer_sent(serve: ServerFactory) -> None:
    """Cookie pairs are reused only while no cookie can expire (#13)."""
    received: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        received.append(request.headers.get("Cookie"))
        response = await echo_ok(request)
        if len(received) == 1:
            response.set_cookie("BAYEUX_BROWSER", "b", path="/")
            response.set_cookie("sticky", "s", path="/", max_age=1)
        return response

    server = await serve(handler)
    transport = LongPollingTransport(url(server))
    try:
        await transport.send(HANDSHAKE)
        await transport.send(HANDSHAKE)
        await asyncio.sleep(2.1)  # Max-Age is whole seconds; aiohttp's jar uses time.time()
        await transport.send(HANDSHAKE)
    finally:
        await transport.close()
    assert received == [None, "BAYEUX_BROWSER=b; sticky=s", "BAYEUX_BROWSER=b"]


async def test_user_session_is_used_and_never_closed(serve: ServerFactory) -> None:
    server = await serve(echo_ok)
    async with aiohttp.ClientSession() as session:
        transport = LongPollingTransport(url(server), session=session)
        await transport.send(HANDSHAKE)
        await transport.close()
        assert not session.closed
        with pytest.raises(TransportInvalidOperation):
            await transport.send(HANDSHAKE)


async def test_timeout_is_mapped(serve: ServerFactory) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return await echo_ok(request)

    server = await serve(slow)
    transport = LongPollingTransport(url(server))
    try:
        with pytest.raises(TransportTimeoutError, match=r"within 0\.2 s"):
            await transport.send(Request(HANDSHAKE.messages, timeout=0.2))
    finally:
        await transport.close()


@pytest.mark.parametrize("status", [400, 401, 404, 500, 502, 503])
async def test_http_status_is_checked(serve: ServerFactory, status: int) -> None:
    async def failing(request: web.Request) -> web.Response:
        return web.json_response(
            [{"channel": "/meta/handshake", "successful": True}], status=status
        )

    server = await serve(failing)
    transport = LongPollingTransport(url(server))
    try:
        with pytest.raises(HTTPStatusError) as info:
            await transport.send(HANDSHAKE)
    finally:
        await transport.close()
    assert info.value.status == status
    assert str(status) in str(info.value)


async def test_redirects_are_not_followed(serve: ServerFactory) -> None:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.2:1/elsewhere")

    server = await serve(redirect)
    transport = LongPollingTransport(url(server))
    try:
        with pytest.raises(HTTPStatusError) as info:
            await transport.send(HANDSHAKE, {"Authorization": "Bearer secret"})
    finally:
        await transport.close()
    assert info.value.status == 302


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<html>maintenance</html>", "not valid JSON"),
        (b'{"no": "channel"}', "no channel"),
        (b"42", "not an array"),
    ],
)
async def test_malformed_replies_raise_protocol_error(
    serve: ServerFactory, body: bytes, match: str
) -> None:
    async def bad(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    server = await serve(bad)
    transport = LongPollingTransport(url(server))
    try:
        with pytest.raises(ProtocolError, match=match):
            await transport.send(HANDSHAKE)
    finally:
        await transport.close()


async def test_response_size_limit_with_content_length(serve: ServerFactory) -> None:
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"[" + b" " * 5000 + b"]", content_type="application/json")

    server = await serve(big)
    transport = LongPollingTransport(url(server), max_response_size=1000)
    try:
        with pytest.raises(ProtocolError, match="limit of 1000 bytes"):
            await transport.send(HANDSHAKE)
    finally:
        await transport.close()


async def test_response_size_limit_on_an_endless_chunked_body(serve: ServerFactory) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"[")
        for _ in range(10_000):
            await response.write(b" " * 1024)
        return response

    server = await serve(endless)
    transport = LongPollingTransport(url(server), max_response_size=64 * 1024)
    try:
        with pytest.raises(ProtocolError, match="larger than the limit"):
            await transport.send(HANDSHAKE)
    finally:
        await transport.close()


async def test_chunked_reply_within_the_limit_is_read(serve: ServerFactory) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'[{"channel": "/meta/handshake",')
        await response.write(b' "id": "1", "successful": true}]')
        return response

    server = await serve(chunked)
    transport = LongPollingTransport(url(server))
    try:
        assert (await transport.send(HANDSHAKE))[0]["successful"] is True
    finally:
        await transport.close()


async def test_connection_dropped_mid_response(serve: ServerFactory) -> None:
    async def drop(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b'[{"channel": ')
        assert request.transport is not None
        request.transport.close()
        return response

    server = await serve(drop)
    transport = LongPollingTransport(url(server))
    try:
        with pytest.raises(TransportConnectionClosed):
            await transport.send(HANDSHAKE)
    finally:
        await transport.close()


async def test_connection_refused_is_a_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = LongPollingTransport(f"http://127.0.0.1:{port}/bayeux")
    try:
        with pytest.raises(TransportError, match="cannot connect"):
            await transport.send(HANDSHAKE)
    finally:
        await transport.close()


async def test_at_most_one_request_per_lane(serve: ServerFactory) -> None:
    active = {"now": 0, "max": 0}

    async def handler(request: web.Request) -> web.Response:
        active["now"] += 1
        active["max"] = max(active["max"], active["now"])
        await asyncio.sleep(0.05)
        active["now"] -= 1
        return await echo_ok(request)

    server = await serve(handler)
    transport = LongPollingTransport(url(server))
    connect = Request([{"channel": "/meta/connect", "id": "c"}], timeout=5, long_poll=True)
    try:
        await asyncio.gather(
            *[transport.send(connect) for _ in range(3)],
            *[transport.send(HANDSHAKE) for _ in range(3)],
        )
    finally:
        await transport.close()
    assert active["max"] == 2


async def test_custom_json_functions(serve: ServerFactory) -> None:
    dumped: list[Any] = []
    loaded: list[Any] = []

    def dumps(value: Any) -> bytes:
        dumped.append(value)
        return json.dumps(value).encode()

    def loads(value: str | bytes) -> Any:
        loaded.append(value)
        return json.loads(value)

    server = await serve(echo_ok)
    transport = LongPollingTransport(url(server), json_dumps=dumps, json_loads=loads)
    try:
        await transport.send(HANDSHAKE)
    finally:
        await transport.close()
    assert dumped == [HANDSHAKE.messages]
    assert len(loaded) == 1


def test_rejects_non_http_urls() -> None:
    with pytest.raises(ValueError, match="absolute http"):
        LongPollingTransport("ftp://example.com/cometd")
    with pytest.raises(ValueError, match="absolute http"):
        LongPollingTransport("/cometd/62.0")
    assert "127.0.0.1" in repr(LongPollingTransport("http://127.0.0.1:1/x"))


async def test_a_body_over_one_mebibyte_is_streamed_without_warning(serve: ServerFactory) -> None:
    sizes: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        sizes.append(len(body))
        return web.json_response([{"channel": "/big", "id": "1", "successful": True}])

    server = await serve(handler)
    transport = LongPollingTransport(url(server))
    big = Request([{"channel": "/big", "id": "1", "data": "x" * 1_500_000}], timeout=5)
    try:
        replies = await transport.send(big)
    finally:
        await transport.close()
    assert replies[0]["successful"] is True
    assert sizes[0] > 1_500_000


def big_reply(events: int) -> list[dict[str, Any]]:
    """A connect reply carrying ``events`` deliveries (about 100 bytes each)."""
    deliveries = [
        {"channel": "/event/E__e", "data": {"payload": {"N__c": n}, "event": {"replayId": n}}}
        for n in range(events)
    ]
    return [*deliveries, {"channel": "/meta/connect", "id": "1", "successful": True}]


@pytest.mark.parametrize(
    ("events", "pause_gc_over", "paused"),
    [
        (2000, 64 * 1024, True),  # about 150 KB: over the default threshold
        (10, 64 * 1024, False),  # a small reply: the collector is left alone
        (2000, None, False),  # turned off on the instance
    ],
)
async def test_large_replies_are_parsed_with_the_collector_paused(
    serve: ServerFactory, events: int, pause_gc_over: int | None, paused: bool
) -> None:
    enabled_during: list[bool] = []

    def loads(value: str | bytes) -> Any:
        enabled_during.append(gc.isenabled())
        return json.loads(value)

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(big_reply(events))

    server = await serve(handler)
    transport = LongPollingTransport(url(server), json_loads=loads)
    transport.pause_gc_over = pause_gc_over
    assert gc.isenabled()
    try:
        replies = await transport.send(HANDSHAKE)
    finally:
        await transport.close()
    assert len(replies) == events + 1
    assert enabled_during == [not paused]
    assert gc.isenabled()


async def test_the_collector_is_on_again_after_a_malformed_large_reply(
    serve: ServerFactory,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"[" + b'{"channel": "/x", "data": 1},' * 5000, status=200)

    server = await serve(handler)
    transport = LongPollingTransport(url(server))
    try:
        with pytest.raises(ProtocolError, match="not valid JSON"):
            await transport.send(HANDSHAKE)
    finally:
        await transport.close()
    assert gc.isenabled()


async def test_a_collector_turned_off_by_the_application_stays_off(serve: ServerFactory) -> None:
    enabled_during: list[bool] = []

    def loads(value: str | bytes) -> Any:
        enabled_during.append(gc.isenabled())
        return json.loads(value)

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(big_reply(2000))

    server = await serve(handler)
    transport = LongPollingTransport(url(server), json_loads=loads)
    gc.disable()
    try:
        await transport.send(HANDSHAKE)
        assert not gc.isenabled()
    finally:
        gc.enable()
        await transport.close()
    assert enabled_during == [False]


async def test_credentials_in_the_url_go_as_basic_auth_and_are_never_shown(
    serve: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """``https://user:password@host/...``: a Basic ``Authorization`` header, which one given in
    the headers (in any spelling) replaces, and a URL kept and shown without the password
    (aiohttp itself refuses URL credentials beside an ``Authorization`` header)."""
    seen: list[list[str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.getall("Authorization", []))
        return await echo_ok(request)

    server = await serve(handler)
    secret = "s3cret-Pw"
    with_credentials = url(server).replace("http://", f"http://user:{secret}@")
    basic = "Basic " + base64.b64encode(f"user:{secret}".encode()).decode()
    caplog.set_level("DEBUG", logger="sfstream")
    transport = LongPollingTransport(with_credentials)
    fixed = LongPollingTransport(with_credentials, headers={"authorization": "Bearer fixed"})
    try:
        await transport.send(HANDSHAKE)
        await transport.send(HANDSHAKE, {"authorization": "Bearer given"})
        await transport.send(HANDSHAKE, {"X-Other": "1"})
        await fixed.send(HANDSHAKE)
    finally:
        await transport.close()
        await fixed.close()
    assert seen == [[basic], ["Bearer given"], [basic], ["Bearer fixed"]]
    assert str(transport.url) == url(server)
    assert secret not in repr(transport) + repr(fixed) + caplog.text


async def test_a_client_with_credentials_in_the_url_and_a_token_header(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client's own headers (a token) win over the URL's credentials; neither the client
    nor its logs show the password."""
    fake = FakeBayeuxServer()
    tokens: list[list[str]] = []

    async def handler(request: web.Request) -> web.Response:
        tokens.append(request.headers.getall("Authorization", []))
        request_ = Request(await request.json(), timeout=5)
        return web.json_response(await fake(request_))

    app = web.Application()
    app.router.add_post("/bayeux", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    secret = "s3cret-Pw"
    plain = url(server)
    caplog.set_level("DEBUG", logger="sfstream")
    try:
        client = BayeuxClient(
            plain.replace("http://", f"http://user:{secret}@"),
            headers=lambda: {"Authorization": "Bearer t1"},
        )
        async with client:
            await client.subscribe("/topic/a")
            shown = repr(client) + str(client.url)
    finally:
        await server.close()
    assert tokens
    assert all(values == ["Bearer t1"] for values in tokens)
    assert client.url == plain
    assert secret not in shown + caplog.text
