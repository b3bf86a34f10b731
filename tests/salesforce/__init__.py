"""Tests of the Salesforce layer."""

from __future__ import annotations
