"""A Salesforce org on loopback, for streaming clients: ``sfstream.emulator``.

An aiohttp.web server that speaks to Streaming API clients the way a Salesforce org does: the
OAuth token endpoint, ``/cometd/<version>`` (Salesforce's Bayeux dialect: replay, its cookies,
its errors and advice, its timeouts), PushTopic, generic streaming, platform event, custom
channel and Change Data Capture channels with 24 h / 72 h retention on an injectable clock,
the REST resources that publish events, and fault injection from Python or over HTTP. ::

    from sfstream.emulator import Emulator

    async with Emulator(events={"Order__e": ["Amount__c"]}, hold_time=0.5) as org:
        ...  # point a client at org.login_url with org.consumer_key / org.username / ...
        await org.publish("/event/Order__e", {"Amount__c": 42})

From a shell: ``python -m sfstream.emulator --event Order__e:Amount__c``. An event accepts only
the custom fields it declares. See ``docs/emulator.md``.
"""

from __future__ import annotations

from sfstream.emulator._clock import Clock, ManualClock, SystemClock
from sfstream.emulator._config import (
    CURRENT_API_VERSION,
    DEFAULT_CONSUMER_KEY,
    DEFAULT_CONSUMER_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_REFRESH_TOKEN,
    DEFAULT_USERNAME,
    EmulatorConfig,
)
from sfstream.emulator._emulator import DEFAULT_CDC_ENTITIES, Emulator, EmulatorThread
from sfstream.emulator._faults import Fault, FaultKind
from sfstream.emulator._log import ChannelLog, EventLog, StoredEvent
from sfstream.emulator._persist import StateFile
from sfstream.emulator._state import OrgState, Published, PushTopic, RestError, StreamingChannel

__all__ = [
    "CURRENT_API_VERSION",
    "DEFAULT_CDC_ENTITIES",
    "DEFAULT_CONSUMER_KEY",
    "DEFAULT_CONSUMER_SECRET",
    "DEFAULT_PASSWORD",
    "DEFAULT_REFRESH_TOKEN",
    "DEFAULT_USERNAME",
    "ChannelLog",
    "Clock",
    "Emulator",
    "EmulatorConfig",
    "EmulatorThread",
    "EventLog",
    "Fault",
    "FaultKind",
    "ManualClock",
    "OrgState",
    "Published",
    "PushTopic",
    "RestError",
    "StateFile",
    "StoredEvent",
    "StreamingChannel",
    "SystemClock",
]
