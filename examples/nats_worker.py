"""A worker that processes the Salesforce events a relay wrote into NATS JetStream.

Start as many workers as you like with the same ``--durable`` name: they share one pull
consumer, so JetStream hands each event to one of them; an event a worker took but did not
acknowledge within ``--ack-wait`` seconds (the worker died) goes to another one.

Each message is the Bayeux message as Salesforce sent it (JSON), on the subject
``sfstream.<org>.<channel segments>`` (``sfstream.default.event.Order__e``: ``<org>`` is the
relay's name for the org, ``default`` without ``--config``; ``subject_channel`` gives both
back), with the headers ``Sfstream-Replay-Id`` and ``Sfstream-Date``. Delivery is at least once:
a redelivered event carries the same replay id, so a handler that must not run twice checks it.
Here each worker remembers the (channel, replay id) pairs it handled lately; an application makes
the handler idempotent (a unique key on channel and replay id in its database), which also covers
an event redelivered to another worker.

Try it with a relay writing into a local ``nats-server -js``::

    sfstream relay --sink nats://127.0.0.1:4222 …   # in one terminal (see docs/scaling.md)
    python examples/nats_worker.py --count 3        # in another

Requires ``pip install '.[nats]'`` in the sfstream checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections import OrderedDict
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig

from sfstream.relay import subject_channel


async def handle(channel: str, replay_id: int, message: dict[str, Any]) -> None:
    """Your processing. Here: print the event's payload."""
    print(channel, replay_id, json.dumps(message["data"].get("payload")), flush=True)


async def work(
    server: str,
    stream: str,
    subject: str,
    prefix: str,
    durable: str,
    ack_wait: float,
    count: int | None,
) -> None:
    nc = await nats.connect(server.split(","))
    try:
        js = nc.jetstream()
        consumer = await js.pull_subscribe(
            subject,
            durable=durable,
            stream=stream,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait),
        )
        handled: OrderedDict[tuple[str, int], None] = OrderedDict()  # the latest 10,000
        done = 0
        while count is None or done < count:
            try:
                batch = await consumer.fetch(batch=min(50, (count or 50) - done), timeout=5)
            except nats.errors.TimeoutError:
                continue  # nothing new: ask again
            for msg in batch:
                _, channel = subject_channel(msg.subject, prefix)  # and the org, if you need it
                replay_id = int((msg.headers or {})["Sfstream-Replay-Id"])
                if (channel, replay_id) not in handled:
                    await handle(channel, replay_id, json.loads(msg.data))
                    handled[channel, replay_id] = None
                    if len(handled) > 10_000:
                        handled.popitem(last=False)
                await msg.ack()  # after processing: a crash before this means redelivery
                done += 1
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="nats://127.0.0.1:4222", help="NATS URL(s), a,b,c")
    parser.add_argument("--stream", default="SFSTREAM", help="the relay's stream")
    parser.add_argument(
        "--subject", default="sfstream.>", help="which events, e.g. sfstream.*.event.Order__e"
    )
    parser.add_argument("--prefix", default="sfstream", help="the relay's subject prefix")
    parser.add_argument("--durable", default="sfstream-workers", help="shared consumer name")
    parser.add_argument("--ack-wait", type=float, default=30.0, help="seconds before redelivery")
    parser.add_argument("--count", type=int, default=None, help="stop after this many events")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            work(
                args.server,
                args.stream,
                args.subject,
                args.prefix,
                args.durable,
                args.ack_wait,
                args.count,
            )
        )


if __name__ == "__main__":
    main()
