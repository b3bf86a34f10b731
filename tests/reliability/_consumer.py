"""A consumer process for the crash-safety tests: run as ``python _consumer.py ...``.

It subscribes to channels with a durable replay store (``--storage shelve``, the default, or
``sqlite``: an :class:`~sfstream.SqliteStorage`) and the MANUAL policy, and
for each event: appends ``<run> <channel> <replay id>`` to the output file and fsyncs it (the
"processing"), then lets the store mark the event (``async with storage(message)``). Killed at
any point and started again, it resumes after the last marked event: an event may be processed
twice (killed between processing and marking), never skipped.

Credentials come from the environment (``SFSTREAM_TEST_*``), never from the command line.
Prints ``READY`` once subscribed and ``DONE`` once the marker of every ``--expect CHANNEL=ID``
reached that id (every event up to it was processed, in this run or an earlier one).

``--sync`` calls ``shelf.sync()`` after each marker: with the ``dbm.dumb`` backend (the one
Python falls back to without gdbm/ndbm, e.g. on Windows or minimal builds) an updated key is
only written to the index on sync/close, and a SIGKILL can leave a truncated marker behind
(see ``test_crash_safety.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shelve
import sys
from typing import Any

from sfstream import (
    DefaultMappingStorage,
    ReplayMarkerStorage,
    ReplayMarkerStoragePolicy,
    ReplayOption,
    SalesforceStreamingClient,
    SqliteStorage,
)
from sfstream.bayeux import ConstantBackoff


def _expectations(values: list[str]) -> dict[str, int]:
    expected = {}
    for value in values:
        channel, _, last = value.rpartition("=")
        expected[channel] = int(last)
    return expected


async def consume(args: argparse.Namespace) -> int:
    expected = _expectations(args.expect or [])
    shelf: shelve.Shelf[Any] | None = None
    storage: ReplayMarkerStorage
    if args.storage == "sqlite":
        storage = SqliteStorage(args.store, default_id=ReplayOption.ALL_EVENTS)
    else:
        shelf = shelve.open(args.store)  # noqa: SIM115 - closed at the end
        storage = DefaultMappingStorage(shelf, ReplayOption.ALL_EVENTS)
    client = SalesforceStreamingClient(
        consumer_key=os.environ["SFSTREAM_TEST_CONSUMER_KEY"],
        consumer_secret=os.environ["SFSTREAM_TEST_CONSUMER_SECRET"],
        username=os.environ["SFSTREAM_TEST_USERNAME"],
        password=os.environ["SFSTREAM_TEST_PASSWORD"],
        login_url=args.login_url,
        replay=storage,
        replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL,
        replay_fallback=ReplayOption.ALL_EVENTS,
        backoff=ConstantBackoff(0.05),
        connection_timeout=10,
    )
    with open(args.out, "a", encoding="ascii") as out:  # noqa: ASYNC230 - a local file
        async with client:
            for channel in args.channels:
                await client.subscribe(channel)
            print("READY", flush=True)

            async def done() -> bool:
                """Every expected event is marked (so processed, in this run or before)."""
                if not expected:
                    return False
                for channel, last in expected.items():
                    marked = await storage.get_replay_id(channel)
                    if marked is None or marked < last:
                        return False
                return True

            while not await done():
                message = await client.receive()
                channel = message["channel"]
                replay_id = message["data"]["event"]["replayId"]
                async with storage(message):
                    out.write(f"{args.run} {channel} {replay_id}\n")
                    out.flush()
                    os.fsync(out.fileno())
                if args.sync and shelf is not None:
                    shelf.sync()
    if shelf is not None:
        shelf.close()
    if isinstance(storage, SqliteStorage):
        await storage.aclose()
    print("DONE", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--login-url", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--run", type=int, default=0)
    parser.add_argument("--channels", nargs="+", required=True)
    parser.add_argument("--expect", nargs="*", metavar="CHANNEL=ID")
    parser.add_argument("--sync", action="store_true")
    parser.add_argument("--storage", choices=("shelve", "sqlite"), default="shelve")
    return asyncio.run(consume(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
