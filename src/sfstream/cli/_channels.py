"""The channels an org has, to suggest one when a subscription names a channel that does not
exist ("did you mean /event/Order__e?").

Asked only after Salesforce refused a channel: the REST API's describe global gives the
platform events (``/event/<Name>__e``) and change events (``/data/<Entity>ChangeEvent``), two
queries give the PushTopics (``/topic/<Name>``) and the generic streaming channels
(``/u/<name>``). Anything that fails (no permission, a network error, an odd reply) just
means no suggestion: it never hides the original error.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from typing import Any, Final

import aiohttp

from sfstream._http import read_limited
from sfstream.salesforce import AuthenticatorBase

__all__ = ["known_channels", "suggest_channel"]

_TIMEOUT: Final = 10.0
_MAX_BODY: Final = 8 * 1024 * 1024
_QUERIES: Final = (
    ("SELECT Name FROM PushTopic", "/topic/"),
    ("SELECT Name FROM StreamingChannel", ""),
)


async def _get(
    session: aiohttp.ClientSession, auth: AuthenticatorBase, url: str, params: dict[str, str]
) -> Any:
    async with session.get(
        url,
        params=params,
        headers={"Authorization": auth.authorization_header(), "Accept": "application/json"},
        timeout=aiohttp.ClientTimeout(total=_TIMEOUT),
        allow_redirects=False,
    ) as response:
        if response.status != 200:
            return None
        body = await read_limited(
            response, _MAX_BODY, lambda _size: ValueError("the reply is too large")
        )
        return json.loads(body)


def _names(reply: Any, key: str) -> list[str]:
    rows = reply.get(key) if isinstance(reply, dict) else None
    if not isinstance(rows, list):
        return []
    return [row["Name" if key == "records" else "name"] for row in rows if _has_name(row, key)]


def _has_name(row: Any, key: str) -> bool:
    return isinstance(row, dict) and isinstance(
        row.get("Name" if key == "records" else "name"), str
    )


async def known_channels(auth: AuthenticatorBase, api_version: str) -> list[str]:
    """The channels of the org ``auth`` is logged in to (empty when they cannot be listed)."""
    if not auth.instance_url or not auth.access_token:
        return []
    base = f"{auth.instance_url.rstrip('/')}/services/data/v{api_version}"
    channels = ["/data/ChangeEvents"]
    try:
        async with aiohttp.ClientSession() as session:
            sobjects = _names(await _get(session, auth, f"{base}/sobjects", {}), "sobjects")
            channels += [f"/event/{n}" for n in sobjects if n.endswith("__e")]
            channels += [f"/data/{n}" for n in sobjects if n.endswith("ChangeEvent")]
            for query, prefix in _QUERIES:
                reply = await _get(session, auth, f"{base}/query", {"q": query})
                channels += [prefix + name for name in _names(reply, "records")]
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        pass
    return channels


def suggest_channel(channel: str, known: Iterable[str]) -> str | None:
    """The known channel closest to ``channel`` (case-insensitive), or None."""
    candidates = {name.lower(): name for name in known if name != channel}
    # The prefix and the suffix (/event/, __e) are alike in most names: ask for a close match.
    matches = difflib.get_close_matches(channel.lower(), list(candidates), n=1, cutoff=0.85)
    return candidates[matches[0]] if matches else None
