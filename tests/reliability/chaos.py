"""The chaos run: ``python -m tests.reliability.chaos [--long]`` (``nox -s chaos``).

Runs a fault campaign (see :mod:`tests.reliability._campaign`) and prints its figures: events
published, delivered, lost, duplicated, faults injected by kind, recoveries, the longest
recovery time. Then the loss scenarios of issue #10 (two filtered subscriptions to one topic,
a 401 on resubscription, the org's clock two hours behind and ahead). The exit status is 1 when
the delivery property failed (an event lost, duplicated or out of order, a silent
``receive()``, a stopped client).

The default run fits in CI (about a minute). ``--long`` publishes 100,000 events through 600
faults (20 of them emulator restarts), with a larger emulator batch and a shorter hold so that
two cores get through it in a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Sequence

from ._campaign import CampaignConfig, run_campaign, run_loss_scenarios

DEFAULT = CampaignConfig()
LONG = CampaignConfig(
    events=100_000,
    faults=600,
    restarts=20,
    hold_time=0.05,
    max_batch=50_000,
    fault_gap=(0.1, 0.4),
    settle=60.0,
    max_pending_count=5000,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.chaos", description=__doc__)
    parser.add_argument("--long", action="store_true", help="100k events, 600 faults")
    parser.add_argument("--seed", type=int, help="random seed (default: fixed)")
    parser.add_argument("--events", type=int, help="override the number of events")
    parser.add_argument("--faults", type=int, help="override the number of faults")
    parser.add_argument("--restarts", type=int, help="override the number of emulator restarts")
    args = parser.parse_args(argv)
    config = LONG if args.long else DEFAULT
    changes = {
        name: value
        for name, value in (
            ("seed", args.seed),
            ("events", args.events),
            ("faults", args.faults),
            ("restarts", args.restarts),
        )
        if value is not None
    }
    config = dataclasses.replace(config, **changes)
    print(
        f"chaos: {config.events} events, {config.faults} faults "
        f"({config.restarts} emulator restarts), seed {config.seed}",
        flush=True,
    )
    report = asyncio.run(run_campaign(config, progress=lambda line: print(line, flush=True)))
    print(report.render(), flush=True)
    scenarios = asyncio.run(run_loss_scenarios(config.seed, rounds=10 if args.long else 3))
    print("loss scenarios (issue #10)", flush=True)
    for scenario in scenarios:
        print(scenario.render(), flush=True)
    return 0 if report.ok and all(scenario.ok for scenario in scenarios) else 1


if __name__ == "__main__":
    sys.exit(main())
