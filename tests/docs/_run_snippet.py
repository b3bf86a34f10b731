"""Run a documentation snippet as a program, with Salesforce's login hosts pointing elsewhere.

``python _run_snippet.py LOGIN_URL FILE`` runs FILE as ``__main__`` after making
``https://login.salesforce.com`` and ``https://test.salesforce.com`` (the defaults of the
authenticators) mean LOGIN_URL, so that a documented program written for a real org, with no
``login_url``, logs in to the test's emulator instead.
"""

from __future__ import annotations

import runpy
import sys

from sfstream.salesforce import _auth


def main() -> None:
    login_url, path = sys.argv[1:]
    _auth.PRODUCTION_LOGIN_URL = login_url  # type: ignore[misc]
    _auth.SANDBOX_LOGIN_URL = login_url  # type: ignore[misc]
    sys.argv = [path]
    runpy.run_path(path, run_name="__main__")


if __name__ == "__main__":
    main()
