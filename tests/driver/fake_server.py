"""A small in-memory Bayeux server for driving BayeuxClient through MockTransport."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from sfstream.bayeux import Message, Request, matches

Override = Callable[[Request], list[Message] | None]


class FakeBayeuxServer:
    """Speaks enough Bayeux for the driver: sessions, subscriptions, held connects, publish.

    ``script`` holds one-shot overrides: each is called with the next request and may return
    the reply (or raise to simulate a transport failure); returning None lets the server answer.
    """

    def __init__(
        self,
        *,
        hold: float = 0.05,
        unknown_client: str = "403::Unknown client",
        connection_types: tuple[str, ...] = ("long-polling",),
    ) -> None:
        self.hold = hold
        self.connection_types = connection_types
        self.unknown_client = unknown_client
        self.sessions: dict[str, set[str]] = {}
        self.pending: dict[str, list[Message]] = {}
        self.script: deque[Override] = deque()
        self.requests: list[Request] = []
        self.channels_seen: list[str] = []
        self._ids = itertools.count(1)
        self._wakeup = asyncio.Event()

    # -- test controls ---------------------------------------------------------------------

    def publish(self, channel: str, data: Any) -> int:
        """Queue ``data`` for every session subscribed to ``channel``; return how many."""
        count = 0
        for client_id, subscriptions in self.sessions.items():
            if any(matches(pattern, channel) for pattern in subscriptions):
                self.pending[client_id].append({"channel": channel, "data": data})
                count += 1
        self._wakeup.set()
        return count

    def forget_all(self) -> None:
        """Forget every session, as a restarted server does."""
        self.sessions.clear()
        self.pending.clear()
        self._wakeup.set()

    def count(self, channel: str) -> int:
        return self.channels_seen.count(channel)

    # -- the handler -----------------------------------------------------------------------

    async def __call__(self, request: Request) -> list[Message]:
        self.requests.append(request)
        self.channels_seen.extend(m["channel"] for m in request.messages)
        if self.script:
            reply = self.script.popleft()(request)
            if reply is not None:
                return reply
        replies: list[Message] = []
        for message in request.messages:
            replies.extend(await self._answer(message))
        return replies

    def _unknown(self, reply: Message) -> Message:
        reply["successful"] = False
        reply["error"] = self.unknown_client
        reply["advice"] = {"reconnect": "handshake", "interval": 0}
        return reply

    async def _answer(self, message: Message) -> list[Message]:
        channel = message["channel"]
        reply: Message = {"channel": channel, "id": message["id"]}
        if channel == "/meta/handshake":
            client_id = f"client{next(self._ids)}"
            self.sessions[client_id] = set()
            self.pending[client_id] = []
            reply["successful"] = True
            reply["clientId"] = client_id
            reply["version"] = "1.0"
            reply["supportedConnectionTypes"] = list(self.connection_types)
            return [reply]
        client_id = message.get("clientId", "")
        if client_id not in self.sessions:
            return [self._unknown(reply)]
        reply["clientId"] = client_id
        if channel == "/meta/connect":
            first = message.get("advice", {}).get("timeout") == 0
            if not first and not self.pending[client_id]:
                self._wakeup.clear()
                try:
                    async with asyncio.timeout(self.hold):
                        await self._wakeup.wait()
                except TimeoutError:
                    pass
            if client_id not in self.sessions:
                return [self._unknown(reply)]
            events, self.pending[client_id] = self.pending[client_id], []
            reply["successful"] = True
            reply["advice"] = {
                "reconnect": "retry",
                "interval": 0,
                "timeout": int(self.hold * 1000),
            }
            return [*events, reply]
        if channel in ("/meta/subscribe", "/meta/unsubscribe"):
            subscription = str(message["subscription"])
            if channel == "/meta/subscribe":
                self.sessions[client_id].add(subscription)
            else:
                self.sessions[client_id].discard(subscription)
            reply["successful"] = True
            reply["subscription"] = subscription
            return [reply]
        if channel == "/meta/disconnect":
            del self.sessions[client_id]
            reply["successful"] = True
            return [reply]
        self.publish(channel, message.get("data"))
        reply["successful"] = True
        return [reply]
