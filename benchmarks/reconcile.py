"""What proving the bill costs: the ledger's size, and a reconcile's requests and time.

    .venv/bin/python benchmarks/reconcile.py            # 100k events, 50 customers, 30 days
    .venv/bin/python benchmarks/reconcile.py --events 1000000 --customers 500 --sample 0.05

Delivers the events with target-monk (ledger on) to the Monk emulator, which limits
reads to Monk's 100 requests a minute; then runs `target-monk reconcile` over the
30 days and prints its requests, its time, the most reads in any minute (measured at
the emulator), and the ledger's bytes per event before and after it is split into one
row per key. (Its cost in throughput: `benchmarks/bench.py --only target-monk`.)
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from target_monk.emulator import MonkEmulator

API_KEY = "mk_test_" + "cd" * 24
START = "2026-03-01"


def singer_input(path: Path, events: int, customers: int, days: int) -> None:
    """`events` rows, time-ordered over `days` days, round-robin over `customers`."""
    schema = {
        "type": "SCHEMA",
        "stream": "usage",
        "key_properties": ["id"],
        "schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
    }
    with path.open("w") as out:
        out.write(json.dumps(schema) + "\n")
        for n in range(events):
            seconds = n * days * 86400 // events
            day, rest = divmod(seconds, 86400)
            record = {
                "id": n,
                "external_customer_id": f"cus_{n % customers}",
                "event_name": "api_call",
                "timestamp": f"2026-03-{day + 1:02d}T{rest // 3600:02d}:{rest // 60 % 60:02d}:"
                f"{rest % 60:02d}Z",
                "tokens": n % 1000,
                "region": "eu-west",
            }
            out.write(json.dumps({"type": "RECORD", "stream": "usage", "record": record}) + "\n")
        out.write(json.dumps({"type": "STATE", "value": {"id": events}}) + "\n")


def ledger_bytes(tmp: Path) -> int:
    return sum(path.stat().st_size for path in tmp.glob("ledger.sqlite*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--sample", help="passed to reconcile --sample")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name, MonkEmulator(API_KEY) as emulator:
        tmp = Path(name)
        config = tmp / "config.json"
        config.write_text(
            json.dumps(
                {
                    "api_key": API_KEY,
                    "api_url": emulator.url,
                    "read_api_url": emulator.url,
                    "ledger_path": str(tmp / "ledger.sqlite"),
                    "reconcile_settle_seconds": 0,
                }
            )
        )
        singer_input(tmp / "input.jsonl", args.events, args.customers, args.days)
        with (tmp / "input.jsonl").open("rb") as stdin:
            subprocess.run(
                [sys.executable, "-m", "target_monk", "--config", str(config)],
                stdin=stdin,
                check=True,
                capture_output=True,
            )
        recorded = ledger_bytes(tmp)
        command = [sys.executable, "-m", "target_monk", "reconcile", "--config", str(config)]
        command += ["--report", str(tmp / "report.json")]
        if args.sample:
            command += ["--sample", args.sample]
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - started
        report = json.loads((tmp / "report.json").read_text())
        print(
            f"{args.events:,} events, {args.customers} customers, {args.days} days; "
            f"reconcile exit {done.returncode}: {report['result']}, totals {report['totals']}"
        )
        print(
            f"reconcile: {report['requests']} requests ({report['throttled']} answered 429), "
            f"{seconds:.1f} s; at most {emulator.max_reads_in_window()} reads in any minute"
        )
        after = ledger_bytes(tmp)
        with sqlite3.connect(tmp / "ledger.sqlite") as connection:
            connection.execute("VACUUM")  # the bodies' freed pages, which later runs reuse
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        print(
            f"ledger: {recorded / args.events:.0f} B/event as recorded (request bodies), "
            f"{after / args.events:.0f} B/event after reconcile split them into one row per "
            f"key, {ledger_bytes(tmp) / args.events:.0f} B/event of it rows (vacuumed)"
        )


if __name__ == "__main__":
    main()
