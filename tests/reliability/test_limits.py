"""Limits against a hostile server, over real sockets on loopback.

Each limit fails with a clear error of the documented tree and memory stays bounded: a server
that streams an endless body, drips one for ever, declares a body of 10 GiB, sends headers that
never end or too many messages cannot exhaust the client. Limits that are not parameters yet
are specified with ``xfail(strict=True)``.

Compressed replies: every limit counts *decoded* bytes. A 520 KB gzip body that inflates to
512 MiB is refused on every HTTP path of the project (the CometD transport, the token endpoint,
REST publishing and ``sfstream publish``, the emulator's request bodies), with the memory peak
a small multiple of the limit, not of the inflated size. The CometD WebSocket transport
negotiates no compression: a deflated frame of 512 MiB is refused without being inflated.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import hashlib
import json
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from types import TracebackType

import aiohttp
import pytest

from sfstream import AccessTokenAuthenticator, AuthenticationError, PasswordAuthenticator
from sfstream.bayeux import LongPollingTransport, Request, WebSocketTransport
from sfstream.cli import main
from sfstream.cli._channels import known_channels
from sfstream.cli._errors import CliError
from sfstream.cli._publish import RestClient
from sfstream.emulator import Emulator
from sfstream.exceptions import (
    AuthenticationTransportError,
    ProtocolError,
    TransportError,
    TransportTimeoutError,
)

from ._hostile import (
    Behaviour,
    HostileServer,
    Received,
    endless_chunked_body,
    endless_headers,
    endless_slow_body,
    fixed,
    huge_declared_length,
    response,
)

CONNECT: Request = Request(
    [{"channel": "/meta/connect", "clientId": "c1", "connectionType": "long-polling", "id": "2"}],
    5.0,
    long_poll=True,
)
MiB = 1024 * 1024


@pytest.fixture
def memory() -> Iterator[None]:
    tracemalloc.start()
    yield
    tracemalloc.stop()


def peak_mib() -> float:
    return tracemalloc.get_traced_memory()[1] / MiB


async def test_an_endless_body_stops_at_the_response_limit(memory: None) -> None:
    async with HostileServer(endless_chunked_body) as server:
        transport = LongPollingTransport(server.url + "/cometd/67.0", max_response_size=4 * MiB)
        try:
            started = time.monotonic()
            with pytest.raises(ProtocolError, match=r"larger than the limit of 4194304 bytes"):
                await transport.send(CONNECT)
            assert time.monotonic() - started < 5
        finally:
            await transport.close()
    assert peak_mib() < 3 * 4, f"peak {peak_mib():.1f} MiB for a 4 MiB limit"


@pytest.mark.timeout(60)
async def test_an_endless_body_stops_at_the_default_limit() -> None:
    async with HostileServer(endless_chunked_body) as server:
        transport = LongPollingTransport(server.url + "/cometd/67.0")
        try:
            with pytest.raises(ProtocolError, match=r"larger than the limit of 67108864 bytes"):
                await transport.send(CONNECT)
        finally:
            await transport.close()


async def test_a_huge_declared_length_is_refused_before_reading(memory: None) -> None:
    async with HostileServer(huge_declared_length(10 * 1024**3)) as server:
        transport = LongPollingTransport(server.url + "/cometd/67.0")
        try:
            started = time.monotonic()
            with pytest.raises(ProtocolError, match=r"10737418240 bytes, more than the limit"):
                await transport.send(CONNECT)
            assert time.monotonic() - started < 1
        finally:
            await transport.close()
    assert peak_mib() < 5


async def test_an_endless_slow_body_times_out() -> None:
    async with HostileServer(endless_slow_body) as server:
        transport = LongPollingTransport(server.url + "/cometd/67.0")
        request = Request(CONNECT.messages, 1.0, long_poll=True)
        try:
            started = time.monotonic()
            with pytest.raises(TransportTimeoutError, match="within 1 s"):
                await transport.send(request)
            assert time.monotonic() - started < 2
        finally:
            await transport.close()


@pytest.mark.parametrize(
    "behaviour",
    [
        fixed(200, b"[]", "X-Long: " + "v" * 100_000),
        fixed(200, b"[]", *(f"X-Many-{n}: v" for n in range(1000))),
        endless_headers,
    ],
    ids=["a 100 KB header line", "1000 headers", "headers without end"],
)
async def test_oversized_headers_are_a_transport_error(behaviour: object, memory: None) -> None:
    async with HostileServer(behaviour) as server:  # type: ignore[arg-type]
        transport = LongPollingTransport(server.url + "/cometd/67.0")
        try:
            with pytest.raises(TransportError, match=r"(?i)header|8190 bytes"):
                await transport.send(CONNECT)
        finally:
            await transport.close()
    assert peak_mib() < 5


async def test_too_many_messages_in_a_reply() -> None:
    body = json.dumps([{"channel": "/x", "data": n} for n in range(100_001)]).encode()
    async with HostileServer(fixed(200, body, "Content-Type: application/json")) as server:
        transport = LongPollingTransport(server.url + "/cometd/67.0")
        try:
            with pytest.raises(ProtocolError, match="100001 messages, more than the limit"):
                await transport.send(CONNECT)
        finally:
            await transport.close()


async def test_too_many_messages_with_a_lower_limit() -> None:
    body = json.dumps([{"channel": "/x", "data": n} for n in range(11)]).encode()
    async with HostileServer(fixed(200, body)) as server:
        transport = LongPollingTransport(server.url + "/cometd/67.0", max_messages=10)
        try:
            with pytest.raises(ProtocolError, match="11 messages, more than the limit of 10"):
                await transport.send(CONNECT)
        finally:
            await transport.close()


async def test_deep_nesting_over_the_wire_is_a_protocol_error() -> None:
    body = b'[{"channel":"/x","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}]"
    async with HostileServer(fixed(200, body)) as server:
        transport = LongPollingTransport(server.url + "/cometd/67.0")
        try:
            with pytest.raises(ProtocolError, match="nested too deeply"):
                await transport.send(CONNECT)
        finally:
            await transport.close()


# -- the token endpoint -------------------------------------------------------------------------


def authenticator(url: str, **options: object) -> PasswordAuthenticator:
    return PasswordAuthenticator("key", "secret", "user", "pass", login_url=url, **options)  # type: ignore[arg-type]


async def test_an_endless_token_reply_stops_at_one_mib(memory: None) -> None:
    async with HostileServer(endless_chunked_body) as server:
        with pytest.raises(AuthenticationError, match="exceeds 1048576 bytes"):
            await authenticator(server.url).authenticate()
    assert peak_mib() < 5


async def test_a_token_endpoint_that_never_answers_times_out() -> None:
    async with HostileServer(endless_slow_body) as server:
        started = time.monotonic()
        with pytest.raises(AuthenticationError, match="Network request failed"):
            await authenticator(server.url, request_timeout=1.0).authenticate()
        assert time.monotonic() - started < 2


async def test_oversized_token_reply_headers_are_an_authentication_error() -> None:
    async with HostileServer(endless_headers) as server:
        with pytest.raises(AuthenticationError, match="Network request failed"):
            await authenticator(server.url).authenticate()


# -- limits that are not parameters yet ---------------------------------------------------------


def test_the_clients_take_the_transport_limits() -> None:
    from sfstream import Client
    from sfstream.bayeux import BayeuxClient

    BayeuxClient("http://127.0.0.1:1/cometd", max_response_size=MiB, max_messages=10)
    Client(authenticator("http://127.0.0.1:1"), max_response_size=MiB, max_messages=10)


async def test_one_oversized_event_is_refused() -> None:
    body = json.dumps([{"channel": "/event/X__e", "data": "x" * (2 * MiB)}]).encode()
    async with HostileServer(fixed(200, body)) as server:
        transport = LongPollingTransport(server.url + "/cometd/67.0", max_message_size=MiB)
        try:
            with pytest.raises(ProtocolError, match="larger than"):
                await transport.send(CONNECT)
        finally:
            await transport.close()


# -- compressed replies: limits count decoded bytes ---------------------------------------------

#: What the bomb inflates to.
BOMB_SIZE = 512 * MiB


@functools.cache
def gzip_bomb(inflated: int = BOMB_SIZE) -> bytes:
    """A gzip stream of ``inflated`` zero bytes (520 KB for 512 MiB), built a MiB at a time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(MiB)
    parts = [compressor.compress(block) for _ in range(inflated // MiB)]
    parts.append(compressor.flush())
    return b"".join(parts)


def test_the_bomb_is_small_and_inflates_to_512_mib() -> None:
    bomb = gzip_bomb()
    assert len(bomb) < 600 * 1024
    inflater = zlib.decompressobj(31)
    total = 0
    data = bomb
    while data:
        total += len(inflater.decompress(data, MiB))
        data = inflater.unconsumed_tail
    assert total == BOMB_SIZE


def bomb(*, chunked: bool = False) -> Behaviour:
    """A 200 whose gzip body inflates to 512 MiB, with a Content-Length or chunked."""
    headers = ("Content-Type: application/json", "Content-Encoding: gzip")
    if not chunked:
        return fixed(200, gzip_bomb(), *headers)

    async def behave(_request: Received, writer: asyncio.StreamWriter) -> None:
        head = ["HTTP/1.1 200 OK", *headers, "Transfer-Encoding: chunked"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        body = gzip_bomb()
        for start in range(0, len(body), 16 * 1024):
            chunk = body[start : start + 16 * 1024]
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return behave


def token_reply(instance_url: str) -> bytes:
    return json.dumps(
        {"access_token": "00Dtoken", "instance_url": instance_url, "token_type": "Bearer"}
    ).encode()


def bomb_except_the_token(*, chunked: bool = False) -> Behaviour:
    """A token endpoint that answers properly; every other path gets the bomb."""
    explode = bomb(chunked=chunked)

    async def behave(request: Received, writer: asyncio.StreamWriter) -> None:
        if request.path.startswith("/services/oauth2/token"):
            host = request.headers["host"]
            writer.write(
                response(200, token_reply(f"http://{host}"), "Content-Type: application/json")
            )
            await writer.drain()
            return
        await explode(request, writer)

    return behave


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_gzip_bomb_stops_at_the_transport_limit(chunked: bool, memory: None) -> None:
    async with HostileServer(bomb(chunked=chunked)) as server:
        transport = LongPollingTransport(server.url + "/cometd/67.0", max_response_size=4 * MiB)
        try:
            with pytest.raises(ProtocolError, match=r"larger than the limit of 4194304 bytes"):
                await transport.send(CONNECT)
        finally:
            await transport.close()
    assert peak_mib() < 16, f"peak {peak_mib():.1f} MiB for a 4 MiB limit"


async def test_a_gzip_bomb_stops_at_the_default_transport_limit(memory: None) -> None:
    async with HostileServer(bomb()) as server:
        transport = LongPollingTransport(server.url + "/cometd/67.0")
        try:
            with pytest.raises(ProtocolError, match=r"larger than the limit of 67108864 bytes"):
                await transport.send(CONNECT)
        finally:
            await transport.close()
    assert peak_mib() < 200, f"peak {peak_mib():.1f} MiB for a 64 MiB limit"


@functools.cache
def deflate_bomb_frame(inflated: int = BOMB_SIZE) -> bytes:
    """A server-to-client WebSocket text frame, compressed with permessage-deflate (RFC 7692),
    whose payload (about 520 KB) inflates to ``inflated`` NUL characters (valid UTF-8)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(MiB)
    payload = b"".join(compressor.compress(block) for _ in range(inflated // MiB))
    payload += compressor.flush(zlib.Z_SYNC_FLUSH)
    assert payload.endswith(b"\x00\x00\xff\xff")
    payload = payload[:-4]
    # FIN + RSV1 (compressed) + text; unmasked; 64-bit length
    return bytes([0xC1, 127]) + len(payload).to_bytes(8, "big") + payload


async def websocket_bomb(request: Received, writer: asyncio.StreamWriter) -> None:
    """Accepts the WebSocket upgrade claiming permessage-deflate (whether or not the client
    offered it), then sends the bomb frame."""
    key = request.headers["sec-websocket-key"]
    accept = base64.b64encode(
        hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()  # noqa: S324 - RFC 6455
    ).decode()
    head = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept}",
        "Sec-WebSocket-Extensions: permessage-deflate",
    ]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    frame = deflate_bomb_frame()
    for start in range(0, len(frame), 64 * 1024):
        writer.write(frame[start : start + 64 * 1024])
        await writer.drain()
    await asyncio.sleep(30)  # keep the socket open: the client must give up by itself


def test_the_websocket_bomb_frame_inflates_to_512_mib() -> None:
    frame = deflate_bomb_frame()
    assert len(frame) < 600 * 1024
    inflater = zlib.decompressobj(-15)
    total = 0
    data = frame[10:] + b"\x00\x00\xff\xff"
    while data:
        total += len(inflater.decompress(data, MiB))
        data = inflater.unconsumed_tail
    assert total == BOMB_SIZE


async def test_a_deflate_bomb_over_the_websocket_is_refused(memory: None) -> None:
    """The CometD WebSocket transport offers no compression (no ``permessage-deflate``), so a
    compressed frame is a protocol violation, refused without inflating it."""
    async with HostileServer(websocket_bomb) as server:
        transport = WebSocketTransport(server.url + "/cometd/67.0", max_response_size=4 * MiB)
        try:
            with pytest.raises(TransportError) as refused:
                await transport.send(CONNECT)
        finally:
            await transport.close()
        offered = server.requests[0].headers.get("sec-websocket-extensions", "")
    assert "permessage-deflate" not in offered
    assert not isinstance(refused.value, TransportTimeoutError), repr(refused.value)
    assert peak_mib() < 16, f"peak {peak_mib():.1f} MiB for a 4 MiB limit"


async def test_a_compressed_reply_within_the_limit_is_decoded() -> None:
    messages = [{"channel": "/x", "data": "y" * 1000, "id": str(n)} for n in range(100)]
    body = gzip.compress(json.dumps(messages).encode())
    behaviour = fixed(200, body, "Content-Type: application/json", "Content-Encoding: gzip")
    async with HostileServer(behaviour) as server:
        # the limit is above the decoded size (about 110 KB), the compressed body far below
        transport = LongPollingTransport(server.url + "/cometd/67.0", max_response_size=200_000)
        try:
            assert await transport.send(CONNECT) == messages
            transport.max_response_size = 100_000
            with pytest.raises(ProtocolError, match="larger than the limit of 100000 bytes"):
                await transport.send(CONNECT)
        finally:
            await transport.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_gzip_bomb_from_the_token_endpoint(chunked: bool, memory: None) -> None:
    async with HostileServer(bomb(chunked=chunked)) as server:
        with pytest.raises(AuthenticationTransportError, match="exceeds 1048576 bytes"):
            await authenticator(server.url).authenticate()
    assert peak_mib() < 8, f"peak {peak_mib():.1f} MiB for a 1 MiB limit"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_gzip_bomb_from_rest_publishing(chunked: bool, memory: None) -> None:
    async with HostileServer(bomb(chunked=chunked)) as server, aiohttp.ClientSession() as session:
        rest = RestClient(AccessTokenAuthenticator("00Dtoken", server.url), session, "67.0")
        with pytest.raises(CliError, match="larger than the limit of 4194304 bytes"):
            await rest.publish_event("Order__e", {"Amount__c": 1})
    assert peak_mib() < 24, f"peak {peak_mib():.1f} MiB for a 4 MiB limit"


async def test_a_gzip_bomb_from_the_channel_listing(memory: None) -> None:
    """The CLI's "did you mean" listing (REST describe global and queries): no suggestion,
    bounded memory."""
    async with HostileServer(bomb()) as server:
        auth = AccessTokenAuthenticator("00Dtoken", server.url)
        await auth.authenticate()
        assert await known_channels(auth, "62.0") == ["/data/ChangeEvents"]
        assert server.requests, "the listing asked the server"
    assert peak_mib() < 48, f"peak {peak_mib():.1f} MiB for an 8 MiB limit"


async def test_a_large_rest_reply_is_read_whole() -> None:
    """Not just the first buffered piece of it (a reply of several network reads)."""
    reply = json.dumps({"id": "e001", "success": True, "errors": [], "pad": "x" * MiB})
    behaviour = fixed(201, reply.encode(), "Content-Type: application/json")
    async with HostileServer(behaviour) as server, aiohttp.ClientSession() as session:
        rest = RestClient(AccessTokenAuthenticator("00Dtoken", server.url), session, "67.0")
        result = await rest.publish_event("Order__e", {})
        assert result.id == "e001"
        rest.max_body = MiB
        with pytest.raises(CliError, match=r"larger than the limit of 1048576 bytes \(10"):
            await rest.publish_event("Order__e", {})


class ThreadedServer:
    """A :class:`HostileServer` on its own loop in a thread, for ``main()`` (``asyncio.run``)."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with HostileServer(self.behaviour) as server:
            self.url = server.url
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def test_a_gzip_bomb_against_sfstream_publish(capsys: pytest.CaptureFixture[str]) -> None:
    with ThreadedServer(bomb_except_the_token()) as server:
        tracemalloc.start()
        try:
            code = main(
                [
                    "publish",
                    "/event/Order__e",
                    '{"Amount__c": 1}',
                    "--login-url",
                    server.url,
                    "--consumer-key",
                    "key",
                    "--consumer-secret",
                    "secret",
                    "--username",
                    "user",
                    "--password",
                    "pass",
                ]
            )
            peak = peak_mib()
        finally:
            tracemalloc.stop()
    err = capsys.readouterr().err
    assert code == 1, err
    assert "larger than the limit of 4194304 bytes" in err
    assert peak < 32, f"peak {peak:.1f} MiB for a 4 MiB limit"


# -- the emulator's request bodies ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/cometd/67.0",
        "/services/oauth2/token",
        "/services/data/v67.0/sobjects/Order__e/",
        "/_emulator/publish",
    ],
)
async def test_a_gzip_bomb_posted_to_the_emulator(path: str, memory: None) -> None:
    async with (
        Emulator(events={"Order__e": ["Amount__c", "N__c"]}) as org,
        aiohttp.ClientSession() as session,
    ):
        token = org.issue_access_token()
        content_type = (
            "application/x-www-form-urlencoded" if "oauth2" in path else "application/json"
        )
        async with session.post(
            org.base_url + path,
            data=gzip_bomb(),
            headers={
                "Content-Encoding": "gzip",
                "Content-Type": content_type,
                "Authorization": f"Bearer {token}",
            },
        ) as reply:
            assert reply.status == 413, await reply.text()
        # the org still serves
        async with session.get(org.base_url + "/services/data") as reply:
            assert reply.status == 200
    assert peak_mib() < 24, f"peak {peak_mib():.1f} MiB"
