"""Crash safety: a consumer process killed with SIGKILL at random points loses nothing.

The emulator runs in the test process and outlives every consumer. A consumer
(:mod:`tests.reliability._consumer`, run with ``sys.executable``) keeps its replay markers in a
``shelve`` or an :class:`~sfstream.SqliteStorage` with the MANUAL policy and records every
event it processes (fsync'd) before marking it. It is killed at random moments while events
are being published, started again, and a last run goes on until the last published event of
each channel was processed. Then every published event must appear in the record (losses = 0);
events processed twice (killed between processing and marking) are counted and reported, and
only allowed across runs, never within one.
"""

from __future__ import annotations

import asyncio
import dbm.dumb
import os
import random
import shelve
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sfstream import MappingStorage, ReplayError
from sfstream.emulator import Emulator

CONSUMER = Path(__file__).with_name("_consumer.py")
EVENT = "/event/Crash__e"
CDC = "/data/AccountChangeEvent"


@dataclass
class CrashReport:
    published: dict[str, list[int]]
    processed: list[tuple[int, str, int]]  # (run, channel, replay id)
    kills: int

    def lost(self) -> dict[str, list[int]]:
        seen: dict[str, set[int]] = {}
        for _run, channel, replay_id in self.processed:
            seen.setdefault(channel, set()).add(replay_id)
        return {
            channel: sorted(set(ids) - seen.get(channel, set()))
            for channel, ids in self.published.items()
            if set(ids) - seen.get(channel, set())
        }

    def duplicates(self) -> int:
        counts = Counter((channel, replay_id) for _run, channel, replay_id in self.processed)
        return sum(count - 1 for count in counts.values())

    def duplicates_within_a_run(self) -> int:
        counts = Counter(self.processed)
        return sum(count - 1 for count in counts.values())

    def render(self) -> str:
        published = sum(map(len, self.published.values()))
        return (
            f"crash safety: {published} events published, {self.kills} SIGKILLs, "
            f"{len(self.processed)} processed, lost {sum(map(len, self.lost().values()))}, "
            f"duplicated {self.duplicates()} (within a run: {self.duplicates_within_a_run()})"
        )


def consumer_env(org: Emulator) -> dict[str, str]:
    return {
        **os.environ,
        "SFSTREAM_TEST_CONSUMER_KEY": org.consumer_key,
        "SFSTREAM_TEST_CONSUMER_SECRET": org.consumer_secret,
        "SFSTREAM_TEST_USERNAME": org.username,
        "SFSTREAM_TEST_PASSWORD": org.password,
    }


async def start_consumer(
    org: Emulator,
    tmp_path: Path,
    run: int,
    expect: dict[str, int] | None = None,
    storage: str = "shelve",
) -> asyncio.subprocess.Process:
    args = [
        str(CONSUMER),
        "--login-url",
        org.login_url,
        "--store",
        str(tmp_path / "replay"),
        "--out",
        str(tmp_path / "processed.txt"),
        "--run",
        str(run),
        "--sync",
        "--storage",
        storage,
        "--channels",
        EVENT,
        CDC,
    ]
    if expect is not None:
        args += ["--expect", *(f"{channel}={last}" for channel, last in expect.items())]
    stderr = (tmp_path / f"consumer-{run}.err").open("wb")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=consumer_env(org),
        )
    finally:
        stderr.close()


async def crash_campaign(
    tmp_path: Path, *, events: int, kills: int, seed: int, storage: str = "shelve"
) -> CrashReport:
    rng = random.Random(seed)
    published: dict[str, list[int]] = {EVENT: [], CDC: []}
    async with Emulator(events={EVENT.removeprefix("/event/"): ["N__c"]}, hold_time=0.2) as org:

        async def publish() -> None:
            for n in range(events):
                channel = (EVENT, CDC)[n % 2]
                payload = {"N__c": n} if channel == EVENT else {"Name": f"A{n}"}
                published[channel].append((await org.publish(channel, payload)).replay_id)
                await asyncio.sleep(rng.uniform(0.0, 0.04))

        publisher = asyncio.create_task(publish())
        for run in range(kills):
            process = await start_consumer(org, tmp_path, run, storage=storage)
            # anywhere from start-up (authenticating, subscribing) to deep in the stream
            await asyncio.sleep(rng.uniform(0.2, 2.0))
            process.send_signal(signal.SIGKILL)
            code = await process.wait()
            errors = (tmp_path / f"consumer-{run}.err").read_text()
            assert code == -signal.SIGKILL, f"consumer {run} ended by itself ({code}): {errors}"
        await publisher
        expect = {channel: ids[-1] for channel, ids in published.items()}
        process = await start_consumer(org, tmp_path, kills, expect, storage)
        try:
            async with asyncio.timeout(40):
                stdout, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            errors = (tmp_path / f"consumer-{kills}.err").read_text()
            pytest.fail(f"the last consumer did not finish: {errors}")
        errors = (tmp_path / f"consumer-{kills}.err").read_text()
        assert process.returncode == 0, errors
        assert b"DONE" in stdout
    processed = []
    for line in (tmp_path / "processed.txt").read_text().splitlines():
        run_text, channel, replay_id = line.split()
        processed.append((int(run_text), channel, int(replay_id)))
    return CrashReport(published, processed, kills)


@pytest.mark.parametrize("storage", ["shelve", "sqlite"])
@pytest.mark.timeout(90)
async def test_three_sigkills_lose_nothing(tmp_path: Path, storage: str) -> None:
    report = await crash_campaign(tmp_path, events=200, kills=3, seed=11, storage=storage)
    print(report.render())
    assert report.lost() == {}
    assert report.duplicates_within_a_run() == 0


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["shelve", "sqlite"])
@pytest.mark.timeout(300)
async def test_twelve_sigkills_lose_nothing(tmp_path: Path, storage: str) -> None:
    report = await crash_campaign(tmp_path, events=500, kills=12, seed=12, storage=storage)
    print(report.render())
    assert report.lost() == {}
    assert report.duplicates_within_a_run() == 0


KILLED_WRITER = """
import asyncio, dbm.dumb, os, shelve, signal, sys
from sfstream import MappingStorage, ReplayMarker

async def main():
    # dbm.dumb explicitly: the backend that keeps its index in memory (Python's fallback, and
    # what a shelve is on platforms without gdbm/ndbm); 3.13 would otherwise pick sqlite3
    shelf = shelve.Shelf(dbm.dumb.open(sys.argv[1], "c"))
    storage = MappingStorage(shelf)
    for replay_id in (200, 300):  # the pickled marker grows by a byte at 256
        if sys.argv[2] == "storage":
            await storage.extract_replay_id({
                "channel": "/event/Crash__e",
                "data": {"event": {"replayId": replay_id},
                         "payload": {"CreatedDate": "2026-01-01T00:00:00.000Z"}},
            })
        else:  # what any code writing the shelf directly leaves behind
            shelf["/event/Crash__e"] = ReplayMarker("2026-01-01T00:00:00.000Z", replay_id)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def dumb_shelf(path: Path) -> shelve.Shelf[Any]:
    """A shelf on dbm.dumb, whatever backend ``shelve.open`` would pick on this Python."""
    database: Any = dbm.dumb.open(str(path), "c")  # noqa: SIM115 - the shelf closes it
    return shelve.Shelf(database)


async def killed_after_two_markers(path: Path, writer: str = "storage") -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_WRITER, str(path), writer
    )
    assert await process.wait() == -signal.SIGKILL


async def test_a_marker_torn_by_a_kill_is_a_replay_error(tmp_path: Path) -> None:
    path = tmp_path / "replay"
    await killed_after_two_markers(path, "shelf")
    with dumb_shelf(path) as shelf, pytest.raises(ReplayError):
        await MappingStorage(shelf).get_replay_id("/event/Crash__e")


async def test_a_marker_survives_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "replay"
    await killed_after_two_markers(path)
    with dumb_shelf(path) as shelf:
        assert await MappingStorage(shelf).get_replay_id("/event/Crash__e") == 300
