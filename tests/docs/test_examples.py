"""Every script in ``examples/`` runs, as a user would run it, against an emulated org.

Each script runs in a subprocess with nothing but ``SFSTREAM_LOGIN_URL`` set (so the emulator's
default credentials, which the scripts default to, are checked too) and finishes by itself
(``--count``). A script without a scenario here fails :func:`test_every_example_has_a_scenario`.
"""

from __future__ import annotations

import asyncio
import os
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

pytestmark = pytest.mark.sfstream_emulator(events=["Order__e"])

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
    "redis_worker.py": redis_worker,
}


def test_every_example_has_a_scenario() -> None:
    scripts = {path.name for path in EXAMPLES.glob("*.py")}
    assert scripts == set(SCENARIOS), "add a scenario for each script in examples/"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_example(name: str, sfstream_emulator: Emulator, tmp_path: Path) -> None:
    await SCENARIOS[name](sfstream_emulator, tmp_path)
