"""``/services/data/v<version>/…``: the REST resources that publish events.

- ``POST sobjects/<Name>__e/``: publish a platform event (201 with ``OPERATION_ENQUEUED`` and
  the EventUuid as its message).
- ``POST composite/sobjects``: up to 200 records (events or sObjects) in one call.
- ``POST sobjects/PushTopic/`` and ``sobjects/StreamingChannel/``; ``GET``/``PATCH``/``DELETE``
  of those and of records; ``GET``/``POST sobjects/StreamingChannel/<id>/push``.
- ``POST sobjects/<Object>/``, ``PATCH``/``DELETE sobjects/<Object>/<id>``: records whose changes
  reach matching PushTopics and Change Data Capture channels.
- ``GET query?q=``: the SOQL subset (jsforce looks StreamingChannel ids up this way).

Errors are Salesforce's: ``[{"message", "errorCode"}]`` (``INVALID_SESSION_ID`` with 401,
``NOT_FOUND``, ``JSON_PARSER_ERROR``, ``INVALID_FIELD``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from aiohttp import web

from sfstream.emulator._config import Context, parse_version
from sfstream.emulator._http import bearer_token, json_response
from sfstream.emulator._json import loads
from sfstream.emulator._state import STANDARD_SOBJECTS, RestError, TokenRecord

__all__ = ["RestApi"]

_MAX_COMPOSITE: Final = 200
_MAX_PUSH_PAYLOAD: Final = 3000
_ROLLED_BACK: Final = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was "
    "using AllOrNone header",
    "fields": [],
}
_NOT_FOUND: Final = RestError(404, "NOT_FOUND", "The requested resource does not exist")


class RestApi:
    """The REST side of the org."""

    def __init__(self, context: Context, online_user_ids: Callable[[str], set[str]]) -> None:
        self.context = context
        #: The user ids with a live subscription to a channel (generic streaming push).
        self.online_user_ids = online_user_ids

    async def versions(self, request: web.Request) -> web.Response:
        current = parse_version(self.context.config.api_version) or 0.0
        versions = []
        version = 37.0
        while version <= current:
            versions.append(
                {
                    "label": f"API {version:.1f}",
                    "url": f"/services/data/v{version:.1f}",
                    "version": f"{version:.1f}",
                }
            )
            version += 1.0
        return json_response(versions)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return await self._handle(request)
        except RestError as exc:
            return json_response(exc.body(), status=exc.status)

    async def _handle(self, request: web.Request) -> web.Response:
        context = self.context
        version_text = request.match_info["version"]
        version = parse_version(version_text)
        current = parse_version(context.config.api_version) or 0.0
        if version is None or version < 20.0 or version > current:
            raise _NOT_FOUND
        token = context.state.valid_access_token(
            bearer_token(request), context.now(), context.config.token_lifetime
        )
        if token is None:
            raise RestError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        parts = [p for p in request.match_info.get("path", "").split("/") if p]
        method = request.method
        prefix = f"/services/data/v{version_text}"
        if not parts:
            return self._only(method, "GET", lambda: json_response(self._resources(prefix)))
        head = parts[0]
        if head == "sobjects":
            return await self._sobjects(request, parts[1:], token, prefix)
        if head == "composite" and parts[1:] == ["sobjects"]:
            if method != "POST":
                raise _method_not_allowed(method, "POST")
            return await self._composite(request, token, prefix)
        if head == "query" and len(parts) == 1:
            if method != "GET":
                raise _method_not_allowed(method, "GET")
            return self._query(request, prefix)
        raise _NOT_FOUND

    @staticmethod
    def _only(method: str, allowed: str, respond: Any) -> web.Response:
        if method != allowed:
            raise _method_not_allowed(method, allowed)
        response: web.Response = respond()
        return response

    @staticmethod
    def _resources(prefix: str) -> dict[str, str]:
        return {
            "sobjects": f"{prefix}/sobjects",
            "query": f"{prefix}/query",
            "composite": f"{prefix}/composite",
        }

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            value = loads(raw) if raw else None
        except ValueError as exc:
            raise RestError(
                400, "JSON_PARSER_ERROR", f"Unexpected character in the JSON body: {exc}"
            ) from None
        if not isinstance(value, dict):
            kind = "nothing" if value is None else type(value).__name__
            raise RestError(
                400,
                "JSON_PARSER_ERROR",
                f"Cannot deserialize instance of the request body out of {kind}",
            )
        return value

    # -- sobjects ----------------------------------------------------------------------------

    async def _sobjects(
        self, request: web.Request, parts: list[str], token: TokenRecord, prefix: str
    ) -> web.Response:
        method = request.method
        if not parts:
            return self._only(method, "GET", lambda: json_response(self._describe_global()))
        name = parts[0]
        if len(parts) == 1:
            if method == "POST":
                result = self._create(name, await self._body(request), token)
                return json_response(result, status=201)
            if method == "GET":
                return json_response(self._describe(name, prefix))
            raise _method_not_allowed(method, "GET, POST")
        record_id = parts[1]
        if len(parts) == 3 and parts[2] == "push" and name == "StreamingChannel":
            return await self._push(request, record_id)
        if len(parts) != 2:
            raise _NOT_FOUND
        if method == "GET":
            return json_response(self._get(name, record_id, prefix))
        if method == "PATCH":
            self._update(name, record_id, await self._body(request), token)
            return web.Response(status=204)
        if method == "DELETE":
            self._delete(name, record_id, token)
            return web.Response(status=204)
        raise _method_not_allowed(method, "GET, PATCH, DELETE")

    def _describe_global(self) -> dict[str, Any]:
        state = self.context.state
        names = sorted(
            {
                *state.platform_events,
                "PushTopic",
                "StreamingChannel",
                *(r.sobject for r in state.records.values()),
                *STANDARD_SOBJECTS,
            }
        )
        return {
            "encoding": "UTF-8",
            "maxBatchSize": _MAX_COMPOSITE,
            "sobjects": [
                {"name": n, "createable": True, "queryable": not n.endswith("__e")} for n in names
            ],
        }

    def _describe(self, name: str, prefix: str) -> dict[str, Any]:
        state = self.context.state
        if not (
            name in state.platform_events
            or name in ("PushTopic", "StreamingChannel")
            or state.is_sobject(name)
        ):
            raise _NOT_FOUND
        return {
            "objectDescribe": {"name": name, "urls": {"sobject": f"{prefix}/sobjects/{name}"}},
            "recentItems": [],
        }

    def _create(self, name: str, fields: Mapping[str, Any], token: TokenRecord) -> dict[str, Any]:
        context = self.context
        state = context.state
        if name.endswith("__e"):
            clean = state.validate_event_fields(name, fields)
            published = state.publish_platform_event(
                name, clean, now=context.now(), user_id=token.user_id
            )
            return {
                "id": state.new_id("e00"),
                "success": True,
                "errors": [
                    {
                        "statusCode": "OPERATION_ENQUEUED",
                        "message": published.event_uuid,
                        "fields": [],
                    }
                ],
            }
        if name == "PushTopic":
            version = parse_version(context.config.api_version) or 0.0
            topic = state.create_push_topic(fields, version)
            return {"id": topic.id, "success": True, "errors": []}
        if name == "StreamingChannel":
            extra = [k for k in fields if k not in ("Name", "Description", "attributes")]
            if extra:
                raise RestError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{extra[0]}' on sobject of type StreamingChannel",
                    [extra[0]],
                )
            channel_name = fields.get("Name")
            description = fields.get("Description")
            if not isinstance(channel_name, str) or not channel_name:
                raise RestError(
                    400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]", ["Name"]
                )
            channel = state.create_streaming_channel(
                channel_name, description if isinstance(description, str) else None
            )
            return {"id": channel.id, "success": True, "errors": []}
        record = state.create_record(name, fields, now=context.now(), user_id=token.user_id)
        return {"id": record.id, "success": True, "errors": []}

    def _get(self, name: str, record_id: str, prefix: str) -> dict[str, Any]:
        state = self.context.state
        if name == "PushTopic":
            topic = state.push_topics.get(record_id)
            if topic is None:
                raise _NOT_FOUND
            values = topic.as_record()
        elif name == "StreamingChannel":
            channel = state.streaming_channels.get(record_id)
            if channel is None:
                raise _NOT_FOUND
            values = channel.as_record()
        elif name.endswith("__e"):
            raise _NOT_FOUND
        else:
            values = dict(state.get_record(name, record_id).fields)
        attributes = {"type": name, "url": f"{prefix}/sobjects/{name}/{record_id}"}
        return {"attributes": attributes, **values}

    def _update(
        self, name: str, record_id: str, fields: Mapping[str, Any], token: TokenRecord
    ) -> None:
        state = self.context.state
        if name == "PushTopic":
            state.update_push_topic(record_id, fields)
        elif name == "StreamingChannel":
            raise _method_not_allowed("PATCH", "GET, DELETE")
        elif name.endswith("__e"):
            raise _NOT_FOUND
        else:
            state.update_record(
                name, record_id, fields, now=self.context.now(), user_id=token.user_id
            )

    def _delete(self, name: str, record_id: str, token: TokenRecord) -> None:
        state = self.context.state
        if name == "PushTopic":
            state.delete_push_topic(record_id)
        elif name == "StreamingChannel":
            state.delete_streaming_channel(record_id)
        elif name.endswith("__e"):
            raise _NOT_FOUND
        else:
            state.delete_record(name, record_id, now=self.context.now(), user_id=token.user_id)

    # -- generic streaming push ----------------------------------------------------------------

    async def _push(self, request: web.Request, channel_id: str) -> web.Response:
        state = self.context.state
        channel = state.streaming_channels.get(channel_id)
        if channel is None:
            raise _NOT_FOUND
        online = self.online_user_ids(channel.name)
        if request.method == "GET":
            return json_response({"OnlineUserIds": sorted(online), "ChannelName": channel.name})
        if request.method != "POST":
            raise _method_not_allowed(request.method, "GET, POST")
        body = await self._body(request)
        events = body.get("pushEvents")
        if not isinstance(events, list) or not events:
            raise RestError(
                400, "INVALID_FIELD", "pushEvents must be a non-empty list", ["pushEvents"]
            )
        checked: list[tuple[str, list[str]]] = []
        for event in events:
            payload = event.get("payload") if isinstance(event, dict) else None
            user_ids = event.get("userIds", []) if isinstance(event, dict) else None
            if not isinstance(payload, str):
                raise RestError(400, "INVALID_FIELD", "payload must be a string", ["payload"])
            if len(payload) > _MAX_PUSH_PAYLOAD:
                raise RestError(
                    400,
                    "STRING_TOO_LONG",
                    f"payload: data value too large (max length={_MAX_PUSH_PAYLOAD})",
                    ["payload"],
                )
            if not isinstance(user_ids, list) or not all(isinstance(u, str) for u in user_ids):
                raise RestError(
                    400, "INVALID_FIELD", "userIds must be a list of user ids", ["userIds"]
                )
            checked.append((payload, user_ids))
        results = []
        for payload, user_ids in checked:
            state.push_generic(channel.name, payload, now=self.context.now(), user_ids=user_ids)
            if not online:
                fanout = 0
            elif not user_ids:
                fanout = -1
            else:
                fanout = sum(1 for u in set(user_ids) if u in online)
            results.append(
                {"fanoutCount": fanout, "userOnlineStatus": {u: u in online for u in user_ids}}
            )
        return json_response(results)

    # -- composite ---------------------------------------------------------------------------

    async def _composite(
        self, request: web.Request, token: TokenRecord, prefix: str
    ) -> web.Response:
        body = await self._body(request)
        records = body.get("records")
        all_or_none = body.get("allOrNone", False) is True
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise RestError(
                400, "JSON_PARSER_ERROR", "records must be a list of objects", ["records"]
            )
        if len(records) > _MAX_COMPOSITE:
            raise RestError(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {_MAX_COMPOSITE} records "
                "into this call",
            )
        state = self.context.state
        problems: list[RestError | None] = []
        for record in records:
            attributes = record.get("attributes")
            kind = attributes.get("type") if isinstance(attributes, dict) else None
            try:
                if not isinstance(kind, str):
                    raise RestError(
                        400, "INVALID_TYPE", "Must send a concrete entity type.", ["attributes"]
                    )
                if kind.endswith("__e"):
                    state.validate_event_fields(kind, record)
                elif kind not in ("PushTopic", "StreamingChannel"):
                    state.validate_record_fields(kind, record)
                problems.append(None)
            except RestError as exc:
                problems.append(exc)
        results: list[dict[str, Any]] = []
        failed = any(p is not None for p in problems)
        for record, problem in zip(records, problems, strict=True):
            if problem is not None:
                results.append({"success": False, "errors": [problem.save_error()]})
                continue
            if all_or_none and failed:
                results.append({"success": False, "errors": [dict(_ROLLED_BACK)]})
                continue
            try:
                results.append(self._create(record["attributes"]["type"], record, token))
            except RestError as exc:
                results.append({"success": False, "errors": [exc.save_error()]})
        return json_response(results)

    # -- query -------------------------------------------------------------------------------

    def _query(self, request: web.Request, prefix: str) -> web.Response:
        text = request.query.get("q")
        if not text:
            raise RestError(400, "MALFORMED_QUERY", "A query string has to be specified")
        sobject, rows = self.context.state.query(text)
        records = []
        for row in rows:
            attributes: dict[str, Any] = {"type": sobject}
            record_id = row.get("Id") or next(
                (v for k, v in row.items() if k.lower() == "id"), None
            )
            if record_id is not None:
                attributes["url"] = f"{prefix}/sobjects/{sobject}/{record_id}"
            records.append({"attributes": attributes, **row})
        return json_response({"totalSize": len(records), "done": True, "records": records})


def _method_not_allowed(method: str, allowed: str) -> RestError:
    return RestError(
        405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {allowed}"
    )
