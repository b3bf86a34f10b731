"""#13: a reply cut off mid-body or a reset connection costs no backoff against the emulator.

The client's backoff is 30 s, far beyond every bounded wait here: an event that arrives at all
after the fault proves the first retry did not wait for it. A second failure in a row does.
"""

from __future__ import annotations

from typing import Literal

import pytest

from sfstream import ReplayOption
from sfstream.bayeux import ConstantBackoff
from sfstream.emulator import Emulator

from .conftest import ClientFactory, assert_silent, payload_values, receive_n, wait_until

CHANNEL = "/event/Order__e"


@pytest.mark.parametrize("when", ["mid_response", "before_response"])
async def test_a_failed_connect_is_retried_at_once_and_loses_nothing(
    org: Emulator,
    client_factory: ClientFactory,
    when: Literal["mid_response", "before_response"],
) -> None:
    client = client_factory(replay=ReplayOption.NEW_EVENTS, backoff=ConstantBackoff(30.0))
    await client.open()
    await client.subscribe(CHANNEL)
    fault = org.drop_connection(1, when=when, channel="/meta/connect")
    await org.publish(CHANNEL, {"Amount__c": 1})  # answers the held connect; the next fails
    assert payload_values(await receive_n(client, 1)) == [1]
    await org.publish(CHANNEL, {"Amount__c": 2})
    assert payload_values(await receive_n(client, 1)) == [2]
    assert fault.fired == 1


async def test_a_second_failure_in_a_row_backs_off(
    org: Emulator, client_factory: ClientFactory
) -> None:
    client = client_factory(replay=ReplayOption.NEW_EVENTS, backoff=ConstantBackoff(30.0))
    await client.open()
    await client.subscribe(CHANNEL)
    # the next connect fails, and so does the one retried at once (after a new session):
    # then the client waits for its backoff
    fault = org.drop_connection(2, when="before_response", channel="/meta/connect")
    await wait_until(lambda: fault.fired == 2, what="two failed connects")
    await org.publish(CHANNEL, {"Amount__c": 1})
    await assert_silent(client, within=1.0)
    assert fault.fired == 2
