"""Store a replay marker only once its event is processed (``ReplayMarkerStoragePolicy.MANUAL``).

With the default policy (AUTOMATIC) an event's marker is stored as soon as it is handed to
you, so an event whose processing fails is not received again after a restart. With MANUAL
you store it yourself, once the work is done: what was not finished is replayed by the next
run (at least once: make the processing idempotent).

``--fail-at N`` makes the processing of the N-th event fail, as a crash would; the next run
starts with that event again. Against the emulator
(``sfstream emulator --event Order__e:Amount__c,Item__c``), with three events published::

    python examples/manual_replay_policy.py --count 3 --fail-at 2   # 1 done, 2 fails
    python examples/manual_replay_policy.py --count 2               # 2 and 3 done

Credentials come from the ``SFSTREAM_*`` environment variables, as in
``listen_platform_events.py``.
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
    ReplayMarkerStoragePolicy,
    ReplayOption,
    SalesforceStreamingClient,
)


class ProcessingFailed(Exception):
    pass


async def process(message: dict[str, Any], fail: bool) -> None:
    """The application's work (here: printing). Raises to simulate a failure."""
    replay_id = message["data"]["event"]["replayId"]
    if fail:
        raise ProcessingFailed(f"could not process event {replay_id}")
    print("processed", replay_id, message["data"]["payload"], flush=True)


async def listen(channel: str, store: str, count: int | None, fail_at: int | None) -> None:
    with shelve.open(store) as markers:  # noqa: S301 - a file this script writes
        async with SalesforceStreamingClient(
            consumer_key=os.environ.get(
                "SFSTREAM_CONSUMER_KEY", "3MVG9sfstreamEmulatorConsumerKey"
            ),
            consumer_secret=os.environ.get(
                "SFSTREAM_CONSUMER_SECRET", "sfstream-emulator-consumer-secret"
            ),
            username=os.environ.get("SFSTREAM_USERNAME", "user@example.com"),
            password=os.environ.get("SFSTREAM_PASSWORD", "password"),
            login_url=os.environ.get("SFSTREAM_LOGIN_URL", "http://127.0.0.1:8808"),
            replay=DefaultMappingStorage(markers, ReplayOption.ALL_EVENTS),
            replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL,
        ) as client:
            await client.subscribe(channel)
            received = 0
            async for message in client:
                received += 1
                try:
                    # The marker is stored when the block ends without an exception.
                    async with client.replay_storage(message):
                        await process(message, fail=received == fail_at)
                except ProcessingFailed as error:
                    print(f"{error}: stopping; the next run starts with it", flush=True)
                    return
                if received == count:
                    return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channel", default="/event/Order__e", help="default: %(default)s")
    parser.add_argument("--store", default="replay.db", help="default: %(default)s")
    parser.add_argument("--count", type=int, help="stop after this many events")
    parser.add_argument("--fail-at", type=int, help="fail to process the N-th event")
    args = parser.parse_args()
    try:
        asyncio.run(listen(args.channel, args.store, args.count, args.fail_at))
    except KeyboardInterrupt:
        # Ctrl-C cancelled listen(): on the way out, `async with` closed the client and
        # `with shelve.open(...)` closed the store, its markers on disk. No traceback.
        print("stopped (Ctrl-C)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
