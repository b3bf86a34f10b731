"""``python -m sfstream.emulator``: serve a Salesforce org on loopback until interrupted."""

from __future__ import annotations

from sfstream.emulator._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
