"""The pieces every reliability test uses: an emulated org behind the fault proxy, clients
pointed at it, and the bookkeeping that checks delivery (lost, duplicated, out of order) and
recovery (how long each outage lasted).

:class:`ProxiedOrg` runs an :class:`~sfstream.emulator.Emulator` whose every URL (login,
instance, CometD) is the proxy's, so every byte a client exchanges with the org crosses the
proxy. :meth:`ProxiedOrg.restart` stops the emulator and starts a new one on the same
:class:`~sfstream.emulator.OrgState` (the event log, the tokens, the records survive, as they
do on Salesforce; Bayeux sessions do not), on a new port behind the same proxy URL.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from sfstream import SalesforceStreamingClient, Status, StatusKind
from sfstream.bayeux import ConstantBackoff, Message
from sfstream.emulator import Emulator, OrgState, Published

from ._proxy import FaultProxy

EVENT = "/event/Chaos__e"
CDC = "/data/AccountChangeEvent"
TOPIC = "/topic/ChaosAccounts"
#: Durable channels of three kinds: a platform event, Change Data Capture, a PushTopic.
CHANNELS = (EVENT, CDC, TOPIC)


class ProxiedOrg:
    """An emulated org reached only through a :class:`FaultProxy` (see the module docstring).

    Args:
        emulator_options: passed to every :class:`Emulator` (``hold_time``, ``max_batch``...),
            but ``proxy_ssl``: an ``ssl.SSLContext`` for the proxy to serve TLS with (the org
            is then ``https://127.0.0.1:<port>``).
    """

    def __init__(self, **emulator_options: Any) -> None:
        emulator_options.setdefault(
            "events", {EVENT.removeprefix("/event/"): ["N__c", "Amount__c"]}
        )
        emulator_options.setdefault("hold_time", 0.2)
        emulator_options.setdefault("session_expiry", 1.0)
        self.options = emulator_options
        self.state: OrgState = emulator_options.pop("state", None) or OrgState()
        self.proxy = FaultProxy(ssl=emulator_options.pop("proxy_ssl", None))
        self.emulator = Emulator(state=self.state, **self.options)
        self.restarts = 0

    async def start(self) -> None:
        await self.proxy.start()
        await self._start_emulator()
        if self.state.topic_by_name(TOPIC.removeprefix("/topic/")) is None:
            self.emulator.create_push_topic(
                TOPIC.removeprefix("/topic/"), "SELECT Id, Name FROM Account"
            )

    async def _start_emulator(self) -> None:
        await self.emulator.start()
        self.proxy.upstream = ("127.0.0.1", self.emulator.port)
        self.emulator.set_base_url(self.proxy.url)  # token replies name the proxy

    async def stop(self) -> None:
        await self.emulator.stop()
        await self.proxy.stop()

    async def __aenter__(self) -> ProxiedOrg:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def restart(self, down: float = 0.0) -> None:
        """Stop the emulator, wait ``down`` seconds, start a new one on the same org."""
        self.proxy.upstream = None
        await self.emulator.stop()
        if down > 0:
            await asyncio.sleep(down)
        self.emulator = Emulator(state=self.state, **self.options)
        await self._start_emulator()
        self.restarts += 1

    def publish(self, channel: str, n: int) -> Published:
        """Publish event number ``n`` on ``channel`` (works while the emulator is down too)."""
        if channel == CDC:
            return self.emulator.publish_nowait(channel, {"Name": f"A{n}", "N__c": n})
        if channel.startswith("/topic/"):
            record = self.state.new_id(self.state.key_prefix("Account"))
            return self.emulator.publish_nowait(channel, {"Id": record, "Name": f"A{n}"})
        return self.emulator.publish_nowait(channel, {"N__c": n})

    @property
    def url(self) -> str:
        return self.proxy.url

    def credentials(self) -> dict[str, Any]:
        return {
            "consumer_key": self.emulator.consumer_key,
            "consumer_secret": self.emulator.consumer_secret,
            "username": self.emulator.username,
            "password": self.emulator.password,
            "login_url": self.proxy.url,
        }

    def client(self, **options: Any) -> SalesforceStreamingClient:
        """A client logging in and streaming through the proxy."""
        options.setdefault("backoff", ConstantBackoff(0.05))
        options.setdefault("connection_timeout", 5.0)
        return SalesforceStreamingClient(**{**self.credentials(), **options})


def replay_id(message: Message) -> int:
    return int(message["data"]["event"]["replayId"])


@dataclass
class Tally:
    """Published and delivered replay ids per channel; what was lost, doubled or reordered."""

    published: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    delivered: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def record_published(self, channel: str, published: Published) -> None:
        self.published[channel].append(published.replay_id)

    def record_delivered(self, message: Message) -> None:
        self.delivered[message["channel"]].append(replay_id(message))

    @property
    def published_count(self) -> int:
        return sum(map(len, self.published.values()))

    @property
    def delivered_count(self) -> int:
        return sum(map(len, self.delivered.values()))

    def unique_delivered(self) -> int:
        return sum(len(set(ids)) for ids in self.delivered.values())

    def outstanding(self) -> int:
        """Published events not delivered yet."""
        return sum(
            len(set(ids) - set(self.delivered.get(channel, ())))
            for channel, ids in self.published.items()
        )

    def lost(self) -> dict[str, list[int]]:
        return {
            channel: sorted(set(ids) - set(self.delivered.get(channel, ())))
            for channel, ids in self.published.items()
            if set(ids) - set(self.delivered.get(channel, ()))
        }

    def duplicated(self) -> int:
        return self.delivered_count - self.unique_delivered()

    def out_of_order(self) -> int:
        """Deliveries whose replay id is not above the highest one delivered before on the
        channel, not counting re-deliveries of an id already seen (those are duplicates)."""
        count = 0
        for ids in self.delivered.values():
            seen: set[int] = set()
            highest = None
            for value in ids:
                if value in seen:
                    continue
                if highest is not None and value < highest:
                    count += 1
                seen.add(value)
                highest = value if highest is None else max(highest, value)
        return count

    def unexpected(self) -> dict[str, list[int]]:
        """Delivered ids that were never published (must be empty)."""
        return {
            channel: sorted(set(ids) - set(self.published.get(channel, ())))
            for channel, ids in self.delivered.items()
            if set(ids) - set(self.published.get(channel, ()))
        }


class StatusLog:
    """An ``on_status`` callback that times every outage (connection lost → reconnected)."""

    def __init__(self) -> None:
        self.statuses: list[tuple[float, Status]] = []
        self.outages: list[float] = []
        self._down_since: float | None = None

    def __call__(self, status: Status) -> None:
        now = time.monotonic()
        self.statuses.append((now, status))
        if status.kind is StatusKind.CONNECTION_LOST and self._down_since is None:
            self._down_since = now
        elif status.kind is StatusKind.RECONNECTED and self._down_since is not None:
            self.outages.append(now - self._down_since)
            self._down_since = None

    def count(self, kind: StatusKind) -> int:
        return sum(1 for _, status in self.statuses if status.kind is kind)

    def of(self, kind: StatusKind) -> list[Status]:
        return [status for _, status in self.statuses if status.kind is kind]

    @property
    def down(self) -> bool:
        return self._down_since is not None

    @property
    def longest_outage(self) -> float:
        return max(self.outages, default=0.0)

    def last(self, kinds: Iterable[StatusKind]) -> StatusKind | None:
        wanted = set(kinds)
        for _, status in reversed(self.statuses):
            if status.kind in wanted:
                return status.kind
        return None


def format_counts(counts: Mapping[str, int]) -> str:
    width = max((len(name) for name in counts), default=0)
    return "\n".join(f"    {name:<{width}}  {count:>6}" for name, count in sorted(counts.items()))
