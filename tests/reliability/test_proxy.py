"""The fault proxy itself: it forwards HTTP/1.1 intact, and each fault does what it says.

Checked against a small aiohttp server that records what reached it, with a plain aiohttp
client: the symptoms are those a real network produces (a reset, a truncated body, a stall).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from ._proxy import FaultKind, FaultProxy


class Upstream:
    """A server that echoes POST bodies and counts the requests it read completely."""

    def __init__(self) -> None:
        self.completed: list[bytes] = []
        self.started = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def echo(self, request: web.Request) -> web.Response:
        self.started += 1
        body = await request.read()
        self.completed.append(body)
        return web.Response(body=b"echo:" + body * 50)

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for n in range(5):
            await response.write(f"part{n};".encode())
        await response.write_eof()
        return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/echo", self.echo)
        app.router.add_post("/other", self.echo)
        app.router.add_get("/chunked", self.chunked)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy(upstream: Upstream) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(("127.0.0.1", upstream.port)) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def post(
    http: aiohttp.ClientSession, proxy: FaultProxy, body: bytes, path: str = "/echo"
) -> bytes:
    async with http.post(proxy.url + path, data=body) as response:
        assert response.status == 200
        return await response.read()


async def test_forwards_intact_over_one_kept_alive_connection(
    proxy: FaultProxy, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    for n in range(5):
        assert await post(http, proxy, f"body {n}".encode()) == b"echo:" + f"body {n}".encode() * 50
    assert proxy.connections == 1
    assert proxy.exchanges == 5
    assert len(upstream.completed) == 5
    assert not proxy.fired


async def test_forwards_a_chunked_response(proxy: FaultProxy, http: aiohttp.ClientSession) -> None:
    async with http.get(proxy.url + "/chunked") as response:
        assert await response.read() == b"part0;part1;part2;part3;part4;"


async def test_forwards_a_close_delimited_response() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with (
            FaultProxy(("127.0.0.1", port)) as proxy,
            aiohttp.ClientSession() as http,
            http.get(proxy.url + "/") as response,
        ):
            assert await response.read() == b"until the end"
    finally:
        server.close()
        await server.wait_closed()


async def test_reset_mid_request_reaches_the_server_half_done(
    proxy: FaultProxy, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    proxy.arm(FaultKind.RESET_REQUEST)
    with pytest.raises(aiohttp.ClientError):
        await post(http, proxy, b"x" * 1000)
    await asyncio.sleep(0.1)
    assert upstream.completed == []  # the server never got the whole request
    assert proxy.fired[FaultKind.RESET_REQUEST] == 1
    assert await post(http, proxy, b"next")  # only one exchange was hit


@pytest.mark.parametrize("kind", [FaultKind.RESET_RESPONSE, FaultKind.TRUNCATE])
async def test_a_response_cut_in_the_middle_was_complete_on_the_server(
    proxy: FaultProxy, upstream: Upstream, http: aiohttp.ClientSession, kind: FaultKind
) -> None:
    proxy.arm(kind)
    with pytest.raises(
        aiohttp.ClientPayloadError if kind is FaultKind.TRUNCATE else aiohttp.ClientError
    ):
        await post(http, proxy, b"lost in transit")
    assert upstream.completed == [b"lost in transit"]  # the server believes it answered


async def test_stall_delays_an_intact_response(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    proxy.arm(FaultKind.STALL, seconds=0.4)
    started = time.monotonic()
    assert await post(http, proxy, b"late") == b"echo:" + b"late" * 50
    assert time.monotonic() - started >= 0.35


async def test_stall_then_reset(proxy: FaultProxy, http: aiohttp.ClientSession) -> None:
    proxy.arm(FaultKind.STALL_RESET, seconds=0.3)
    started = time.monotonic()
    with pytest.raises(aiohttp.ClientError):
        await post(http, proxy, b"never")
    assert time.monotonic() - started >= 0.25


async def test_blackhole_never_answers(proxy: FaultProxy) -> None:
    proxy.arm(FaultKind.BLACKHOLE)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as http:
        with pytest.raises(TimeoutError):
            await post(http, proxy, b"into the void")


async def test_slow_drip_delivers_everything(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    proxy.arm(FaultKind.DRIP, drip_bytes=3, drip_delay=0.001, seconds=0.3)
    started = time.monotonic()
    assert await post(http, proxy, b"drop by drop") == b"echo:" + b"drop by drop" * 50
    assert time.monotonic() - started >= 0.2


async def test_refuse_resets_a_new_connection(
    proxy: FaultProxy, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    proxy.arm(FaultKind.REFUSE)
    with pytest.raises(aiohttp.ClientError):
        await post(http, proxy, b"refused")
    assert upstream.started == 0
    assert await post(http, proxy, b"accepted")


async def test_filters_by_path_and_body(
    proxy: FaultProxy, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    fault = proxy.arm(FaultKind.RESET_RESPONSE, path="/other", contains=b"needle", count=None)
    assert await post(http, proxy, b"needle", path="/echo")
    assert await post(http, proxy, b"hay", path="/other")
    with pytest.raises(aiohttp.ClientError):
        await post(http, proxy, b"a needle here", path="/other")
    assert fault.fired == 1
    assert proxy.clear() == 1  # count=None: armed until cleared


async def test_offline_and_reset_connections(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    assert await post(http, proxy, b"up")
    proxy.offline = True
    assert proxy.reset_connections() >= 1
    with pytest.raises(aiohttp.ClientError):
        await post(http, proxy, b"down")
    proxy.offline = False
    assert await post(http, proxy, b"up again")


async def test_the_upstream_can_move(proxy: FaultProxy, http: aiohttp.ClientSession) -> None:
    other = Upstream()
    await other.start()
    try:
        proxy.upstream = ("127.0.0.1", other.port)
        proxy.reset_connections()
        async with aiohttp.ClientSession() as fresh:
            assert await post(fresh, proxy, b"moved")
        assert other.completed == [b"moved"]
    finally:
        await other.stop()
