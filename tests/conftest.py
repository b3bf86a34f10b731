"""Suite-wide set-up: sfstream's own pytest plugin, and pytester for the plugin's tests.

Installing sfstream registers :mod:`sfstream.testing` as the pytest plugin ``sfstream``
(entry point ``pytest11``); in a checkout installed before the entry point was declared it
is loaded from here instead, so that it is never registered twice.
"""

from __future__ import annotations

from importlib.metadata import entry_points

_PLUGIN_INSTALLED = any(
    entry_point.value == "sfstream.testing" for entry_point in entry_points(group="pytest11")
)

pytest_plugins = ["pytester"] if _PLUGIN_INSTALLED else ["pytester", "sfstream.testing"]
