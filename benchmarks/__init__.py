"""sfstream's benchmarks: throughput, parse floor, peers, latency and memory.

Run them with ``nox -s bench`` or ``python -m benchmarks [all|throughput|latency|memory]``
(``--quick`` for a short run, ``--json PATH`` to keep the figures). Every benchmark starts the
emulator in a process of its own (:mod:`benchmarks._server`) and each client in another, so
that a client's CPU time is its own. Peers (aiosfstream on Python 3.9, aiosfstream-ng on
Python 3.11, jsforce on Node.js) run in virtual environments the benchmark creates under
``.bench/``. See ``docs/performance.md``.

These are not tests: nothing here is collected by pytest.
"""
