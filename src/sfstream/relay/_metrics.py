"""Prometheus metrics and ``/healthz`` of the relay (extra ``sfstream[relay]``).

:class:`RelayMetrics` keeps its own ``CollectorRegistry`` (never the global one), so that
several relays in one process, or in one test run, do not collide. :class:`OpsServer` serves
``/metrics`` (Prometheus text format) and ``/healthz`` (200 while every relay is healthy, else
503; a JSON body with each relay's role, holder, fencing token and last write) with aiohttp.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from sfstream.bayeux import StatusKind
from sfstream.exceptions import ReplayError
from sfstream.relay._sink import RelayEvent
from sfstream.salesforce import parse_marker_date

if TYPE_CHECKING:
    from sfstream.relay._runner import Relay

__all__ = ["OpsServer", "RelayMetrics"]

logger = logging.getLogger(__name__)


class RelayMetrics:
    """The relay's counters and gauges, labelled by channel set (and channel)."""

    def __init__(self) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError(
                "relay metrics need prometheus-client: "
                "pip install '.[relay]' in the sfstream checkout"
            ) from None
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "sfstream_relay_events",
            "Events written into the engine",
            ["set", "channel"],
            registry=r,
        )
        self.lag = Gauge(
            "sfstream_relay_lag_seconds",
            "Seconds between the last written event's own date and its write",
            ["set", "channel"],
            registry=r,
        )
        self.reconnects = Counter(
            "sfstream_relay_reconnects", "Salesforce connections made again", ["set"], registry=r
        )
        self.reauthentications = Counter(
            "sfstream_relay_reauthentications", "New access tokens fetched", ["set"], registry=r
        )
        self.leader = Gauge(
            "sfstream_relay_leader",
            "1 while this process is the leader, 0 standby",
            ["set"],
            registry=r,
        )
        self.leaderships = Counter(
            "sfstream_relay_leaderships", "Times this process took the lease", ["set"], registry=r
        )
        self.last_write = Gauge(
            "sfstream_relay_last_write_timestamp_seconds",
            "Unix time of the last successful write",
            ["set"],
            registry=r,
        )

    def set_role(self, name: str, leader: bool) -> None:
        self.leader.labels(name).set(1 if leader else 0)

    def leadership(self, name: str) -> None:
        self.leaderships.labels(name).inc()

    def status(self, name: str, kind: StatusKind) -> None:
        if kind is StatusKind.RECONNECTED:
            self.reconnects.labels(name).inc()
        elif kind is StatusKind.REAUTHENTICATED:
            self.reauthentications.labels(name).inc()

    def written(self, name: str, events: Sequence[RelayEvent], now: float | None = None) -> None:
        now = time.time() if now is None else now
        counts: dict[str, int] = {}
        last: dict[str, RelayEvent] = {}
        for event in events:
            counts[event.channel] = counts.get(event.channel, 0) + 1
            last[event.channel] = event
        for channel, count in counts.items():
            self.events.labels(name, channel).inc(count)
            try:
                lag = now - parse_marker_date(last[channel].date).timestamp()
            except ReplayError:
                continue
            self.lag.labels(name, channel).set(lag)
        self.last_write.labels(name).set(now)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class OpsServer:
    """``/metrics`` and ``/healthz`` on ``host:port`` (aiohttp), for ``relays``."""

    def __init__(
        self,
        relays: Sequence[Relay],
        metrics: RelayMetrics,
        host: str = "127.0.0.1",
        port: int = 9108,
    ) -> None:
        self.relays = list(relays)
        self.metrics = metrics
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return web.Response(
            body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _healthz(self, _request: web.Request) -> web.Response:
        statuses = [relay.status() for relay in self.relays]
        healthy = all(status["healthy"] for status in statuses)
        body = json.dumps({"healthy": healthy, "relays": statuses})
        return web.Response(
            text=body, status=200 if healthy else 503, content_type="application/json"
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None)
        if self.port == 0 and sockets:
            self.port = sockets[0].getsockname()[1]
        logger.info("relay metrics on http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
