"""The demo pipeline: PostgreSQL -> meltano run tap-postgres target-monk -> a local Monk.

Starts a throwaway PostgreSQL cluster and the Monk emulator on 127.0.0.1, seeds
billing rows, runs the pipeline twice (initial load, then an incremental sync of
new rows), prints target-monk's own summary lines, what landed on both sides and the
state Meltano saved, and cleans up everything it started (with --keep, only once you
press Ctrl-C, so you can look around first).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from target_monk.emulator import MonkEmulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's testkit
from testkit.postgres import PgCluster

ROOT = Path(__file__).resolve().parents[1]

MELTANO = str(Path(sys.executable).with_name("meltano"))
DEMO_KEY = "mk_test_" + "de" * 24
STATE_ID = "dev:tap-postgres-to-target-monk"


def meltano(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MELTANO, *args], cwd=ROOT, env=env, capture_output=True, text=True)


def run_pipeline(env: dict[str, str], emulator: MonkEmulator, label: str) -> None:
    before = len(emulator.accepted_requests())
    started = time.monotonic()
    done = meltano(env, "run", "tap-postgres", "target-monk")
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-5000:])
        msg = f"{label}: meltano run failed (exit {done.returncode})"
        raise SystemExit(msg)
    batches = emulator.accepted_requests()[before:]
    sent = sum(r.count for r in batches)
    print(
        f"\n== {label}: meltano run took {elapsed:.1f} s; {sent} events in {len(batches)} batches"
    )
    print("target-monk said (Meltano's log of the run, its own lines):")
    for line in target_lines(done.stderr):
        print(f"  {line}")


TARGET_LINE = re.compile(r"\[(\w+) *\] target-monk(?:\.\w+)? +(.*)$")
"""A line of target-monk's in Meltano's log: `... [info     ] target-monk  message`."""


def target_lines(log: str) -> list[str]:
    """target-monk's summary, warning and error lines, from Meltano's log of a run."""
    found = (match.groups() for match in map(TARGET_LINE.search, log.splitlines()) if match)
    return [
        message if level == "info" else f"{level.upper()}: {message}"
        for level, message in found
        if level != "info" or message.startswith("Summary for stream")
    ]


def report(pg: PgCluster, emulator: MonkEmulator, env: dict[str, str]) -> None:
    source = pg.totals()
    events: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    for event in emulator.events.values():
        events[event["externalCustomerId"]] += 1
        tokens[event["externalCustomerId"]] += event["properties"]["tokens"]
    header = ("customer", "rows", "events", "SUM(tokens) src", "SUM(tokens) Monk")
    print(f"{header[0]:<10}{header[1]:>8}{header[2]:>8}{header[3]:>17}{header[4]:>18}")
    for customer, (rows, total) in source.items():
        mark = "" if (rows, total) == (events[customer], tokens[customer]) else "  <-- MISMATCH"
        print(
            f"{customer:<10}{rows:>8}{events[customer]:>8}{total:>17}{tokens[customer]:>18}{mark}"
        )
    state = meltano(env, "state", "get", STATE_ID).stdout.strip()
    print(f"state Meltano saved ({STATE_ID}): {state}")
    all_match = source == {c: (events[c], tokens[c]) for c in source} and len(events) == len(source)
    print("every row delivered exactly once" if all_match else "MISMATCH between source and Monk")
    if not all_match:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=25_000, help="rows for the initial load")
    parser.add_argument("--new-rows", type=int, default=1_500, help="rows for the second run")
    parser.add_argument(
        "--keep", action="store_true", help="keep PostgreSQL and the emulator until Ctrl-C"
    )
    args = parser.parse_args()

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="target-monk-demo-") as tmp:
        pg = PgCluster(Path(tmp) / "pg").start()
        emulator = MonkEmulator(DEMO_KEY).start()
        try:
            print(
                "The pipeline of Monk's 'Bulk Event Ingestion' guide (rows of its "
                "billing_events table\nposted to POST /v1/events/batch with keys sync_<id>), "
                "as `meltano run tap-postgres target-monk`."
            )
            print(f"PostgreSQL on 127.0.0.1:{pg.port}, Monk emulator on {emulator.url}")
            env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_MONK_")}
            env.update(
                {
                    **pg.env(),
                    "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
                    "MELTANO_DATABASE_URI": f"sqlite:///{tmp}/meltano.db",
                    "TARGET_MONK_API_URL": emulator.url,
                    "TARGET_MONK_READ_API_URL": emulator.url,
                    "TARGET_MONK_API_KEY": DEMO_KEY,
                    "TARGET_MONK_LEDGER_PATH": f"{tmp}/ledger.sqlite",
                }
            )
            installed = meltano(env, "install")
            if installed.returncode != 0:
                sys.stderr.write(installed.stderr[-5000:])
                raise SystemExit("meltano install failed")

            pg.seed(args.rows)
            run_pipeline(env, emulator, f"initial load of {args.rows} rows")
            report(pg, emulator, env)

            pg.seed(args.new_rows)
            run_pipeline(env, emulator, f"incremental sync after {args.new_rows} new rows")
            print("(tap-postgres' bookmark is inclusive: the boundary row is sent again and")
            print(" Monk's idempotency on its key sync_<id> absorbs it)")
            report(pg, emulator, env)
            prove(env, Path(tmp))
            look_around(emulator, pg, keep=args.keep)
        finally:
            emulator.stop()
            pg.stop()
    print(f"\ndemo finished in {time.monotonic() - started:.1f} s; cluster and emulator stopped")


def prove(env: dict[str, str], tmp: Path) -> None:
    """The bill, proven: the ledger of both runs against the events Monk lists."""
    print("\n== proving the bill: meltano invoke target-monk:reconcile --all-rows")
    done = meltano(
        env, "invoke", "target-monk:reconcile", "--all-rows", "--report", str(tmp / "r.json")
    )
    print(done.stdout.rstrip())
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        msg = f"reconcile found differences or could not check (exit {done.returncode})"
        raise SystemExit(msg)
    print("(docs/proving-the-bill.md: what each kind of difference means, and what to do)")


def look_around(emulator: MonkEmulator, pg: PgCluster, keep: bool) -> None:
    """Where to look next; with `keep`, wait for Ctrl-C while they can be looked at."""
    url = emulator.url if keep else "http://127.0.0.1:PORT"
    print("\nWhere to look next:")
    print(f"  curl -s {url}/_emulator/stats       # events Monk holds, writes")
    print(f"  curl -s {url}/_emulator/events      # every event, as Monk stored it")
    print(f"  curl -s {url}/_emulator/requests    # every batch request and its answer")
    print("  docs/getting-started.md (the emulator's endpoints), settings.md, troubleshooting.md")
    if not keep:
        print("  (./scripts/demo --keep leaves PostgreSQL and the emulator running for that)")
        return
    print(f"  psql -h 127.0.0.1 -p {pg.port} -U {pg.user} {pg.database}   # the source rows")
    print("Press Ctrl-C to stop PostgreSQL and the emulator.")
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
