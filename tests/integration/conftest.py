"""Fixtures for the integration tests: sfstream's client against a running emulated org.

Everything runs on loopback with small timings, so that expiries and holds happen within a
test's second or two instead of Salesforce's 40 s / 110 s.

Fixtures:

``org``
    A started :class:`~sfstream.emulator.Emulator` (``hold_time`` :data:`HOLD_TIME`,
    ``session_expiry`` :data:`SESSION_EXPIRY`) with the platform events ``Order__e`` and
    ``Shipment__e`` defined and its access log on (see ``org_requests``).
``credentials``
    The keyword arguments that point a ``SalesforceStreamingClient`` at ``org``:
    ``consumer_key``, ``consumer_secret``, ``username``, ``password``, ``login_url``.
``client_factory``
    ``client_factory(**options)`` builds a ``SalesforceStreamingClient`` for ``org`` (any
    constructor argument may be overridden or added) and closes it when the test ends.
``statuses``
    A :class:`StatusRecorder`; pass it as ``on_status=statuses``.
``org_requests``
    A :class:`RequestLog` of every HTTP request the emulator answered, as the server saw it.

Helpers (import them from this module; ``tests`` is a package):

- :func:`receive_n`, :func:`assert_silent`, :func:`wait_until`: bounded waits that fail the
  test with a message instead of running into the 60 s per-test timeout;
- :func:`payload_values`, :func:`replay_ids`: what a list of messages carried;
- :func:`credentials_of` (for an emulator built by the test itself), :func:`free_port` (to
  restart an emulator on the same address);
- :class:`TracedSession`: an aiohttp session for ``session=`` that records each request's
  start time, i.e. what *one* client sent (the access log mixes clients).

A module may define its own ``org`` fixture (other events, timings); ``credentials`` and
``client_factory`` then follow it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from sfstream import Client, SalesforceStreamingClient, Status, StatusKind
from sfstream.bayeux import Message
from sfstream.emulator import Emulator

#: Seconds the emulator holds a ``/meta/connect`` with nothing to deliver (Salesforce: 110).
HOLD_TIME = 0.2
#: Seconds of silence after which the emulator forgets a Bayeux session (Salesforce: 40).
SESSION_EXPIRY = 1.0
#: Platform events the ``org`` fixture defines, with the custom fields the tests publish.
EVENTS = {"Order__e": ("Amount__c", "N__c"), "Shipment__e": ("Amount__c", "N__c")}
#: Seconds a helper waits for something that should happen "at once".
WAIT = 5.0

ClientFactory = Callable[..., SalesforceStreamingClient]


# -- recorders --------------------------------------------------------------------------------


class StatusRecorder:
    """An ``on_status`` callback that keeps every :class:`~sfstream.Status` it is given."""

    def __init__(self) -> None:
        self.statuses: list[Status] = []

    def __call__(self, status: Status) -> None:
        self.statuses.append(status)

    @property
    def kinds(self) -> list[StatusKind]:
        return [status.kind for status in self.statuses]

    def of(self, kind: StatusKind) -> list[Status]:
        return [status for status in self.statuses if status.kind is kind]

    async def wait_for(
        self, kind: StatusKind, *, count: int = 1, timeout: float = WAIT
    ) -> list[Status]:
        """Wait until ``count`` statuses of ``kind`` were reported; return them."""
        await wait_until(lambda: len(self.of(kind)) >= count, timeout, f"{count} x {kind}")
        return self.of(kind)


@dataclass(frozen=True)
class ServedRequest:
    """One request the emulator answered (its access log line)."""

    at: float  # time.monotonic() when the answer was logged
    method: str
    path: str
    status: int


class RequestLog(logging.Handler):
    """Collects the emulator's access log: what the *server* saw, whatever the client thinks."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.requests: list[ServedRequest] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            _remote, method, path, status, _duration = args
            served = ServedRequest(time.monotonic(), str(method), str(path), int(str(status)))
            self.requests.append(served)

    def matching(self, path_prefix: str = "", *, since: float = 0.0) -> list[ServedRequest]:
        return [r for r in self.requests if r.path.startswith(path_prefix) and r.at >= since]

    def count(self, path_prefix: str = "", *, since: float = 0.0) -> int:
        return len(self.matching(path_prefix, since=since))

    @property
    def token_requests(self) -> int:
        return self.count("/services/oauth2/token")


class TracedSession:
    """An aiohttp ``ClientSession`` (for ``session=``) that records when each request started.

    ``started`` holds ``(time.monotonic(), method, url)`` per request, in order.
    """

    def __init__(self, **session_options: Any) -> None:
        self.started: list[tuple[float, str, str]] = []
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(self._on_start)
        self.session = aiohttp.ClientSession(trace_configs=[trace], **session_options)

    async def _on_start(
        self,
        _session: aiohttp.ClientSession,
        _context: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        self.started.append((time.monotonic(), params.method, str(params.url)))

    def times(self, path_part: str) -> list[float]:
        return [at for at, _method, url in self.started if path_part in url]

    async def close(self) -> None:
        await self.session.close()


# -- helpers ----------------------------------------------------------------------------------


async def wait_until(
    condition: Callable[[], bool], timeout: float = WAIT, what: str = "the condition"
) -> None:
    """Poll ``condition`` every 10 ms; fail the test after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


async def receive_n(client: Client, count: int, timeout: float = WAIT) -> list[Message]:
    """The next ``count`` messages of ``client`` (fails the test if they do not come in time)."""
    messages: list[Message] = []
    try:
        async with asyncio.timeout(timeout):
            while len(messages) < count:
                messages.append(await client.receive())
    except TimeoutError:
        pytest.fail(f"received {len(messages)} of {count} messages in {timeout} s: {messages}")
    return messages


async def assert_silent(client: Client, within: float = 0.5) -> None:
    """Fail if ``client`` receives a message within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            message = await client.receive()
    except TimeoutError:
        return
    pytest.fail(f"expected no message, got {message}")


def payload_values(messages: list[Message], field: str = "Amount__c") -> list[Any]:
    """``data.payload[field]`` of platform event messages (``sobject`` for PushTopics)."""
    values = []
    for message in messages:
        data = message["data"]
        body = data.get("payload") if "payload" in data else data.get("sobject")
        values.append(body.get(field) if isinstance(body, dict) else None)
    return values


def replay_ids(messages: list[Message]) -> list[int]:
    return [message["data"]["event"]["replayId"] for message in messages]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (to restart an emulator on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def org_requests() -> Iterator[RequestLog]:
    handler = RequestLog()
    access = logging.getLogger("sfstream.emulator.access")
    level = access.level
    access.setLevel(logging.INFO)
    access.addHandler(handler)
    try:
        yield handler
    finally:
        access.removeHandler(handler)
        access.setLevel(level)


@pytest.fixture
async def org(org_requests: RequestLog) -> AsyncIterator[Emulator]:
    async with Emulator(
        events=EVENTS, hold_time=HOLD_TIME, session_expiry=SESSION_EXPIRY, access_log=True
    ) as emulator:
        yield emulator


def credentials_of(org: Emulator) -> dict[str, Any]:
    return {
        "consumer_key": org.consumer_key,
        "consumer_secret": org.consumer_secret,
        "username": org.username,
        "password": org.password,
        "login_url": org.login_url,
    }


@pytest.fixture
def credentials(org: Emulator) -> dict[str, Any]:
    return credentials_of(org)


@pytest.fixture
async def client_factory(credentials: dict[str, Any]) -> AsyncIterator[ClientFactory]:
    clients: list[SalesforceStreamingClient] = []

    def make(**options: Any) -> SalesforceStreamingClient:
        client = SalesforceStreamingClient(**{**credentials, **options})
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
def statuses() -> StatusRecorder:
    return StatusRecorder()
