"""``python -m sfstream``: the ``sfstream`` command line."""

from __future__ import annotations

from sfstream.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
