"""Resume where the last run stopped: replay markers kept in a ``shelve`` file.

The first run receives every event Salesforce still retains (72 hours for platform events);
each later run continues right after the last event the previous one received, so events
published while nothing was running are not lost. Against the emulator
(``sfstream emulator --event Order__e:Amount__c,Item__c``)::

    python examples/resume_with_shelve.py --count 3    # the 3 retained events
    python examples/resume_with_shelve.py --count 1    # the next one, published meanwhile

The markers are stored in ``--store`` (``replay.db`` by default). Credentials come from the
``SFSTREAM_*`` environment variables, as in ``listen_platform_events.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shelve
import sys

from sfstream import DefaultMappingStorage, ReplayOption, SalesforceStreamingClient


async def listen(channel: str, store: str, count: int | None) -> None:
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
            # Nothing stored yet: every retained event. Then: after the stored marker.
            replay=DefaultMappingStorage(markers, ReplayOption.ALL_EVENTS),
        ) as client:
            await client.subscribe(channel)
            print(f"listening to {channel}", flush=True)
            received = 0
            async for message in client:  # its marker is stored as it is handed out
                print(message["data"]["event"]["replayId"], message["data"]["payload"], flush=True)
                received += 1
                if received == count:
                    break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channel", default="/event/Order__e", help="default: %(default)s")
    parser.add_argument("--store", default="replay.db", help="default: %(default)s")
    parser.add_argument("--count", type=int, help="stop after this many events")
    args = parser.parse_args()
    try:
        asyncio.run(listen(args.channel, args.store, args.count))
    except KeyboardInterrupt:
        # Ctrl-C cancelled listen(): on the way out, `async with` closed the client and
        # `with shelve.open(...)` closed the store, its markers on disk. No traceback.
        print("stopped (Ctrl-C)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
