"""sfstream's pytest plugin (``sfstream.testing``), used as a user would: from a test file of
their own, run by an inner pytest (``pytester``) with their configuration."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sfstream import SalesforceStreamingClient
from sfstream.emulator import Emulator
from sfstream.testing import emulator_credentials, receive_messages, wait_for_subscription
from tests.conftest import _PLUGIN_INSTALLED

ROOT = Path(__file__).resolve().parents[2]

AUTO_MODE = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
addopts = --strict-markers
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The inner run, with the plugin loaded as installing sfstream loads it."""
    plugin = [] if _PLUGIN_INSTALLED else ["-p", "sfstream.testing"]
    return pytester.runpytest_inprocess(*plugin, *args)


def test_the_plugin_is_registered_by_an_entry_point() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"sfstream": "sfstream.testing"}


def test_importing_sfstream_imports_neither_pytest_nor_the_plugin() -> None:
    code = (
        "import sys, sfstream, sfstream.emulator, sfstream.bayeux\n"
        "assert 'pytest' not in sys.modules, 'pytest'\n"
        "assert 'sfstream.testing' not in sys.modules, 'sfstream.testing'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_fixtures_in_auto_mode(pytester: pytest.Pytester) -> None:
    pytester.makeini(AUTO_MODE)
    pytester.makepyfile(
        """
        import pytest

        from sfstream import ReplayOption, SalesforceStreamingClient
        from sfstream.emulator import Emulator
        from sfstream.testing import receive_messages, wait_for_subscription

        SEEN = {}

        @pytest.mark.sfstream_emulator(events={"Order__e": ["Amount__c", "N__c"]}, hold_time=0.2)
        async def test_client_receives(sfstream_emulator, sfstream_client):
            assert isinstance(sfstream_emulator, Emulator)
            assert sfstream_emulator.config.hold_time == 0.2
            assert sfstream_emulator.config.session_expiry == 5.0  # a default, not overridden
            assert isinstance(sfstream_client, SalesforceStreamingClient)
            assert not sfstream_client.closed
            await sfstream_client.subscribe("/event/Order__e")
            await sfstream_emulator.publish("/event/Order__e", {"Amount__c": 1})
            [message] = await receive_messages(sfstream_client, 1)
            assert message["data"]["payload"]["Amount__c"] == 1
            SEEN["emulator"], SEEN["client"] = sfstream_emulator, sfstream_client

        def test_both_were_closed_after_the_test():
            assert not SEEN["emulator"].running
            assert SEEN["client"].closed

        @pytest.mark.sfstream_emulator(events={"Order__e": ["Amount__c", "N__c"]})
        @pytest.mark.sfstream_client(replay=ReplayOption.ALL_EVENTS)
        async def test_client_marker(sfstream_emulator, sfstream_client):
            await sfstream_emulator.publish("/event/Order__e", {"Amount__c": 2})
            await sfstream_client.subscribe("/event/Order__e")
            [message] = await receive_messages(sfstream_client, 1)
            assert message["data"]["event"]["replayId"] == 1

        @pytest.mark.sfstream_emulator(events={"Order__e": ["Amount__c", "N__c"]})
        async def test_factory_and_credentials(
            sfstream_emulator, sfstream_client_factory, sfstream_credentials
        ):
            assert sfstream_credentials["login_url"] == sfstream_emulator.login_url
            client = sfstream_client_factory(max_pending_count=5)
            assert client.closed and client.max_pending_count == 5
            await client.open()
            await client.subscribe("/event/Order__e")
            await wait_for_subscription(sfstream_emulator, "/event/Order__e")
            SEEN["factory client"] = client

        def test_factory_clients_are_closed():
            assert SEEN["factory client"].closed

        async def test_each_test_gets_its_own_org(sfstream_emulator):
            assert sfstream_emulator is not SEEN["emulator"]
            assert sfstream_emulator.sessions() == []
        """
    )
    run(pytester).assert_outcomes(passed=6)


def test_options_fixtures_can_be_overridden(pytester: pytest.Pytester) -> None:
    pytester.makeini(AUTO_MODE)
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def sfstream_emulator_options():
            return {
                "events": {"Shipment__e": ["Amount__c", "N__c"]},
                "hold_time": 0.1,
                "session_expiry": 1.0,
            }

        @pytest.fixture
        def sfstream_client_options():
            return {"connection_timeout": 2.0}
        """
    )
    pytester.makepyfile(
        """
        import pytest

        async def test_conftest_options(sfstream_emulator, sfstream_client):
            assert sfstream_emulator.config.session_expiry == 1.0
            assert sfstream_client.connection_timeout == 2.0
            await sfstream_client.subscribe("/event/Shipment__e")

        @pytest.mark.sfstream_emulator(session_expiry=3.0)
        async def test_the_marker_wins(sfstream_emulator):
            assert sfstream_emulator.config.session_expiry == 3.0
            assert sfstream_emulator.config.hold_time == 0.1
        """
    )
    run(pytester).assert_outcomes(passed=2)


def test_the_closest_marker_wins(pytester: pytest.Pytester) -> None:
    pytester.makeini(AUTO_MODE)
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.sfstream_emulator(hold_time=0.3, session_expiry=2.0)

        class TestOrders:
            pytestmark = pytest.mark.sfstream_emulator(session_expiry=3.0)

            @pytest.mark.sfstream_emulator(hold_time=0.1)
            async def test_options(self, sfstream_emulator):
                assert sfstream_emulator.config.hold_time == 0.1
                assert sfstream_emulator.config.session_expiry == 3.0
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_strict_mode_with_asyncio_markers(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.asyncio
        async def test_strict(sfstream_client):
            assert not sfstream_client.closed
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_without_pytest_asyncio_only_the_tests_using_the_fixtures_fail(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        """
        def test_unrelated():
            assert True

        def test_uses_the_org(sfstream_emulator):
            pass
        """
    )
    result = run(pytester, "-p", "no:asyncio", "-p", "no:aiohttp", "-p", "no:anyio")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*the sfstream fixtures are async and need pytest-asyncio*"])


def test_markers_take_keyword_arguments_only(pytester: pytest.Pytester) -> None:
    pytester.makeini(AUTO_MODE)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.sfstream_emulator(["Order__e"])
        async def test_positional(sfstream_emulator):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*sfstream_emulator takes keyword arguments only*"])


def test_the_markers_are_documented(pytester: pytest.Pytester) -> None:
    pytester.makeini(AUTO_MODE)
    result = run(pytester, "--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.sfstream_emulator(**options):*",
            "@pytest.mark.sfstream_client(**options):*",
        ]
    )


@pytest.mark.skipif(not _PLUGIN_INSTALLED, reason="the entry point is not installed here")
def test_the_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makeini(AUTO_MODE)
    pytester.makepyfile("async def test_org(sfstream_emulator):\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:sfstream")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'sfstream_emulator' not found*"])


# -- the helpers, here in our own tests through the plugin's fixtures --------------------------


@pytest.mark.sfstream_emulator(events={"Order__e": ["Amount__c", "N__c"]})
async def test_receive_messages_fails_with_what_came(
    sfstream_emulator: Emulator, sfstream_client: SalesforceStreamingClient
) -> None:
    await sfstream_client.subscribe("/event/Order__e")
    await sfstream_emulator.publish("/event/Order__e", {"Amount__c": 1})
    with pytest.raises(AssertionError, match=r"received 1 of 2 messages in 0\.5 s: \[\{"):
        await receive_messages(sfstream_client, 2, timeout=0.5)


async def test_wait_for_subscription_fails_when_nothing_subscribes(
    sfstream_emulator: Emulator,
) -> None:
    with pytest.raises(AssertionError, match=r"nothing subscribed to /event/Nope__e within 0\.1 s"):
        await wait_for_subscription(sfstream_emulator, "/event/Nope__e", timeout=0.1)


def test_emulator_credentials_point_a_client_at_the_org() -> None:
    org = Emulator(username="someone@example.com", port=4321)
    org.set_base_url("http://127.0.0.1:4321")
    assert emulator_credentials(org) == {
        "consumer_key": org.consumer_key,
        "consumer_secret": org.consumer_secret,
        "username": "someone@example.com",
        "password": org.password,
        "login_url": "http://127.0.0.1:4321",
    }
