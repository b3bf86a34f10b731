"""Print the events of a platform event channel: the smallest complete listener.

Try it against the emulator. In one terminal::

    sfstream emulator --event Order__e:Amount__c,Item__c

in another::

    python examples/listen_platform_events.py --count 3

and publish three events (``sfstream publish /event/Order__e '{"Amount__c": 42}'``, or
``curl -X POST localhost:8808/_emulator/publish -d '{"channel": "/event/Order__e",
"payload": {"Amount__c": 42}, "count": 3}'``).

The credentials come from the environment (``SFSTREAM_LOGIN_URL``, ``SFSTREAM_CONSUMER_KEY``,
``SFSTREAM_CONSUMER_SECRET``, ``SFSTREAM_USERNAME``, ``SFSTREAM_PASSWORD``); without them, the
emulator's well-known demo values are used. For a real org, set them (the login URL is your My
Domain, e.g. ``https://acme.my.salesforce.com``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from sfstream import SalesforceStreamingClient


async def listen(channel: str, count: int | None) -> None:
    async with SalesforceStreamingClient(
        consumer_key=os.environ.get("SFSTREAM_CONSUMER_KEY", "3MVG9sfstreamEmulatorConsumerKey"),
        consumer_secret=os.environ.get(
            "SFSTREAM_CONSUMER_SECRET", "sfstream-emulator-consumer-secret"
        ),
        username=os.environ.get("SFSTREAM_USERNAME", "user@example.com"),
        password=os.environ.get("SFSTREAM_PASSWORD", "password"),
        login_url=os.environ.get("SFSTREAM_LOGIN_URL", "http://127.0.0.1:8808"),
    ) as client:
        await client.subscribe(channel)
        print(f"listening to {channel}", flush=True)
        received = 0
        async for message in client:
            event = message["data"]["event"]
            print(event["replayId"], message["data"]["payload"], flush=True)
            received += 1
            if received == count:
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channel", default="/event/Order__e", help="default: %(default)s")
    parser.add_argument("--count", type=int, help="stop after this many events")
    args = parser.parse_args()
    try:
        asyncio.run(listen(args.channel, args.count))
    except KeyboardInterrupt:
        # Ctrl-C cancelled listen(): on the way out, `async with` closed the client.
        # No traceback: say so and exit with the shell's status for Ctrl-C.
        print("stopped (Ctrl-C)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
