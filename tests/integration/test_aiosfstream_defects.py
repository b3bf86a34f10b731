"""The faults users hit in aiosfstream and aiocometd are gone: one test each, on the emulator.

The defect numbers (D1-D13) are those of ``peer-defects.md``; each test builds the situation
that showed the defect there and checks what sfstream does instead, from the outside: what the
consumer receives, what the org saw (its access log), what was logged and reported through
``on_status``.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import time
import warnings
from typing import Any

import pytest

from sfstream import (
    Client,
    MappingStorage,
    PasswordAuthenticator,
    ReplayMarker,
    ReplayMarkerStorage,
    ReplayMarkerStoragePolicy,
    ReplayOption,
    SalesforceStreamingClient,
    StatusKind,
)
from sfstream.bayeux import LongPollingTransport
from sfstream.emulator import Emulator
from sfstream.exceptions import AuthenticationError, ReplayError, ServerError
from tests.integration.conftest import (
    EVENTS,
    HOLD_TIME,
    SESSION_EXPIRY,
    WAIT,
    ClientFactory,
    RequestLog,
    StatusRecorder,
    TracedSession,
    assert_silent,
    credentials_of,
    payload_values,
    receive_n,
    replay_ids,
    wait_until,
)

DAY = 24 * 3600.0
ORDER = "/event/Order__e"
SHIPMENT = "/event/Shipment__e"


def invalid_replay_id(replay_id: int) -> str:
    return (
        f"The replayId {{{replay_id}}} you provided was invalid.  Please provide a valid ID, "
        "-2 to replay all events, or -1 to replay only new events."
    )


# -- D4: a client built before asyncio.run() ---------------------------------------------------


def test_client_built_before_asyncio_run() -> None:
    """No event loop is captured in ``__init__``: build first, run later, even twice.

    aiosfstream took ``asyncio.get_event_loop()`` in the constructor and then failed with
    "attached to a different loop" inside ``asyncio.run()``. Here one authenticator and one
    replay storage also serve two clients in two successive ``asyncio.run()`` calls.
    """
    with Emulator(
        events=EVENTS, hold_time=HOLD_TIME, session_expiry=SESSION_EXPIRY
    ).in_thread() as org:
        credentials = credentials_of(org.emulator)
        markers: dict[str, ReplayMarker] = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client = SalesforceStreamingClient(**credentials, replay=markers)
            auth = PasswordAuthenticator(
                org.emulator.consumer_key,
                org.emulator.consumer_secret,
                org.emulator.username,
                org.emulator.password,
                login_url=org.login_url,
            )
            storage = MappingStorage(markers)
            clients = [Client(auth, replay=storage), Client(auth, replay=storage)]
        assert [str(w.message) for w in caught] == []

        async def main(client: Client, amount: int) -> Any:
            async with client:
                await client.subscribe(ORDER)
                await asyncio.to_thread(org.publish, ORDER, {"Amount__c": amount})
                [message] = await receive_n(client, 1)
            return message["data"]["payload"]["Amount__c"]

        assert asyncio.run(main(client, 1)) == 1
        assert asyncio.run(main(clients[0], 2)) == 2
        assert asyncio.run(main(clients[1], 3)) == 3
        assert markers[ORDER].replay_id == 3


# -- D1/D2: loop= ------------------------------------------------------------------------------


async def test_loop_argument_is_ignored_with_a_deprecation_warning(org: Emulator) -> None:
    other_loop = asyncio.new_event_loop()
    try:
        with pytest.warns(DeprecationWarning, match="loop") as record:
            client = SalesforceStreamingClient(**credentials_of(org), loop=other_loop)
        assert [w.filename for w in record] == [__file__]  # points at the caller
        with pytest.warns(DeprecationWarning, match="loop") as record:
            Client(
                PasswordAuthenticator(
                    org.consumer_key,
                    org.consumer_secret,
                    org.username,
                    org.password,
                    login_url=org.login_url,
                ),
                loop=other_loop,
            )
        assert [w.filename for w in record] == [__file__]

        # The running loop does the work; the other one never runs.
        async with client:
            await client.subscribe(ORDER)
            await org.publish(ORDER, {"Amount__c": 1})
            assert payload_values(await receive_n(client, 1)) == [1]
        assert not other_loop.is_running()
    finally:
        other_loop.close()


# -- D3: close() without CancelledError noise ---------------------------------------------------


async def test_close_logs_no_cancelled_error(caplog: pytest.LogCaptureFixture) -> None:
    """Closing while a connect is held (the normal case) logs nothing about cancellation.

    aiocometd logged "Exception in callback TransportBase._connect_done ... CancelledError"
    on every close. Every logger is captured at DEBUG, and the loop's exception handler too.
    """
    caplog.set_level(logging.DEBUG)
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))
    try:
        # A long hold: the connect is certainly waiting on the server when close() comes.
        async with Emulator(events=EVENTS, hold_time=5, session_expiry=SESSION_EXPIRY) as org:
            client = SalesforceStreamingClient(**credentials_of(org))
            await client.open()
            await client.subscribe(ORDER)
            await org.publish(ORDER, {"Amount__c": 1})
            await receive_n(client, 1)
            await wait_until(
                lambda: any(s["holding"] for s in org.sessions()), what="a held connect"
            )
            closing_started = time.monotonic()
            await client.close()
            assert time.monotonic() - closing_started < 1.0  # no wait for the hold to end

            # Leaving an async with block by an exception closes the same way.
            async def fail_while_held() -> None:
                async with SalesforceStreamingClient(**credentials_of(org)) as other:
                    await other.subscribe(ORDER)
                    await wait_until(
                        lambda: any(s["holding"] for s in org.sessions()), what="a held connect"
                    )
                    raise ZeroDivisionError

            with pytest.raises(ZeroDivisionError):
                await fail_while_held()
            await client.close()  # idempotent
        await asyncio.sleep(0.1)
        gc.collect()  # "Task was destroyed but it is pending" would show up now
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)

    assert contexts == []
    noise = [
        record
        for record in caplog.records
        if "CancelledError" in record.getMessage()
        or "CancelledError" in (record.exc_text or "")
        or (record.exc_info is not None and record.exc_info[0] is asyncio.CancelledError)
    ]
    assert noise == []
    client_side = [
        record
        for record in caplog.records
        if record.levelno >= logging.WARNING and not record.name.startswith("sfstream.emulator")
    ]
    assert client_side == []


async def test_cancelling_the_consumer_task_closes_the_client(org: Emulator) -> None:
    """The usual way a service stops: cancel the task that runs ``async with client``."""
    client = SalesforceStreamingClient(**credentials_of(org))

    async def consume() -> None:
        async with client:
            await client.subscribe(ORDER)
            async for _message in client:
                pass

    task = asyncio.create_task(consume())
    try:
        await wait_until(lambda: any(s["subscriptions"] for s in org.sessions()), what="subscribe")
        await org.publish(ORDER, {"Amount__c": 1})
        await wait_until(lambda: any(s["holding"] for s in org.sessions()), what="a held connect")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.closed
        # The session ended on the server at once (not by expiry, SESSION_EXPIRY later)...
        await asyncio.sleep(0.2)
        session_ended = org.session_count == 0
        # ...and the client's own HTTP session is closed (white box: nothing public shows it
        # but the ResourceWarning that aiohttp emits when the leaked session is collected).
        bayeux = client._bayeux
        assert bayeux is not None
        transport = bayeux._transport
        assert isinstance(transport, LongPollingTransport)
        http_closed = transport._session is None or transport._session.closed
        assert (session_ended, http_closed) == (True, True)
    finally:
        # Do not let a leaked session warn in another test.
        if client._bayeux is not None and client._bayeux._transport is not None:
            await client._bayeux._transport.close()


# -- D5/D6: rejected automatic resubscriptions ---------------------------------------------------


async def expire_received_events(org: Emulator) -> None:
    """Age the org past the retention of platform events (72 h): everything is purged."""
    assert org.advance_clock(3 * DAY + 60) >= 1


async def test_rejected_resubscription_falls_back_per_channel(
    org: Emulator,
    client_factory: ClientFactory,
    statuses: StatusRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The session is lost, the resubscription's replay id has expired: the fallback applies.

    aiosfstream lost the subscription silently (the stream went quiet) even with
    ``replay_fallback``. Here the fallback is used for the refused channel only: the other
    channel resumes from its last event, with no duplicate.
    """
    caplog.set_level(logging.WARNING)
    client = client_factory(on_status=statuses, replay_fallback=ReplayOption.ALL_EVENTS)
    async with client:
        await client.subscribe(ORDER)
        await client.subscribe(SHIPMENT)
        await org.publish(ORDER, {"Amount__c": 1})
        [old_order] = await receive_n(client, 1)

        await expire_received_events(org)  # the client's last Order__e id is now invalid
        await org.publish(SHIPMENT, {"Amount__c": 10})
        [shipment] = await receive_n(client, 1)  # its last Shipment__e id stays valid

        org.expire_sessions()
        # Published before the client can handshake again: only ALL_EVENTS brings it back.
        await org.publish(ORDER, {"Amount__c": 2})

        [fallback] = await statuses.wait_for(StatusKind.REPLAY_FALLBACK)
        assert (fallback.channel, fallback.detail) == (ORDER, "ALL_EVENTS")
        await org.publish(ORDER, {"Amount__c": 3})
        await org.publish(SHIPMENT, {"Amount__c": 11})
        received = await receive_n(client, 3)
        await assert_silent(client, 0.3)

        assert client.subscriptions == {ORDER, SHIPMENT}
        assert client.stats[StatusKind.REPLAY_FALLBACK] == 1
    by_channel = {
        channel: payload_values([m for m in received if m["channel"] == channel])
        for channel in (ORDER, SHIPMENT)
    }
    assert by_channel == {ORDER: [2, 3], SHIPMENT: [11]}
    assert replay_ids([shipment]) == [1]
    assert replay_ids([old_order]) == [1]
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert ORDER in warning.getMessage()
    assert invalid_replay_id(1) in warning.getMessage()


async def test_rejected_resubscription_without_fallback_is_raised_by_receive(
    org: Emulator,
    client_factory: ClientFactory,
    statuses: StatusRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with client_factory(on_status=statuses) as client:
        await client.subscribe(ORDER)
        await client.subscribe(SHIPMENT)
        await org.publish(ORDER, {"Amount__c": 1})
        await receive_n(client, 1)
        await expire_received_events(org)
        org.expire_sessions()

        with pytest.raises(ServerError) as refused:
            async with asyncio.timeout(WAIT):
                await client.receive()
        assert refused.value.error_message == invalid_replay_id(1)
        assert client.subscriptions == {SHIPMENT}  # not silently "subscribed"

        [failed] = statuses.of(StatusKind.RESUBSCRIBE_FAILED)
        assert failed.channel == ORDER
        assert invalid_replay_id(1) in failed.detail
        [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert ORDER in warning.getMessage()

        # The client goes on with the channel that was accepted.
        await org.publish(SHIPMENT, {"Amount__c": 5})
        assert payload_values(await receive_n(client, 1)) == [5]


# -- D7: 403::Unknown client costs no token request ---------------------------------------------


async def test_unknown_client_costs_no_token_request(
    org: Emulator,
    org_requests: RequestLog,
    client_factory: ClientFactory,
    statuses: StatusRecorder,
) -> None:
    async with client_factory(on_status=statuses) as client:
        await client.subscribe(ORDER)
        assert org_requests.token_requests == 1

        org.expire_sessions()  # 403::Unknown client, advice handshake
        await statuses.wait_for(StatusKind.RECONNECTED, count=1)
        org.unknown_client(reconnect="none")  # as seen in the wild
        await statuses.wait_for(StatusKind.RECONNECTED, count=2)
        await org.publish(ORDER, {"Amount__c": 1})
        assert payload_values(await receive_n(client, 1)) == [1]
        assert org_requests.token_requests == 1
        assert client.stats[StatusKind.REAUTHENTICATED] == 0

        # Only a refused token costs one: 401::Authentication invalid.
        org.revoke_tokens("access")
        await statuses.wait_for(StatusKind.REAUTHENTICATED)
        await org.publish(ORDER, {"Amount__c": 2})
        assert payload_values(await receive_n(client, 1)) == [2]
        assert org_requests.token_requests == 2


# -- D8: no hot loop on a failing server --------------------------------------------------------


async def test_failing_server_without_advice_is_retried_with_jittered_backoff(
    org: Emulator, credentials: dict[str, Any]
) -> None:
    """Connects refused without advice: exponential, jittered delays, not a hot loop.

    aiosfstream retried at once: ~5,800 requests in 2 s. With sfstream's default backoff
    (0.5 s doubling, jitter up to half of each delay) the k-th retry waits between
    ``0.25 * 2**(k-1)`` and ``0.5 * 2**(k-1)`` seconds: in 1.65 s a client tries 3 times.
    Three clients show the jitter: their retries do not happen in lockstep.
    """
    traced = [TracedSession() for _ in range(3)]
    watchers = [StatusRecorder() for _ in traced]
    clients = [
        SalesforceStreamingClient(**credentials, session=t.session, on_status=w)
        for t, w in zip(traced, watchers, strict=True)
    ]
    try:
        for client in clients:
            await client.open()
            await client.subscribe(ORDER)
        # Every connect held: they passed the server's checks, so the first connect to fail is
        # the one each client sends after the fault is armed (arming returns the held ones).
        await wait_until(
            lambda: [s["holding"] for s in org.sessions()] == [True] * len(clients),
            what="held connects",
        )
        start = time.monotonic()
        org.fail_next("500::Internal Server Error", count=None, channel="/meta/connect")
        # Attempts at 0, (0.25, 0.5] and (0.75, 1.5]; the 4th comes after 1.75 s.
        await asyncio.sleep(1.65)
        org.clear_faults()
        attempts = [[t for t in session.times("/cometd/") if t >= start] for session in traced]

        gaps = []
        for times in attempts:
            assert len(times) == 3, times  # not thousands
            steps = [b - a for a, b in itertools.pairwise(times)]
            for k, step in enumerate(steps, 1):
                longest = 0.5 * 2 ** (k - 1)
                assert longest / 2 - 0.02 <= step <= longest + 0.1, (k, steps)
            gaps.append(steps)
        # Jitter: no two clients retry in lockstep (each gap equal within 5 ms).
        in_lockstep = [
            all(abs(a - b) < 0.005 for a, b in zip(first, second, strict=True))
            for first, second in itertools.combinations(gaps, 2)
        ]
        assert not all(in_lockstep), gaps

        # They keep trying, and recover once the server does.
        for watcher in watchers:
            await watcher.wait_for(StatusKind.RECONNECTED, timeout=6)
        await org.publish(ORDER, {"Amount__c": 1})
        for client in clients:
            assert payload_values(await receive_n(client, 1)) == [1]
    finally:
        for client in clients:
            await client.close()
        for session in traced:
            await session.close()


async def test_http_errors_are_retried_with_backoff_and_lose_nothing(
    org: Emulator,
    org_requests: RequestLog,
    client_factory: ClientFactory,
    statuses: StatusRecorder,
) -> None:
    async with client_factory(on_status=statuses) as client:
        await client.subscribe(ORDER)
        start = time.monotonic()
        org.http_error(500, count=None)
        await statuses.wait_for(StatusKind.CONNECTION_LOST)
        await org.publish(ORDER, {"Amount__c": 1})  # while every request fails
        await asyncio.sleep(2.0)
        failed = org_requests.matching("/cometd/", since=start)
        assert 2 <= len(failed) <= 6, failed
        assert {request.status for request in failed} == {500}
        org.clear_faults()

        await statuses.wait_for(StatusKind.RECONNECTED, timeout=6)
        await org.publish(ORDER, {"Amount__c": 2})
        assert payload_values(await receive_n(client, 2)) == [1, 2]


# -- D11: HTTP status codes ---------------------------------------------------------------------


async def test_http_status_codes_are_checked(
    org: Emulator,
    client_factory: ClientFactory,
    statuses: StatusRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 502 from a proxy is reported as such (not as bad JSON) and recovered from."""
    caplog.set_level(logging.INFO, logger="sfstream")
    async with client_factory(on_status=statuses) as client:
        await client.subscribe(ORDER)
        org.http_error(502)
        [lost] = await statuses.wait_for(StatusKind.CONNECTION_LOST)
        assert "HTTP 502" in lost.detail
        await statuses.wait_for(StatusKind.RECONNECTED)
        await org.publish(ORDER, {"Amount__c": 1})
        assert payload_values(await receive_n(client, 1)) == [1]
    assert any(
        "HTTP 502" in record.getMessage()
        for record in caplog.records
        if record.name.startswith("sfstream.bayeux")
    )

    # The token endpoint's status is checked as well, and kept on the error.
    org.http_error(503, target="token")
    with pytest.raises(AuthenticationError) as refused:
        await client_factory().open()
    assert refused.value.status == 503
    assert "503" in str(refused.value)


async def test_advice_interval_is_in_milliseconds(
    org: Emulator, client_factory: ClientFactory, statuses: StatusRecorder
) -> None:
    """``interval: 1500`` means the next connect 1.5 s later (aiocometd waited 1500 s)."""
    async with client_factory(on_status=statuses) as client:
        await client.subscribe(ORDER)
        await wait_until(lambda: any(s["holding"] for s in org.sessions()), what="a held connect")
        org.fail_next(
            "503::Server is too busy. Please try your request again later.",
            advice={"reconnect": "retry", "interval": 1500},
        )
        await statuses.wait_for(StatusKind.CONNECTION_LOST)
        refused = time.monotonic()
        await org.publish(ORDER, {"Amount__c": 1})
        assert payload_values(await receive_n(client, 1, timeout=4.0)) == [1]
        waited = time.monotonic() - refused
        # Not at once (the default backoff alone would retry within 0.5 s), not 1500 s.
        assert 1.4 <= waited <= 2.5, waited


# -- D9: a message whose replay marker cannot be extracted ---------------------------------------


def publish_without_date(org: Emulator, amount: int) -> None:
    """A platform event in a shape the marker extractor does not know: no creation date.

    (As Change Data Capture events were for aiosfstream before 0.5.0, aiosfstream #5.)
    """
    org.state.events.append(
        ORDER,
        org.clock.time(),
        {"schema": "unknown-shape", "payload": {"Amount__c": amount}, "event": {}},
    )


async def test_message_without_replay_marker_is_still_delivered(
    org: Emulator,
    client_factory: ClientFactory,
    statuses: StatusRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """AUTOMATIC policy with a MutableMapping: the message comes out, the problem is reported.

    aiosfstream raised ReplayError from ``receive()`` after dequeuing the message: the
    message was lost and the ``async for`` loop ended.
    """
    caplog.set_level(logging.WARNING)
    markers: dict[str, ReplayMarker] = {}
    async with client_factory(replay=markers, on_status=statuses) as client:
        await client.subscribe(ORDER)
        publish_without_date(org, 1)
        await org.publish(ORDER, {"Amount__c": 2})

        received = []
        async with asyncio.timeout(WAIT):
            async for message in client:
                received.append(message)
                if len(received) == 2:
                    break
    assert payload_values(received) == [1, 2]
    assert markers[ORDER].replay_id == 2  # the next event's marker was stored
    [missing] = statuses.of(StatusKind.REPLAY_MARKER_MISSING)
    assert missing.channel == ORDER
    assert "date" in missing.detail
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert ORDER in warning.getMessage()
    assert "date" in warning.getMessage()


async def test_manual_extraction_of_a_message_without_replay_marker_raises_replay_error(
    org: Emulator, client_factory: ClientFactory
) -> None:
    """With MANUAL, the user asked for the marker: ReplayError says what is missing."""
    markers: dict[str, ReplayMarker] = {}
    async with client_factory(
        replay=markers, replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL
    ) as client:
        await client.subscribe(ORDER)
        publish_without_date(org, 1)
        [message] = await receive_n(client, 1)
        assert client.replay_storage is not None
        with pytest.raises(ReplayError, match="date"):
            await client.replay_storage.extract_replay_id(message)
    assert markers == {}


class FailingStorage(ReplayMarkerStorage):
    """A storage whose database is down for writes (reads work)."""

    def __init__(self) -> None:
        self.fail = True
        self.markers: dict[str, ReplayMarker] = {}

    async def get_replay_marker(self, subscription: str) -> ReplayMarker | None:
        return self.markers.get(subscription)

    async def set_replay_marker(self, subscription: str, replay_marker: ReplayMarker) -> None:
        if self.fail:
            raise OSError("the replay database is unavailable")
        self.markers[subscription] = replay_marker


async def test_replay_storage_failure_does_not_eat_the_message(
    org: Emulator, client_factory: ClientFactory
) -> None:
    """The message whose marker could not be stored is returned; the error comes next."""
    storage = FailingStorage()
    async with client_factory(replay=storage) as client:
        await client.subscribe(ORDER)
        await org.publish(ORDER, {"Amount__c": 1})
        assert payload_values(await receive_n(client, 1)) == [1]
        with pytest.raises(ReplayError) as failed:
            await client.receive()
        assert isinstance(failed.value.__cause__, OSError)

        storage.fail = False
        await org.publish(ORDER, {"Amount__c": 2})
        assert payload_values(await receive_n(client, 1)) == [2]
    assert storage.markers[ORDER].replay_id == 2


# -- D12: the user's aiohttp session --------------------------------------------------------------


async def test_session_is_the_users_and_stays_open(
    org: Emulator, client_factory: ClientFactory
) -> None:
    """``session=`` carries every request (token and CometD); the client never closes it."""
    traced = TracedSession(headers={"X-Corporate-Proxy-Tag": "sfstream-test"})
    try:
        async with client_factory(session=traced.session) as client:
            await client.subscribe(ORDER)
            await org.publish(ORDER, {"Amount__c": 1})
            assert payload_values(await receive_n(client, 1)) == [1]
        urls = [url for _at, _method, url in traced.started]
        assert f"{org.login_url}/services/oauth2/token" in urls
        assert any(url.startswith(org.cometd_url("")) for url in urls)
        assert all(url.startswith(org.base_url) for url in urls)

        # Closed client, open session: still usable by its owner.
        assert client.closed
        assert not traced.session.closed
        async with traced.session.get(f"{org.base_url}/services/data/") as response:
            assert response.status == 200
    finally:
        await traced.close()


# -- D12: a documented way to watch the connection ---------------------------------------------


async def test_status_reports_handshake_reconnect_reauthentication_and_close(
    org: Emulator, client_factory: ClientFactory, statuses: StatusRecorder
) -> None:
    async with client_factory(on_status=statuses) as client:
        assert statuses.kinds == [StatusKind.CONNECTED]
        await client.subscribe(ORDER)

        org.expire_sessions()
        await statuses.wait_for(StatusKind.RECONNECTED)
        assert StatusKind.SESSION_LOST in statuses.kinds

        org.revoke_tokens("access")
        await statuses.wait_for(StatusKind.REAUTHENTICATED)
        await statuses.wait_for(StatusKind.RECONNECTED, count=2)

        await org.publish(ORDER, {"Amount__c": 1})
        assert payload_values(await receive_n(client, 1)) == [1]
    kinds = statuses.kinds
    assert kinds[0] is StatusKind.CONNECTED
    assert kinds[-1] is StatusKind.CLOSED
    lost = kinds.index(StatusKind.SESSION_LOST)
    reauthenticated = kinds.index(StatusKind.REAUTHENTICATED)
    assert lost < kinds.index(StatusKind.RECONNECTED) < reauthenticated
    assert StatusKind.RECONNECTED in kinds[reauthenticated:]
    assert StatusKind.STOPPED not in kinds
    # The same counts are kept on the client.
    assert client.stats[StatusKind.REAUTHENTICATED] == 1
    assert client.stats[StatusKind.RECONNECTED] == kinds.count(StatusKind.RECONNECTED)


async def test_status_reports_backpressure(
    org: Emulator, client_factory: ClientFactory, statuses: StatusRecorder
) -> None:
    async with client_factory(on_status=statuses, max_pending_count=2) as client:
        await client.subscribe(ORDER)
        await org.publish(ORDER, {"Amount__c": 1})
        await org.publish(ORDER, {"Amount__c": 2})
        [paused] = await statuses.wait_for(StatusKind.PAUSED)
        assert "2" in paused.detail
        assert StatusKind.RESUMED not in statuses.kinds
        await org.publish(ORDER, {"Amount__c": 3})

        received = await receive_n(client, 3)
        await statuses.wait_for(StatusKind.RESUMED)
    assert payload_values(received) == [1, 2, 3]
    assert statuses.kinds.index(StatusKind.PAUSED) < statuses.kinds.index(StatusKind.RESUMED)


async def test_status_reports_replay_fallback_on_subscribe(
    org: Emulator, client_factory: ClientFactory, statuses: StatusRecorder
) -> None:
    """The explicit subscribe's fallback is reported too, with its channel."""
    markers: dict[str, ReplayMarker] = {}
    async with client_factory(replay=markers) as client:
        await client.subscribe(ORDER)
        await org.publish(ORDER, {"Amount__c": 1})
        await receive_n(client, 1)
    await expire_received_events(org)

    async with client_factory(
        replay=markers, replay_fallback=ReplayOption.NEW_EVENTS, on_status=statuses
    ) as client:
        await client.subscribe(ORDER)
        [fallback] = statuses.of(StatusKind.REPLAY_FALLBACK)
        assert (fallback.channel, fallback.detail) == (ORDER, "NEW_EVENTS")
        await org.publish(ORDER, {"Amount__c": 2})
        assert payload_values(await receive_n(client, 1)) == [2]
