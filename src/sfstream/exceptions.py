"""Every exception sfstream raises, in one tree.

::

    SfstreamError                    (alias: AiosfstreamException)
    ├── AuthenticationError          login failed: the credentials were refused, or no token came
    │   └── AuthenticationTransportError   ... because of the network or the server (also a
    │                                      TransportError): unreachable, timeout, TLS, reset,
    │                                      malformed, oversized or non-JSON reply, HTTP 5xx
    ├── ClientError                  the client was used in a way it cannot serve
    │   └── ClientInvalidOperation   e.g. ``receive()`` on a closed client
    ├── InvalidArgumentError         a bad argument: a channel name, a URL, an empty credential
    │                                (also a ValueError)
    ├── TransportError               a request did not produce a usable reply
    │   ├── TransportInvalidOperation   the transport was used after ``close()``
    │   ├── TransportTimeoutError       no reply in time / no connection within connection_timeout
    │   ├── TransportConnectionClosed   the server or the network dropped the connection
    │   ├── HTTPStatusError             the server answered with a non-2xx HTTP status
    │   ├── ProtocolError               the reply is not valid Bayeux, or exceeds a size limit
    │   └── AuthenticationTransportError   (see above)
    ├── ServerError                  the server answered ``successful: false``
    └── ReplayError                  a replay marker could not be extracted or stored

What to catch:

- the network or the server failed, worth retrying later: ``TransportError`` (at login too:
  :class:`AuthenticationTransportError` is one);
- the credentials were refused: ``AuthenticationError`` that is not a ``TransportError``
  (``error``, ``error_description`` and ``status`` say why);
- a bad argument, a bug to fix in the calling code: ``InvalidArgumentError`` (or
  ``ValueError``, which it also is).

The names are those of aiosfstream, so ``except`` clauses written for it keep working after
changing the import line. Messages never contain a secret (password, token, client secret, key),
and neither does any exception chained to them (``__cause__``, ``__context__``): errors of the
HTTP library, whose ``repr`` holds the request headers, are replaced by scrubbed stand-ins.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = [
    "AiosfstreamException",
    "AuthenticationError",
    "AuthenticationTransportError",
    "ClientError",
    "ClientInvalidOperation",
    "ErrorField",
    "HTTPStatusError",
    "InvalidArgumentError",
    "ProtocolError",
    "ReplayError",
    "ServerError",
    "SfstreamError",
    "TransportConnectionClosed",
    "TransportError",
    "TransportInvalidOperation",
    "TransportTimeoutError",
    "failure_reason",
    "parse_error_field",
]


class SfstreamError(Exception):
    """Root of every exception raised by sfstream."""


#: The root exception under the name aiosfstream used, for code that migrates.
AiosfstreamException = SfstreamError


class AuthenticationError(SfstreamError):
    """The OAuth token endpoint refused the credentials, or re-authentication failed.

    ``error`` and ``error_description`` carry Salesforce's own fields when it sent them
    (for example ``invalid_grant`` / ``authentication failure``).
    """

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        error_description: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.error_description = error_description
        self.status = status


class ClientError(SfstreamError):
    """Client side error."""


class ClientInvalidOperation(ClientError):
    """The requested operation can't be executed in the current state of the client."""


class TransportError(SfstreamError):
    """A request did not produce a usable reply (network, HTTP or framing problem)."""


class TransportInvalidOperation(TransportError):
    """The requested operation can't be executed in the current state of the transport."""


class TransportTimeoutError(TransportError):
    """No reply in time, or no working connection within ``connection_timeout``."""


class TransportConnectionClosed(TransportError):
    """The connection was closed unexpectedly."""


class HTTPStatusError(TransportError):
    """The server answered with an HTTP status outside 2xx.

    ``status`` is the HTTP status code; ``reason`` its reason phrase.
    """

    def __init__(self, message: str, *, status: int, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle and copy.copy() (multiprocessing, concurrent.futures) call the class with
        # ``args`` only: pass the required keyword too
        rebuild = functools.partial(type(self), status=self.status, reason=self.reason)
        return (rebuild, self.args, self.__dict__)


class ProtocolError(TransportError):
    """The server's reply is not valid Bayeux, or is larger than a limit; the message says what
    was wrong."""


class AuthenticationTransportError(AuthenticationError, TransportError):
    """No token because of the network or the server, not because of the credentials.

    Raised by ``authenticate()`` (and so by ``open()``) when the token endpoint cannot be
    reached (DNS, refused connection, TLS verification), does not answer in time, drops the
    connection, answers malformed HTTP, a body larger than the limit or not JSON, or an HTTP
    5xx. It is an :class:`AuthenticationError`, so code written for aiosfstream still catches
    it, and a :class:`TransportError`, so ``except TransportError`` catches every network
    failure, at login or while streaming. ``status`` is the HTTP status when there was one.
    """


class InvalidArgumentError(SfstreamError, ValueError):
    """An argument is not acceptable: a channel name, a URL, an empty credential, a key.

    Also a :class:`ValueError`, so code that caught the ``ValueError`` raised before keeps
    working. The message says which argument and why, without echoing a secret.
    """


class ErrorField(NamedTuple):
    """The parts of a Bayeux ``error`` field ``code:args:message``."""

    code: int | None
    args: list[str]
    message: str


def parse_error_field(error: str) -> ErrorField:
    """Split a Bayeux ``error`` field into code, arguments and message.

    The grammar is ``code ":" args ":" message`` with a three-digit code and comma-separated
    args. Real servers bend it: Salesforce sends ``403::Unknown client``, Faye
    ``401:<clientId>:Unknown client``, and some extensions a free text with no code. A text that
    does not follow the grammar becomes the message with no code. The message keeps any further
    colons (``400::The replayId {1} you provided was invalid...``).

    >>> parse_error_field("403:xj3sjdsjdsjad,/foo/bar:Subscription denied")
    ErrorField(code=403, args=['xj3sjdsjdsjad', '/foo/bar'], message='Subscription denied')
    """
    head, sep, rest = error.partition(":")
    if not sep or len(head) != 3 or not (head.isascii() and head.isdigit()):
        return ErrorField(None, [], error)
    args_text, sep, message = rest.partition(":")
    if not sep:
        return ErrorField(int(head), [], rest)
    args = args_text.split(",") if args_text else []
    return ErrorField(int(head), args, message)


def failure_reason(response: Mapping[str, Any] | None) -> str | None:
    """Salesforce's ``ext.sfdc.failureReason`` of a reply, if it has one.

    Salesforce puts the real cause there (a ``503::Server is too busy`` can hide behind a
    ``401::Authentication invalid`` ``error``), so it is read before ``error``.
    """
    if response is None:
        return None
    ext = response.get("ext")
    sfdc = ext.get("sfdc") if isinstance(ext, Mapping) else None
    reason = sfdc.get("failureReason") if isinstance(sfdc, Mapping) else None
    return reason if isinstance(reason, str) else None


def _reply_cause_code(response: Mapping[str, Any] | None) -> int | None:
    """The code of a refusal's cause: the code of Salesforce's ``failureReason`` first, then
    that of ``error`` (``401::Authentication invalid`` with the ``failureReason``
    ``503::Server is too busy…`` is a 503); None when neither carries one. The one reading of
    a refusal's cause, for :attr:`ServerError.cause_code` and the reconnect decisions."""
    reason = failure_reason(response)
    if reason is not None:
        code = parse_error_field(reason).code
        if code is not None:
            return code
    error = response.get("error") if response is not None else None
    return parse_error_field(error).code if isinstance(error, str) else None


class ServerError(SfstreamError):
    """The server rejected a request (``successful: false``).

    ``response`` is the server's reply message; ``error`` its ``error`` field, parsed into
    ``error_code``, ``error_args`` and ``error_message`` (see :func:`parse_error_field`);
    ``failure_reason`` is Salesforce's ``ext.sfdc.failureReason`` when present.
    """

    def __init__(self, message: str, response: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, response)
        self.message = message
        self.response: Mapping[str, Any] | None = response
        error = response.get("error") if response is not None else None
        self.error: str | None = error if isinstance(error, str) else None
        field = parse_error_field(self.error) if self.error is not None else None
        self.error_code: int | None = field.code if field else None
        self.error_args: list[str] | None = field.args if field else None
        self.error_message: str | None = field.message if field else None
        self.failure_reason: str | None = failure_reason(response)

    @property
    def cause_code(self) -> int | None:
        """The code of the refusal's cause: Salesforce's ``failureReason`` first, then
        ``error`` (``401::Authentication invalid`` with the ``failureReason``
        ``503::Server is too busy…`` is a 503, worth retrying later, not a credentials
        problem); None when neither carries one."""
        return _reply_cause_code(self.response)

    def __str__(self) -> str:
        parts = [self.message]
        if self.error is not None:
            parts.append(self.error)
        if self.failure_reason is not None:
            parts.append(f"failureReason {self.failure_reason}")
        return ": ".join(parts)


class ReplayError(SfstreamError):
    """A replay marker could not be extracted from a message or could not be stored."""
