"""A fault campaign: one client, three durable channels, a stream of events and of faults.

:func:`run_campaign` publishes events on a platform event, a Change Data Capture and a PushTopic
channel while an injector fires faults at the client from every side: the TCP fault proxy
(resets mid-request and mid-response, truncated bodies, stalls, slow drip, refused connections,
network outages), the emulator's Bayeux and HTTP faults (session expiry, both advices of
``403::Unknown client``, 401s and token revocation, a 503 behind a 401, daily and connection
limits, a server ``/meta/disconnect``, HTTP 500/502/401, invalid JSON, dropped connections,
slow responses, a refused resubscription) and emulator restarts (the event log survives).

The property checked for every run, within the client's one lifetime: every published event is
delivered (lost = 0), once (duplicated = 0: the design allows duplicates only across client
restarts with the MANUAL policy), in replay-id order per channel; and the client never stops
silently: each ``receive()`` returns an event or raises the documented
:class:`~sfstream.exceptions.TransportTimeoutError` within ``connection_timeout`` (plus a small
slack) while events are outstanding, and the client never stops.

Authentication faults are injected only while the client is connected and no other fault is
armed: two 401s without a working session in between stop the client by design (a fresh token
refused again is an AuthenticationError). Proxy faults only hit the CometD endpoint; what a
failed token request during re-authentication does is covered by its own test.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sfstream import StatusKind
from sfstream.bayeux import ExponentialBackoff
from sfstream.emulator import Fault
from sfstream.exceptions import SfstreamError, TransportTimeoutError

from ._harness import CHANNELS, ProxiedOrg, StatusLog, Tally, format_counts
from ._proxy import FaultKind, ProxyFault

__all__ = [
    "FAULTS",
    "CampaignConfig",
    "CampaignReport",
    "ScenarioReport",
    "run_campaign",
    "run_loss_scenarios",
]


@dataclass(frozen=True)
class CampaignConfig:
    """What a campaign does. The defaults are the CI-sized run of ``chaos.py``."""

    events: int = 3000
    faults: int = 120
    restarts: int = 5
    seed: int = 20260601
    hold_time: float = 0.2
    session_expiry: float = 1.0
    max_batch: int = 10_000
    connection_timeout: float = 5.0
    #: Seconds between two faults (uniform in this range).
    fault_gap: tuple[float, float] = (0.15, 0.6)
    #: Extra seconds allowed on top of connection_timeout before a silent receive() counts.
    silence_slack: float = 3.0
    #: Seconds allowed after the last event is published for everything to arrive.
    settle: float = 30.0
    max_pending_count: int = 1000


@dataclass
class CampaignReport:
    config: CampaignConfig
    tally: Tally
    injected: Counter[str] = field(default_factory=Counter)
    fired: Counter[str] = field(default_factory=Counter)
    recoveries: int = 0
    sessions_lost: int = 0
    reauthentications: int = 0
    longest_recovery: float = 0.0
    median_recovery: float = 0.0
    p95_recovery: float = 0.0
    timeouts_raised: int = 0
    #: Other documented errors receive() raised while the client went on (e.g. a refused
    #: resubscription); each is a problem of the run.
    errors_raised: list[str] = field(default_factory=list)
    silent_stalls: list[str] = field(default_factory=list)
    stopped: str | None = None
    duration: float = 0.0
    exchanges: int = 0

    @property
    def lost(self) -> int:
        return sum(map(len, self.tally.lost().values()))

    @property
    def ok(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        tally = self.tally
        problems = []
        if self.lost:
            problems.append(f"lost events: {tally.lost()}")
        if tally.duplicated():
            problems.append(f"{tally.duplicated()} duplicated deliveries")
        if tally.out_of_order():
            problems.append(f"{tally.out_of_order()} deliveries out of replay-id order")
        if tally.unexpected():
            problems.append(f"deliveries never published: {tally.unexpected()}")
        if self.silent_stalls:
            problems.append(f"receive() silent too long: {self.silent_stalls}")
        if self.errors_raised:
            problems.append(f"receive() raised: {self.errors_raised}")
        if self.stopped is not None:
            problems.append(f"the client stopped: {self.stopped}")
        return problems

    def render(self) -> str:
        tally = self.tally
        per_channel = {channel: len(ids) for channel, ids in sorted(tally.published.items())}
        lines = [
            f"chaos run (seed {self.config.seed}) in {self.duration:.1f} s",
            f"  events published      {tally.published_count:>8}",
            *(f"    {channel:<26}{count:>6}" for channel, count in per_channel.items()),
            f"  events delivered      {tally.delivered_count:>8}",
            f"  lost                  {self.lost:>8}",
            f"  duplicated            {tally.duplicated():>8}",
            f"  out of order          {tally.out_of_order():>8}",
            f"  faults injected       {sum(self.injected.values()):>8}",
            format_counts(self.injected),
            f"  faults fired          {sum(self.fired.values()):>8}",
            f"  recoveries            {self.recoveries:>8}",
            f"  sessions lost         {self.sessions_lost:>8}",
            f"  re-authentications    {self.reauthentications:>8}",
            f"  recovery time median  {self.median_recovery:>8.2f} s",
            f"  recovery time p95     {self.p95_recovery:>8.2f} s",
            f"  longest recovery      {self.longest_recovery:>8.2f} s",
            f"  TransportTimeoutError {self.timeouts_raised:>8}",
            f"  other errors raised   {len(self.errors_raised):>8}",
            f"  HTTP exchanges        {self.exchanges:>8}",
            f"  verdict               {'OK' if self.ok else 'FAILED'}",
        ]
        lines += [f"  problem: {problem}" for problem in self.problems()]
        return "\n".join(lines)


# -- the fault catalogue ---------------------------------------------------------------------

Armed = list[Fault | ProxyFault]
Injector = Callable[["_Run"], Any]


def _proxy(kind: FaultKind, **options: Any) -> Injector:
    def arm(run: _Run) -> Any:
        options.setdefault("path", "/cometd")
        return run.org.proxy.arm(kind, **options)

    return arm


def _stall(kind: FaultKind, low: float, high: float) -> Injector:
    def arm(run: _Run) -> Any:
        seconds = run.rng.uniform(low, high)
        return run.org.proxy.arm(kind, path="/cometd", seconds=seconds)

    return arm


def _drip(run: _Run) -> Any:
    return run.org.proxy.arm(
        FaultKind.DRIP,
        path="/cometd",
        contains=b"/meta/connect",
        drip_bytes=run.rng.choice((1, 8, 64)),
        drip_delay=run.rng.uniform(0.001, 0.004),
        seconds=run.rng.uniform(0.2, 2.0),
    )


async def _outage(run: _Run) -> None:
    proxy = run.org.proxy
    proxy.offline = True
    proxy.reset_connections()  # the network goes down for open connections too
    await asyncio.sleep(run.rng.uniform(0.2, 1.5))
    proxy.offline = False


async def _restart(run: _Run) -> None:
    await run.org.restart(down=run.rng.uniform(0.1, 1.0))


def _emulator(call: Callable[[ProxiedOrg], Any]) -> Injector:
    return lambda run: call(run.org)


#: name -> (injector, weight, is an authentication fault)
FAULTS: dict[str, tuple[Injector, int, bool]] = {
    # the network, through the proxy (CometD only)
    "proxy: reset mid-request": (_proxy(FaultKind.RESET_REQUEST), 3, False),
    "proxy: reset mid-response (connect)": (
        _proxy(FaultKind.RESET_RESPONSE, contains=b"/meta/connect"),
        6,
        False,
    ),
    "proxy: reset mid-response (any)": (_proxy(FaultKind.RESET_RESPONSE), 3, False),
    "proxy: truncated body": (_proxy(FaultKind.TRUNCATE, contains=b"/meta/connect"), 4, False),
    "proxy: stall": (_stall(FaultKind.STALL, 0.2, 2.0), 3, False),
    "proxy: stall, then reset": (_stall(FaultKind.STALL_RESET, 0.2, 1.5), 3, False),
    "proxy: slow drip": (_drip, 3, False),
    "proxy: reset on connect": (_proxy(FaultKind.REFUSE, path=None), 2, False),
    "network outage": (_outage, 2, False),
    # the org's Bayeux and HTTP faults
    "session expiry": (_emulator(lambda org: org.emulator.expire_sessions()), 3, False),
    "unknown client, advice handshake": (
        _emulator(lambda org: org.emulator.unknown_client()),
        3,
        False,
    ),
    "unknown client, advice none": (
        _emulator(lambda org: org.emulator.unknown_client(reconnect="none")),
        2,
        False,
    ),
    "server /meta/disconnect": (_emulator(lambda org: org.emulator.push_disconnect()), 2, False),
    "503 behind a 401": (_emulator(lambda org: org.emulator.server_busy()), 2, False),
    "daily limit": (_emulator(lambda org: org.emulator.daily_limit_exceeded()), 1, False),
    "connection limit on the new handshake": (
        _emulator(lambda org: (org.emulator.expire_sessions(), org.emulator.connection_limit())),
        1,
        False,
    ),
    "concurrent user limit on the new handshake": (
        _emulator(
            lambda org: (org.emulator.expire_sessions(), org.emulator.concurrent_user_limit())
        ),
        1,
        False,
    ),
    "resubscription refused with a 503": (
        _emulator(
            lambda org: (
                org.emulator.server_busy(channel="/meta/subscribe"),
                org.emulator.expire_sessions(),
            )
        ),
        1,
        False,
    ),
    "HTTP 500": (_emulator(lambda org: org.emulator.http_error(500)), 2, False),
    "HTTP 502": (_emulator(lambda org: org.emulator.http_error(502)), 2, False),
    "invalid JSON": (_emulator(lambda org: org.emulator.invalid_json()), 2, False),
    "dropped mid-response (server)": (
        _emulator(lambda org: org.emulator.drop_connection(when="mid_response")),
        2,
        False,
    ),
    "dropped before the response (server)": (
        _emulator(lambda org: org.emulator.drop_connection(when="before_response")),
        2,
        False,
    ),
    "slow responses": (
        _emulator(lambda org: org.emulator.delay_responses(0.3, count=2)),
        2,
        False,
    ),
    # authentication: one at a time, with a working session in between
    "401 authentication invalid": (
        _emulator(lambda org: org.emulator.authentication_invalid()),
        2,
        True,
    ),
    "access tokens revoked": (
        _emulator(lambda org: org.emulator.revoke_tokens("access")),
        2,
        True,
    ),
    "HTTP 401": (_emulator(lambda org: org.emulator.http_error(401)), 1, True),
    "resubscription refused with a 401": (
        _emulator(
            lambda org: (
                org.emulator.authentication_invalid(channel="/meta/subscribe"),
                org.emulator.expire_sessions(),
            )
        ),
        1,
        True,
    ),
}
RESTART = "emulator restart"


class _Run:
    def __init__(self, config: CampaignConfig, org: ProxiedOrg) -> None:
        self.config = config
        self.org = org
        self.rng = random.Random(config.seed)
        self.tally = Tally()
        self.status = StatusLog()
        self.armed: list[tuple[str, Fault | ProxyFault]] = []
        self.report = CampaignReport(config, self.tally)
        self.publishing_done = asyncio.Event()

    def pending_faults(self) -> bool:
        return bool(len(self.org.emulator.faults) or self.org.proxy.armed)

    async def inject(self) -> None:
        config = self.config
        names = list(FAULTS)
        weights = [FAULTS[name][1] for name in names]
        remaining = config.faults
        restarts_left = config.restarts
        # Spread the restarts evenly over the run.
        restart_every = max(1, config.faults // (config.restarts + 1)) if config.restarts else 0
        count = 0
        while remaining > 0 and self.report.stopped is None:
            await asyncio.sleep(self.rng.uniform(*config.fault_gap))
            await self._few_armed()
            count += 1
            if restarts_left and restart_every and count % restart_every == 0:
                name = RESTART
                restarts_left -= 1
                await _restart(self)
            else:
                name = self.rng.choices(names, weights)[0]
                injector, _weight, is_auth = FAULTS[name]
                if is_auth and not await self._quiet():
                    # never two 401s without a working session in between (that stops the
                    # client by design): another fault instead
                    name = "session expiry"
                    injector = FAULTS[name][0]
                result = injector(self)
                if asyncio.iscoroutine(result):
                    await result
                for item in result if isinstance(result, tuple) else (result,):
                    if isinstance(item, Fault | ProxyFault):
                        self.armed.append((name, item))
            self.report.injected[name] += 1
            if name in ("session expiry", "server /meta/disconnect", "network outage", RESTART):
                self.report.fired[name] += 1
            remaining -= 1

    async def _few_armed(self, most: int = 2) -> None:
        """Wait (at most 5 s) until no more than ``most`` faults wait to fire."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if len(self.org.emulator.faults) + len(self.org.proxy.armed) <= most:
                return
            await asyncio.sleep(0.02)

    async def _quiet(self) -> bool:
        """Wait until no fault is armed and the client is connected (at most 10 s)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not self.pending_faults() and not self.status.down:
                await asyncio.sleep(0.05)
                if not self.pending_faults() and not self.status.down:
                    return True
            await asyncio.sleep(0.02)
        return False

    async def publish(self) -> None:
        """Publish the events along with the faults: by the time ``k`` of ``n`` faults were
        injected, about ``k/n`` of the events are out; the rest once the last fault is in."""
        config = self.config
        published = 0
        while published < config.events:
            injected = sum(self.report.injected.values())
            if injected >= config.faults or self.report.stopped is not None:
                target = config.events
            else:
                target = config.events * (injected + 1) // (config.faults + 1)
            for _ in range(min(target - published, 2000)):
                channel = CHANNELS[published % len(CHANNELS)]
                self.tally.record_published(channel, self.org.publish(channel, published))
                published += 1
            await asyncio.sleep(0.02)
        self.publishing_done.set()

    async def consume(self, client: Any) -> None:
        config = self.config
        bound = config.connection_timeout + config.silence_slack
        loop = asyncio.get_running_loop()
        settle_deadline: float | None = None
        while True:
            if self.publishing_done.is_set():
                if not self.tally.outstanding():
                    return
                if settle_deadline is None:
                    settle_deadline = loop.time() + config.settle
                elif loop.time() > settle_deadline:
                    return
            started = loop.time()
            try:
                async with asyncio.timeout(bound):
                    message = await client.receive()
            except TransportTimeoutError:
                self.report.timeouts_raised += 1  # documented: the client keeps trying
                continue
            except TimeoutError:
                if self.tally.outstanding():
                    self.report.silent_stalls.append(
                        f"no event and no error for {loop.time() - started:.1f} s with "
                        f"{self.tally.outstanding()} events outstanding"
                    )
                continue
            except SfstreamError as error:
                if client.closed or self.status.count(StatusKind.STOPPED):
                    self.report.stopped = f"{type(error).__name__}: {error}"
                    return
                self.report.errors_raised.append(f"{type(error).__name__}: {error}")
                continue
            self.tally.record_delivered(message)


async def run_campaign(
    config: CampaignConfig, *, progress: Callable[[str], None] | None = None
) -> CampaignReport:
    """Run one campaign and return its figures (see the module docstring)."""
    started = time.monotonic()
    org = ProxiedOrg(
        hold_time=config.hold_time,
        session_expiry=config.session_expiry,
        max_batch=config.max_batch,
    )
    async with org:
        run = _Run(config, org)
        rng = random.Random(config.seed + 1)
        client = org.client(
            backoff=ExponentialBackoff(initial=0.05, maximum=1.0, random=rng.random),
            connection_timeout=config.connection_timeout,
            max_pending_count=config.max_pending_count,
            on_status=run.status,
        )
        async with client:
            for channel in CHANNELS:
                await client.subscribe(channel)
            consumer = asyncio.create_task(run.consume(client))
            publisher = asyncio.create_task(run.publish())
            injector = asyncio.create_task(run.inject())
            reporter = (
                asyncio.create_task(_progress(run, progress)) if progress is not None else None
            )
            try:
                await injector
                org.emulator.clear_faults()
                org.proxy.clear()
                await publisher
                await consumer
            finally:
                for task in (consumer, publisher, injector, reporter):
                    if task is not None and not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
            if run.status.count(StatusKind.STOPPED) and run.report.stopped is None:
                run.report.stopped = "; ".join(s.detail for s in run.status.of(StatusKind.STOPPED))
    report = run.report
    for name, fault in run.armed:
        if fault.fired:
            report.fired[name] += 1
    status = run.status
    report.recoveries = status.count(StatusKind.RECONNECTED)
    report.sessions_lost = status.count(StatusKind.SESSION_LOST)
    report.reauthentications = status.count(StatusKind.REAUTHENTICATED)
    report.longest_recovery = status.longest_outage
    outages = sorted(status.outages)
    if outages:
        report.median_recovery = outages[len(outages) // 2]
        report.p95_recovery = outages[min(len(outages) - 1, int(len(outages) * 0.95))]
    report.exchanges = org.proxy.exchanges
    report.duration = time.monotonic() - started
    return report


async def _progress(run: _Run, progress: Callable[[str], None]) -> None:
    started = time.monotonic()
    while True:
        await asyncio.sleep(10)
        progress(
            f"  ... {time.monotonic() - started:5.0f} s: {run.tally.published_count} published, "
            f"{run.tally.delivered_count} delivered, "
            f"{sum(run.report.injected.values())} faults, "
            f"{run.status.count(StatusKind.RECONNECTED)} recoveries"
        )


# -- issue #10: the loss paths, each as a scenario of its own ---------------------------------


@dataclass
class ScenarioReport:
    """One loss scenario: what was expected, delivered, lost and delivered twice."""

    name: str
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.lost and not self.duplicated and self.error is None

    def render(self) -> str:
        verdict = "OK" if self.ok else f"FAILED {self.error or ''}".rstrip()
        return (
            f"  {self.name:<44} expected {self.expected:>5}  delivered {self.delivered:>5}  "
            f"lost {self.lost:>4}  duplicated {self.duplicated:>4}  {verdict}"
        )


def _loss_client(emulator: Any, **options: Any) -> Any:
    from sfstream import SalesforceStreamingClient
    from sfstream.bayeux import ConstantBackoff

    return SalesforceStreamingClient(
        consumer_key=emulator.consumer_key,
        consumer_secret=emulator.consumer_secret,
        username=emulator.username,
        password=emulator.password,
        login_url=emulator.login_url,
        backoff=ConstantBackoff(0.05),
        connection_timeout=5.0,
        **options,
    )


async def _collect(
    client: Any,
    report: ScenarioReport,
    expected: dict[str, set[str]],
    seen: dict[str, set[str]],
    key: Callable[[Any], tuple[str, str]],
    settle: float,
    every: Callable[[int], None] | None = None,
) -> None:
    """Receive until every expected id was seen or nothing came for ``settle`` seconds."""
    while any(seen.get(k, set()) != expected[k] for k in expected):
        try:
            async with asyncio.timeout(settle):
                message = await client.receive()
        except TimeoutError:
            break
        channel, ident = key(message)
        if ident in seen.setdefault(channel, set()):
            report.duplicated += 1
        seen[channel].add(ident)
        report.delivered += 1
        if every is not None:
            every(report.delivered)


def _finish(
    report: ScenarioReport, expected: dict[str, set[str]], seen: dict[str, set[str]]
) -> None:
    report.expected = sum(map(len, expected.values()))
    report.lost = sum(len(expected[k] - seen.get(k, set())) for k in expected)


async def _two_filtered_subscriptions(rng: random.Random) -> ScenarioReport:
    """Two filtered subscriptions to one PushTopic from all retained events, batches of 10,
    sessions expired every 15 events received, more events published meanwhile."""
    from sfstream import ReplayOption
    from sfstream.emulator import Emulator

    report = ScenarioReport("two filtered subscriptions on one topic")
    kinds = {"Partner": "/topic/Acc?Type=Partner", "Customer": "/topic/Acc?Type=Customer"}
    expected: dict[str, set[str]] = {channel: set() for channel in kinds.values()}
    seen: dict[str, set[str]] = {}
    async with Emulator(hold_time=0.2, session_expiry=5.0, max_batch=10) as org:
        org.create_push_topic("Acc", "SELECT Id, Name, Type FROM Account")

        def create(n: int) -> None:
            for kind, channel in kinds.items():
                if rng.random() < 0.8:
                    fields = {"Name": f"{kind} {n}", "Type": kind}
                    expected[channel].add(org.create_record("Account", fields))

        for n in range(100):
            create(n)
        async with _loss_client(org, replay=ReplayOption.ALL_EVENTS) as client:
            for channel in kinds.values():
                await client.subscribe(channel)

            def every(count: int) -> None:
                if count % 15 == 0:
                    org.expire_sessions()
                if count % 7 == 0:
                    create(1000 + count)

            await _collect(
                client,
                report,
                expected,
                seen,
                lambda m: (m["channel"], m["data"]["sobject"]["Id"]),
                5.0,
                every,
            )
            if not client.stats[StatusKind.SESSION_LOST]:
                report.error = "no session was lost"
    _finish(report, expected, seen)
    return report


async def _401_on_resubscription(rounds: int) -> ScenarioReport:
    """Each round: the next resubscription is answered 401, the session is lost, events are
    published meanwhile."""
    from sfstream.emulator import Emulator

    report = ScenarioReport("401 on resubscription")
    channel = "/event/Order__e"
    expected: dict[str, set[str]] = {channel: set()}
    seen: dict[str, set[str]] = {}
    async with (
        Emulator(events={"Order__e": ["Amount__c", "N__c"]}, hold_time=0.2) as org,
        _loss_client(org) as client,
    ):
        await client.subscribe(channel)
        number = 0
        faults = []
        for _round in range(rounds):
            faults.append(org.authentication_invalid(channel="/meta/subscribe"))
            org.expire_sessions()
            for _ in range(10):
                await org.publish(channel, {"N__c": number})
                expected[channel].add(str(number))
                number += 1
            goal = {channel: set(expected[channel])}
            try:
                await _collect(
                    client,
                    report,
                    goal,
                    seen,
                    lambda m: (m["channel"], str(int(m["data"]["payload"]["N__c"]))),
                    5.0,
                )
            except SfstreamError as error:
                report.error = f"{type(error).__name__}: {error}"
                break
        fired = sum(fault.fired for fault in faults)
        reauthenticated = client.stats[StatusKind.REAUTHENTICATED]
        if report.error is None and (fired != rounds or reauthenticated != rounds):
            # the scenario is only worth its verdict if each round really met a 401
            report.error = f"{fired} of {rounds} 401s fired, {reauthenticated} re-authentications"
    _finish(report, expected, seen)
    return report


async def _org_clock(skew: float, rounds: int) -> ScenarioReport:
    """A NEW_EVENTS subscription loses its session before its first event; the org's clock is
    ``skew`` seconds off the client's; events are published during the outage."""
    from sfstream.emulator import Emulator, SystemClock

    sign = "+" if skew >= 0 else "-"
    report = ScenarioReport(f"org clock {sign}{abs(skew) / 3600:g} h, gap before first event")
    channel = "/event/Order__e"
    expected: dict[str, set[str]] = {channel: set()}
    seen: dict[str, set[str]] = {}
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"]}, hold_time=0.2, clock=SystemClock(skew)
    ) as org:
        number = 0
        for round_number in range(rounds):
            async with _loss_client(org) as client:
                await client.subscribe(channel)
                org.expire_sessions()
                for _ in range(10):
                    await org.publish(channel, {"N__c": number})
                    expected[channel].add(str(number))
                    number += 1
                goal = {channel: set(expected[channel]) - seen.get(channel, set())}
                round_seen: dict[str, set[str]] = {channel: set()}
                await _collect(
                    client,
                    report,
                    goal,
                    round_seen,
                    lambda m: (m["channel"], str(int(m["data"]["payload"]["N__c"]))),
                    5.0,
                )
                # an event of an earlier round delivered again: created before this round's
                # subscription, it should have been skipped
                report.duplicated += len(round_seen[channel] & seen.get(channel, set()))
                seen.setdefault(channel, set()).update(round_seen[channel])
                skipped = client.stats[StatusKind.EVENTS_SKIPPED]
                if round_number and not skipped and report.error is None:
                    report.error = f"round {round_number + 1}: no EVENTS_SKIPPED status"
            org.advance_clock(60)  # the next round's subscription starts well after these
    _finish(report, expected, seen)
    return report


async def run_loss_scenarios(seed: int = 20260601, rounds: int = 3) -> list[ScenarioReport]:
    """The issue #10 scenarios: each must report lost 0 and duplicated 0."""
    rng = random.Random(seed)
    return [
        await _two_filtered_subscriptions(rng),
        await _401_on_resubscription(rounds),
        await _org_clock(-7200.0, rounds),
        await _org_clock(7200.0, rounds),
    ]
