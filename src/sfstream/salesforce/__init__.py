"""The Salesforce layer: authenticators, replay, and the Salesforce streaming client."""

from __future__ import annotations

__all__: list[str] = []
