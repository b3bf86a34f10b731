"""Bayeux extensions: hooks that see every message going out and coming in.

Order: outgoing hooks run in registration order, as the last step before a message is
serialised (after the engine stamped ``id`` and ``clientId``). Incoming hooks run in reverse
registration order, as the first step after a reply is decoded, so the first extension
registered is the outermost layer both ways. Hooks change the message in place; an extension
keeps any state per channel or per message, never a shared "current" value. Pure module.
"""

from __future__ import annotations

from sfstream.bayeux._messages import Message

__all__ = ["Extension"]


class Extension:
    """Base class for extensions; both hooks do nothing by default."""

    def outgoing(self, message: Message) -> None:
        """Called for each message before it is sent; may change it in place."""

    def incoming(self, message: Message) -> bool | None:
        """Called for each message received (replies and deliveries); may change it in place.

        Returning False drops a delivery (the message goes to no further hook and never
        reaches ``receive()``); the return value is ignored for meta replies.
        """
        return None
