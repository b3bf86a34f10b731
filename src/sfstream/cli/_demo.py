"""``sfstream demo``: the whole library at work in ten seconds, with no Salesforce org.

An emulated org (:class:`sfstream.emulator.Emulator`) serves on loopback. An app publishes
through the REST API, as it would against a real org: platform events, Account records (whose
changes reach a PushTopic and Change Data Capture) and generic streaming pushes. A real
:class:`sfstream.SalesforceStreamingClient` subscribes to the four channels with a replay store
on disk. Along the way the org forgets the client's session, then revokes its access token,
then the client is closed and a new one resumes from the store. The summary compares, per
channel, the replay ids the org holds with those the client received (and the EventUuids the
REST API returned with those received): the exit status is 1 if anything was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import aiohttp

from sfstream.bayeux import ExponentialBackoff, Message, Status, StatusKind, StatusStats
from sfstream.emulator import Emulator
from sfstream.salesforce import (
    PasswordAuthenticator,
    ReplayOption,
    SalesforceStreamingClient,
    SqliteStorage,
)

from ._args import file_path
from ._errors import ExitCode, to_cli_error
from ._listen import close_client
from ._output import Console, describe_event
from ._publish import RestClient
from ._store import open_store
from ._trace import TraceExtension, trace_writer

__all__ = ["CHANNELS", "DemoSummary", "add_arguments", "run"]

EVENT: Final = "/event/Order__e"
TOPIC: Final = "/topic/DemoAccounts"
GENERIC: Final = "/u/DemoNotices"
CDC: Final = "/data/AccountChangeEvent"
TOPIC_QUERY: Final = "SELECT Id, Name, Industry FROM Account"
#: The demo's channels and what each carries, in the order they are shown.
CHANNELS: Final = {
    TOPIC: f"PushTopic: Account records matching {TOPIC_QUERY}",
    GENERIC: "generic streaming: any text an app pushes",
    EVENT: "platform event: a custom event an app publishes",
    CDC: "Change Data Capture: every change to an Account record",
}
#: Seconds to wait for the client to catch up or recover before calling it a failure.
RECOVERY_TIMEOUT: Final = 15.0
#: ``--forever``: a fault every this many rounds.
FAULT_EVERY: Final = 10


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if not 0 <= value <= 10:
        raise argparse.ArgumentTypeError("expected seconds between 0 and 10")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--forever",
        action="store_true",
        help="keep publishing (with a fault every few seconds) until Ctrl-C",
    )
    parser.add_argument(
        "--store",
        type=file_path,
        metavar="PATH",
        help="the replay store (an SQLite file) to use and keep (default: a temporary one)",
    )
    parser.add_argument(
        "--interval",
        type=_interval,
        default=0.5,
        metavar="S",
        help="seconds between publishing rounds (default 0.5)",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="also print every Bayeux message on stderr (secrets redacted)",
    )


@dataclass
class _Channel:
    received: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """Per channel ``(published, received, lost, duplicates)``, and the totals."""

    rows: dict[str, tuple[int, int, int, int]]
    uuids_published: int
    uuids_missing: int

    @property
    def lost(self) -> int:
        """Events the org holds that the client never handed over."""
        return sum(row[2] for row in self.rows.values())

    @property
    def failed(self) -> bool:
        """Anything lost: a replay id, or an EventUuid the REST API returned."""
        return bool(self.lost or self.uuids_missing)

    @property
    def published(self) -> int:
        return sum(row[0] for row in self.rows.values())

    @property
    def received(self) -> int:
        return sum(row[1] for row in self.rows.values())

    @property
    def duplicates(self) -> int:
        return sum(row[3] for row in self.rows.values())


class Demo:
    """One run of the demo; :meth:`run` returns the exit status."""

    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.style = console.style
        self.started = time.monotonic()
        self.channels = {channel: _Channel() for channel in CHANNELS}
        self.uuids_published: set[str] = set()
        self.uuids_received: set[str] = set()
        self.stats = StatusStats()
        self.restarts = 0
        self.rounds = 0
        self.accounts: list[str] = []
        self.recovered = asyncio.Event()
        self.consumer: asyncio.Task[None] | None = None
        self.client: SalesforceStreamingClient | None = None
        self.publishing: asyncio.Task[None] | None = None

    # -- output ------------------------------------------------------------------------------

    def say(self, label: str, text: str, *styles: str) -> None:
        elapsed = time.monotonic() - self.started
        stamp = self.style(f"{elapsed:5.1f}s", "dim")
        self.console.print(f"{stamp}  {self.style(f'{label:<8}', *styles)} {text}")

    def more(self, text: str) -> None:
        self.console.print(f"{'':16}{text}")

    def intro(self, org: Emulator, store: str) -> None:
        bold = self.style
        self.console.print(
            bold("sfstream demo: Salesforce streaming with no Salesforce org", "bold")
        )
        self.console.print(
            f"An emulated org serves on {org.base_url}; a real sfstream client subscribes to it,"
        )
        self.console.print("while an app publishes through the REST API, as with a real org.")
        self.console.print()
        for channel, what in CHANNELS.items():
            self.console.print(f"  {self.style(f'{channel:<26}', 'cyan')} {what}")
        self.console.print()
        self.console.print(f"  replay store  {store}  (the last replay id of each channel)")
        self.console.print()
        self.console.print(
            "Events carry a replay id (#n), numbered per channel. A client that reconnects asks"
        )
        self.console.print(
            "to resume after the last one it received: nothing published meanwhile is lost."
        )
        self.console.print()

    def last_ids(self) -> str:
        parts = []
        for channel, state in self.channels.items():
            last = max(state.received, default=None)
            parts.append(f"{channel} {last if last is not None else '-'}")
        return ", ".join(parts)

    # -- the client ----------------------------------------------------------------------------

    def on_status(self, status: Status) -> None:
        kind = status.kind
        if kind is StatusKind.SESSION_LOST:
            self.say("client", status.detail or "the org no longer knows the session", "magenta")
        elif kind is StatusKind.CONNECTION_LOST:
            self.say("client", f"request refused: {status.detail}", "magenta")
        elif kind is StatusKind.REAUTHENTICATED:
            self.say("client", "logged in again: it has a new access token", "magenta")
        elif kind is StatusKind.RECONNECTED:
            self.say(
                "client",
                "reconnected: new handshake, each channel resubscribed after its last replay id",
                "magenta",
            )
            self.recovered.set()
        elif kind is StatusKind.REPLAY_FALLBACK:
            self.say(
                "client",
                f"{status.channel}: the store's replay id is unknown to this org (a new one "
                "each run): starting from all retained events",
                "magenta",
            )

    def record(self, message: Message) -> None:
        channel = message.get("channel", "")
        data = message.get("data")
        event = data.get("event") if isinstance(data, dict) else None
        replay_id = event.get("replayId") if isinstance(event, dict) else None
        state = self.channels.get(channel)
        if state is not None and isinstance(replay_id, int):
            state.received.append(replay_id)
        uuid = event.get("EventUuid") if isinstance(event, dict) else None
        if isinstance(uuid, str):
            self.uuids_received.add(uuid)
        text = describe_event(message)
        ident = self.style(f"#{replay_id}", "yellow")
        self.say("receive", f"{self.style(channel, 'cyan')} {ident}  {text}", "green")

    async def consume(self, client: SalesforceStreamingClient) -> None:
        async for message in client:
            self.record(message)

    async def start_client(self, org: Emulator, store: SqliteStorage) -> None:
        client = SalesforceStreamingClient(
            consumer_key=org.consumer_key,
            consumer_secret=org.consumer_secret,
            username=org.username,
            password=org.password,
            login_url=org.login_url,
            replay=store,
            replay_fallback=ReplayOption.ALL_EVENTS,
            backoff=ExponentialBackoff(initial=0.1, maximum=2.0, random=random.random),
            on_status=self.on_status,
            extensions=[TraceExtension(trace_writer(self.console))] if self.args.trace else (),
        )
        self.client = client
        await client.open()
        self.say("client", "logged in (OAuth password flow), Bayeux handshake done", "magenta")
        for channel in CHANNELS:
            await client.subscribe(channel)
        self.say("client", f"subscribed to {len(CHANNELS)} channels", "magenta")
        self.consumer = asyncio.create_task(self.consume(client), name="sfstream demo consumer")

    async def stop_client(self) -> None:
        client, self.client = self.client, None
        consumer, self.consumer = self.consumer, None
        if client is None:
            return
        await close_client(client)
        self.stats.update(client.stats)
        if consumer is not None:
            with contextlib.suppress(Exception):  # the client is closed: its error is moot
                await consumer

    # -- publishing ----------------------------------------------------------------------------

    async def publish_round(self, rest: RestClient, channel_id: str) -> None:
        """Publish one round; Ctrl-C waits for it to finish (no request is cut in half)."""
        task = asyncio.create_task(self._publish_round(rest, channel_id))
        self.publishing = task
        await asyncio.shield(task)

    async def _publish_round(self, rest: RestClient, channel_id: str) -> None:
        self.rounds += 1
        n = self.rounds
        before = rest.reauthentications
        change = (
            f"Account {self.accounts[-1]} updated"
            if n % 3 == 0 and self.accounts
            else f"Account 'Acme {n}' created"
        )
        self.say(
            "publish",
            f"round {n}: an Order__e event, {change} (PushTopic + CDC), a notice on {GENERIC}",
            "blue",
        )
        order = await rest.publish_event("Order__e", {"Amount__c": 10 * n, "Item__c": f"W-{n}"})
        if order.event_uuid:
            self.uuids_published.add(order.event_uuid)
        if n % 3 == 0 and self.accounts:
            await rest.update_record("Account", self.accounts[-1], {"Industry": "Energy"})
        else:
            record_id = await rest.create_record(
                "Account", {"Name": f"Acme {n}", "Industry": "Retail"}
            )
            self.accounts.append(record_id)
        await rest.push(channel_id, f"notice {n}")
        if rest.reauthentications != before:
            self.say(
                "publish",
                "the app's token was revoked too: it logged in again before publishing",
                "blue",
            )

    async def rounds_of(self, count: int, rest: RestClient, channel_id: str) -> None:
        for _ in range(count):
            await self.publish_round(rest, channel_id)
            await self.sleep(self.args.interval)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.check_consumer()

    def check_consumer(self) -> None:
        consumer = self.consumer
        if consumer is not None and consumer.done():
            error = consumer.exception()
            if error is not None:
                raise error

    async def wait_until(self, condition: Callable[[], bool], what: str) -> bool:
        """Wait for ``condition``; after :data:`RECOVERY_TIMEOUT` s say so and go on (the
        summary then shows what is missing)."""
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while not condition():
            if time.monotonic() > deadline:
                self.say("demo", f"gave up waiting for {what}: going on", "red", "bold")
                return False
            await self.sleep(0.02)
        return True

    def published_ids(self, org: Emulator, channel: str) -> list[int]:
        return [int(data["event"]["replayId"]) for data in org.events(channel)]

    def caught_up(self, org: Emulator) -> bool:
        return all(
            set(self.published_ids(org, channel)) <= set(state.received)
            for channel, state in self.channels.items()
        )

    async def catch_up(self, org: Emulator) -> None:
        await self.wait_until(lambda: self.caught_up(org), "the client to receive every event")

    # -- faults --------------------------------------------------------------------------------

    async def expire_session(self, org: Emulator, rest: RestClient, channel_id: str) -> None:
        await self.catch_up(org)
        self.recovered.clear()
        org.expire_sessions()
        self.say(
            "fault",
            "session expired on the server (as after 40 s of silence): the client "
            "re-handshakes and resumes after the last replay ids",
            "yellow",
            "bold",
        )
        self.more(f"({self.last_ids()})")
        await self.publish_round(rest, channel_id)
        await self.wait_until(self.recovered.is_set, "the client to reconnect")
        await self.catch_up(org)

    async def revoke_token(self, org: Emulator, rest: RestClient, channel_id: str) -> None:
        await self.catch_up(org)
        self.recovered.clear()
        org.revoke_tokens("access")
        self.say(
            "fault",
            "access token revoked on the server (as when it expires): the client logs in "
            "again and resumes after the last replay ids",
            "yellow",
            "bold",
        )
        self.more(f"({self.last_ids()})")
        await self.publish_round(rest, channel_id)
        await self.wait_until(self.recovered.is_set, "the client to log in again")
        await self.catch_up(org)

    async def restart(
        self,
        org: Emulator,
        store: SqliteStorage,
        rest: RestClient,
        channel_id: str,
    ) -> None:
        await self.catch_up(org)
        await self.stop_client()
        self.say("client", "closed, as if the app stopped; the store on disk keeps:", "magenta")
        for channel in CHANNELS:
            marker = await store.get_replay_marker(channel)
            where = f"replay id {marker.replay_id}" if marker is not None else "nothing"
            self.more(f"{channel:<26} {where}")
        self.say("publish", "while no client runs:", "blue")
        await self.rounds_of(2, rest, channel_id)
        self.say(
            "client",
            "a new client opens the same store: each channel resumes after its stored replay id",
            "magenta",
        )
        await self.start_client(org, store)
        self.restarts += 1
        await self.catch_up(org)

    # -- the run -------------------------------------------------------------------------------

    async def scenario(self, org: Emulator, store: SqliteStorage, rest: RestClient) -> None:
        channel_id = await rest.streaming_channel_id(GENERIC)
        await self.start_client(org, store)
        await self.rounds_of(3, rest, channel_id)
        await self.expire_session(org, rest, channel_id)
        await self.rounds_of(2, rest, channel_id)
        await self.revoke_token(org, rest, channel_id)
        await self.rounds_of(2, rest, channel_id)
        await self.restart(org, store, rest, channel_id)
        await self.rounds_of(2, rest, channel_id)
        await self.catch_up(org)
        if not self.args.forever:
            return
        self.say("demo", "--forever: publishing until Ctrl-C, with a fault now and then", "bold")
        faults: list[Callable[[Emulator, RestClient, str], Awaitable[None]]] = [
            self.expire_session,
            self.revoke_token,
        ]
        turn = 0
        while True:
            await self.rounds_of(FAULT_EVERY, rest, channel_id)
            await faults[turn % len(faults)](org, rest, channel_id)
            turn += 1
            summary = self.summary(org)
            self.say(
                "demo",
                f"so far: published {summary.published}, received {summary.received}, "
                f"lost {summary.lost}",
                "bold",
            )

    def summary(self, org: Emulator) -> DemoSummary:
        rows = {}
        for channel, state in self.channels.items():
            published = set(self.published_ids(org, channel))
            received = state.received
            lost = len(published - set(received))
            duplicates = len(received) - len(set(received))
            rows[channel] = (len(published), len(received), lost, duplicates)
        missing = len(self.uuids_published - self.uuids_received)
        return DemoSummary(rows, len(self.uuids_published), missing)

    def print_summary(self, summary: DemoSummary) -> None:
        print_ = self.console.print
        style = self.style
        print_()
        print_(style("Summary", "bold"))
        print_("  published: the events the org holds; received: those the client handed to the")
        print_("  app. Lost and duplicates compare their replay ids, channel by channel.")
        print_()
        print_(f"  {'channel':<26} {'published':>9} {'received':>9} {'lost':>5} {'duplicates':>11}")
        for channel, (published, received, lost, duplicates) in summary.rows.items():
            lost_text = style(f"{lost:>5}", "red" if lost else "green")
            print_(f"  {channel:<26} {published:>9} {received:>9} {lost_text} {duplicates:>11}")
        total_lost = style(f"{summary.lost:>5}", "red" if summary.lost else "green")
        print_(
            f"  {'total':<26} {summary.published:>9} {summary.received:>9} {total_lost} "
            f"{summary.duplicates:>11}"
        )
        print_(
            f"  platform event EventUuids returned by the REST API: {summary.uuids_published}, "
            f"of which received: {summary.uuids_published - summary.uuids_missing}"
        )
        stats = self.stats
        print_(
            f"  reconnects {stats[StatusKind.RECONNECTED]}, "
            f"re-authentications {stats[StatusKind.REAUTHENTICATED]}, "
            f"sessions lost {stats[StatusKind.SESSION_LOST]}, "
            f"client restarts {self.restarts}  (from client.stats)"
        )
        if summary.failed:
            print_(
                style(
                    f"LOST {summary.lost} event(s); {summary.uuids_missing} published "
                    "EventUuid(s) never arrived",
                    "red",
                    "bold",
                )
            )
        else:
            print_(style("Nothing lost: every published event was received.", "green", "bold"))

    async def run(self) -> int:
        args = self.args
        with tempfile.TemporaryDirectory(prefix="sfstream-demo-") as tmp:
            store = args.store or str(Path(tmp) / "replay")
            async with Emulator(
                events={"Order__e": ["Amount__c", "Item__c"]},
                streaming_channels=[GENERIC],
                push_topics={TOPIC.removeprefix("/topic/"): TOPIC_QUERY},
                cdc_entities=["Account"],
                hold_time=1.0,
                session_expiry=10.0,
            ) as org:
                self.intro(org, store)
                with await open_store(store, note=self.console.note) as storage:
                    return await self._run(org, storage)

    async def _run(self, org: Emulator, store: SqliteStorage) -> int:
        interrupted = False
        async with aiohttp.ClientSession() as session:
            publisher = PasswordAuthenticator(
                org.consumer_key,
                org.consumer_secret,
                org.username,
                org.password,
                login_url=org.login_url,
                session=session,
            )
            rest = RestClient(publisher, session, org.config.api_version)
            try:
                await self.scenario(org, store, rest)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or not task.cancelling():
                    raise  # pragma: no cover - not a Ctrl-C
                task.uncancel()
                interrupted = True
                self.console.print()
                self.say("demo", "interrupted: waiting for events in flight", "bold")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._settle(org), 5.0)
            finally:
                await self.stop_client()
        summary = self.summary(org)
        self.print_summary(summary)
        if summary.failed:
            return ExitCode.ERROR
        if interrupted and not self.args.forever:
            return ExitCode.INTERRUPTED
        return ExitCode.OK

    async def _settle(self, org: Emulator) -> None:
        if self.publishing is not None:
            with contextlib.suppress(Exception):
                await self.publishing
        if self.client is not None and not self.client.closed:
            await self.catch_up(org)


async def run(args: argparse.Namespace, console: Console) -> int:
    try:
        return await Demo(args, console).run()
    except Exception as exc:
        error = to_cli_error(exc)
        if error is None:
            raise
        raise error from exc
