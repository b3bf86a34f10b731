"""What the live tests need from the environment (``SFSTREAM_LIVE_*``), and why they did not run.

Kept free of pytest and sfstream imports so that ``noxfile.py`` can tell, before installing
anything, that the ``live`` session has nothing to run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

#: Always needed.
REQUIRED: Final = (
    "SFSTREAM_LIVE_LOGIN_URL",
    "SFSTREAM_LIVE_CONSUMER_KEY",
    "SFSTREAM_LIVE_CONSUMER_SECRET",
)
#: One way to log in that can be renewed (re-authentication after a revoked token needs one).
LOGINS: Final = (
    ("SFSTREAM_LIVE_USERNAME", "SFSTREAM_LIVE_PASSWORD"),
    ("SFSTREAM_LIVE_REFRESH_TOKEN",),
)
DOCS: Final = "docs/testing.md, 'Against a real org'"


@dataclass(frozen=True)
class LiveConfig:
    """The org and the channels the live tests use (secrets included: never print one)."""

    login_url: str
    consumer_key: str
    consumer_secret: str
    username: str | None
    password: str | None
    refresh_token: str | None
    event: str
    event_field: str
    push_topic: str
    generic: str
    cdc_entity: str
    api_version: str | None

    def __repr__(self) -> str:
        return f"LiveConfig(login_url={self.login_url!r}, event={self.event!r})"


def not_run_reason(environ: Mapping[str, str] | None = None) -> str | None:
    """Why the live tests cannot run here (None: they can)."""
    env = os.environ if environ is None else environ
    missing = [name for name in REQUIRED if not env.get(name)]
    if not any(all(env.get(name) for name in login) for login in LOGINS):
        missing.append(
            "SFSTREAM_LIVE_USERNAME and SFSTREAM_LIVE_PASSWORD, or SFSTREAM_LIVE_REFRESH_TOKEN"
        )
    if not missing:
        return None
    return f"no real org configured: set {', '.join(missing)} (see {DOCS})"


def live_config(environ: Mapping[str, str] | None = None) -> LiveConfig:
    env = os.environ if environ is None else environ
    return LiveConfig(
        login_url=env["SFSTREAM_LIVE_LOGIN_URL"],
        consumer_key=env["SFSTREAM_LIVE_CONSUMER_KEY"],
        consumer_secret=env["SFSTREAM_LIVE_CONSUMER_SECRET"],
        username=env.get("SFSTREAM_LIVE_USERNAME") or None,
        password=env.get("SFSTREAM_LIVE_PASSWORD") or None,
        refresh_token=env.get("SFSTREAM_LIVE_REFRESH_TOKEN") or None,
        event=env.get("SFSTREAM_LIVE_EVENT", "Sfstream_Test__e"),
        event_field=env.get("SFSTREAM_LIVE_EVENT_FIELD", "Text__c"),
        push_topic=env.get("SFSTREAM_LIVE_PUSHTOPIC", "SfstreamAccounts"),
        generic=env.get("SFSTREAM_LIVE_GENERIC", "/u/SfstreamTest"),
        cdc_entity=env.get("SFSTREAM_LIVE_CDC_ENTITY", "Account"),
        api_version=env.get("SFSTREAM_LIVE_API_VERSION") or None,
    )
