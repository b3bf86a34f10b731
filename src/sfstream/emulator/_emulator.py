"""The :class:`Emulator`: a Salesforce org on loopback, as an async context manager."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Final, Literal, ParamSpec, TypeVar, overload

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from sfstream.emulator import _faults
from sfstream.emulator._bayeux import BayeuxServer
from sfstream.emulator._clock import Clock, SystemClock
from sfstream.emulator._config import (
    CURRENT_API_VERSION,
    DEFAULT_CONSUMER_KEY,
    DEFAULT_CONSUMER_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_REFRESH_TOKEN,
    DEFAULT_USERNAME,
    Context,
    EmulatorConfig,
)
from sfstream.emulator._faults import Fault, FaultKind, FaultQueue, Target
from sfstream.emulator._http import fault_response
from sfstream.emulator._jwt import PublicKey, generate_key_pair, load_public_key
from sfstream.emulator._log import DAY
from sfstream.emulator._oauth import OAuthEndpoint
from sfstream.emulator._persist import StateFile
from sfstream.emulator._rest import RestApi
from sfstream.emulator._state import (
    OrgState,
    Published,
    PushTopic,
    StreamingChannel,
    User,
)

__all__ = ["DEFAULT_CDC_ENTITIES", "Emulator", "EmulatorThread"]

logger = logging.getLogger("sfstream.emulator")

#: Entities selected for Change Data Capture unless told otherwise.
DEFAULT_CDC_ENTITIES: Final = ("Account", "Contact", "Lead", "Opportunity", "Case")
#: Where the admin (fault injection) endpoint lives: off every Salesforce path.
ADMIN_PREFIX: Final = "/_emulator"

#: Platform events to define with their declared custom fields (``{"Order__e": ["Amount__c"]}``),
#: the only ones they accept; a bare name (``["Order__e"]``) declares no custom fields.
EventDeclarations = Iterable[str] | Mapping[str, Iterable[str] | None]

#: The standard fields of a platform event that ``Emulator.publish`` lets a test set.
_STANDARD_EVENT_FIELDS: Final = frozenset({"CreatedDate", "CreatedById"})

_P = ParamSpec("_P")
_T = TypeVar("_T")


class _AccessLogger(AbstractAccessLogger):
    """Method, path (never the query string, which may hold a token) and status."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %.3fs", request.remote, request.method, request.path, response.status, time
        )


class Emulator:
    """A Salesforce org on ``http://127.0.0.1:<free port>`` for streaming clients.

    ::

        async with Emulator(events={"Order__e": ["Amount__c"]}) as org:
            # org.login_url, org.consumer_key, org.consumer_secret, org.username, org.password
            await org.publish("/event/Order__e", {"Amount__c": 42})

    Timings (``hold_time``, ``session_expiry``) are in seconds; set them small in tests.
    Retentions are in seconds on ``clock`` (move it with :meth:`advance_clock`). ``state`` is
    the org (pass an earlier emulator's ``state`` to a new one to "restart" it) and
    ``state_file`` keeps it in a file across processes. See ``docs/emulator.md``.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        public_host: str | None = None,
        consumer_key: str = DEFAULT_CONSUMER_KEY,
        consumer_secret: str = DEFAULT_CONSUMER_SECRET,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        security_token: str = "",
        refresh_token: str | None = DEFAULT_REFRESH_TOKEN,
        refresh_token_rotation: bool = False,
        client_credentials: bool = True,
        jwt_public_key: str | bytes | None = None,
        api_version: str = CURRENT_API_VERSION,
        hold_time: float = 110.0,
        session_expiry: float = 40.0,
        retention: float = DAY,
        high_volume_retention: float = 3 * DAY,
        max_batch: int = 10_000,
        max_request_size: int = 32_768,
        require_cookie: bool = True,
        token_lifetime: float | None = None,
        admin: bool = True,
        events: EventDeclarations = (),
        channels: Mapping[str, Iterable[str]] | None = None,
        push_topics: Mapping[str, str] | None = None,
        streaming_channels: Iterable[str] = (),
        cdc_entities: Iterable[str] | None = None,
        clock: Clock | None = None,
        state: OrgState | None = None,
        state_file: str | os.PathLike[str] | None = None,
        access_log: bool = False,
    ) -> None:
        key: PublicKey | None = None
        if jwt_public_key is not None:
            key = load_public_key(jwt_public_key)
        config = EmulatorConfig(
            host=host,
            port=port,
            public_host=public_host,
            consumer_key=consumer_key,
            consumer_secret=consumer_secret,
            username=username,
            password=password,
            security_token=security_token,
            refresh_token=refresh_token,
            refresh_token_rotation=refresh_token_rotation,
            client_credentials=client_credentials,
            jwt_key=key,
            api_version=api_version,
            hold_time=hold_time,
            session_expiry=session_expiry,
            retention=retention,
            high_volume_retention=high_volume_retention,
            max_batch=max_batch,
            max_request_size=max_request_size,
            require_cookie=require_cookie,
            token_lifetime=token_lifetime,
            admin=admin,
        )
        self._init(
            config,
            clock=clock,
            state=state,
            state_file=state_file,
            events=events,
            channels=channels,
            push_topics=push_topics,
            streaming_channels=streaming_channels,
            cdc_entities=cdc_entities,
            access_log=access_log,
        )

    @classmethod
    def from_config(
        cls,
        config: EmulatorConfig,
        *,
        events: EventDeclarations = (),
        channels: Mapping[str, Iterable[str]] | None = None,
        push_topics: Mapping[str, str] | None = None,
        streaming_channels: Iterable[str] = (),
        cdc_entities: Iterable[str] | None = None,
        clock: Clock | None = None,
        state: OrgState | None = None,
        state_file: str | os.PathLike[str] | None = None,
        access_log: bool = False,
    ) -> Emulator:
        """An emulator with the settings of ``config`` (the command line builds one)."""
        emulator = cls.__new__(cls)
        emulator._init(
            config,
            clock=clock,
            state=state,
            state_file=state_file,
            events=events,
            channels=channels,
            push_topics=push_topics,
            streaming_channels=streaming_channels,
            cdc_entities=cdc_entities,
            access_log=access_log,
        )
        return emulator

    def _init(
        self,
        config: EmulatorConfig,
        *,
        clock: Clock | None,
        state: OrgState | None,
        state_file: str | os.PathLike[str] | None,
        events: EventDeclarations,
        channels: Mapping[str, Iterable[str]] | None,
        push_topics: Mapping[str, str] | None,
        streaming_channels: Iterable[str],
        cdc_entities: Iterable[str] | None,
        access_log: bool,
    ) -> None:
        self.config = config
        self.clock: Clock = SystemClock() if clock is None else clock
        self.state = OrgState() if state is None else state
        self._state_file = None if state_file is None else StateFile(state_file)
        if self._state_file is not None:
            self._state_file.load(self.state)
        self.state.events.configure(
            retention=config.retention, high_volume_retention=config.high_volume_retention
        )
        self.faults = FaultQueue()
        self._context = Context(config, self.state, self.clock, self.faults)
        self._access_log = access_log
        self._runner: web.AppRunner | None = None
        self._bayeux: BayeuxServer | None = None
        self._base_url: str | None = None
        self._provision(events, channels, push_topics, streaming_channels, cdc_entities)

    def _provision(
        self,
        events: EventDeclarations,
        channels: Mapping[str, Iterable[str]] | None,
        push_topics: Mapping[str, str] | None,
        streaming_channels: Iterable[str],
        cdc_entities: Iterable[str] | None,
    ) -> None:
        config = self.config
        state = self.state
        user = state.add_user(config.username, config.password)
        self._context.primary_user_id = user.id
        if config.refresh_token is not None:
            record = state.token(config.refresh_token)
            if record is None:
                state.issue_token("refresh", user.id, self.clock.time(), value=config.refresh_token)
        declarations: Iterable[tuple[str, Iterable[str] | None]] = (
            events.items() if isinstance(events, Mapping) else ((name, None) for name in events)
        )
        for name, fields in declarations:
            if isinstance(fields, str):
                raise TypeError(f"the fields of {name} are a list of names, not a string")
            existing = state.platform_events.get(name.removeprefix("/event/"))
            wanted = None if fields is None else frozenset(fields)
            # A bare name keeps a stored definition's fields; a new one declares none.
            if existing is None or (wanted is not None and existing.fields != wanted):
                state.define_event(name, wanted)
        for channel, members in (channels or {}).items():
            state.define_channel(channel, members)
        for name, query in (push_topics or {}).items():
            if state.topic_by_name(name) is None:
                self.create_push_topic(name, query)
        for name in streaming_channels:
            if state.streaming_channel_by_name(name) is None:
                state.create_streaming_channel(name)
        for entity in DEFAULT_CDC_ENTITIES if cdc_entities is None else cdc_entities:
            if entity not in state.cdc_entities:
                state.enable_cdc(entity)

    def __repr__(self) -> str:
        where = self._base_url or "not started"
        return f"<Emulator {where} user={self.config.username!r}>"

    # -- lifecycle ---------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        """The aiohttp application (for ``aiohttp_client`` or your own runner).

        Serving it yourself works too; call :meth:`set_base_url` with the URL it is reached at
        (token responses carry it as ``instance_url``) and await :meth:`attach` before the first
        request (the context manager does both).
        """
        context = self._context
        self._bayeux = bayeux = BayeuxServer(context)
        oauth = OAuthEndpoint(context)
        rest = RestApi(context, bayeux.online_user_ids)
        # REST, OAuth and admin bodies: at most 1 MiB, counted decoded (a gzip request body is
        # inflated only that far); CometD bodies have their own max_request_size.
        app = web.Application(middlewares=[self._fault_middleware], client_max_size=1024**2)
        router = app.router
        router.add_post("/services/oauth2/token", oauth.token)
        router.add_route("*", "/services/oauth2/revoke", oauth.revoke)
        router.add_get("/id/{org}/{user}", oauth.identity)
        router.add_route("*", "/cometd{tail:(/.*)?}", bayeux.handle)
        router.add_get("/services/data", rest.versions)
        router.add_get("/services/data/", rest.versions)
        router.add_route("*", "/services/data/v{version}/{path:.*}", rest.handle)
        router.add_route("*", "/services/data/v{version}", rest.handle)
        if self.config.admin:
            from sfstream.emulator._admin import AdminApi

            AdminApi(self).register(router, ADMIN_PREFIX)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    def set_base_url(self, url: str) -> None:
        """The URL clients reach the app at (done by :meth:`start`)."""
        self._base_url = url.rstrip("/")
        self._context.base_url = self._base_url

    async def _on_startup(self, _app: web.Application) -> None:
        assert self._bayeux is not None
        self._bayeux.start()
        if self._state_file is not None:
            self._state_file.attach(self.state)

    async def _on_cleanup(self, _app: web.Application) -> None:
        if self._bayeux is not None:
            await self._bayeux.stop()
        if self._state_file is not None:
            self._state_file.close()

    @web.middleware
    async def _fault_middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        path = request.path
        target: str | None = None
        if path.startswith("/services/oauth2/"):
            target = "token"
        elif path.startswith(("/services/data", "/id/")):
            target = "rest"
        if target is not None:
            fault = self.faults.take_http(target)
            if fault is not None:
                response = await fault_response(request, fault)
                if response is not None:
                    return response
        return await handler(request)

    async def start(self) -> None:
        """Serve on ``host:port`` (a free port when 0)."""
        if self._runner is not None:
            raise RuntimeError("this emulator is already running")
        app = self.build_app()
        runner = web.AppRunner(
            app,
            handler_cancellation=True,
            shutdown_timeout=1.0,
            access_log=logging.getLogger("sfstream.emulator.access") if self._access_log else None,
            access_log_class=_AccessLogger,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.config.host, self.config.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = self.config.public_host or self.config.host
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming the wildcard, not binding it
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        self.set_base_url(f"http://{host}:{port}")
        logger.info("Salesforce emulator listening on %s", self._base_url)

    async def stop(self) -> None:
        """Stop serving (held connects are answered first). Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            logger.info("Salesforce emulator on %s stopped", self._base_url)

    close = stop

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._runner is not None

    def in_thread(self) -> EmulatorThread:
        """Run this emulator on its own event loop in a background thread (for sync code)."""
        return EmulatorThread(self)

    # -- where and who -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: login URL and instance URL alike."""
        if self._base_url is None:
            raise RuntimeError("the emulator is not started: use 'async with Emulator() as org'")
        return self._base_url

    @property
    def login_url(self) -> str:
        """Where clients get tokens (``<login_url>/services/oauth2/token``)."""
        return self.base_url

    @property
    def instance_url(self) -> str:
        """What token responses give as ``instance_url``."""
        return self.base_url

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/services/oauth2/token"

    @property
    def admin_url(self) -> str:
        return f"{self.base_url}{ADMIN_PREFIX}"

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def cometd_url(self, version: str | None = None) -> str:
        """``<instance_url>/cometd/<version>`` (default: the configured API version)."""
        return f"{self.base_url}/cometd/{version or self.config.api_version}"

    @property
    def consumer_key(self) -> str:
        return self.config.consumer_key

    @property
    def consumer_secret(self) -> str:
        return self.config.consumer_secret

    @property
    def username(self) -> str:
        return self.config.username

    @property
    def password(self) -> str:
        """The password clients send (with the security token appended when one is set)."""
        return self.config.password + self.config.security_token

    @property
    def refresh_token(self) -> str | None:
        return self.config.refresh_token

    @property
    def user_id(self) -> str:
        return self._context.primary_user_id

    @property
    def org_id(self) -> str:
        return self.state.org_id

    # -- definitions ---------------------------------------------------------------------------

    def define_event(self, name: str, fields: Iterable[str] | None = None) -> None:
        """Define a platform event (``Order__e``) with its custom fields (``Amount__c``, …).

        Publishing a field an event does not declare fails with Salesforce's ``INVALID_FIELD``
        error; ``fields=None`` declares none, so the event accepts no custom field.
        """
        self.state.define_event(name, fields)

    def define_channel(self, channel: str, members: Iterable[str]) -> None:
        """Define ``/event/<Name>__chn`` (platform events) or ``/data/<Name>__chn`` (entities)."""
        self.state.define_channel(channel, members)

    def enable_cdc(self, entity: str) -> None:
        """Select an entity (``Account``, ``Employee__c``) for Change Data Capture."""
        self.state.enable_cdc(entity)

    def create_push_topic(
        self,
        name: str,
        query: str,
        *,
        notify_for_fields: Literal["All", "Referenced", "Select", "Where"] = "Referenced",
        notify_create: bool = True,
        notify_update: bool = True,
        notify_delete: bool = True,
        notify_undelete: bool = True,
        api_version: str | None = None,
    ) -> PushTopic:
        """Create a PushTopic (``/topic/<name>``) for ``query`` (``SELECT Id, … FROM …``)."""
        fields: dict[str, Any] = {
            "Name": name,
            "Query": query,
            "NotifyForFields": notify_for_fields,
            "NotifyForOperationCreate": notify_create,
            "NotifyForOperationUpdate": notify_update,
            "NotifyForOperationDelete": notify_delete,
            "NotifyForOperationUndelete": notify_undelete,
        }
        if api_version is not None:
            fields["ApiVersion"] = api_version
        return self.state.create_push_topic(fields, float(self.config.api_version))

    def create_streaming_channel(
        self, name: str, description: str | None = None
    ) -> StreamingChannel:
        """Create a StreamingChannel (``/u/<name>``) for generic streaming."""
        return self.state.create_streaming_channel(name, description)

    def add_user(self, username: str, password: str | None = None) -> str:
        """Add a user who can log in with the password flow; returns the user id."""
        return self.state.add_user(username, password).id

    def _user(self, username: str | None) -> User:
        if username is None:
            return self.state.users[self.user_id]
        user = self.state.user_by_name(username)
        if user is None:
            raise KeyError(f"no user {username!r}")
        return user

    # -- publishing ----------------------------------------------------------------------------

    def publish_nowait(
        self,
        channel: str,
        payload: Any,
        *,
        event_type: str = "created",
        user_ids: Sequence[str] | None = None,
        change_type: str = "CREATE",
        record_ids: Sequence[str] | None = None,
    ) -> Published:
        """Publish one event now (call it on the emulator's event loop).

        - ``/event/<Name>__e``: ``payload`` holds the event's fields (the type is defined, with
          no custom fields, if needed); delivered with ``CreatedDate``, ``CreatedById`` and an
          ``EventUuid`` (a test may set ``CreatedDate`` and ``CreatedById`` itself). A custom
          field the event does not declare is refused with
          :class:`~sfstream.emulator.RestError` ``INVALID_FIELD`` (a ``ValueError``).
        - ``/topic/<Name>``: ``payload`` is the notification's ``sobject`` (the PushTopic must
          exist); ``event_type`` is ``created``, ``updated``, ``deleted`` or ``undeleted``.
        - ``/u/<name>``: ``payload`` is the string pushed (other values are sent as JSON);
          ``user_ids`` limits who gets it. The StreamingChannel is created if needed.
        - ``/data/<Entity>ChangeEvent``: ``payload`` holds the changed fields; ``change_type``
          and ``record_ids`` fill the ChangeEventHeader. It also reaches ``/data/ChangeEvents``
          and custom channels that include the entity.
        """
        now = self.clock.time()
        if channel.startswith("/event/"):
            if not isinstance(payload, Mapping):
                raise TypeError("a platform event payload is a mapping of field names to values")
            name = channel[len("/event/") :]
            if name.endswith("__chn"):
                raise ValueError("publish to a member event of a custom channel, not the channel")
            if name not in self.state.platform_events:
                self.state.define_event(name)
            # From Python (not over REST) a test may set the standard fields, e.g. a bad date.
            standard = {k: v for k, v in payload.items() if k in _STANDARD_EVENT_FIELDS}
            custom = {k: v for k, v in payload.items() if k not in _STANDARD_EVENT_FIELDS}
            payload = {**self.state.validate_event_fields(name, custom), **standard}
            return self.state.publish_platform_event(name, payload, now=now, user_id=self.user_id)
        if channel.startswith("/topic/"):
            if not isinstance(payload, Mapping):
                raise TypeError("a PushTopic payload is the sobject mapping")
            return self.state.publish_push_topic(
                channel[len("/topic/") :], payload, now=now, event_type=event_type
            )
        if channel.startswith("/u/"):
            text = payload if isinstance(payload, str) else self._json_text(payload)
            return self.state.push_generic(channel, text, now=now, user_ids=user_ids)
        if channel.startswith("/data/") and channel.endswith("ChangeEvent"):
            stem = channel[len("/data/") : -len("ChangeEvent")]
            entity = stem + "c" if stem.endswith("__") else stem
            if not isinstance(payload, Mapping):
                raise TypeError("a change event payload is a mapping of field names to values")
            ids = (
                list(record_ids)
                if record_ids is not None
                else [self.state.new_id(self.state.key_prefix(entity))]
            )
            results = self.state.publish_change_event(
                entity,
                change_type,
                ids,
                dict(payload),
                now=now,
                user_id=self.user_id,
                changed_fields=list(payload) if change_type == "UPDATE" else (),
            )
            if not results:
                raise ValueError(f"{entity} is not enabled for Change Data Capture")
            return results[0]
        raise ValueError(f"cannot publish to {channel!r}")

    @staticmethod
    def _json_text(value: Any) -> str:
        from sfstream.emulator._json import dumps

        return dumps(value).decode()

    async def publish(self, channel: str, payload: Any, **options: Any) -> Published:
        """Publish one event; see :meth:`publish_nowait` for the channel kinds and options."""
        return self.publish_nowait(channel, payload, **options)

    async def publish_many(
        self, channel: str, payloads: Iterable[Any], **options: Any
    ) -> list[Published]:
        """Publish several events in order (for backlogs; yields to the loop now and then)."""
        results = []
        for index, payload in enumerate(payloads, 1):
            results.append(self.publish_nowait(channel, payload, **options))
            if index % 5000 == 0:
                await asyncio.sleep(0)
        return results

    def create_record(self, sobject: str, fields: Mapping[str, Any]) -> str:
        """Create a record (PushTopics and CDC are notified); returns its id."""
        return self.state.create_record(
            sobject, fields, now=self.clock.time(), user_id=self.user_id
        ).id

    def update_record(self, sobject: str, record_id: str, fields: Mapping[str, Any]) -> None:
        self.state.update_record(
            sobject, record_id, fields, now=self.clock.time(), user_id=self.user_id
        )

    def delete_record(self, sobject: str, record_id: str) -> None:
        self.state.delete_record(sobject, record_id, now=self.clock.time(), user_id=self.user_id)

    def undelete_record(self, record_id: str) -> None:
        self.state.undelete_record(record_id, now=self.clock.time(), user_id=self.user_id)

    def publish_gap_event(
        self, entity: str, record_ids: Sequence[str], change_type: str = "GAP_UPDATE"
    ) -> list[Published]:
        """A CDC gap event (header only: re-read these records)."""
        if not change_type.startswith("GAP_") or change_type == "GAP_OVERFLOW":
            raise ValueError("a gap event's changeType is GAP_CREATE/UPDATE/DELETE/UNDELETE")
        return self.state.publish_change_event(
            entity, change_type, record_ids, now=self.clock.time(), user_id=self.user_id
        )

    def publish_overflow_event(self, entity: str) -> list[Published]:
        """A CDC overflow event (``GAP_OVERFLOW``, no record ids)."""
        return self.state.publish_change_event(
            entity, "GAP_OVERFLOW", [], now=self.clock.time(), user_id=self.user_id
        )

    def events(self, channel: str) -> list[dict[str, Any]]:
        """The retained events of ``channel`` as their ``data`` (oldest first)."""
        return [event.data for event in self.state.retained(channel)]

    # -- tokens --------------------------------------------------------------------------------

    def issue_access_token(self, username: str | None = None) -> str:
        """A fresh access token (as if the user had logged in)."""
        return self.state.issue_token("access", self._user(username).id, self.clock.time())

    def issue_refresh_token(self, username: str | None = None) -> str:
        """A fresh refresh token (as a web-server flow would give)."""
        return self.state.issue_token("refresh", self._user(username).id, self.clock.time())

    def revoke_token(self, token: str) -> int:
        """Revoke one token (a refresh token takes its access tokens along)."""
        count = self.state.revoke(token)
        self._kick()
        return count

    def revoke_tokens(self, kind: Literal["access", "refresh"] | None = None) -> int:
        """Revoke every token (or every access/refresh token); returns how many were live.

        Held connects are answered ``401::Authentication invalid`` at once.
        """
        count = self.state.revoke_all(kind)
        self._kick()
        return count

    def generate_jwt_key(self) -> str:
        """Make a key pair for the JWT bearer flow; returns the private key (PKCS#8 PEM)."""
        private_pem, public_key = generate_key_pair()
        self._set_config(jwt_key=public_key)
        return private_pem

    def set_jwt_public_key(self, pem: str | bytes) -> None:
        """Trust a certificate or public key (PEM) for the JWT bearer flow."""
        self._set_config(jwt_key=load_public_key(pem))

    def _set_config(self, **changes: Any) -> None:
        from dataclasses import replace

        self.config = replace(self.config, **changes)
        self._context.config = self.config

    # -- faults --------------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._bayeux is not None and self.running:
            self._bayeux.kick()

    def _arm(self, fault: Fault) -> Fault:
        self.faults.add(fault)
        self._kick()
        return fault

    @property
    def session_count(self) -> int:
        """Live Bayeux sessions."""
        return 0 if self._bayeux is None else len(self._bayeux.sessions)

    def sessions(self) -> list[dict[str, Any]]:
        """The live Bayeux sessions (clientId, user, subscriptions with their cursors)."""
        return [] if self._bayeux is None else self._bayeux.describe()

    def expire_sessions(self, client_id: str | None = None) -> int:
        """Forget Bayeux sessions: the next request gets ``403::Unknown client`` + handshake."""
        return 0 if self._bayeux is None else self._bayeux.expire(client_id)

    def push_disconnect(self, client_id: str | None = None) -> int:
        """End sessions server-side with a ``/meta/disconnect`` (as API 64.0+ may)."""
        return 0 if self._bayeux is None else self._bayeux.push_disconnect(client_id)

    def fail_next(
        self,
        error: str,
        *,
        count: int | None = 1,
        channel: str | None = "/meta/connect",
        advice: Mapping[str, Any] | None = None,
        ext: Mapping[str, Any] | None = None,
        failure_reason: str | None = None,
        expire_session: bool = False,
    ) -> Fault:
        """Answer the next ``count`` messages on ``channel`` with ``error`` (and advice/ext).

        ``failure_reason`` goes to ``ext.sfdc.failureReason``; ``expire_session`` also forgets
        the session. ``count=None`` keeps failing until :meth:`clear_faults`.
        """
        extension = dict(ext) if ext is not None else None
        if failure_reason is not None:
            extension = {**(extension or {}), "sfdc": {"failureReason": failure_reason}}
        return self._arm(
            Fault(
                FaultKind.BAYEUX,
                count,
                channel=channel,
                error=error,
                advice=dict(advice) if advice is not None else None,
                ext=extension,
                expire_session=expire_session,
            )
        )

    def unknown_client(
        self,
        count: int | None = 1,
        *,
        reconnect: Literal["handshake", "none", "retry"] = "handshake",
    ) -> Fault:
        """``403::Unknown client`` (advice ``handshake``, or ``none`` as seen in the wild)."""
        return self._arm(_faults.unknown_client(count, reconnect=reconnect))

    def authentication_invalid(
        self, count: int | None = 1, *, channel: str = "/meta/connect"
    ) -> Fault:
        """``401::Authentication invalid`` with ``reconnect: none``, tokens left valid."""
        return self._arm(_faults.authentication_invalid(count, channel=channel))

    def server_busy(self, count: int | None = 1, *, channel: str = "/meta/connect") -> Fault:
        """``503::Server is too busy…`` in ``failureReason`` behind a 401 ``error``."""
        return self._arm(_faults.server_busy(count, channel=channel))

    def daily_limit_exceeded(
        self,
        count: int | None = 1,
        *,
        channel: str = "/meta/connect",
        advice: dict[str, Any] | None = None,
    ) -> Fault:
        """``403::Organization total events daily limit exceeded``."""
        return self._arm(_faults.daily_limit_exceeded(count, channel=channel, advice=advice))

    def connection_limit(self, count: int | None = 1) -> Fault:
        """Handshakes denied for the per-server connection limit (the DoS-protection text)."""
        return self._arm(_faults.handshake_denied(count))

    def concurrent_user_limit(self, count: int | None = 1) -> Fault:
        """Handshakes denied with ``403::Organization concurrent user limit exceeded``."""
        return self._arm(_faults.concurrent_user_limit(count))

    def http_error(
        self, status: int = 500, *, count: int | None = 1, target: Target = "cometd"
    ) -> Fault:
        """Answer the next requests with an HTTP error status (500, 502, 503, …)."""
        return self._arm(Fault(FaultKind.STATUS, count, target=target, status=status))

    def invalid_json(self, count: int | None = 1, *, target: Target = "cometd") -> Fault:
        """Answer the next requests with a 200 whose body is not JSON."""
        return self._arm(Fault(FaultKind.INVALID_JSON, count, target=target))

    def drop_connection(
        self,
        count: int | None = 1,
        *,
        target: Target = "cometd",
        when: Literal["before_response", "mid_response"] = "mid_response",
        channel: str | None = None,
    ) -> Fault:
        """Drop the TCP connection of the next requests (after half a body, or before any)."""
        return self._arm(Fault(FaultKind.DROP, count, target=target, when=when, channel=channel))

    def delay_responses(
        self,
        seconds: float,
        *,
        count: int | None = 1,
        target: Target = "cometd",
        channel: str | None = None,
    ) -> Fault:
        """Wait ``seconds`` before answering the next requests."""
        return self._arm(
            Fault(FaultKind.DELAY, count, target=target, seconds=seconds, channel=channel)
        )

    def add_fault(self, fault: Fault) -> Fault:
        """Arm a fault built by hand (see :class:`~sfstream.emulator.Fault`)."""
        return self._arm(fault)

    def clear_faults(self) -> int:
        """Disarm every fault; returns how many were armed."""
        return self.faults.clear()

    def advance_clock(self, seconds: float) -> int:
        """Move the org's clock forward; returns how many events retention purged."""
        self.clock.advance(seconds)
        return self.state.events.purge(self.clock.time())


class EmulatorThread:
    """An :class:`Emulator` on its own event loop in a daemon thread, for synchronous code.

    ::

        with Emulator(events={"Order__e": ["Amount__c"]}).in_thread() as org:
            org.publish("/event/Order__e", {"Amount__c": 1})
            requests.post(org.emulator.token_url, ...)

    :meth:`call` runs any emulator method (or coroutine function) on that loop.
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> EmulatorThread:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name="sfstream-emulator", daemon=True
        )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.emulator.start(), loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        try:
            asyncio.run_coroutine_threadsafe(self.emulator.stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            loop.close()

    @overload
    def call(
        self, function: Callable[_P, Awaitable[_T]], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T: ...

    @overload
    def call(self, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T: ...

    def call(self, function: Callable[_P, Any], *args: _P.args, **kwargs: _P.kwargs) -> Any:
        """Run ``function(*args, **kwargs)`` on the emulator's loop and return its result.

        A coroutine function is awaited there; its result is returned.
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError("the emulator thread is not running")

        async def run() -> Any:
            result = function(*args, **kwargs)
            if inspect.isawaitable(result):
                return await result
            return result

        future: Future[Any] = asyncio.run_coroutine_threadsafe(run(), loop)
        return future.result()

    def publish(self, channel: str, payload: Any, **options: Any) -> Published:
        """Publish from any thread (see :meth:`Emulator.publish_nowait`)."""
        return self.call(self.emulator.publish_nowait, channel, payload, **options)

    @property
    def base_url(self) -> str:
        return self.emulator.base_url

    @property
    def login_url(self) -> str:
        return self.emulator.login_url

    @property
    def instance_url(self) -> str:
        return self.emulator.instance_url
