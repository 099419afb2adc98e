"""Run the randomized chaos suite: seeded scenarios against fresh emulators, every
invariant checked after every run (testkit/chaos.py says what is mixed and
checked).

    scripts/chaos                          # 100 scenarios of a new seed (printed)
    scripts/chaos --minutes 30             # as many as fit, e.g. before a release
    scripts/chaos --seed 7 --scenario 41   # replay one scenario

A failing scenario is saved under --out (scenario.json with its input, settings,
faults and kill; what each run printed); the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's testkit
from testkit.chaos import Scenario, run_scenario, save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="default: a new one, printed")
    parser.add_argument("--scenario", type=int, default=None, help="run only this one")
    parser.add_argument("--scenarios", type=int, default=100, help="how many (default 100)")
    parser.add_argument("--minutes", type=float, default=None, help="run for this long instead")
    parser.add_argument("--jobs", type=int, default=2, help="scenarios at once (default 2)")
    parser.add_argument("--out", type=Path, default=Path("output/chaos"), help="failing ones")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    if args.scenario is not None:
        numbers: itertools.count[int] | range = range(args.scenario, args.scenario + 1)
    elif args.minutes is not None:
        numbers = itertools.count()
    else:
        numbers = range(args.scenarios)
    deadline = time.monotonic() + 60 * args.minutes if args.minutes else float("inf")
    print(f"chaos: seed {seed}", flush=True)
    started, ran, failed = time.monotonic(), 0, 0
    with (
        tempfile.TemporaryDirectory(prefix="target-monk-chaos-") as tmp,
        concurrent.futures.ThreadPoolExecutor(args.jobs) as pool,
    ):
        pending: set[concurrent.futures.Future] = set()
        for number in numbers:
            if time.monotonic() > deadline:
                break
            scenario = Scenario.generate(seed, number)
            pending.add(pool.submit(run_scenario, scenario, Path(tmp) / str(number)))
            if len(pending) >= args.jobs:
                done, pending = concurrent.futures.wait(
                    pending, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in done:
                    ran, failed = ran + 1, failed + report(future.result(), args.out)
        for future in concurrent.futures.as_completed(pending):
            ran, failed = ran + 1, failed + report(future.result(), args.out)
    minutes = (time.monotonic() - started) / 60
    print(f"chaos: seed {seed}: {ran} scenarios in {minutes:.1f} min, {failed} failed")
    sys.exit(1 if failed else 0)


def report(result, out: Path) -> int:
    scenario = result.scenario
    runs = ", ".join(f"exit {r.returncode} in {r.seconds:.1f} s" for r in result.runs)
    print(f"{'ok  ' if result.ok else 'FAIL'} {scenario.describe()}: {runs}", flush=True)
    if result.late_landings:
        print(
            f"     note: {len(result.late_landings)} row(s) overwritten with an older version "
            "by a request the target had given up on, stored late (Monk's last write "
            f"wins; see docs/development.md): {result.late_landings[0]}"
        )
    if result.ok:
        return 0
    folder = save(result, out / f"seed-{scenario.seed}-{scenario.number}")
    for violation in result.violations:
        print(f"     {violation}")
    print(
        f"     saved in {folder}; replay: scripts/chaos --seed {scenario.seed} "
        f"--scenario {scenario.number}"
    )
    return 1


if __name__ == "__main__":
    main()
