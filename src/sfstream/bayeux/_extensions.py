"""Bayeux extensions: hooks that see every message going out and coming in.

Order: outgoing hooks run in registration order, as the last step before a message is
serialised (after the engine stamped ``id`` and ``clientId``). Incoming hooks run in reverse
registration order, as the first step after a reply is decoded, so the first extension
registered is the outermost layer both ways. Hooks change the message in place; an extension
keeps any state per channel or per message, never a shared "current" value. Each extension
sees a reply's messages in order; the next extension may see them after the whole reply went
through this one (the batch hook :meth:`Extension.incoming_deliveries`). Pure module.
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

    def incoming_deliveries(self, channel: str, messages: list[Message]) -> list[Message] | None:
        """Optional: take a run of deliveries on one channel at once, instead of
        :meth:`incoming` for each of them (#13).

        The engine calls it for the usual busy reply, of 8 messages or more: deliveries
        (messages with ``data``) all on ``channel``, in order, maybe followed by the
        ``/meta/connect`` answer, which goes to :meth:`incoming` afterwards. Return the
        messages kept, in order (``messages`` itself when none is dropped), with the same
        effects :meth:`incoming` would have had on each; or None, having changed nothing, to
        have :meth:`incoming` called for each of them. The default returns None.
        """
        return None
