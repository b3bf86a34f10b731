"""Limits against a hostile server, over real sockets on loopback.

Each limit fails with a clear error of the documented tree and memory stays bounded: a server
that streams an endless body, drips one for ever, declares a body of 10 GiB, sends headers that
never end or too many messages cannot exhaust the client. Limits that are not parameters yet
are specified with ``xfail(strict=True)``.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from sfstream import AuthenticationError, PasswordAuthenticator
from sfstream.bayeux import LongPollingTransport, Request
from sfstream.exceptions import ProtocolError, TransportError, TransportTimeoutError

from ._hostile import (
    HostileServer,
    endless_chunked_body,
    endless_headers,
    endless_slow_body,
    fixed,
    huge_declared_length,
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
