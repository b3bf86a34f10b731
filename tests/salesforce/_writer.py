"""A marker writer process for the storage tests: ``python _writer.py BACKEND TARGET SEED N``.

BACKEND is ``sqlite`` (TARGET a file), ``redis`` (TARGET ``URL PREFIX``, space-separated) or
``cluster`` (the same, for a Redis Cluster). For n in 1..N it writes marker n of each
channel in :data:`CHANNELS`, then an older one picked by SEED (as a slower writer would), so
that writers race with old and new markers. With N = 0 it writes increasing markers until it is
killed, printing n once marker n of every channel is stored; else it prints ``READY`` once
the storage is open and starts when a line arrives on stdin; halfway it prints ``HALF`` and
waits for another line (so that a reader sees a state between the first and the last).
"""

from __future__ import annotations

import asyncio
import random
import sys
from datetime import UTC, datetime, timedelta

from sfstream import RedisStorage, ReplayMarker, ReplayMarkerStorage, SqliteStorage

CHANNELS = ("/event/Race__e", "/topic/Race?Status__c='Open' AND Name = 'é'")
START = datetime(2026, 1, 1, tzinfo=UTC)


def marker(n: int) -> ReplayMarker:
    """Marker n: later dates for larger n, in the forms Salesforce uses."""
    moment = START + timedelta(milliseconds=n)
    if n % 3 == 0:
        date = str(int(moment.timestamp() * 1000))  # CDC commitTimestamp
    elif n % 3 == 1:
        date = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    else:
        date = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"
    return ReplayMarker(date, n)


def open_storage(backend: str, target: str) -> ReplayMarkerStorage:
    if backend == "sqlite":
        return SqliteStorage(target)
    url, prefix = target.split(" ")
    return RedisStorage(url, prefix=prefix, cluster=backend == "cluster")


async def close_storage(storage: ReplayMarkerStorage) -> None:
    if isinstance(storage, SqliteStorage | RedisStorage):
        await storage.aclose()


async def main(backend: str, target: str, seed: int, count: int) -> None:
    storage = open_storage(backend, target)
    try:
        if count == 0:
            n = 0
            while True:
                n += 1
                for channel in CHANNELS:
                    await storage.set_replay_marker(channel, marker(n))
                print(n, flush=True)
        rng = random.Random(seed)
        print("READY", flush=True)
        sys.stdin.readline()  # all writers start together
        for n in range(1, count + 1):
            if n == count // 2 + 1:  # halfway: wait until the reader has seen this state
                print("HALF", flush=True)
                sys.stdin.readline()
            for channel in CHANNELS:
                await storage.set_replay_marker(channel, marker(n))
                # and an older one, as a slower consumer (or a replay) would write it
                await storage.set_replay_marker(channel, marker(max(1, n - rng.randint(1, 30))))
    finally:
        await close_storage(storage)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
