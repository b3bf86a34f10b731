"""The relay chaos campaign: ``python -m tests.relay.chaos [--engine redis] [--short]``.

``nox -s relay-chaos`` runs it. One emulated org (in this process), an engine, and
``--relays`` ``sfstream relay`` processes with the same configuration (one channel set of
``--channels`` platform event channels). While events are published:

* the active relay is killed with SIGKILL ``--kills`` times (and started again, as a standby);
  each failover is timed from the kill to the first new entry in the engine;
* the engine loses a node (``--engine-faults`` times; Redis: the master of the channel set's
  slot, right after its replica link was cut, so that acknowledged writes are lost for real);
* the emulator's Bayeux and HTTP faults of ``nox -s chaos`` fire at the active relay.

Then every channel's entries are read back and compared with what was published. It prints,
per engine: published, in the engine, lost (must be 0), duplicate entries, failover time p50
and max, the engine faults (with the positions they rolled back: acknowledged writes lost
together with their markers, refilled from the org's retention), the emulator faults and a
verdict line. The exit status is 1 unless lost is 0 and every planned fault happened.

Engines plug in through :class:`EngineHarness` (``ENGINES``): ``redis`` is a 3-master /
3-replica Redis Cluster; ``redis-single`` one ``redis-server`` with an append-only file (the
relays pipeline their writes there; the fault kills it mid-write and starts it again);
``nats`` is looked up in ``tests.relay._nats_chaos`` (class ``NatsEngine``, written with the
NATS sink). The relays run
``sfstream relay --sink <engine.sink_url()> --name chaos --replay all --lease-ttl T ...`` on
the channels ``/event/Chaos0__e`` ..., so the sink is built by
``sfstream.relay._config.make_sink(url, "chaos")`` (for NATS: a ``NatsSink``, stream ``SFSTREAM``);
``entries`` reads back what that sink wrote, and ``fault`` loses a node (for NATS: kill one
server of the cluster); a harness may set ``lost_writes`` after a fault to report acknowledged
writes the fault lost (0 fails the campaign: the refill was not exercised), unless it sets
``replicated_acks = True`` (JetStream R3 acknowledges only what a quorum stored): then any lost
acknowledged write fails the campaign and 0 is what is expected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import itertools
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import aiohttp

from sfstream.emulator import Emulator
from tests.relay._engines import RedisCluster, RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
SET = "chaos"
#: SFSTREAM_CHAOS_DEBUG=1: the relays log at DEBUG into their log files (kept in /tmp).
DEBUG = bool(os.environ.get("SFSTREAM_CHAOS_DEBUG"))


@dataclasses.dataclass(frozen=True)
class ChaosConfig:
    engine: str = "redis"
    events: int = 50_000
    channels: int = 4
    relays: int = 3
    kills: int = 10
    engine_faults: int = 1
    emulator_faults: bool = True
    lease_ttl: float = 8.0
    #: Seconds between a failover and the next kill.
    run_between: float = 3.0
    fault_gap: tuple[float, float] = (1.0, 3.0)
    settle: float = 180.0
    seed: int = 11


SHORT = ChaosConfig(events=8_000, kills=3, lease_ttl=2.0, run_between=2.0, settle=90.0)


class EngineHarness(Protocol):
    """What the campaign needs from an engine (a real server, started here)."""

    name: str

    def start(self) -> None:
        """Start the servers (blocking; called in a thread)."""

    def stop(self) -> None:
        """Stop them all (blocking)."""

    def sink_url(self) -> str:
        """The ``--sink`` URL for a relay started now (a live node)."""

    async def entries(self, set_name: str, channels: Sequence[str]) -> dict[str, list[int]]:
        """The replay ids of every entry per channel, in engine order."""

    async def count(self, set_name: str, channels: Sequence[str]) -> int:
        """How many entries the engine holds (for timing failovers)."""

    async def fault(self, set_name: str, channels: Sequence[str]) -> str:
        """Lose a node of the engine the way production does; describe what was lost."""

    async def close(self) -> None:
        """Close the campaign's own connections."""


class RedisClusterEngine:
    """Three masters, three replicas; the fault kills the master of the set's slot."""

    name = "redis"

    def __init__(self) -> None:
        self.cluster = RedisCluster()
        self._client: Any = None
        #: Acknowledged writes the last fault lost (entries and positions together).
        self.lost_writes: int | None = None

    def start(self) -> None:
        self.cluster.start()

    def stop(self) -> None:
        self.cluster.stop()

    def sink_url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.cluster.live_node().port}"

    async def _redis(self) -> Any:
        import redis.asyncio as aioredis

        if self._client is None:
            node = self.cluster.live_node()
            self._client = aioredis.RedisCluster(host="127.0.0.1", port=node.port)
        return self._client

    async def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _retry(self, call: Any) -> Any:
        for attempt in range(40):
            try:
                return await call(await self._redis())
            except Exception:
                await self._reset()
                if attempt == 39:
                    raise
                await asyncio.sleep(0.25)
        raise AssertionError("unreachable")

    async def entries(self, set_name: str, channels: Sequence[str]) -> dict[str, list[int]]:
        from sfstream.relay._redis import stream_key

        async def read(client: Any) -> dict[str, list[int]]:
            found: dict[str, list[int]] = {}
            for channel in channels:
                ids: list[int] = []
                start = "-"
                while True:
                    batch = await client.xrange(stream_key(set_name, channel), start, "+", 10_000)
                    if not batch:
                        break
                    ids += [int(fields[b"replay_id"]) for _id, fields in batch]
                    last = batch[-1][0]
                    last = last.decode() if isinstance(last, bytes) else last
                    start = "(" + last
                found[channel] = ids
            return found

        result: dict[str, list[int]] = await self._retry(read)
        return result

    async def count(self, set_name: str, channels: Sequence[str]) -> int:
        from sfstream.relay._redis import stream_key

        async def total(client: Any) -> int:
            return sum([await client.xlen(stream_key(set_name, c)) for c in channels])

        result: int = await self._retry(total)
        return result

    async def _positions(self, port: int, key: str, replica: bool = False) -> dict[str, int]:
        """The positions as node ``port`` has them ({} if it does not serve the key)."""
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        client = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        try:
            async with client.client() as single:  # one connection: READONLY applies to it
                if replica:
                    await single.execute_command("READONLY")  # type: ignore[no-untyped-call]
                raw: Any = await single.hgetall(key)
        except (RedisError, OSError):
            return {}
        finally:
            await client.aclose()
        return {k.decode(): int(v) for k, v in raw.items()}

    async def _command(self, port: int, *args: str) -> Any:
        import redis.asyncio as aioredis

        client = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        try:
            return await client.execute_command(*args)  # type: ignore[no-untyped-call]
        finally:
            await client.aclose()

    async def fault(self, set_name: str, channels: Sequence[str]) -> str:
        key = f"sfstream:{{{set_name}}}:positions"
        master = await asyncio.to_thread(self.cluster.master_of, key)
        # Cut the replica link, let the relay write on, then kill the master: what it
        # acknowledged meanwhile never reaches the replica that takes over.

        replicas = [n for n in self.cluster.nodes if n is not master and n.alive]
        for node in replicas:  # a replica that cannot reconnect (its AUTH fails)
            await self._command(node.port, "CONFIG", "SET", "masterauth", "not-the-password")
        await self._command(master.port, "CLIENT", "KILL", "TYPE", "replica")
        # Let the relay write on until the master holds what no replica has.
        deadline = time.monotonic() + 10
        while True:
            await asyncio.sleep(0.5)
            seen = {n.port: await self._positions(n.port, key, replica=True) for n in replicas}
            before = await self._positions(master.port, key)
            behind = [sum(before.values()) - sum(got.values()) for got in seen.values() if got]
            if (behind and min(behind) > 0) or time.monotonic() > deadline:
                break
        master.kill()
        started = time.monotonic()
        new = await asyncio.to_thread(self.cluster.fail_over_wait, key, master)
        took = time.monotonic() - started
        for node in replicas:
            await self._command(node.port, "CONFIG", "SET", "masterauth", "")
        await self._reset()
        kept = seen.get(new.port, {})
        rolled = {ch: before[ch] - kept.get(ch, 0) for ch in before if before[ch] > kept.get(ch, 0)}
        # The killed node comes back as a replica of the new master.
        await asyncio.to_thread(master.start)
        self.lost_writes = sum(rolled.values())
        return (
            f"Redis master :{master.port} killed, replica :{new.port} promoted in {took:.1f} s; "
            f"acknowledged writes lost with their markers: {self.lost_writes} events on "
            f"{len(rolled)} channels (refilled from retention)"
        )

    async def close(self) -> None:
        await self._reset()


class RedisSingleEngine(RedisClusterEngine):
    """One ``redis-server`` with an append-only file: the relays pipeline their writes (several
    in flight on one connection), which a cluster does not. The fault SIGKILLs the server while
    writes are in flight and starts it again from its append-only file."""

    name = "redis-single"

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="sfstream-relay-chaos-redis-"))
        self.server = RedisServer(
            self.directory, options=("--appendonly", "yes", "--appendfsync", "everysec")
        )

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def sink_url(self) -> str:
        return self.server.url

    async def _redis(self) -> Any:
        import redis.asyncio as aioredis

        if self._client is None:
            self._client = aioredis.Redis(host="127.0.0.1", port=self.server.port)
        return self._client

    async def fault(self, set_name: str, channels: Sequence[str]) -> str:
        key = f"sfstream:{{{set_name}}}:positions"
        before = await self._positions(self.server.port, key)
        await asyncio.to_thread(self.server.kill)
        await self._reset()
        started = time.monotonic()
        await asyncio.to_thread(self.server.start)
        took = time.monotonic() - started
        after = await self._positions(self.server.port, key)
        moved = {ch: before[ch] - after.get(ch, 0) for ch in before if after.get(ch) != before[ch]}
        return (
            f"Redis :{self.server.port} SIGKILLed while the relay wrote, started again from its "
            f"append-only file in {took:.1f} s; positions of {len(moved)} of {len(before)} "
            "channels moved back"
        )


def _nats_engine() -> EngineHarness:
    try:
        module = importlib.import_module("tests.relay._nats_chaos")
    except ImportError as exc:
        raise SystemExit(
            f"the NATS harness is missing ({exc}): tests/relay/_nats_chaos.py, class NatsEngine"
        ) from None
    engine: EngineHarness = module.NatsEngine()
    return engine


ENGINES: dict[str, Any] = {
    "redis": RedisClusterEngine,
    "redis-single": RedisSingleEngine,
    "nats": _nats_engine,
}


def default_engines() -> list[str]:
    """redis, and nats when its harness (``tests/relay/_nats_chaos.py``) is there."""
    harness = Path(__file__).with_name("_nats_chaos.py")
    return ["redis", "nats"] if harness.exists() else ["redis"]


class RelayProcess:
    """One ``sfstream relay`` subprocess with its /healthz port and log file."""

    def __init__(self, index: int, logs: Path) -> None:
        self.index = index
        self.generation = 0
        self.logs = logs
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.exits: list[int] = []

    @property
    def holder(self) -> str:
        return f"relay{self.index}.{self.generation}"

    def start(self, org: Emulator, url: str, config: ChaosConfig, channels: Sequence[str]) -> None:
        self.generation += 1
        env = {
            **os.environ,
            "SFSTREAM_LOGIN_URL": org.login_url,
            "SFSTREAM_CONSUMER_KEY": org.consumer_key,
            "SFSTREAM_CONSUMER_SECRET": org.consumer_secret,
            "SFSTREAM_USERNAME": org.username,
            "SFSTREAM_PASSWORD": org.password,
        }
        log = (self.logs / f"{self.holder}.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "sfstream", *(["--debug"] if DEBUG else []), "relay",
                "--sink", url, "--name", SET, "--replay", "all",
                "--lease-ttl", str(config.lease_ttl), "--holder", self.holder,
                "--metrics", f"127.0.0.1:{self.port}", *channels,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            cwd=ROOT,
        )  # fmt: skip
        log.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    async def role(self, session: aiohttp.ClientSession) -> str | None:
        try:
            async with session.get(
                f"http://127.0.0.1:{self.port}/healthz", timeout=aiohttp.ClientTimeout(total=1)
            ) as response:
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        role: str = body["relays"][0]["role"]
        return role


@dataclasses.dataclass
class Report:
    engine: str
    published: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    stored: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    failovers: list[float] = dataclasses.field(default_factory=list)
    engine_faults: list[str] = dataclasses.field(default_factory=list)
    emulator_faults: Counter[str] = dataclasses.field(default_factory=Counter)
    unexpected_exits: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def lost(self) -> int:
        return sum(
            len(set(ids) - set(self.stored.get(ch, []))) for ch, ids in self.published.items()
        )

    @property
    def duplicates(self) -> int:
        return sum(len(ids) - len(set(ids)) for ids in self.stored.values())

    @property
    def out_of_order(self) -> int:
        return sum(
            sum(1 for a, b in itertools.pairwise(ids) if b <= a) for ids in self.stored.values()
        )

    @property
    def ok(self) -> bool:
        return self.lost == 0 and not self.problems

    def render(self, config: ChaosConfig) -> str:
        published = sum(len(ids) for ids in self.published.values())
        stored = sum(len(ids) for ids in self.stored.values())
        times = sorted(self.failovers)
        p50 = statistics.median(times) if times else float("nan")
        worst = times[-1] if times else float("nan")
        lines = [
            f"relay-chaos ({self.engine}): {config.channels} channels, {config.relays} relays, "
            f"lease TTL {config.lease_ttl:g} s",
            f"  published            {published:,}",
            f"  in the engine        {stored:,} entries",
            f"  lost                 {self.lost}",
            f"  duplicate entries    {self.duplicates} (each carries its replay id)",
            f"  out of order         {self.out_of_order}",
            f"  leader SIGKILLs      {len(self.failovers)}",
            f"  failover time        p50 {p50:.2f} s, max {worst:.2f} s",
            f"  engine faults        {len(self.engine_faults)}",
            *(f"    - {text}" for text in self.engine_faults),
            f"  emulator faults      {sum(self.emulator_faults.values())}: "
            + ", ".join(f"{name} {n}" for name, n in sorted(self.emulator_faults.items())),
            f"  unexpected exits     {len(self.unexpected_exits)}",
            *(f"    - {text}" for text in self.unexpected_exits),
            *(f"  problem: {text}" for text in self.problems),
            f"verdict ({self.engine}): "
            + (
                "PASS: 0 lost"
                if self.ok
                else f"FAIL: {self.lost} lost, {len(self.problems)} problems"
            ),
        ]
        return "\n".join(lines)


def _emulator_faults() -> dict[str, tuple[Any, bool]]:
    """The emulator's faults of ``nox -s chaos`` (not the proxy's, not restarts)."""
    from tests.reliability._campaign import FAULTS

    return {
        name: (injector, is_auth)
        for name, (injector, _weight, is_auth) in FAULTS.items()
        if not name.startswith("proxy") and name != "network outage"
    }


class Campaign:
    def __init__(self, config: ChaosConfig, engine: EngineHarness, logs: Path) -> None:
        self.config = config
        self.engine = engine
        self.logs = logs
        self.rng = random.Random(config.seed)
        self.channels = [f"/event/Chaos{i}__e" for i in range(config.channels)]
        self.report = Report(engine.name)
        self.report.published = {ch: [] for ch in self.channels}
        self.relays = [RelayProcess(i, logs) for i in range(config.relays)]
        self.org: Emulator | None = None
        self.done = asyncio.Event()
        self.stopping = False

    def say(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    async def run(self) -> Report:
        config = self.config
        names = [ch.removeprefix("/event/") for ch in self.channels]
        async with Emulator(
            events={name: ["N__c"] for name in names}, hold_time=0.2, session_expiry=5.0
        ) as org:
            self.org = org
            for relay in self.relays:
                relay.start(org, self.engine.sink_url(), config, self.channels)
            async with aiohttp.ClientSession() as session:
                self.session = session
                await self.leader(timeout=60)
                tasks = [
                    asyncio.create_task(self.publish()),
                    asyncio.create_task(self.watch()),
                ]
                if config.emulator_faults:
                    tasks.append(asyncio.create_task(self.emulator_faults()))
                try:
                    await self.kills()
                    self.done.set()
                    await tasks[0]
                    await self.settle()
                finally:
                    self.stopping = True
                    self.done.set()
                    for task in tasks[1:]:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    for relay in self.relays:
                        relay.kill()
        self.report.stored = await self.engine.entries(SET, self.channels)
        if len(self.report.failovers) < config.kills:
            self.report.problems.append(f"{len(self.report.failovers)} of {config.kills} kills")
        if len(self.report.engine_faults) < config.engine_faults:
            self.report.problems.append("an engine fault did not happen")
        lost_writes = getattr(self.engine, "lost_writes", None)
        if getattr(self.engine, "replicated_acks", False):
            # An engine that acknowledges only replicated writes (JetStream R3) must lose none.
            if lost_writes:
                self.report.problems.append(
                    f"the engine lost {lost_writes} acknowledged writes in a node fault"
                )
        elif lost_writes == 0:
            # Redis replicates asynchronously: the fault is staged to lose acknowledged writes.
            self.report.problems.append(
                "the engine fault lost no acknowledged write: the refill was not exercised"
            )
        return self.report

    async def leader(self, timeout: float = 60.0) -> RelayProcess:
        deadline = time.monotonic() + timeout
        roles: list[str | None] = []
        while time.monotonic() < deadline:
            self.restart_exited()  # also before watch() runs: a relay that exits at its start
            roles = [await relay.role(self.session) for relay in self.relays]
            leaders = [r for r, role in zip(self.relays, roles, strict=True) if role == "leader"]
            if len(leaders) == 1:
                return leaders[0]
            await asyncio.sleep(0.1)
        tails = "; ".join(
            f"{relay.holder} ({role}): {self.log_tail(relay)}"
            for relay, role in zip(self.relays, roles, strict=True)
        )
        raise RuntimeError(f"no single leader within the timeout: {tails}")

    def log_tail(self, relay: RelayProcess) -> str:
        log = (self.logs / f"{relay.holder}.log").read_text(errors="replace")
        return " | ".join(log.strip().splitlines()[-2:])

    def restart_exited(self) -> None:
        """Start again the relays that exited on their own (and report them)."""
        for relay in self.relays:
            code = relay.exited()
            if code is not None and code != -9:
                tail = self.log_tail(relay)
                self.report.unexpected_exits.append(f"{relay.holder} exit {code}: {tail}")
                self.say(f"{relay.holder} exited with {code}: {tail}")
                relay.start(self.org_or_fail(), self.engine.sink_url(), self.config, self.channels)

    async def publish(self) -> None:
        """Publish round-robin at a pace that spreads the events over the kills; go on until
        the kills are done too (so that each failover has events to move)."""
        config = self.config
        assert self.org is not None
        per_kill = config.lease_ttl + config.run_between + 2.0
        planned = max(10.0, per_kill * (config.kills + config.engine_faults))
        rate = config.events / planned
        published = 0
        started = time.monotonic()
        while published < config.events or not self.done.is_set():
            due = int((time.monotonic() - started) * rate) - published
            due = max(1, min(due, 2000))
            for _ in range(due):
                channel = self.channels[published % len(self.channels)]
                result = self.org.publish_nowait(channel, {"N__c": published})
                self.report.published[channel].append(result.replay_id)
                published += 1
            await asyncio.sleep(0.05)
        self.say(f"published {published:,} events")

    async def kills(self) -> None:
        config = self.config
        engine_at = {config.kills // 2 + i for i in range(config.engine_faults)}
        for index in range(config.kills):
            await asyncio.sleep(config.run_between)
            if index in engine_at:
                self.say("engine fault")
                text = await self.engine.fault(SET, self.channels)
                self.report.engine_faults.append(text)
                self.say(text)
                await self.leader(timeout=60)
                await asyncio.sleep(config.run_between)
            leader = await self.leader(timeout=60)
            before = await self.engine.count(SET, self.channels)
            killed_at = time.monotonic()
            leader.kill()
            base = max(before, await self.engine.count(SET, self.channels))
            while await self.engine.count(SET, self.channels) <= base:
                if time.monotonic() - killed_at > 4 * config.lease_ttl + 30:
                    self.report.problems.append(f"kill {index + 1}: no failover")
                    break
                await asyncio.sleep(0.05)
            else:
                took = time.monotonic() - killed_at
                self.report.failovers.append(took)
                self.say(f"kill {index + 1}/{config.kills}: {leader.holder} SIGKILLed, "
                         f"events flow again after {took:.2f} s")  # fmt: skip
            leader.start(self.org_or_fail(), self.engine.sink_url(), config, self.channels)

    def org_or_fail(self) -> Emulator:
        assert self.org is not None
        return self.org

    async def watch(self) -> None:
        """Restart relays that exited on their own (and report them)."""
        while not self.stopping:
            self.restart_exited()
            await asyncio.sleep(0.2)

    async def emulator_faults(self) -> None:
        faults = _emulator_faults()
        names = sorted(faults)
        org = self.org_or_fail()
        shim = SimpleNamespace(org=SimpleNamespace(emulator=org))
        while not self.done.is_set():
            await asyncio.sleep(self.rng.uniform(*self.config.fault_gap))
            name = self.rng.choice(names)
            injector, _is_auth = faults[name]
            if len(org.faults) > 0:
                # An armed fault waits for the next request: faults armed while no relay is
                # connected (a failover) would all hit the new leader's first requests at
                # once, which is not how faults happen. One at a time.
                continue
            result = injector(shim)
            if asyncio.iscoroutine(result):
                await result
            self.report.emulator_faults[name] += 1

    async def settle(self) -> None:
        deadline = time.monotonic() + self.config.settle
        want = {ch: ids[-1] for ch, ids in self.report.published.items() if ids}
        while time.monotonic() < deadline:
            stored = await self.engine.entries(SET, self.channels)
            if all(stored.get(ch, [])[-1:] == [last] for ch, last in want.items()):
                self.say("the engine holds the last event of every channel")
                return
            await asyncio.sleep(0.5)
        self.report.problems.append(f"not settled within {self.config.settle:g} s")


async def run(config: ChaosConfig) -> Report:
    factory = ENGINES.get(config.engine)
    if factory is None:
        raise SystemExit(f"unknown engine {config.engine!r} (known: {', '.join(ENGINES)})")
    engine: EngineHarness = factory()
    with tempfile.TemporaryDirectory(prefix="sfstream-relay-chaos-") as temporary:
        logs = tempfile.mkdtemp(prefix="sfstream-relay-chaos-logs-") if DEBUG else temporary
        if DEBUG:
            print(f"relay logs in {logs}", flush=True)
        await asyncio.to_thread(engine.start)
        try:
            return await Campaign(config, engine, Path(logs)).run()
        finally:
            await engine.close()
            await asyncio.to_thread(engine.stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.relay.chaos", description=__doc__)
    parser.add_argument(
        "--engine",
        action="append",
        help="redis or nats, repeatable (default: redis, and nats when its harness exists)",
    )
    parser.add_argument("--short", action="store_true", help="the short form for CI")
    parser.add_argument("--events", type=int)
    parser.add_argument("--kills", type=int)
    parser.add_argument("--relays", type=int)
    parser.add_argument("--lease-ttl", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--no-emulator-faults", action="store_true")
    args = parser.parse_args(argv)
    base = SHORT if args.short else ChaosConfig()
    changes = {
        key: value
        for key, value in (
            ("events", args.events),
            ("kills", args.kills),
            ("relays", args.relays),
            ("lease_ttl", args.lease_ttl),
            ("seed", args.seed),
        )
        if value is not None
    }
    if args.no_emulator_faults:
        changes["emulator_faults"] = False
    ok = True
    for name in args.engine or default_engines():
        config = dataclasses.replace(base, engine=name, **changes)
        print(
            f"relay-chaos ({name}): {config.events:,} events on {config.channels} channels, "
            f"{config.relays} relays, {config.kills} leader kills, {config.engine_faults} engine "
            f"faults, emulator faults {'on' if config.emulator_faults else 'off'}",
            flush=True,
        )
        report = asyncio.run(run(config))
        print(report.render(config), flush=True)
        ok = ok and report.ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
