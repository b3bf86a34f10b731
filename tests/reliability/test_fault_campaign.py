"""The Salesforce client through the fault proxy, against the emulator's faults and restarts.

Property of every test: each event published on a durable channel is delivered, once, in
replay-id order per channel (one client lifetime: no duplicate is allowed), and the client
never stops silently.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from sfstream import StatusKind
from sfstream.bayeux import Message
from sfstream.exceptions import TransportTimeoutError

from ._campaign import CampaignConfig, run_campaign
from ._harness import CDC, CHANNELS, EVENT, TOPIC, ProxiedOrg, StatusLog, Tally
from ._proxy import FaultKind

Fault = Callable[[ProxiedOrg], object]


async def receive(client: object, timeout: float = 8.0) -> Message:
    async with asyncio.timeout(timeout):
        message: Message = await client.receive()  # type: ignore[attr-defined]
        return message


async def publish_round(org: ProxiedOrg, tally: Tally, first: int, count: int) -> None:
    for n in range(first, first + count):
        for channel in CHANNELS:
            tally.record_published(channel, org.publish(channel, n))
        await asyncio.sleep(0.005)


async def drain(client: object, tally: Tally, timeout: float = 10.0) -> None:
    """Receive until every published event arrived (fails the test after ``timeout``)."""
    try:
        async with asyncio.timeout(timeout):
            while tally.outstanding():
                tally.record_delivered(await client.receive())  # type: ignore[attr-defined]
    except TimeoutError:
        pytest.fail(f"still missing after {timeout} s: {tally.lost()}")


def assert_exactly_once_in_order(tally: Tally) -> None:
    assert tally.lost() == {}
    assert tally.duplicated() == 0
    assert tally.out_of_order() == 0
    assert tally.unexpected() == {}
    for channel in CHANNELS:
        assert tally.delivered[channel] == tally.published[channel]


def outage(org: ProxiedOrg, seconds: float) -> None:
    """The network goes down (open connections too) and comes back ``seconds`` later."""
    org.proxy.offline = True
    org.proxy.reset_connections()
    asyncio.get_running_loop().call_later(seconds, setattr, org.proxy, "offline", False)


CONNECT = b"/meta/connect"
HANDSHAKE = b"/meta/handshake"
SUBSCRIBE = b"/meta/subscribe"

PROXY_FAULTS: dict[str, Fault] = {
    "reset mid-request of a connect": lambda org: org.proxy.arm(
        FaultKind.RESET_REQUEST, contains=CONNECT
    ),
    "reset mid-response of a connect with events": lambda org: org.proxy.arm(
        FaultKind.RESET_RESPONSE, contains=CONNECT
    ),
    "truncated connect reply": lambda org: org.proxy.arm(FaultKind.TRUNCATE, contains=CONNECT),
    "stall of a connect": lambda org: org.proxy.arm(FaultKind.STALL, contains=CONNECT, seconds=1),
    "stall, then reset": lambda org: org.proxy.arm(
        FaultKind.STALL_RESET, contains=CONNECT, seconds=0.5
    ),
    "slow drip of a connect reply": lambda org: org.proxy.arm(
        FaultKind.DRIP, contains=CONNECT, drip_bytes=1, drip_delay=0.001, seconds=0.5
    ),
    "new connections reset": lambda org: org.proxy.arm(FaultKind.REFUSE, count=3),
    "three connect replies lost in a row": lambda org: org.proxy.arm(
        FaultKind.RESET_RESPONSE, contains=CONNECT, count=3
    ),
    "the handshake after a session expiry reset": lambda org: (
        org.proxy.arm(FaultKind.RESET_RESPONSE, contains=HANDSHAKE),
        org.emulator.expire_sessions(),
    ),
    "the resubscription after a session expiry reset": lambda org: (
        org.proxy.arm(FaultKind.RESET_RESPONSE, contains=SUBSCRIBE),
        org.emulator.expire_sessions(),
    ),
    "the resubscription truncated after a server disconnect": lambda org: (
        org.proxy.arm(FaultKind.TRUNCATE, contains=SUBSCRIBE),
        org.emulator.push_disconnect(),
    ),
    "reset mid-response + token revocation": lambda org: (
        org.proxy.arm(FaultKind.RESET_RESPONSE, contains=CONNECT),
        org.emulator.revoke_tokens("access"),
    ),
    "truncated reply + 503 behind a 401": lambda org: (
        org.proxy.arm(FaultKind.TRUNCATE, contains=CONNECT),
        org.emulator.server_busy(),
    ),
    "slow drip + unknown client": lambda org: (
        org.proxy.arm(FaultKind.DRIP, contains=CONNECT, drip_bytes=4, seconds=0.3),
        org.emulator.unknown_client(),
    ),
    "network outage of a second": lambda org: outage(org, 1.0),
}


@pytest.mark.parametrize("fault", list(PROXY_FAULTS), ids=list(PROXY_FAULTS))
async def test_each_network_fault_loses_and_duplicates_nothing(
    org: ProxiedOrg, tally: Tally, status_log: StatusLog, fault: str
) -> None:
    async with org.client(on_status=status_log) as client:
        for channel in CHANNELS:
            await client.subscribe(channel)
        await publish_round(org, tally, 0, 5)
        await drain(client, tally)
        PROXY_FAULTS[fault](org)
        await publish_round(org, tally, 5, 10)
        await drain(client, tally)
        await asyncio.sleep(0.3)
        assert not client.has_pending_messages
    assert_exactly_once_in_order(tally)
    assert status_log.count(StatusKind.STOPPED) == 0
    assert not org.proxy.armed or fault == "new connections reset", "the fault never fired"


async def test_restart_while_events_are_published(
    org: ProxiedOrg, tally: Tally, status_log: StatusLog
) -> None:
    """The org's event log survives a restart; events published while the emulator is down
    (or while the client is reconnecting) arrive after it, once, in order."""
    async with org.client(on_status=status_log) as client:
        for channel in CHANNELS:
            await client.subscribe(channel)
        await publish_round(org, tally, 0, 5)
        await drain(client, tally)
        restart = asyncio.create_task(org.restart(down=0.5))
        await publish_round(org, tally, 5, 20)  # partly while it is down
        await restart
        await publish_round(org, tally, 25, 5)
        await drain(client, tally)
    assert_exactly_once_in_order(tally)
    assert status_log.count(StatusKind.RECONNECTED) >= 1
    assert org.restarts == 1


async def test_restart_with_a_lost_connect_reply_and_a_revoked_token(
    org: ProxiedOrg, tally: Tally
) -> None:
    async with org.client() as client:
        for channel in CHANNELS:
            await client.subscribe(channel)
        org.proxy.arm(FaultKind.RESET_RESPONSE, contains=CONNECT)
        await publish_round(org, tally, 0, 5)
        await org.restart(down=0.2)
        org.emulator.revoke_tokens("access")
        await publish_round(org, tally, 5, 5)
        await drain(client, tally)
        assert client.auth.generation == 2
    assert_exactly_once_in_order(tally)


async def test_three_restarts_in_a_row(org: ProxiedOrg, tally: Tally) -> None:
    async with org.client() as client:
        for channel in CHANNELS:
            await client.subscribe(channel)
        for round_ in range(3):
            await publish_round(org, tally, round_ * 4, 2)
            await org.restart(down=0.1)
            await publish_round(org, tally, round_ * 4 + 2, 2)
        await drain(client, tally)
    assert_exactly_once_in_order(tally)


async def test_a_short_campaign_holds_the_property() -> None:
    report = await run_campaign(CampaignConfig(events=450, faults=20, restarts=2, settle=20))
    print(report.render())
    assert report.problems() == []
    assert report.tally.published_count == 450
    assert sum(report.injected.values()) == 20
    assert report.injected["emulator restart"] == 2
    assert report.recoveries >= 5


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_the_ci_chaos_run_holds_the_property() -> None:
    report = await run_campaign(CampaignConfig())
    print(report.render())
    assert report.problems() == []


# -- never stop silently -----------------------------------------------------------------------


async def test_an_org_gone_for_good_raises_within_connection_timeout(org: ProxiedOrg) -> None:
    async with org.client(connection_timeout=1.5) as client:
        await client.subscribe(EVENT)
        await org.emulator.stop()
        org.proxy.upstream = None
        org.proxy.reset_connections()
        started = time.monotonic()
        with pytest.raises(TransportTimeoutError):
            await receive(client, timeout=10)
        elapsed = time.monotonic() - started
        assert elapsed < 1.5 + 1.0, elapsed
        # it keeps raising, every connection_timeout, and keeps trying in the background
        with pytest.raises(TransportTimeoutError):
            await receive(client, timeout=10)
        await org.emulator.start()  # the same emulator object: a restart on a new port
        org.proxy.upstream = ("127.0.0.1", org.emulator.port)
        org.emulator.set_base_url(org.proxy.url)
        tally = Tally()
        tally.record_published(EVENT, org.publish(EVENT, 1))
        await drain(client, tally)


async def test_a_network_outage_raises_then_recovers(org: ProxiedOrg, tally: Tally) -> None:
    async with org.client(connection_timeout=1.0) as client:
        for channel in (EVENT, CDC, TOPIC):
            await client.subscribe(channel)
        org.proxy.offline = True
        org.proxy.reset_connections()
        await publish_round(org, tally, 0, 3)  # published during the outage
        started = time.monotonic()
        with pytest.raises(TransportTimeoutError):
            await receive(client, timeout=10)
        assert time.monotonic() - started < 2.0
        org.proxy.offline = False
        await drain(client, tally)
    assert_exactly_once_in_order(tally)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_blackholed_connect_is_noticed_within_hold_plus_poll_margin(
    org: ProxiedOrg, tally: Tally
) -> None:
    """A half-open connection (no reset, no reply): the client cannot tell it from a held
    connect until the connect's timeout (advice.timeout + a 15 s margin) runs out. Until then
    receive() is silent, longer than connection_timeout: on Salesforce (advice.timeout 110 s)
    a dead network is noticed after about 125 s. Then the client reconnects at once."""
    async with org.client(connection_timeout=2.0) as client:
        await client.subscribe(EVENT)
        await asyncio.sleep(0.5)
        org.proxy.arm(FaultKind.BLACKHOLE, contains=CONNECT)  # the next connect vanishes
        await asyncio.sleep(0.5)
        assert org.proxy.fired[FaultKind.BLACKHOLE] == 1
        tally.record_published(EVENT, org.publish(EVENT, 1))
        started = time.monotonic()
        await drain(client, tally, timeout=40)
        elapsed = time.monotonic() - started
        assert 10 < elapsed < 0.2 + 15 + 2.0, elapsed


async def test_a_transient_token_endpoint_failure_during_reauthentication_is_retried(
    org: ProxiedOrg, tally: Tally
) -> None:
    async with org.client() as client:
        await client.subscribe(EVENT)
        org.proxy.arm(FaultKind.RESET_REQUEST, path="/services/oauth2/token")
        org.emulator.revoke_tokens("access")
        tally.record_published(EVENT, org.publish(EVENT, 1))
        await drain(client, tally)
