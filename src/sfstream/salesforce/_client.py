"""Client and SalesforceStreamingClient: the aiosfstream API on sfstream's Bayeux client.

The Salesforce layer composes :class:`~sfstream.bayeux.BayeuxClient` and never patches it:

- the authenticator supplies the ``Authorization`` header of every request and, through the
  driver's ``reauthenticate`` hook, new credentials when Salesforce answers 401 (only then:
  ``403::Unknown client`` costs no token request);
- the :class:`~sfstream.salesforce.ReplayExtension` stamps each subscribe with its replay id
  and remembers the last event received per subscription (a PushTopic filter included), so
  every resubscription after a new session resumes right after it, whatever the ``replay``
  option; it drops deliveries on channels nobody subscribed to;
- the ``on_resubscribe_failed`` hook applies ``replay_fallback`` per channel when an automatic
  resubscription is refused for its replay id;
- a connect request that fails on the network starts a new session at once
  (``handshake_after=1``): a long-poll reply lost on the wire is recovered by resubscribing
  from the last received event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Final, Self

import aiohttp

from sfstream.bayeux import (
    Backoff,
    BayeuxClient,
    Extension,
    JSONDumps,
    JSONLoads,
    Message,
    StatusCallback,
    StatusKind,
    StatusStats,
    validate_subscription,
)
from sfstream.bayeux._aiohttp import DEFAULT_MAX_RESPONSE_SIZE
from sfstream.bayeux._client import Opening, check_count, check_limits, check_reply_limits
from sfstream.bayeux._codec import DEFAULT_MAX_MESSAGES, check_json
from sfstream.exceptions import (
    AuthenticationError,
    ClientError,
    ClientInvalidOperation,
    InvalidArgumentError,
    ReplayError,
    ServerError,
)
from sfstream.salesforce._auth import AuthenticatorBase, check_url
from sfstream.salesforce._login import authenticator_from_login
from sfstream.salesforce._replay import (
    ConstantReplayId,
    ReplayExtension,
    ReplayMarkerStorage,
    ReplayMarkerStoragePolicy,
    ReplayOption,
    ReplayParameter,
    create_replay_storage,
    is_replay_error,
)

__all__ = ["COMETD_PATH", "DEFAULT_API_VERSION", "Client", "SalesforceStreamingClient"]

logger = logging.getLogger(__name__)

#: The API version used when none is given: a current GA release (Summer '26).
DEFAULT_API_VERSION: Final = "67.0"
#: The path of the Streaming API's CometD endpoint on an instance.
COMETD_PATH: Final = "cometd"
#: A subscription that starts with new events is taken to start this much earlier than the
#: server's time (its HTTP ``Date``) when a lost session forces a resubscription before its
#: first event (see ReplayExtension.mark_subscribed): room for the clocks of Salesforce's own
#: servers, which date the events, to differ a little from the one that answers.
CLOCK_SKEW_MARGIN: Final = timedelta(seconds=30)
#: The ``extract_replay_id`` of a storage that never stores anything.
_STORES_NOTHING: Final = ConstantReplayId.extract_replay_id
#: Looked up once: reading an Enum member from its class costs a descriptor call.
_AUTOMATIC: Final = ReplayMarkerStoragePolicy.AUTOMATIC


def _get_replay_id(message: Message) -> object:
    data = message.get("data")
    event = data.get("event") if isinstance(data, dict) else None
    return event.get("replayId") if isinstance(event, dict) else None


def _replay_option(value: object) -> ReplayOption:
    """``replay_fallback`` checked where it is given (it is used much later, deep inside)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("replay_fallback must be a ReplayOption or None")
    try:
        return ReplayOption(value)
    except ValueError:
        raise InvalidArgumentError(
            f"replay_fallback must be a ReplayOption or None, not {value}"
        ) from None


def _storage_policy(value: object) -> ReplayMarkerStoragePolicy:
    try:
        return ReplayMarkerStoragePolicy(value)
    except ValueError:
        raise InvalidArgumentError(
            "replay_storage_policy must be ReplayMarkerStoragePolicy.AUTOMATIC or MANUAL: "
            f"{value!r} is not a valid ReplayMarkerStoragePolicy"
        ) from None


class Client:
    """Salesforce Streaming API client.

    Subscribe to PushTopics (``/topic/...``), generic streaming channels (``/u/...``), platform
    events (``/event/...__e``), custom channels (``/event/...__chn``) and Change Data Capture
    (``/data/...``), and receive their events with :meth:`receive` or ``async for``.

    Args:
        authenticator: an authenticator (:class:`~sfstream.PasswordAuthenticator`,
            :class:`~sfstream.RefreshTokenAuthenticator`, :class:`~sfstream.JwtBearerAuthenticator`,
            :class:`~sfstream.ClientCredentialsAuthenticator`,
            :class:`~sfstream.AccessTokenAuthenticator` or your own).
        replay: where subscriptions start: a :class:`~sfstream.ReplayOption`, a
            :class:`~sfstream.ReplayMarkerStorage`, or a ``MutableMapping`` (a dict, a
            ``shelve.Shelf``...) that stores the last marker per channel across restarts.
        replay_fallback: the :class:`~sfstream.ReplayOption` to resubscribe with when
            Salesforce refuses a stored replay id (e.g. older than the retention window); also
            applied per channel to automatic resubscriptions. Logged at WARNING.
        replay_storage_policy: store markers when a message is handed out (AUTOMATIC) or only
            when you say so (MANUAL).
        connection_timeout: seconds without a working connection before :meth:`receive`
            raises :class:`~sfstream.exceptions.TransportTimeoutError`; None (or ``<= 0``)
            waits forever.
        max_pending_count: received messages that may wait for :meth:`receive` before polling
            pauses; ``<= 0`` means no limit.
        json_dumps: JSON serialiser (e.g. ``orjson.dumps``).
        json_loads: JSON parser (e.g. ``orjson.loads``).
        loop: ignored (kept for compatibility; passing it warns).
        api_version: the Salesforce API version of the CometD endpoint.
        session: an aiohttp session for every HTTP request (proxies, ``trust_env``, SSL);
            never closed by the client.
        on_status: called with a :class:`~sfstream.bayeux.Status` for every connection change
            (new session, lost connection, re-authentication, replay fallback, pause...).
        backoff: the delays between reconnection attempts (default: exponential from 0.5 s
            to 30 s with jitter); see :class:`~sfstream.bayeux.ExponentialBackoff`.
        extensions: more :class:`~sfstream.bayeux.Extension` objects, applied after the
            client's replay extension on outgoing messages (they see ``ext.replay``) and before
            it on incoming ones (they see what came off the wire), e.g. to trace messages.
        max_response_size: the largest reply body the CometD endpoint may send, in bytes
            (after decompression); a larger one is a
            :class:`~sfstream.exceptions.ProtocolError`.
        max_messages: the most messages one reply may carry; more is a
            :class:`~sfstream.exceptions.ProtocolError`.
    """

    def __init__(
        self,
        authenticator: AuthenticatorBase,
        *,
        replay: ReplayParameter = ReplayOption.NEW_EVENTS,
        replay_fallback: ReplayOption | None = None,
        replay_storage_policy: ReplayMarkerStoragePolicy = ReplayMarkerStoragePolicy.AUTOMATIC,
        connection_timeout: float | None = 10.0,
        max_pending_count: int = 100,
        json_dumps: JSONDumps = json.dumps,
        json_loads: JSONLoads = json.loads,
        loop: object = None,
        api_version: str = DEFAULT_API_VERSION,
        session: aiohttp.ClientSession | None = None,
        on_status: StatusCallback | None = None,
        backoff: Backoff | None = None,
        extensions: Iterable[Extension] = (),
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        max_messages: int = DEFAULT_MAX_MESSAGES,
    ) -> None:
        if loop is not None:
            warnings.warn(
                "the loop argument is ignored: sfstream uses the running event loop",
                DeprecationWarning,
                stacklevel=2,
            )
        self._max_response_size = max_response_size
        self._max_messages = max_messages
        if not isinstance(authenticator, AuthenticatorBase):
            raise TypeError(
                f"authenticator must be an AuthenticatorBase, not {type(authenticator).__name__}"
            )
        check_limits(connection_timeout, max_pending_count)
        check_reply_limits(max_response_size, max_messages)
        check_json(json_dumps, json_loads)
        #: The authenticator that supplies the access token.
        self.auth = authenticator
        # The storage that stores each event's marker before it is handed out, if any: kept
        # up to date by the two properties below, read once per event (#13).
        self._automatic: ReplayMarkerStorage | None = None
        self._replay_storage = self.create_replay_storage(replay)
        self.replay_fallback = replay_fallback
        self.replay_storage_policy = replay_storage_policy
        self.connection_timeout = connection_timeout
        self.max_pending_count = max_pending_count
        self.api_version = api_version
        self._json_dumps = json_dumps
        self._json_loads = json_loads
        self._session = session
        self._on_status = on_status
        self._backoff = backoff
        self._replay = ReplayExtension(on_drop=self._dropped)
        self._extensions = list(extensions)
        self._bayeux: BayeuxClient | None = None
        self._closed_before_open = False
        # While open() runs: its task, which close() cancels to stop the opening
        self._opening: Opening | None = None
        # What the next receive() hands out before the driver's queue, in order: the failure
        # of a storage that could not store a marker (raised), and messages taken from the
        # driver but never handed out because the call was cancelled while their marker was
        # being stored (returned). One check per event for both.
        self._backlog: deque[Message | ReplayError] = deque()

    @property
    def replay_fallback(self) -> ReplayOption | None:
        """The replay option used when Salesforce refuses a replay id (None: no fallback)."""
        return self._replay_fallback

    @replay_fallback.setter
    def replay_fallback(self, option: ReplayOption | None) -> None:
        # checked here, where it is set: it is used much later, deep inside a subscribe
        self._replay_fallback = _replay_option(option) if option is not None else None

    @property
    def replay_storage(self) -> ReplayMarkerStorage | None:
        """Where replay markers are stored (None: nothing is stored)."""
        return self._replay_storage

    @replay_storage.setter
    def replay_storage(self, storage: ReplayMarkerStorage | None) -> None:
        if storage is not None and not isinstance(storage, ReplayMarkerStorage):
            raise TypeError(
                "replay_storage must be a ReplayMarkerStorage or None, not "
                f"{type(storage).__name__} (wrap a mapping in MappingStorage)"
            )
        self._replay_storage = storage
        self._automatic = self._find_automatic_storage()

    @property
    def replay_storage_policy(self) -> ReplayMarkerStoragePolicy:
        """When markers of received messages are stored."""
        return self._replay_storage_policy

    @replay_storage_policy.setter
    def replay_storage_policy(self, policy: ReplayMarkerStoragePolicy) -> None:
        self._replay_storage_policy = _storage_policy(policy)
        self._automatic = self._find_automatic_storage()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} {state} auth={self.auth!r}>"

    # -- aiosfstream's static helpers --------------------------------------------------------

    @staticmethod
    def create_replay_storage(replay_param: ReplayParameter) -> ReplayMarkerStorage | None:
        """The :class:`~sfstream.ReplayMarkerStorage` for a ``replay`` argument.

        A storage is returned as is, a ReplayOption becomes
        :class:`~sfstream.ConstantReplayId`, a MutableMapping becomes
        :class:`~sfstream.MappingStorage`, None stays None.
        """
        return create_replay_storage(replay_param)

    @staticmethod
    def get_cometd_url(instance_url: str, api_version: str = DEFAULT_API_VERSION) -> str:
        """The CometD endpoint of ``instance_url``: ``{instance_url}/cometd/{api_version}``."""
        return f"{instance_url.rstrip('/')}/{COMETD_PATH}/{api_version}"

    # -- state -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True unless the client is open."""
        return self._bayeux is None or self._bayeux.closed

    @property
    def subscriptions(self) -> set[str]:
        """The channels subscribed to."""
        return self._bayeux.subscriptions if self._bayeux is not None else set()

    @property
    def connection_type(self) -> str | None:
        """``long-polling`` while open, else None."""
        return self._bayeux.connection_type if self._bayeux is not None else None

    @property
    def pending_count(self) -> int:
        """How many received messages wait for :meth:`receive`."""
        count = self._bayeux.pending_count if self._bayeux is not None else 0
        if self._backlog:
            count += sum(not isinstance(item, ReplayError) for item in self._backlog)
        return count

    @property
    def has_pending_messages(self) -> bool:
        """True when :meth:`receive` would return at once."""
        return self.pending_count > 0

    @property
    def stats(self) -> StatusStats:
        """How many times each kind of status change happened (reconnects, fallbacks...)."""
        return self._bayeux.stats if self._bayeux is not None else StatusStats()

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Authenticate, then handshake with the Streaming API and start receiving.

        Raises:
            ClientInvalidOperation: the client is already open, or closed.
            AuthenticationError: the token endpoint refused the credentials, or could not
                be reached.
            ClientError: the instance URL is not usable (plain http to a remote host).
            TransportError: a network or HTTP error on the CometD endpoint.
            ServerError: the handshake or the first connect was refused.
        """
        if self._bayeux is not None or self._closed_before_open or self._opening is not None:
            raise ClientInvalidOperation(
                "the client is closed"
                if self._closed_before_open or (self._bayeux is not None and self.closed)
                else "the client is already open"
            )
        # close() cancels the task running open() to stop it (see Opening): a close() during
        # the token request or the handshake then ends the opening instead of being
        # overtaken by it.
        opening = self._opening = Opening()
        try:
            with opening:
                await self._open()
        finally:
            self._opening = None

    async def _open(self) -> None:
        if self._session is not None and self.auth.session is None:
            self.auth.session = self._session
        await self.auth.authenticate()
        instance_url = self.auth.instance_url
        if not instance_url:
            raise AuthenticationError("the token response has no instance_url")
        try:
            check_url(instance_url, "instance_url")
        except ValueError as exc:
            raise ClientError(str(exc)) from None
        bayeux = BayeuxClient(
            self.get_cometd_url(instance_url, self.api_version),
            connection_timeout=self.connection_timeout,
            max_pending_count=self.max_pending_count,
            json_dumps=self._json_dumps,
            json_loads=self._json_loads,
            extensions=[self._replay, *self._extensions],
            session=self._session,
            headers=self._headers,
            handshake_after=1,
            reauthenticate=self._reauthenticate,
            on_resubscribe_failed=self._resubscribe_failed,
            on_status=self._on_status,
            backoff=self._backoff,
            ssl=self.auth.ssl,
            max_response_size=self._max_response_size,
            max_messages=self._max_messages,
        )
        self._bayeux = bayeux
        try:
            await bayeux.open()
        except BaseException:
            self._closed_before_open = True
            raise

    async def close(self) -> None:
        """Disconnect from the server. Idempotent; pending messages stay receivable.

        Called while :meth:`open` runs, it stops the opening (which then raises
        :class:`~sfstream.exceptions.ClientInvalidOperation`) and leaves no session behind.
        """
        opening = self._opening
        if opening is not None:
            self._closed_before_open = True
            if opening.stop():  # (called by the opening task itself: nothing to wait for)
                await opening.ended.wait()
        if self._bayeux is None:
            self._closed_before_open = True
            return
        await self._bayeux.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self.auth.authorization_header()}

    async def _reauthenticate(self) -> None:
        if not self.auth.can_refresh:
            raise AuthenticationError(
                f"Salesforce refused the access token and {type(self.auth).__name__} "
                "cannot get a new one"
            )
        await self.auth.authenticate()

    def _resubscribe_failed(self, channel: str, error: ServerError) -> bool:
        if self.replay_fallback is None or not is_replay_error(error):
            return False
        self._fall_back(channel, error)
        return True

    def _fall_back(self, channel: str, error: ServerError) -> None:
        assert self.replay_fallback is not None
        option = ReplayOption(self.replay_fallback)
        logger.warning(
            "Salesforce refused the replay id for %s (%s): subscribing with %s instead",
            channel,
            error.error_message or error,
            option.name,
        )
        self._replay.use_fallback(channel, option)
        if self._bayeux is not None:
            self._bayeux.report_status(StatusKind.REPLAY_FALLBACK, option.name, channel)

    def _dropped(self, reason: str, channel: str, message: Message) -> None:
        bayeux = self._bayeux
        if reason == "unsubscribed":
            logger.debug("dropped a delivery on %s: no subscription to it", channel)
            if bayeux is not None:
                bayeux.stats[StatusKind.DELIVERY_DROPPED] += 1
            return
        if reason == "repeated":
            logger.debug("dropped a repeated delivery on %s (already received)", channel)
            return
        replay_id = _get_replay_id(message)
        # INFO for the first event a resubscription skips, DEBUG for the next ones
        level = logging.INFO if self._replay.skipped(channel) == 1 else logging.DEBUG
        logger.log(
            level,
            "skipped event %s on %s: created before the subscription took effect "
            "(a gap-safe resubscription replays all retained events)",
            replay_id,
            channel,
        )
        if bayeux is not None:
            bayeux.report_status(
                StatusKind.EVENTS_SKIPPED,
                f"replayId {replay_id} was created before the subscription took effect",
                channel,
            )

    def _server_time(self, bayeux: BayeuxClient) -> datetime | None:
        """The server's time now, from the ``Date`` of its last reply (None: unknown).

        The date was stamped before the reply arrived and is truncated to the second, and the
        time elapsed since it arrived is added: the result is never later than the server's
        clock (to the drift of the local one).
        """
        server_date = bayeux.server_date
        if server_date is None:
            return None
        text, received_at = server_date
        try:
            date = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if date.tzinfo is None:
            return None
        elapsed = max(0.0, asyncio.get_running_loop().time() - received_at)
        return date + timedelta(seconds=elapsed)

    def _require_open(self) -> BayeuxClient:
        if self._bayeux is None:
            raise ClientInvalidOperation(
                "the client is closed" if self._closed_before_open else "the client is not open"
            )
        return self._bayeux

    # -- operations --------------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """Subscribe to ``channel``, starting where the replay storage says.

        Raises:
            ClientInvalidOperation: the client is not open.
            ServerError: Salesforce refused the subscription (``error_message`` holds its
                text, e.g. an invalid replay id when no ``replay_fallback`` is set).
            ReplayError: the replay storage could not be read.
            AuthenticationError: Salesforce refused the credentials (a 401) and new ones could
                not be fetched.
            TransportError: a network or HTTP error.
        """
        bayeux = self._require_open()
        validate_subscription(channel)  # before anything uses the name
        try:
            await self._replay.load_replay_id(self.replay_storage, channel)
        except ReplayError:
            raise
        except Exception as error:  # a storage of the user's own, its driver's errors
            raise ReplayError(
                f"the replay storage failed to read the marker of {channel}: {error!r}"
            ) from error
        # Where a NEW_EVENTS subscription starts, by the server's clock, never the local one:
        # the local clock may be hours off the org's.
        server_time = self._server_time(bayeux)
        since = server_time - CLOCK_SKEW_MARGIN if server_time is not None else None
        try:
            try:
                await bayeux.subscribe(channel)
            except ServerError as error:
                if self.replay_fallback is None or not is_replay_error(error):
                    raise
                self._fall_back(channel, error)
                await bayeux.subscribe(channel)
        except BaseException:
            if channel not in bayeux.subscriptions:
                self._replay.unregister(channel)  # its deliveries are not wanted
            raise
        self._replay.mark_subscribed(channel, since)

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe from ``channel``.

        Raises:
            ClientInvalidOperation: the client is not open.
            ServerError: Salesforce refused.
            TransportError: a network or HTTP error.
        """
        await self._require_open().unsubscribe(channel)
        self._replay.unregister(channel)

    async def publish(self, channel: str, data: Any) -> Message:
        """Publish ``data`` on ``channel`` over CometD.

        Salesforce does not implement publishing over CometD: publish platform events and
        generic streaming events through the REST API instead (``sfstream publish`` does).

        Raises:
            ClientInvalidOperation: the client is not open.
            ServerError: the server refused the publish.
            TransportError: a network or HTTP error.
        """
        return await self._require_open().publish(channel, data)

    async def receive(self) -> Message:
        """Wait for the next event on a subscribed channel.

        With the AUTOMATIC policy its replay marker is stored before it is returned. A
        message whose marker cannot be extracted is still returned (the problem is logged
        and reported as a status); a storage that fails raises on the next call.

        Raises:
            ClientInvalidOperation: the client is closed and no message is pending.
            ServerError: a subscription was refused when it was made again.
            TransportTimeoutError: no connection within ``connection_timeout`` seconds.
            AuthenticationError: Salesforce refused the credentials, even fresh ones.
            ReplayError: the replay storage failed to store the previous message's marker.
        """
        if self._backlog:
            item = self._backlog.popleft()
            if isinstance(item, ReplayError):
                raise item
            message = item  # taken by a call that was cancelled: handed out now
        else:
            bayeux = self._bayeux
            if bayeux is None:
                bayeux = self._require_open()  # raises
            message = await bayeux.receive()
        storage = self._automatic
        if storage is not None:
            await self._store_marker(storage, message)
        return message

    async def receive_many(self, max_count: int = 100) -> list[Message]:
        """Wait for the next event; return it with the ones already waiting, in order.

        At most ``max_count`` events, at least one; each is handled as :meth:`receive`
        handles it (with the AUTOMATIC policy its marker is stored before the batch is
        returned). A batch ends early when the client lets its connect loop run or an error
        is pending (the next call raises it). Raises what :meth:`receive` raises,
        :class:`TypeError` for a ``max_count`` that is not an int (a bool is not one) and
        :class:`~sfstream.exceptions.InvalidArgumentError` for ``max_count < 1``.
        """
        if type(max_count) is not int or max_count < 1:
            check_count("max_count", max_count)  # raises (unless an int subclass >= 1)
        if self._bayeux is not None and self._automatic is None and not self._backlog:
            # no marker to store (#13): the driver's batch as it is
            return await self._bayeux.receive_many(max_count)
        messages = [await self.receive()]
        bayeux = self._bayeux
        try:
            while bayeux is not None and len(messages) < max_count and not self._backlog:
                message = bayeux.receive_nowait()
                if message is None:
                    break
                storage = self._automatic
                if storage is not None:
                    await self._store_marker(storage, message)
                messages.append(message)
        except asyncio.CancelledError:
            # the batch is never returned: its messages go first to the next call
            self._backlog.extendleft(reversed(messages))
            raise
        return messages

    def _find_automatic_storage(self) -> ReplayMarkerStorage | None:
        """The storage that stores each event's marker before the event is returned (the
        AUTOMATIC policy), if any; worked out when the storage or the policy is set."""
        storage = self._replay_storage
        if (
            storage is not None
            and self._replay_storage_policy is _AUTOMATIC
            # ConstantReplayId stores nothing: skip two coroutines per event
            and type(storage).extract_replay_id is not _STORES_NOTHING
        ):
            return storage
        return None

    async def _store_marker(self, storage: ReplayMarkerStorage, message: Message) -> None:
        """Store ``message``'s marker in ``storage`` before the message is returned.

        Cancelled meanwhile, the message goes back to the front of the backlog: the next
        call hands it out (and stores its marker again: a marker never moves backwards).
        """
        if not self._replay.attributed(message.get("channel", "")):
            return  # a delivery no single subscription can claim moves no stored position
        try:
            await storage.extract_replay_id(message)
        except asyncio.CancelledError:
            self._backlog.appendleft(message)
            raise
        except ReplayError as error:
            channel = message.get("channel")
            logger.warning("no replay marker stored for a message on %s: %s", channel, error)
            if self._bayeux is not None:
                self._bayeux.report_status(StatusKind.REPLAY_MARKER_MISSING, str(error), channel)
        except Exception as error:
            failure = ReplayError(f"the replay storage failed to store a marker: {error!r}")
            failure.__cause__ = error
            self._backlog.append(failure)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        # The usual case first (#13): a message is ready, no error waits; one coroutine per
        # event instead of three.
        bayeux = self._bayeux
        if bayeux is not None and not self._backlog:
            message = bayeux.receive_nowait()
            if message is not None:
                storage = self._automatic
                if storage is not None:  # a marker to store: not the usual case
                    await self._store_marker(storage, message)
                return message
        try:
            return await self.receive()
        except ClientInvalidOperation:
            if self._bayeux is not None and self._bayeux.closed and not self.pending_count:
                raise StopAsyncIteration from None
            raise


class SalesforceStreamingClient(Client):
    """A :class:`Client` that logs in with a username and password (OAuth password flow).

    Args:
        consumer_key: the connected app's consumer key (OAuth client id).
        consumer_secret: the connected app's consumer secret.
        username: the Salesforce username.
        password: the password, with the security token appended when the org requires it.
        security_token, domain, instance_url, session_id, access_token: simple-salesforce's
            login parameters, see :func:`~sfstream.salesforce.authenticator_from_login`.
        sandbox: log in to ``https://test.salesforce.com``.
        login_url: log in somewhere else: your My Domain, or an emulator's URL.

    The other parameters are those of :class:`Client`.
    """

    def __init__(
        self,
        *,
        consumer_key: str | None = None,
        consumer_secret: str | None = None,
        username: str | None = None,
        password: str | None = None,
        security_token: str | None = None,
        domain: str | None = None,
        instance_url: str | None = None,
        session_id: str | None = None,
        access_token: str | None = None,
        replay: ReplayParameter = ReplayOption.NEW_EVENTS,
        replay_fallback: ReplayOption | None = None,
        replay_storage_policy: ReplayMarkerStoragePolicy = ReplayMarkerStoragePolicy.AUTOMATIC,
        connection_timeout: float | None = 10.0,
        max_pending_count: int = 100,
        sandbox: bool = False,
        json_dumps: JSONDumps = json.dumps,
        json_loads: JSONLoads = json.loads,
        loop: object = None,
        login_url: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        session: aiohttp.ClientSession | None = None,
        on_status: StatusCallback | None = None,
        backoff: Backoff | None = None,
        extensions: Iterable[Extension] = (),
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        max_messages: int = DEFAULT_MAX_MESSAGES,
    ) -> None:
        authenticator = authenticator_from_login(
            consumer_key=consumer_key,
            consumer_secret=consumer_secret,
            username=username,
            password=password,
            security_token=security_token,
            domain=domain,
            instance_url=instance_url,
            session_id=session_id,
            access_token=access_token,
            sandbox=sandbox,
            login_url=login_url,
            session=session,
            json_dumps=json_dumps,
            json_loads=json_loads,
        )
        if loop is not None:
            warnings.warn(
                "the loop argument is ignored: sfstream uses the running event loop",
                DeprecationWarning,
                stacklevel=2,
            )
        super().__init__(
            authenticator,
            replay=replay,
            replay_fallback=replay_fallback,
            replay_storage_policy=replay_storage_policy,
            connection_timeout=connection_timeout,
            max_pending_count=max_pending_count,
            json_dumps=json_dumps,
            json_loads=json_loads,
            api_version=api_version,
            session=session,
            on_status=on_status,
            backoff=backoff,
            extensions=extensions,
            max_response_size=max_response_size,
            max_messages=max_messages,
        )
