"""Test code built on ``BayeuxClient`` without a server or a socket: ``MockTransport``.

``MockTransport`` hands every request of the client to a function, which answers as a server
would, or raises a ``TransportError`` to simulate a failure. Replies go through the real codec
and the real engine, so the code under test reconnects and resubscribes exactly as it would on
the network. The same script runs anywhere::

    python examples/bayeux_mock_transport.py

``count_orders`` is the application code under test; ``OrderServer`` is the test double.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sfstream.bayeux import BayeuxClient, Message, MockTransport, Request, matches
from sfstream.exceptions import TransportConnectionClosed


async def count_orders(client: BayeuxClient, count: int) -> float:
    """The code under test: the total amount of the next ``count`` orders."""
    await client.subscribe("/orders/*")
    total = 0.0
    async for message in client:
        total += message["data"]["amount"]
        count -= 1
        if count == 0:
            break
    return total


class OrderServer:
    """Just enough Bayeux: one session, subscriptions, and events delivered on connects."""

    def __init__(self) -> None:
        self.events: list[Message] = []
        self.subscriptions: set[str] = set()
        self.drop_next_connect = False
        self.handshakes = 0

    def publish(self, channel: str, data: Any) -> None:
        """Queue an event until a connect delivers it to a matching subscription."""
        self.events.append({"channel": channel, "data": data})

    def take_deliverable(self) -> list[Message]:
        deliverable = [
            event
            for event in self.events
            if any(matches(pattern, event["channel"]) for pattern in self.subscriptions)
        ]
        self.events = [event for event in self.events if event not in deliverable]
        return deliverable

    async def __call__(self, request: Request) -> list[Message]:
        replies: list[Message] = []
        for message in request.messages:
            channel = message["channel"]
            reply: Message = {"channel": channel, "id": message["id"], "successful": True}
            if channel == "/meta/handshake":
                self.handshakes += 1
                reply["clientId"] = f"client-{self.handshakes}"
                reply["version"] = "1.0"
                reply["supportedConnectionTypes"] = ["long-polling"]
            elif channel == "/meta/subscribe":
                self.subscriptions.add(message["subscription"])
                reply["subscription"] = message["subscription"]
            elif channel == "/meta/connect":
                if self.drop_next_connect:
                    self.drop_next_connect = False
                    raise TransportConnectionClosed("simulated network failure")
                delivered = self.take_deliverable()
                if not delivered and request.long_poll:
                    await asyncio.sleep(0.05)  # a server holds the connect for a while
                    delivered = self.take_deliverable()
                replies += delivered
                reply["advice"] = {"reconnect": "retry", "interval": 0, "timeout": 50}
            replies.append(reply)
        return replies


async def main() -> None:
    server = OrderServer()
    transport = MockTransport(server)
    async with BayeuxClient("http://server.test/bayeux", transport=transport) as client:
        server.publish("/orders/eu", {"amount": 20.0})
        server.drop_next_connect = True  # the code under test must survive this
        server.publish("/orders/us", {"amount": 22.5})
        total = await count_orders(client, 2)
    assert total == 42.5, total
    assert server.subscriptions == {"/orders/*"}
    sent = [message["channel"] for request in transport.requests for message in request.messages]
    print(f"total {total}; {len(transport.requests)} requests; handshakes: {server.handshakes}")
    print("channels sent:", ", ".join(dict.fromkeys(sent)))


if __name__ == "__main__":
    asyncio.run(main())
