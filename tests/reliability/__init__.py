"""Reliability and security: the fault proxy, fault campaigns, crash safety, hostile input."""

from __future__ import annotations
