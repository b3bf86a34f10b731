"""The admin endpoint (``/_emulator/…``): drive the org and inject faults over HTTP.

It lives off every Salesforce path and needs no token (the emulator binds to loopback). Bodies
and answers are JSON; a bad request gets ``400 {"error": "..."}``. Routes:

=======  ======================================  =============================================
GET      /_emulator                              status: URLs, sessions, channels, faults
POST     /_emulator/publish                      ``{channel, payload}`` or ``{channel,
                                                 payloads: [...]}`` or ``{channel, payload,
                                                 count}``; options ``userIds``, ``eventType``
POST     /_emulator/events                       ``{name, fields?}``: define a platform event
POST     /_emulator/channels                     ``{channel, members}``: a custom channel
POST     /_emulator/push-topics                  ``{name, query, notifyForFields?}``
POST     /_emulator/streaming-channels           ``{name}``
POST     /_emulator/cdc                          ``{entity}``: enable Change Data Capture
POST     /_emulator/records                      ``{sobject, fields}``: create a record
POST     /_emulator/tokens                       ``{username?}``: issue an access token
POST     /_emulator/tokens/revoke                ``{kind?}``: revoke every (access/refresh) token
POST     /_emulator/sessions/expire              ``{clientId?}``: expire Bayeux sessions
POST     /_emulator/sessions/disconnect          ``{clientId?}``: push ``/meta/disconnect``
POST     /_emulator/clock/advance                ``{seconds}``: age the org
GET      /_emulator/faults                       the armed faults
POST     /_emulator/faults                       ``{kind, count?, target?, channel?, ...}``
POST     /_emulator/faults/{preset}              ``{count?}``: unknown-client,
                                                 unknown-client-none, authentication-invalid,
                                                 server-busy, daily-limit, connection-limit,
                                                 concurrent-user-limit
DELETE   /_emulator/faults                       disarm every fault
=======  ======================================  =============================================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sfstream.emulator._faults import PRESETS, TARGETS, Fault, FaultKind
from sfstream.emulator._http import json_response
from sfstream.emulator._json import loads
from sfstream.emulator._state import RestError

if TYPE_CHECKING:
    from sfstream.emulator._emulator import Emulator

__all__ = ["AdminApi"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _BadRequest(Exception):
    pass


def _field(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...
) -> Any:
    if name not in body or body[name] is None:
        if default is ...:
            raise _BadRequest(f"missing {name!r}")
        return default
    value = body[name]
    if not isinstance(value, kind) or (
        isinstance(value, bool) and kind in (int, float, (int, float))
    ):
        raise _BadRequest(f"{name!r} has the wrong type")
    return value


def _count(body: dict[str, Any]) -> int | None:
    if "count" in body and body["count"] is None:
        return None
    count: int = _field(body, "count", int, 1)
    return count


class AdminApi:
    """The ``/_emulator`` routes of one emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def register(self, router: web.UrlDispatcher, prefix: str) -> None:
        routes: list[tuple[str, str, _Handler]] = [
            ("GET", "", self.status),
            ("POST", "/publish", self.publish),
            ("POST", "/events", self.define_event),
            ("POST", "/channels", self.define_channel),
            ("POST", "/push-topics", self.push_topic),
            ("POST", "/streaming-channels", self.streaming_channel),
            ("POST", "/cdc", self.cdc),
            ("POST", "/records", self.record),
            ("POST", "/tokens", self.issue_token),
            ("POST", "/tokens/revoke", self.revoke_tokens),
            ("POST", "/sessions/expire", self.expire_sessions),
            ("POST", "/sessions/disconnect", self.disconnect_sessions),
            ("POST", "/clock/advance", self.advance_clock),
            ("GET", "/faults", self.list_faults),
            ("POST", "/faults", self.add_fault),
            ("DELETE", "/faults", self.clear_faults),
            ("POST", "/faults/{preset}", self.preset_fault),
        ]
        for method, path, handler in routes:
            router.add_route(method, prefix + path, self._wrap(handler))

    @staticmethod
    def _wrap(handler: _Handler) -> _Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except _BadRequest as exc:
                return json_response({"error": str(exc)}, status=400)
            except RestError as exc:
                return json_response({"error": exc.message, "errorCode": exc.error_code}, 400)
            except (ValueError, TypeError, KeyError) as exc:
                return json_response({"error": str(exc)}, status=400)

        return wrapped

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            value = loads(raw)
        except ValueError:
            raise _BadRequest("the body is not JSON") from None
        if not isinstance(value, dict):
            raise _BadRequest("the body must be a JSON object")
        return value

    async def status(self, _request: web.Request) -> web.StreamResponse:
        emulator = self.emulator
        state = emulator.state
        return json_response(
            {
                "loginUrl": emulator.login_url,
                "instanceUrl": emulator.instance_url,
                "apiVersion": emulator.config.api_version,
                "orgId": state.org_id,
                "userId": emulator.user_id,
                "username": emulator.username,
                "time": emulator.clock.time(),
                "sessions": emulator.sessions(),
                "channels": {
                    log.channel: {
                        "retained": len(log),
                        "lastReplayId": log.last_id,
                        "purgedThrough": log.purged_through,
                    }
                    for log in state.events
                },
                "platformEvents": sorted(state.platform_events),
                "pushTopics": sorted(t.name for t in state.push_topics.values()),
                "streamingChannels": sorted(c.name for c in state.streaming_channels.values()),
                "cdcEntities": sorted(state.cdc_entities),
                "faults": [f.describe() for f in emulator.faults],
            }
        )

    async def publish(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        channel = _field(body, "channel", str)
        options: dict[str, Any] = {}
        if "userIds" in body:
            options["user_ids"] = _field(body, "userIds", list)
        if "eventType" in body:
            options["event_type"] = _field(body, "eventType", str)
        if "changeType" in body:
            options["change_type"] = _field(body, "changeType", str)
        if "payloads" in body:
            payloads = _field(body, "payloads", list)
        else:
            if "payload" not in body:
                raise _BadRequest("missing 'payload' (or 'payloads')")
            payloads = [body["payload"]] * _field(body, "count", int, 1)
        results = await self.emulator.publish_many(channel, payloads, **options)
        answer: dict[str, Any] = {"count": len(results)}
        if results:
            answer["firstReplayId"] = results[0].replay_id
            answer["lastReplayId"] = results[-1].replay_id
            if len(results) <= 1000:
                answer["replayIds"] = [r.replay_id for r in results]
                if results[0].event_uuid is not None:
                    answer["eventUuids"] = [r.event_uuid for r in results]
        return json_response(answer)

    async def define_event(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        fields = _field(body, "fields", list, None)
        self.emulator.define_event(_field(body, "name", str), fields)
        return json_response({"ok": True})

    async def define_channel(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        self.emulator.define_channel(_field(body, "channel", str), _field(body, "members", list))
        return json_response({"ok": True})

    async def push_topic(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        topic = self.emulator.create_push_topic(
            _field(body, "name", str),
            _field(body, "query", str),
            notify_for_fields=_field(body, "notifyForFields", str, "Referenced"),
        )
        return json_response({"id": topic.id, "channel": topic.channel})

    async def streaming_channel(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        channel = self.emulator.create_streaming_channel(_field(body, "name", str))
        return json_response({"id": channel.id, "channel": channel.name})

    async def cdc(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        self.emulator.enable_cdc(_field(body, "entity", str))
        return json_response({"ok": True})

    async def record(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        record_id = self.emulator.create_record(
            _field(body, "sobject", str), _field(body, "fields", dict)
        )
        return json_response({"id": record_id})

    async def issue_token(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        token = self.emulator.issue_access_token(_field(body, "username", str, None))
        return json_response({"access_token": token, "instance_url": self.emulator.instance_url})

    async def revoke_tokens(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        kind = _field(body, "kind", str, None)
        if kind not in (None, "access", "refresh"):
            raise _BadRequest("'kind' is 'access' or 'refresh'")
        return json_response({"revoked": self.emulator.revoke_tokens(kind)})

    async def expire_sessions(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        count = self.emulator.expire_sessions(_field(body, "clientId", str, None))
        return json_response({"expired": count})

    async def disconnect_sessions(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        count = self.emulator.push_disconnect(_field(body, "clientId", str, None))
        return json_response({"disconnected": count})

    async def advance_clock(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        seconds = float(_field(body, "seconds", (int, float)))
        purged = self.emulator.advance_clock(seconds)
        return json_response({"time": self.emulator.clock.time(), "purged": purged})

    async def list_faults(self, _request: web.Request) -> web.StreamResponse:
        return json_response([f.describe() for f in self.emulator.faults])

    async def clear_faults(self, _request: web.Request) -> web.StreamResponse:
        return json_response({"cleared": self.emulator.clear_faults()})

    async def preset_fault(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["preset"]
        factory = PRESETS.get(name)
        if factory is None:
            raise _BadRequest(f"unknown fault preset {name!r}; known: {', '.join(PRESETS)}")
        body = await self._body(request)
        fault = self.emulator.add_fault(factory(_count(body)))
        return json_response(fault.describe())

    async def add_fault(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        try:
            kind = FaultKind(_field(body, "kind", str))
        except ValueError:
            raise _BadRequest("'kind' is one of " + ", ".join(k.value for k in FaultKind)) from None
        target = _field(body, "target", str, "cometd")
        if target not in TARGETS:
            raise _BadRequest(f"'target' is one of {', '.join(TARGETS)}")
        fault = Fault(kind, _count(body), target=target)
        fault.channel = _field(body, "channel", str, None)
        if kind is FaultKind.BAYEUX:
            fault.error = _field(body, "error", str)
            fault.advice = _field(body, "advice", dict, None)
            fault.ext = _field(body, "ext", dict, None)
            reason = _field(body, "failureReason", str, None)
            if reason is not None:
                fault.ext = {**(fault.ext or {}), "sfdc": {"failureReason": reason}}
            fault.expire_session = _field(body, "expireSession", bool, False)
            if fault.channel is None and "channel" not in body:
                fault.channel = "/meta/connect"
        elif kind is FaultKind.STATUS:
            fault.status = _field(body, "status", int, 500)
        elif kind is FaultKind.DELAY:
            fault.seconds = float(_field(body, "seconds", (int, float)))
        elif kind is FaultKind.DROP:
            when = _field(body, "when", str, "mid_response")
            if when not in ("before_response", "mid_response"):
                raise _BadRequest("'when' is 'before_response' or 'mid_response'")
            fault.when = when
        self.emulator.add_fault(fault)
        return json_response(fault.describe())
