"""Interop tests: sfstream against real third-party Bayeux peers (Node.js, see ``peers/``)."""

from __future__ import annotations
