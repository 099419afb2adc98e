"""Throughput and memory, side by side: target-monk (RECORD lines, and the same rows as
BATCH files), a no-op singer-sdk target, the guide's loop.

    .venv/bin/python benchmarks/bench.py                       # 200k events, loopback
    .venv/bin/python benchmarks/bench.py --records 100000 --latency 0.25
    .venv/bin/python benchmarks/bench.py --records 1000000 --only target-monk
    .venv/bin/python benchmarks/bench.py --only "target-monk,target-monk, no"   # ledger cost
    .venv/bin/python benchmarks/bench.py --emulator-url http://HOST:8787   # emulator elsewhere

Generates a Singer file (cached in the temp dir) and starts the Monk emulator on
127.0.0.1 in its own process (optionally adding latency to every request). With
--emulator-url it uses one already running instead, e.g. on another machine so that
it does not share the contenders' cores (start it there with
`python -m target_monk.emulator --host 0.0.0.0 --api-key <API_KEY below>`). It runs
each contender as a subprocess reading that file, and prints wall time, events/s
and peak RSS of the median of --repeat runs, with the slowest and fastest rate.
The number of distinct events Monk holds is checked after each run. The BATCH
contender reads the same rows from gzip JSONL files of 10,000 rows (as singer-sdk
taps write them), a BATCH message and a STATE per file.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's testkit
from testkit.postgres import free_port

ROOT = Path(__file__).resolve().parents[1]

API_KEY = "mk_test_" + "be" * 24
STREAM = "billing_events"
SCHEMA = {
    "type": "SCHEMA",
    "stream": STREAM,
    "key_properties": ["id"],
    "schema": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "external_customer_id": {"type": "string"},
            "event_name": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
            "region": {"type": "string"},
            "model": {"type": "string"},
            "tokens": {"type": "integer"},
        },
    },
}


def row(i: int) -> dict:
    return {
        "id": i,
        "external_customer_id": f"cus_{i % 97}",
        "event_name": "tokens_used" if i % 3 else "image_generated",
        "timestamp": f"2026-03-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{i % 59:02d}Z",
        "region": ("eu-west", "us-east", "ap-south")[i % 3],
        "model": ("monk-s", "monk-m", "monk-l")[i % 3],
        "tokens": 1 + (i * 37) % 1000,
    }


def state_line(i: int) -> str:
    state = {"bookmarks": {STREAM: {"replication_key_value": i}}}
    return json.dumps({"type": "STATE", "value": state}) + "\n"


def singer_file(records: int, streams: int = 1) -> Path:
    """A tap-postgres-like file: a STATE every 10,000 records; with `streams` > 1, the
    records go round-robin to that many streams (as a multi-table tap's interleave)."""
    suffix = f"-{streams}streams" if streams > 1 else ""
    path = Path(tempfile.gettempdir()) / f"target-monk-bench-{records}{suffix}.singer"
    if path.exists():
        return path
    names = [STREAM] if streams == 1 else [f"{STREAM}_{n:02d}" for n in range(streams)]
    with path.open("w") as out:
        for name in names:
            out.write(json.dumps({**SCHEMA, "stream": name}) + "\n")
        for i in range(1, records + 1):
            stream = names[i % len(names)]
            out.write(json.dumps({"type": "RECORD", "stream": stream, "record": row(i)}) + "\n")
            if i % 10_000 == 0:
                out.write(state_line(i))
    return path


def batch_singer_file(records: int) -> Path:
    """The same rows in gzip JSONL files of 10,000 rows: a BATCH and a STATE per file."""
    folder = Path(tempfile.gettempdir()) / f"target-monk-bench-{records}-batch"
    path = folder / "messages.singer"
    if path.exists():
        return path
    folder.mkdir(exist_ok=True)
    with path.open("w") as out:
        out.write(json.dumps(SCHEMA) + "\n")
        for first in range(1, records + 1, 10_000):
            last = min(records, first + 9_999)
            part = folder / f"part-{first}.json.gz"
            lines = "".join(json.dumps(row(i)) + "\n" for i in range(first, last + 1))
            part.write_bytes(gzip.compress(lines.encode(), compresslevel=1))
            encoding = {"format": "jsonl", "compression": "gzip"}
            batch = {"type": "BATCH", "stream": STREAM, "encoding": encoding}
            out.write(json.dumps({**batch, "manifest": [part.as_uri()]}) + "\n")
            out.write(state_line(last))
    return path


def run_measured(command: list[str], stdin_path: Path, env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process."""
    with stdin_path.open("rb") as stdin:
        started = time.perf_counter()
        child = subprocess.Popen(
            command, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        stderr = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.stderr.write(stderr.decode(errors="replace")[-3000:])
        msg = f"{command[1:3]} exited {child.returncode}"
        raise SystemExit(msg)
    return elapsed, usage.ru_maxrss


@contextlib.contextmanager
def emulator_process() -> t.Iterator[str]:
    """The Monk emulator in a process of its own, so the harness stays small and idle."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "target_monk.emulator",
            "--port",
            str(port),
            "--api-key",
            API_KEY,
        ],
        stdout=subprocess.PIPE,
    )
    try:
        server.stdout.readline()  # "Monk emulator on ..." once it listens
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def control(url: str, path: str, payload: dict | None = None) -> dict:
    data = None if payload is None else json.dumps(payload).encode()
    with urllib.request.urlopen(url + path, data=data, timeout=30) as answer:  # noqa: S310
        return json.load(answer)


LEDGER = "ledger.sqlite"
"""Each target-monk run starts with a new ledger in the temporary directory."""


def ledger_bytes(tmp: Path) -> int:
    """The ledger's size on disk: its file, write-ahead log and shared memory."""
    return sum(path.stat().st_size for path in tmp.glob(LEDGER + "*"))


def contenders(
    path: Path, url: str, tmp: Path, max_in_flight: int
) -> dict[str, tuple[list[str], Path]]:
    """Each contender's command and the Singer file it reads."""
    config = tmp / "config.json"
    config.write_text(
        json.dumps(
            {
                "api_key": API_KEY,
                "api_url": url,
                "ledger_path": str(tmp / LEDGER),
                "event_name_field": "event_name",
                "max_in_flight": max_in_flight,
                # The guide's key, which may serve one stream only: with --streams,
                # the stream's name joins it.
                "idempotency_key_template": (
                    "{stream}_{id}" if "streams" in path.stem else "sync_{id}"
                ),
                "allow_insecure_http": True,  # the emulator speaks plain http
            }
        )
    )
    no_ledger = tmp / "config-no-ledger.json"
    no_ledger.write_text(json.dumps({**json.loads(config.read_text()), "ledger": False}))
    python = sys.executable
    target_monk = [python, "-m", "target_monk", "--config", str(config)]
    records = int(path.stem.split("-")[3])
    guide = [python, str(ROOT / "benchmarks" / "guide_loop.py"), str(path), url, API_KEY]
    return {
        "target-monk": (target_monk, path),
        "target-monk, no ledger": ([*target_monk[:-1], str(no_ledger)], path),
        "target-monk, BATCH files": (target_monk, batch_singer_file(records)),
        "no-op singer-sdk target": ([python, str(ROOT / "benchmarks" / "noop_target.py")], path),
        "guide's sequential loop": (guide, path),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds added to every request, between Monk handling it and the answer",
    )
    parser.add_argument("--max-in-flight", type=int, default=4)
    parser.add_argument(
        "--streams", type=int, default=1, help="interleave the records over this many streams"
    )
    parser.add_argument("--only", help="comma-separated contender names (prefixes)")
    parser.add_argument("--repeat", type=int, default=3, help="runs each; the median is shown")
    parser.add_argument(
        "--emulator-url", help="a Monk emulator already running (e.g. on another machine)"
    )
    args = parser.parse_args()

    path = singer_file(args.records, args.streams)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_MONK_")}
    print(
        f"{args.records} events in {args.streams} stream(s), "
        f"latency {args.latency * 1000:.0f} ms/request, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print(
        f"{'contender':<28}{'wall s':>8}{'events/s':>11}{'(slowest-fastest)':>20}"
        f"{'peak RSS MiB':>14}  delivered"
    )
    emulator = (
        contextlib.nullcontext(args.emulator_url.rstrip("/"))
        if args.emulator_url
        else emulator_process()
    )
    with tempfile.TemporaryDirectory() as tmp, emulator as url:
        for name, (command, stdin) in contenders(path, url, Path(tmp), args.max_in_flight).items():
            if args.only and not any(name.startswith(p) for p in args.only.split(",")):
                continue
            runs = []
            for _ in range(args.repeat):
                for old in Path(tmp).glob(LEDGER + "*"):
                    old.unlink()
                control(url, "/_emulator/reset", {})
                if args.latency:
                    rule = {"latency": args.latency}
                    control(url, "/_emulator/fail_from", {"request": 1, "rule": rule})
                runs.append(run_measured(command, stdin, env))
            elapsed, rss_kib = sorted(runs)[len(runs) // 2]  # the median run
            held = control(url, "/_emulator/stats")["events"]
            delivered = "-" if name.startswith("no-op") else f"{held} unique keys"
            if not name.startswith("no-op") and held != args.records:
                delivered += "  <-- WRONG"
            if ledger_bytes(Path(tmp)):
                delivered += f", ledger {ledger_bytes(Path(tmp)) / args.records:.0f} B/event"
            rate = args.records / elapsed
            spread = f"{args.records / max(runs)[0]:,.0f}-{args.records / min(runs)[0]:,.0f}"
            print(
                f"{name:<28}{elapsed:>8.2f}{rate:>11,.0f}{spread:>20}"
                f"{rss_kib / 1024:>14.1f}  {delivered}"
            )


if __name__ == "__main__":
    main()
