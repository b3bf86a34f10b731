"""Every script in ``examples/`` runs, as a user would run it, against an emulated org.

Each script runs in a subprocess with nothing but ``SFSTREAM_LOGIN_URL`` set (so the emulator's
default credentials, which the scripts default to, are checked too) and finishes by itself
(``--count``). A script without a scenario here fails :func:`test_every_example_has_a_scenario`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sfstream.emulator import Emulator
from sfstream.testing import wait_for_subscription

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CHANNEL = "/event/Order__e"
#: Seconds a script may run.
TIMEOUT = 20.0

pytestmark = pytest.mark.sfstream_emulator(events={"Order__e": ["Amount__c", "N__c"]})

Scenario = Callable[[Emulator, Path], Awaitable[None]]


async def start(name: str, *args: str, org: Emulator, cwd: Path) -> asyncio.subprocess.Process:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SFSTREAM_") and "proxy" not in key.lower()
    }
    environment["SFSTREAM_LOGIN_URL"] = org.login_url
    environment["PYTHONUNBUFFERED"] = "1"
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / name),
        *args,
        cwd=cwd,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(process: asyncio.subprocess.Process) -> list[str]:
    """The lines the script printed; it must exit with status 0 in time."""
    try:
        async with asyncio.timeout(TIMEOUT):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    return stdout.decode().splitlines()


async def run(name: str, *args: str, org: Emulator, cwd: Path) -> list[str]:
    return await finish(await start(name, *args, org=org, cwd=cwd))


async def publish_amounts(org: Emulator, *amounts: int) -> None:
    for amount in amounts:
        await org.publish(CHANNEL, {"Amount__c": amount})


def amounts(lines: list[str]) -> list[int]:
    """The ``Amount__c`` values of the printed payloads, in order."""
    found = []
    for line in lines:
        _, marker, rest = line.partition("'Amount__c': ")
        if marker:
            found.append(int(rest.rstrip("}")))
    return found


# -- scenarios --------------------------------------------------------------------------------


async def listen_platform_events(org: Emulator, cwd: Path) -> None:
    process = await start("listen_platform_events.py", "--count", "2", org=org, cwd=cwd)
    await wait_for_subscription(org, CHANNEL, timeout=TIMEOUT)
    await publish_amounts(org, 10, 20)
    lines = await finish(process)
    assert lines[0] == f"listening to {CHANNEL}"
    assert amounts(lines) == [10, 20]
    assert [line.split()[0] for line in lines[1:]] == ["1", "2"]


async def resume_with_shelve(org: Emulator, cwd: Path) -> None:
    await publish_amounts(org, 1, 2)
    first = await run("resume_with_shelve.py", "--count", "2", org=org, cwd=cwd)
    assert amounts(first) == [1, 2]  # everything retained, on the first run
    await publish_amounts(org, 3)
    second = await run("resume_with_shelve.py", "--count", "1", org=org, cwd=cwd)
    assert amounts(second) == [3]  # after the stored marker
    assert replay_store_written(cwd)


def replay_store_written(folder: Path) -> bool:
    return any(folder.glob("replay.db*"))


async def manual_replay_policy(org: Emulator, cwd: Path) -> None:
    await publish_amounts(org, 1, 2, 3)
    first = await run("manual_replay_policy.py", "--count", "3", "--fail-at", "2", org=org, cwd=cwd)
    assert amounts(first) == [1]
    assert first[-1] == "could not process event 2: stopping; the next run starts with it"
    second = await run("manual_replay_policy.py", "--count", "2", org=org, cwd=cwd)
    assert amounts(second) == [2, 3]  # the failed event again, then the next


async def jwt_bearer(org: Emulator, cwd: Path) -> None:
    key = cwd / "server.key"
    key.write_text(org.generate_jwt_key())  # the org trusts its public key
    process = await start(
        "jwt_bearer.py", "--private-key", str(key), "--count", "1", org=org, cwd=cwd
    )
    await wait_for_subscription(org, CHANNEL, timeout=TIMEOUT)
    await publish_amounts(org, 42)
    lines = await finish(process)
    assert lines[0] == f"listening to {CHANNEL} as {org.username}"
    assert amounts(lines) == [42]


async def bayeux_mock_transport(org: Emulator, cwd: Path) -> None:
    lines = await run("bayeux_mock_transport.py", org=org, cwd=cwd)
    assert lines[0].startswith("total 42.5;")


async def nats_worker(org: Emulator, cwd: Path) -> None:
    # The relay's side, done with the sink itself: three events in JetStream (real nats-server).
    from sfstream.relay import RelayEvent
    from sfstream.relay._nats import NatsSink
    from tests.relay._nats_servers import NatsServer

    with NatsServer(cwd) as server:
        async with NatsSink(server.url) as sink:
            lease = await sink.acquire("orders", "relay", 10)
            assert lease is not None
            events = []
            for replay_id, amount in enumerate((42, 7, 9), 1):
                message = {"channel": CHANNEL, "data": {"payload": {"Amount__c": amount}}}
                events.append(
                    RelayEvent(org.org_id, CHANNEL, replay_id, "", json.dumps(message).encode())
                )
            await sink.write(lease, events)
        lines = await run(
            "nats_worker.py", "--server", server.url, "--count", "3", org=org, cwd=cwd
        )
    assert lines == [f'{CHANNEL} {n} {{"Amount__c": {a}}}' for n, a in ((1, 42), (2, 7), (3, 9))]


async def redis_worker(org: Emulator, cwd: Path) -> None:
    """``sfstream relay`` writes into a real redis-server; the worker example reads it back."""
    import re

    from tests.relay._engines import RedisServer

    server = RedisServer(cwd / "redis").start()
    relay = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sfstream",
        "relay",
        "--sink",
        server.url,
        "--name",
        "orders",
        "--replay",
        "all",
        CHANNEL,
        env={
            **os.environ,
            "SFSTREAM_LOGIN_URL": org.login_url,
            "SFSTREAM_CONSUMER_KEY": org.consumer_key,
            "SFSTREAM_CONSUMER_SECRET": org.consumer_secret,
            "SFSTREAM_USERNAME": org.username,
            "SFSTREAM_PASSWORD": org.password,
        },
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await publish_amounts(org, 10, 20)
        lines = await run(
            "redis_worker.py",
            "--redis",
            server.url,
            "--set",
            "orders",
            "--channel",
            CHANNEL,
            "--count",
            "2",
            org=org,
            cwd=cwd,
        )
    finally:
        relay.kill()
        await relay.wait()
        server.stop()
    assert [int(m) for line in lines for m in re.findall(r"'Amount__c': (\d+)", line)] == [10, 20]
    assert all(line.startswith(f"{CHANNEL} #") for line in lines)


SCENARIOS: dict[str, Scenario] = {
    "listen_platform_events.py": listen_platform_events,
    "resume_with_shelve.py": resume_with_shelve,
    "manual_replay_policy.py": manual_replay_policy,
    "jwt_bearer.py": jwt_bearer,
    "bayeux_mock_transport.py": bayeux_mock_transport,
    "nats_worker.py": nats_worker,
    "redis_worker.py": redis_worker,
}


async def read_lines_until(process: asyncio.subprocess.Process, count: int, what: str) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(TIMEOUT):
        while sum(what in line for line in lines) < count:
            lines.append((await process.stdout.readline()).decode())
    return lines


@pytest.mark.parametrize("name", ["resume_with_shelve.py", "listen_platform_events.py"])
async def test_ctrl_c_closes_the_client_and_saves_the_store(
    name: str, sfstream_emulator: Emulator, tmp_path: Path
) -> None:
    """The documented loop stopped by Ctrl-C: no traceback, nothing left open, exit status
    130, and (with a store) the next run resumes after the last event printed."""
    org = sfstream_emulator
    process = await start(name, org=org, cwd=tmp_path)
    await wait_for_subscription(org, CHANNEL, timeout=TIMEOUT)
    await publish_amounts(org, 1, 2)
    await read_lines_until(process, 2, "Amount__c")
    process.send_signal(signal.SIGINT)
    async with asyncio.timeout(TIMEOUT):
        _, stderr = await process.communicate()
    assert process.returncode == 130
    text = stderr.decode()
    assert text == "stopped (Ctrl-C)\n"  # no traceback, no "Unclosed client session"
    if name == "resume_with_shelve.py":
        await publish_amounts(org, 3)
        again = await run(name, "--count", "1", org=org, cwd=tmp_path)
        assert amounts(again) == [3]  # the markers of 1 and 2 were on disk


async def test_ctrl_c_stops_the_redis_worker_cleanly(
    sfstream_emulator: Emulator, tmp_path: Path
) -> None:
    """The worker waits for entries (XREADGROUP) until Ctrl-C: then it says so, with no
    traceback, and exits with status 130."""
    import redis.asyncio as aioredis

    from tests.relay._engines import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    try:
        process = await start(
            "redis_worker.py",
            "--redis",
            server.url,
            "--channel",
            CHANNEL,
            org=sfstream_emulator,
            cwd=tmp_path,
        )
        redis = aioredis.Redis.from_url(server.url)
        try:
            for _ in range(int(TIMEOUT / 0.05)):
                if await redis.exists(f"sfstream:{{sfstream}}:{CHANNEL}"):
                    break  # the worker made its group: it is waiting for entries
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the worker never made its consumer group")
        finally:
            await redis.aclose()
        await asyncio.sleep(0.2)  # into XREADGROUP (Ctrl-C anywhere must end cleanly anyway)
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(TIMEOUT):
            _, stderr = await process.communicate()
    finally:
        server.stop()
    assert stderr.decode() == "stopped (Ctrl-C)\n"
    assert process.returncode == 130


def test_every_example_has_a_scenario() -> None:
    scripts = {path.name for path in EXAMPLES.glob("*.py")}
    assert scripts == set(SCENARIOS), "add a scenario for each script in examples/"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_example(name: str, sfstream_emulator: Emulator, tmp_path: Path) -> None:
    await SCENARIOS[name](sfstream_emulator, tmp_path)
