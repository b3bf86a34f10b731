"""aiosfstream-ng 0.7.5 from PyPI, pointed at the sfstream emulator (runs in its own venv).

Usage: python aiosfstream_ng_client.py LOGIN_URL CONSUMER_KEY CONSUMER_SECRET USERNAME PASSWORD
CHANNEL...

Prints ``{"event": "subscribed"}`` once every channel is subscribed, then one JSON line per
message received (``{"event": "message", "message": ...}``), until stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from aiosfstream_ng import Client, PasswordAuthenticator


class EmulatorAuthenticator(PasswordAuthenticator):
    """aiosfstream-ng posts to login.salesforce.com: point its token URL at the emulator."""

    def __init__(self, login_url: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.login_url = login_url

    @property
    def _token_url(self) -> str:
        return self.login_url + "/services/oauth2/token"


def emit(value: Any) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def main(
    login_url: str, key: str, secret: str, username: str, password: str, channels: list[str]
) -> None:
    auth = EmulatorAuthenticator(login_url, key, secret, username, password)
    # connection_timeout=0 disables aiosfstream-ng's watchdog, which crashes on Python 3.11
    # (it still passes loop= to asyncio.wait_for): a known defect of the package, not ours.
    client = Client(auth, connection_timeout=0)
    await client.open()
    for channel in channels:
        await client.subscribe(channel)
    emit({"event": "subscribed"})
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    try:
        while not stdin_closed.done():
            receive = asyncio.ensure_future(client.receive())
            done, _ = await asyncio.wait({receive, stdin_closed}, return_when="FIRST_COMPLETED")
            if receive in done:
                emit({"event": "message", "message": receive.result()})
            else:
                receive.cancel()
    finally:
        await client.close()


if __name__ == "__main__":
    login_url, key, secret, username, password, *channels = sys.argv[1:]
    asyncio.run(main(login_url, key, secret, username, password, channels))
