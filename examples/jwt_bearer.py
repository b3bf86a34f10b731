"""Log in with the JWT bearer flow (a private key, no password) and print events.

Needs the ``jwt`` extra: ``pip install ".[jwt]"`` in the sfstream checkout. The connected app
holds the certificate of your key and the user is pre-authorised for it. To try it against the
emulator, make a key pair and start the emulator with the certificate::

    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=sfstream \\
        -keyout server.key -out server.crt
    sfstream emulator --event Order__e:Amount__c,Item__c --jwt-public-key server.crt

then::

    python examples/jwt_bearer.py --private-key server.key --count 3

and publish three events to ``/event/Order__e``. ``SFSTREAM_JWT_KEY_FILE``,
``SFSTREAM_CONSUMER_KEY``, ``SFSTREAM_USERNAME`` and ``SFSTREAM_LOGIN_URL`` (your My Domain)
set the rest; the defaults are the emulator's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from sfstream import Client, JwtBearerAuthenticator


async def listen(private_key: str, channel: str, count: int | None) -> None:
    auth = JwtBearerAuthenticator(
        consumer_key=os.environ.get("SFSTREAM_CONSUMER_KEY", "3MVG9sfstreamEmulatorConsumerKey"),
        username=os.environ.get("SFSTREAM_USERNAME", "user@example.com"),
        private_key=private_key,  # a path, or the PEM text itself
        login_url=os.environ.get("SFSTREAM_LOGIN_URL", "http://127.0.0.1:8808"),
    )
    async with Client(auth) as client:
        await client.subscribe(channel)
        print(f"listening to {channel} as {auth.username}", flush=True)
        received = 0
        async for message in client:
            print(message["data"]["event"]["replayId"], message["data"]["payload"], flush=True)
            received += 1
            if received == count:
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--private-key",
        default=os.environ.get("SFSTREAM_JWT_KEY_FILE", "server.key"),
        help="PEM file of the RSA private key (default: $SFSTREAM_JWT_KEY_FILE or server.key)",
    )
    parser.add_argument("--channel", default="/event/Order__e", help="default: %(default)s")
    parser.add_argument("--count", type=int, help="stop after this many events")
    args = parser.parse_args()
    try:
        asyncio.run(listen(args.private_key, args.channel, args.count))
    except KeyboardInterrupt:
        # Ctrl-C cancelled listen(): on the way out, `async with` closed the client.
        # No traceback: say so and exit with the shell's status for Ctrl-C.
        print("stopped (Ctrl-C)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
