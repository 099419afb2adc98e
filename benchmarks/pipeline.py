"""The whole pipeline, timed: PostgreSQL -> Meltano -> target-monk -> a local Monk.

    .venv/bin/python benchmarks/pipeline.py                 # 300k rows
    .venv/bin/python benchmarks/pipeline.py --rows 100000 --shards 4
    .venv/bin/python benchmarks/pipeline.py --pairs 5       # RECORD mode vs the tap alone

Seeds a throwaway PostgreSQL cluster (testkit/postgres.py) with `--rows` rows of the
guide's billing_events table, runs the Monk emulator in its own process, keeps
Meltano's system database in the same cluster (parallel shards need PostgreSQL, not
SQLite), installs the plugins, then times, one after the other, each from scratch
(`--full-refresh`, Monk emptied):

- the tap alone, RECORD mode (`meltano invoke tap-postgres`, output discarded);
- `meltano run tap-postgres target-monk` (RECORD mode);
- `meltano run tap-postgres--batch target-monk` (the tap writes BATCH files);
- the backfill in `--shards` parallel shards (orchestrate/pipelines.py, BATCH mode),
  as the Dagster job runs them.

Each run's delivery is checked: Monk must hold one event per row. With `--pairs N`,
only the first two, N times each in turn, then the median and the spread of RECORD
mode's time over the tap alone's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "orchestrate")]

import pipelines  # noqa: E402
from bench import API_KEY, control, emulator_process  # noqa: E402

from testkit.postgres import PgCluster  # noqa: E402


def timed(label: str, rows: int, action: t.Callable[[], object], url: str) -> float:
    control(url, "/_emulator/reset", {})
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    held = control(url, "/_emulator/stats")["events"]
    delivered = "-" if label.startswith("tap alone") else f"{held} events in Monk"
    if held not in (0, rows) or (held == 0 and not label.startswith("tap alone")):
        delivered += "  <-- WRONG"
    print(f"{label:<44}{elapsed:>8.2f}{rows / elapsed:>11,.0f}  {delivered}", flush=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=0, help="RECORD mode vs the tap, N times")
    args = parser.parse_args()
    pipelines.check_shards(args.shards)

    with tempfile.TemporaryDirectory() as tmp, emulator_process() as url:
        pg = PgCluster(Path(tmp) / "pg").start()
        try:
            pg.psql("CREATE DATABASE meltano_system", database="postgres")
            pg.seed(args.rows)
            os.environ.update(
                {
                    **pg.env(),
                    "TARGET_MONK_API_URL": url,
                    "TARGET_MONK_API_KEY": API_KEY,
                    "MELTANO_DATABASE_URI": (
                        f"postgresql+psycopg://postgres@127.0.0.1:{pg.port}/meltano_system"
                    ),
                    "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
                }
            )
            os.environ.pop("TARGET_MONK_MAX_IN_FLIGHT", None)
            pipelines.meltano("install")
            print(f"{args.rows} rows, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
            print(f"{'run':<44}{'wall s':>8}{'rows/s':>11}")

            def tap_alone() -> None:
                with open(os.devnull, "wb") as sink:
                    subprocess.run(
                        [pipelines.MELTANO, "invoke", "tap-postgres"],
                        cwd=ROOT,
                        stdout=sink,
                        stderr=subprocess.DEVNULL,
                        check=True,
                    )

            def shards() -> None:
                with ThreadPoolExecutor(args.shards) as pool:
                    runs = [
                        pool.submit(pipelines.run_shard, k, args.shards, "--full-refresh")
                        for k in range(args.shards)
                    ]
                    for run in runs:
                        run.result()

            def record_mode() -> None:
                pipelines.meltano("run", "--full-refresh", "tap-postgres", "target-monk")

            if args.pairs:
                ratios = []
                for _ in range(args.pairs):
                    tap = timed("tap alone, RECORD mode", args.rows, tap_alone, url)
                    record = timed("meltano run, RECORD mode", args.rows, record_mode, url)
                    ratios.append(record / tap)
                print(
                    f"\nmeltano run RECORD / the tap alone, {args.pairs} pairs: median "
                    f"{statistics.median(ratios):.2f}x, {min(ratios):.2f}x-{max(ratios):.2f}x "
                    f"({', '.join(f'{r:.2f}' for r in ratios)})"
                )
                return
            tap = timed("tap alone, RECORD mode", args.rows, tap_alone, url)
            record = timed("meltano run, RECORD mode", args.rows, record_mode, url)
            batch = timed(
                "meltano run, tap in BATCH mode",
                args.rows,
                lambda: pipelines.meltano(
                    "run", "--full-refresh", "tap-postgres--batch", "target-monk"
                ),
                url,
            )
            sharded = timed(
                f"backfill in {args.shards} shards (BATCH mode)", args.rows, shards, url
            )
            print(
                f"\nmeltano run RECORD: {record / tap:.2f}x the tap alone; BATCH: "
                f"{batch / tap:.2f}x; {args.shards} shards: {sharded / tap:.2f}x "
                f"({tap / sharded:.2f}x the tap alone's rows/s)"
            )
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
