"""A soak: one long run of target-monk while Monk keeps failing now and then, checked for
exact delivery at the end.

    .venv/bin/python benchmarks/soak.py                  # 1,000,000 events
    .venv/bin/python benchmarks/soak.py --records 200000 --every 5

The emulator runs in its own process and answers every `--every`-th request 503 and
every (`--every` + 4)-th by dropping the connection (an answer cut off and one stored
then dropped also come round, every 3x and 4x `--every`). The target reads
bench.py's Singer file (a STATE every 10,000 records) with default settings but fast
retries. Prints events/s, the target's peak RSS, the requests and retries it made, and
checks that Monk holds every event once in its latest version and that the last STATE
is the input's last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import API_KEY, control, emulator_process, singer_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=7, help="a fault every N requests")
    args = parser.parse_args()
    path = singer_file(args.records)
    with emulator_process() as url, tempfile.TemporaryDirectory() as tmp:
        faults = [  # the first that matches a request's number wins
            (4 * args.every, {"accept_then_drop": True}),
            (3 * args.every, {"cut": True}),
            (args.every + 4, {"drop": True}),
            (args.every, {"status": 503}),
        ]
        for every, rule in faults:
            control(url, "/_emulator/fail_every", {"every": every, "rule": rule})
        config = Path(tmp) / "config.json"
        config.write_text(
            json.dumps(
                {
                    "api_key": API_KEY,
                    "api_url": url,
                    "event_name_field": "event_name",
                    "idempotency_key_template": "sync_{id}",
                    "retry_backoff_seconds": 0.05,
                    "max_retries": 8,
                }
            )
        )
        stdout = Path(tmp) / "state.jsonl"
        with path.open("rb") as stdin, stdout.open("wb") as out:
            started = time.perf_counter()
            child = subprocess.Popen(
                [sys.executable, "-m", "target_monk", "--config", str(config)],
                stdin=stdin,
                stdout=out,
                stderr=subprocess.PIPE,
            )
            stderr = child.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
            _, status, usage = os.wait4(child.pid, 0)
            elapsed = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            sys.exit(f"target-monk exited {code}:\n{stderr[-3000:]}")
        summary = json.loads(stderr.split("target-monk summary: ", 1)[1].splitlines()[0])
        stats = control(url, "/_emulator/stats")
        last_state = json.loads(stdout.read_text().splitlines()[-1])
    exact = stats["events"] == args.records
    final = last_state == {"bookmarks": {"billing_events": {"replication_key_value": args.records}}}
    print(
        f"{args.records:,} events in {elapsed:.1f} s: {args.records / elapsed:,.0f} events/s, "
        f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB; {summary['requests']} requests, "
        f"{summary['retries']} retries; Monk holds {stats['events']:,} events "
        f"({stats['writes']:,} writes); last STATE the input's last: {final}"
    )
    if not (exact and final):
        sys.exit("the soak was not exact")


if __name__ == "__main__":
    main()
