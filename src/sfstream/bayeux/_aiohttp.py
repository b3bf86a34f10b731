"""Bayeux long polling over aiohttp.

One :class:`aiohttp.ClientSession` per transport (created here and closed here, or supplied by
the user and never closed here), one cookie jar per Bayeux session, JSON POSTs with an explicit
timeout on every request, at most two requests in flight (the held ``/meta/connect`` and one
control request), a cap on the reply size (counted in decoded bytes: a compressed reply is
inflated only as far as the cap), and every aiohttp error mapped to the
:class:`~sfstream.exceptions.TransportError` tree in one place, with no aiohttp error chained
that could show the request headers.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import io
import json
import logging
import ssl as ssl_module
from collections.abc import Mapping
from typing import Final

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from sfstream._http import describe, read_limited, safe_cause
from sfstream.bayeux._codec import DEFAULT_MAX_MESSAGES, JSONDumps, JSONLoads, decode, encode
from sfstream.bayeux._events import Request
from sfstream.bayeux._messages import Message
from sfstream.bayeux._transport import Transport
from sfstream.exceptions import (
    HTTPStatusError,
    InvalidArgumentError,
    ProtocolError,
    TransportConnectionClosed,
    TransportError,
    TransportInvalidOperation,
    TransportTimeoutError,
)

__all__ = ["DEFAULT_MAX_RESPONSE_SIZE", "LongPollingTransport"]

logger = logging.getLogger(__name__)

#: Bodies above this size are streamed from a buffer (aiohttp warns about large raw bytes).
_STREAM_BODY_OVER: Final = 1024 * 1024
#: The largest reply body accepted by default: 64 MiB.
DEFAULT_MAX_RESPONSE_SIZE: Final = 64 * 1024 * 1024

_JSON_HEADERS: Final = {"Content-Type": "application/json", "Accept": "application/json"}


def _decode_without_gc(
    body: bytes,
    loads: JSONLoads,
    max_messages: int,
    max_message_size: int | None = None,
    max_depth: int | None = None,
) -> list[Message]:
    """Decode with the cyclic garbage collector paused (it is on again before this returns).

    A reply of thousands of events makes tens of thousands of new dicts and lists, none of them
    part of a reference cycle. With the collector on, it runs again and again during the parse,
    each time through every object made so far; paused, it meets them at most once afterwards,
    and not at all when they are consumed before it next runs. The call is synchronous (no
    other coroutine runs meanwhile); a collector the application turned off stays off.
    """
    if not gc.isenabled():
        return decode(
            body,
            loads,
            max_messages=max_messages,
            max_message_size=max_message_size,
            max_depth=max_depth,
        )
    gc.disable()
    try:
        return decode(
            body,
            loads,
            max_messages=max_messages,
            max_message_size=max_message_size,
            max_depth=max_depth,
        )
    finally:
        gc.enable()


def without_credentials(url: URL) -> tuple[URL, str | None]:
    """``url`` without the user and password it may carry, and the ``Authorization`` header
    (Basic) they make, or None: a URL kept and shown (repr, logs, errors) carries no password,
    and aiohttp, which refuses URL credentials beside an ``Authorization`` header, gets none."""
    if url.user is None and url.password is None:
        return url, None
    pair = f"{url.user or ''}:{url.password or ''}".encode()  # UTF-8, as RFC 7617 allows
    return url.with_user(None), f"Basic {base64.b64encode(pair).decode('ascii')}"


def with_authorization(
    ours: Mapping[str, str], given: Mapping[str, str], basic: str | None
) -> dict[str, str]:
    """``ours`` then ``given`` (a later key replaces an earlier one of the same spelling), where
    an ``Authorization`` header in ``given``, in any spelling, replaces the one that ``basic``
    (the URL's credentials) put in ``ours``."""
    if basic is not None and any(name.lower() == "authorization" for name in given):
        ours = {name: value for name, value in ours.items() if name != "Authorization"}
    return {**ours, **given}


class LongPollingTransport(Transport):
    """Sends Bayeux batches as HTTP POSTs to ``url``.

    Args:
        url: the Bayeux endpoint, e.g. ``https://example.my.salesforce.com/cometd/62.0``. A user
            and password in it (``https://user:password@host/cometd``) are sent as a Basic
            ``Authorization`` header, unless ``headers`` (or a request's headers) give an
            ``Authorization`` header of their own, which then wins; the URL is kept and shown
            without them.
        session: an aiohttp session to use (proxies, ``trust_env``, TLS settings); it is never
            closed by the transport. By default the transport creates and closes its own.
        json_dumps: serialiser for request bodies (``json.dumps`` or e.g. ``orjson.dumps``).
        json_loads: parser for reply bodies.
        headers: extra headers sent with every request.
        ssl: passed to aiohttp for every request (an ``ssl.SSLContext``, or ``True`` for the
            default verification); TLS verification is on by default.
        max_response_size: the largest reply body accepted, in bytes.
        max_messages: the most messages one reply may carry.
        max_message_size: the largest message accepted, in bytes of JSON (None: no limit
            beyond ``max_response_size``).
        max_depth: the deepest nesting accepted in a message (None: the parser's own limit).

    Replies larger than :attr:`pause_gc_over` bytes are decoded with Python's cyclic garbage
    collector paused for the duration of the parse (see ``docs/performance.md``); set it to
    None (on the class or an instance) to leave the collector alone.
    """

    #: Replies above this size (bytes) are parsed with the cyclic garbage collector paused.
    pause_gc_over: int | None = 64 * 1024

    def __init__(
        self,
        url: str | URL,
        *,
        session: aiohttp.ClientSession | None = None,
        json_dumps: JSONDumps = json.dumps,
        json_loads: JSONLoads = json.loads,
        headers: Mapping[str, str] | None = None,
        ssl: ssl_module.SSLContext | bool = True,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_message_size: int | None = None,
        max_depth: int | None = None,
    ) -> None:
        self.url, self._basic = without_credentials(URL(url))
        if self.url.scheme not in ("http", "https") or not self.url.host:
            raise InvalidArgumentError(
                f"the Bayeux URL must be an absolute http(s) URL, not {str(self.url)!r}"
            )
        self._session = session
        self._owns_session = session is None
        self._dumps = json_dumps
        self._loads = json_loads
        ours = {**_JSON_HEADERS, "Authorization": self._basic} if self._basic else _JSON_HEADERS
        self._headers = with_authorization(ours, headers or {}, self._basic)
        self._ssl = ssl
        self.max_response_size = max_response_size
        self.max_messages = max_messages
        self.max_message_size = max_message_size
        self.max_depth = max_depth
        # Created on first use: aiohttp's cookie jar needs a running loop.
        self._jar: aiohttp.CookieJar | None = None
        self._poll_lock: asyncio.Lock | None = None
        self._control_lock: asyncio.Lock | None = None
        self._closed = False
        # Per-request work done once (#13): the ``Cookie`` pairs of the jar while it holds
        # only cookies without an expiry (None: filter the jar again), the last headers given
        # to send() with the cookie pairs they were merged with and the result, and one
        # ClientTimeout per timeout value.
        self._cookie_pairs: str | None = None
        self._merged: tuple[Mapping[str, str] | None, str, CIMultiDictProxy[str]] | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        #: The ``Date`` header of the last reply and the event loop's time when it arrived
        #: (the server's clock, for callers that must not trust the local one).
        self.server_date: tuple[str, float] | None = None

    def __repr__(self) -> str:
        return f"<LongPollingTransport {self.url}>"

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Cookies are handled per Bayeux session by our own jar, not by the session's.
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    def new_session(self) -> None:
        """Forget the cookies of the previous Bayeux session (e.g. ``BAYEUX_BROWSER``)."""
        if self._jar is not None:
            self._jar.clear()
        self._cookie_pairs = None

    async def send(
        self, request: Request, headers: Mapping[str, str] | None = None
    ) -> list[Message]:
        if self._closed:
            raise TransportInvalidOperation("the transport is closed")
        if request.long_poll:
            if self._poll_lock is None:
                self._poll_lock = asyncio.Lock()
            lock = self._poll_lock
        else:
            if self._control_lock is None:
                self._control_lock = asyncio.Lock()
            lock = self._control_lock
        body = encode(request.messages, self._dumps)
        error: TransportError | None = None
        async with lock:
            try:
                payload = await self._post(body, headers, request.timeout)
            except TransportError:
                raise
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = self._map_error(exc, request.timeout)
        if error is not None:
            # Raised here, out of the except block, so the aiohttp error is not chained as
            # __context__ (its repr holds the request headers: Authorization, cookies).
            raise error
        threshold = self.pause_gc_over
        if threshold is not None and len(payload) > threshold:
            return _decode_without_gc(
                payload, self._loads, self.max_messages, self.max_message_size, self.max_depth
            )
        return decode(
            payload,
            self._loads,
            max_messages=self.max_messages,
            max_message_size=self.max_message_size,
            max_depth=self.max_depth,
        )

    async def _post(
        self,
        body: bytes,
        headers: Mapping[str, str] | None,
        timeout: float,  # noqa: ASYNC109 - aiohttp's per-request ClientTimeout
    ) -> bytes:
        session = self._get_session()
        jar = self._jar
        if jar is None:
            # unsafe: keep cookies from IP hosts too (a server on 127.0.0.1 sets them)
            jar = self._jar = aiohttp.CookieJar(unsafe=True)
        client_timeout = self._timeouts.get(timeout)
        if client_timeout is None:
            client_timeout = self._timeouts[timeout] = aiohttp.ClientTimeout(total=timeout)
        async with session.post(
            self.url,
            # a payload made here spares aiohttp its registry lookup; Content-Type is ours
            data=(
                aiohttp.BytesPayload(body, content_type="application/json")
                if len(body) <= _STREAM_BODY_OVER
                else io.BytesIO(body)
            ),
            headers=self._request_headers(jar, headers),
            timeout=client_timeout,
            allow_redirects=False,
            ssl=self._ssl,
        ) as response:
            date = response.headers.get("Date")
            if date is not None:
                self.server_date = (date, asyncio.get_running_loop().time())
            if response.cookies:
                jar.update_cookies(response.cookies, response.url)
                self._cookie_pairs = None
            if not 200 <= response.status < 300:
                raise HTTPStatusError(
                    f"the server answered HTTP {response.status} {response.reason or ''}".rstrip(),
                    status=response.status,
                    reason=response.reason or "",
                )
            return await self._read(response)

    def _request_headers(
        self, jar: aiohttp.CookieJar, headers: Mapping[str, str] | None
    ) -> CIMultiDictProxy[str]:
        """Our headers, then ``headers``, with a ``Cookie`` header for the session's cookies.

        Merged as a dict (a later key replaces an earlier one of the same spelling), then
        made the case-insensitive multidict aiohttp would make of it. Kept and reused while
        the given headers are equal to the last ones and the cookies have not changed: a long
        poll usually sends the very same headers as the one before.
        """
        pairs = self._cookie_pairs
        if pairs is None:
            pairs = self._filter_cookies(jar)
        merged = self._merged
        if merged is not None and merged[1] == pairs and merged[0] == headers:
            return merged[2]
        given = (
            with_authorization(self._headers, headers, self._basic) if headers else self._headers
        )
        result = CIMultiDictProxy(CIMultiDict(self._with_cookies(given, pairs)))
        # a copy: a caller's mapping may change after this call
        self._merged = (None if headers is None else dict(headers), pairs, result)
        return result

    def _filter_cookies(self, jar: aiohttp.CookieJar) -> str:
        """The ``Cookie`` pairs the jar has for the Bayeux URL.

        Kept for the next requests (until a reply sets cookies or the session is new) while
        no cookie in the jar has an expiry: only then is the answer the same later on.
        """
        cookies = jar.filter_cookies(self.url)
        pairs = "; ".join([f"{morsel.key}={morsel.coded_value}" for morsel in cookies.values()])
        if not any(morsel["expires"] or morsel["max-age"] for morsel in jar):
            self._cookie_pairs = pairs
        return pairs

    @staticmethod
    def _with_cookies(headers: Mapping[str, str], pairs: str) -> Mapping[str, str]:
        """``headers`` with a ``Cookie`` header for this Bayeux session's cookies.

        Built here rather than passed as aiohttp's ``cookies=``, which copies every cookie
        into a temporary jar on each request (about 25 µs a long poll). A ``Cookie`` header
        of the caller's own is kept, before the session's cookies.
        """
        if not pairs:
            return headers
        given = [value for name, value in headers.items() if name.lower() == "cookie"]
        if not given:
            return {**headers, "Cookie": pairs}
        kept = {name: value for name, value in headers.items() if name.lower() != "cookie"}
        return {**kept, "Cookie": "; ".join([*given, pairs])}

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.max_response_size

        def too_large(declared: int | None) -> ProtocolError:
            if declared is not None:
                return ProtocolError(
                    f"the reply is {declared} bytes, more than the limit of {limit} bytes"
                )
            return ProtocolError(f"the reply is larger than the limit of {limit} bytes")

        return await read_limited(response, limit, too_large)

    def _map_error(self, exc: BaseException, timeout: float) -> TransportError:
        return map_error(exc, self.url, timeout)

    async def close(self) -> None:
        """Close the session if this transport created it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()


def map_error(exc: BaseException, url: URL, timeout: float) -> TransportError:
    """Translate an aiohttp or asyncio error into the TransportError tree (both transports).

    The original is chained as ``__cause__`` only when nothing in its chain can show the
    request; otherwise a scrubbed stand-in is (see :func:`sfstream._http.safe_cause`). Raise the
    result outside the ``except`` block that caught ``exc``, so that ``exc`` is not chained as
    ``__context__`` either.
    """
    where = f"{url.host}:{url.port}"
    error: TransportError
    if isinstance(exc, TimeoutError):
        return TransportTimeoutError(f"no reply from {where} within {timeout:g} s")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        error = TransportConnectionClosed(
            f"the connection to {where} closed before the reply was complete: {exc}"
        )
    elif isinstance(exc, aiohttp.ClientConnectorError):
        error = TransportError(f"cannot connect to {where}: {exc.os_error}")
    elif isinstance(exc, aiohttp.ClientOSError | ConnectionError):
        error = TransportConnectionClosed(f"the connection to {where} failed: {exc}")
    elif isinstance(exc, aiohttp.ClientResponseError):
        error = TransportError(
            f"the reply from {where} is not valid HTTP: {exc.status}, {exc.message}"
        )
    else:
        error = TransportError(f"the request to {where} failed: {describe(exc)}")
    error.__cause__ = safe_cause(exc)
    return error
