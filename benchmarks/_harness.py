"""Starting the emulator process and the clients, and talking to them."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks._common import ROOT, Child, ChildError, bench_python, python_child_env
from benchmarks._peers import Peer

PLATFORM_CHANNEL = "/event/Bench__e"
CDC_CHANNEL = "/data/AccountChangeEvent"


class Server:
    """The emulator in its own process (:mod:`benchmarks._server`)."""

    def __init__(self, child: Child, ready: dict[str, Any]) -> None:
        self.child = child
        self.ready = ready

    @classmethod
    async def start(
        cls,
        *,
        platform_events: int = 0,
        cdc_events: int = 0,
        max_batch: int = 10_000,
        hold_time: float = 25.0,
        connect_delay: float = 0.0,
        extra_events: tuple[str, ...] = (),
    ) -> Server:
        argv = [
            bench_python(),
            "-m",
            "benchmarks._server",
            "--platform-events",
            str(platform_events),
            "--cdc-events",
            str(cdc_events),
            "--max-batch",
            str(max_batch),
            "--hold-time",
            str(hold_time),
            "--connect-delay",
            str(connect_delay),
            "--extra-events",
            ",".join(extra_events),
        ]
        child = await Child.start("emulator", argv, cwd=ROOT, env=python_child_env())
        # Publishing a million events takes a while: allow 60 s per million plus a margin.
        budget = 60 + (platform_events + 2 * cdc_events) * 60e-6
        ready = await child.expect("ready", budget)
        return cls(child, ready)

    @property
    def login_url(self) -> str:
        return str(self.ready["login_url"])

    def credentials(self) -> list[str]:
        r = self.ready
        return [
            "--login-url",
            r["login_url"],
            "--consumer-key",
            r["consumer_key"],
            "--consumer-secret",
            r["consumer_secret"],
            "--username",
            r["username"],
            "--password",
            r["password"],
        ]

    async def cpu(self) -> float:
        """The emulator process's CPU seconds so far."""
        self.child.send({"op": "cpu"})
        answer = await self.child.expect("cpu", 30)
        return float(answer["cpu"])

    async def stop(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.child.send({"op": "stop"})
        await self.child.stop()


@dataclass
class ClientSpec:
    """One client to benchmark: sfstream with a JSON library, or a peer."""

    key: str
    label: str
    runtime: str
    kind: str  # "sfstream", "aiosfstream", "jsforce"
    argv: list[str] = field(default_factory=list)
    cwd: Path | None = None
    json_lib: str = "json"
    error: str | None = None
    #: extra environment (``PYTHONPATH`` of another sfstream tree, for before/after runs)
    env: dict[str, str] = field(default_factory=dict)
    #: extra arguments for an sfstream drain (``--work-us``, ``--max-pending-count``)
    extra: list[str] = field(default_factory=list)

    @classmethod
    def sfstream(cls, json_lib: str, source: str | None = None, name: str = "") -> ClientSpec:
        """sfstream with ``json_lib``; ``source``: another ``src`` folder to import it from."""
        import platform

        suffix = f"-{name}" if name else ""
        return cls(
            key=f"sfstream-{json_lib}{suffix}",
            label=f"sfstream ({json_lib}{', ' + name if name else ''})",
            env={"PYTHONPATH": source} if source else {},
            runtime=f"Python {platform.python_version()}",
            kind="sfstream",
            argv=[bench_python(), "-m", "benchmarks._client_sfstream"],
            cwd=ROOT,
            json_lib=json_lib,
        )

    @classmethod
    def peer(cls, peer: Peer) -> ClientSpec:
        kind = "jsforce" if peer.name == "jsforce" else "aiosfstream"
        return cls(
            key=peer.name,
            label=peer.label,
            runtime=peer.runtime,
            kind=kind,
            argv=list(peer.argv),
            cwd=peer.cwd,
            error=peer.error,
        )

    def drain_argv(self, server: Server, channel: str, count: int, stall: float) -> list[str]:
        common = ["--channel", channel, "--count", str(count), "--stall", str(stall)]
        if self.kind == "sfstream":
            return [
                *self.argv,
                "drain",
                *server.credentials(),
                *common,
                "--json",
                self.json_lib,
                *self.extra,
            ]
        if self.kind == "aiosfstream":
            return [*self.argv, *server.credentials(), *common]
        return [
            *self.argv,
            "--instance-url",
            server.ready["instance_url"],
            "--token",
            server.ready["access_token"],
            *common,
        ]


async def drain(
    server: Server, spec: ClientSpec, channel: str, count: int, stall: float
) -> dict[str, Any]:
    """One drain of ``count`` events by ``spec``; the result line plus the emulator's CPU."""
    env = {**python_child_env(), **spec.env} if spec.kind != "jsforce" else None
    child = await Child.start(
        spec.label, spec.drain_argv(server, channel, count, stall), cwd=spec.cwd, env=env
    )
    try:
        await child.expect("ready", 60)
        before = await server.cpu()
        started = time.perf_counter()
        child.send({"op": "go"})
        # The child gives up by itself after `stall` seconds without an event; this bound
        # only catches a child that hangs without saying anything.
        result = await child.expect("done", stall * 4 + count * 1e-3 + 60)
        elapsed = time.perf_counter() - started
        after = await server.cpu()
    except ChildError as exc:
        return {"error": str(exc).splitlines()[0][:300], "count": count}
    finally:
        await child.stop()
    if result.get("received") != count or result.get("last_replay_id") != count:
        return {
            "error": f"received {result.get('received')} events, last replay id "
            f"{result.get('last_replay_id')}, expected {count}",
            "count": count,
        }
    result["server_cpu"] = after - before
    result["observed"] = elapsed
    result["count"] = count
    return result


# -- raw capture of reply bodies (the parse floor) ---------------------------------------------


async def capture(
    server: Server, channel: str, count: int, api_version: str = "67.0"
) -> dict[str, Any]:
    """Fetch the backlog of ``channel`` with bare aiohttp POSTs, keeping every reply body.

    The bodies are the bytes a client of ``api_version`` receives for the same backlog; the
    wall and CPU time of this loop (no parsing beyond counting) show how fast the emulator
    serves the backlog to a client that does nothing with it.
    """
    r = server.ready
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        form = {
            "grant_type": "password",
            "client_id": r["consumer_key"],
            "client_secret": r["consumer_secret"],
            "username": r["username"],
            "password": r["password"],
        }
        async with session.post(r["token_url"], data=form) as response:
            token = await response.json()
        url = f"{token['instance_url']}/cometd/{api_version}"
        headers = {
            "Authorization": f"Bearer {token['access_token']}",
            "Content-Type": "application/json",
        }

        async def post(messages: list[dict[str, Any]]) -> bytes:
            async with session.post(
                url, data=json.dumps(messages), headers=headers, timeout=aiohttp.ClientTimeout(60)
            ) as response:
                response.raise_for_status()
                return await response.read()

        handshake = json.loads(
            await post(
                [
                    {
                        "channel": "/meta/handshake",
                        "version": "1.0",
                        "supportedConnectionTypes": ["long-polling"],
                        "id": "1",
                    }
                ]
            )
        )
        client_id = handshake[0]["clientId"]
        connect = {
            "channel": "/meta/connect",
            "clientId": client_id,
            "connectionType": "long-polling",
        }
        await post([{**connect, "advice": {"timeout": 0}, "id": "2"}])
        cpu = time.process_time()
        wall = time.perf_counter()
        subscribe = {
            "channel": "/meta/subscribe",
            "clientId": client_id,
            "subscription": channel,
            "ext": {"replay": {channel: -2}},
            "id": "3",
        }
        reply = json.loads(await post([subscribe]))
        if not reply[0].get("successful"):
            raise RuntimeError(f"the capture could not subscribe to {channel}: {reply}")
        bodies: list[bytes] = []
        received = 0
        ident = 4
        deadline = time.monotonic() + 120 + count * 1e-4
        while received < count and time.monotonic() < deadline:
            body = await post([{**connect, "id": str(ident)}])
            ident += 1
            events = body.count(b'"replayId"')
            if events:
                bodies.append(body)
                received += events
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
        await post([{"channel": "/meta/disconnect", "clientId": client_id, "id": str(ident)}])
    if received < count:
        raise RuntimeError(f"the capture got {received} of {count} events from {channel}")
    return {"bodies": bodies, "events": received, "wall": wall, "cpu": cpu}
