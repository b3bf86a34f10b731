"""CometD's message acknowledgement extension (``ext.ack``), opt-in. Pure module: no IO.

With it, a CometD server numbers the batches of messages it delivers in ``/meta/connect``
replies (``ext.ack`` of the reply) and keeps each batch until the client acknowledges it: every
``/meta/connect`` carries the number of the last batch the client received. A connect reply lost
on the way (a dropped socket, a timed-out request) is then not lost: the next connect still
acknowledges the batch before it, so the server sends the unacknowledged messages again.

The handshake asks for it (``ext.ack: true``); a server that does not answer ``ext.ack: true``
(or ``{"enabled": true}``) does not support it, and the extension then adds nothing to connects.
It is the same protocol as CometD's own ``AckExtension`` (JavaScript and Java clients).
"""

from __future__ import annotations

from typing import TypeGuard

from sfstream.bayeux._extensions import Extension
from sfstream.bayeux._messages import META_CONNECT, META_HANDSHAKE, Message

__all__ = ["AckExtension"]


class AckExtension(Extension):
    """Acknowledge received batches so that a CometD server re-sends what a lost reply carried.

    >>> from sfstream.bayeux import AckExtension, BayeuxClient
    >>> client = BayeuxClient("http://127.0.0.1:8080/cometd", extensions=[AckExtension()])

    :attr:`enabled` tells whether the server accepted acknowledgements in the last handshake;
    :attr:`batch` is the number of the last batch received.
    """

    def __init__(self) -> None:
        #: True when the last handshake's reply said the server acknowledges batches.
        self.enabled = False
        #: The last batch number a connect reply carried (0 before any).
        self.batch = 0

    def __repr__(self) -> str:
        return f"<AckExtension enabled={self.enabled} batch={self.batch}>"

    def outgoing(self, message: Message) -> None:
        channel = message["channel"]
        if channel == META_HANDSHAKE:
            message.setdefault("ext", {})["ack"] = True
            self.enabled = False
            self.batch = 0
        elif channel == META_CONNECT and self.enabled:
            message.setdefault("ext", {})["ack"] = self.batch

    def incoming(self, message: Message) -> bool | None:
        channel = message["channel"]
        ext = message.get("ext")
        ack = ext.get("ack") if isinstance(ext, dict) else None
        if channel == META_HANDSHAKE:
            if message.get("successful") is True:
                if isinstance(ack, dict):
                    # CometD 4+'s form: {"enabled": true, "batch": N}
                    self.enabled = ack.get("enabled") is True
                    batch = ack.get("batch")
                    if _is_batch(batch):
                        self.batch = batch
                else:
                    self.enabled = ack is True
        elif (
            channel == META_CONNECT
            and self.enabled
            and message.get("successful") is True
            and _is_batch(ack)
        ):
            self.batch = ack
        return None


def _is_batch(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
