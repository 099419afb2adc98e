"""The project's Meltano pipelines as plain functions: a sharded backfill's runs, its
bookmarks, and handing over to the incremental job. Used by the Dagster definitions
(orchestrate/definitions.py) and the pipeline benchmark; knows nothing of Dagster.

Every function runs the `meltano` next to the running Python (the orchestrate extra
installs it) in the project directory, with the caller's environment: TAP_POSTGRES_*,
TARGET_MONK_API_URL / TARGET_MONK_API_KEY and MELTANO_DATABASE_URI.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import typing as t
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
MELTANO = str(Path(sys.executable).with_name("meltano"))
STREAM = "public-billing_events"
INCREMENTAL_TAP = "tap-postgres"
MAX_SHARDS = 8
"""meltano.yml declares tap-postgres--shard-0 to -7."""


class PipelineFailedError(RuntimeError):
    """A `meltano` command exited non-zero."""


def meltano(*args: str, env: t.Mapping[str, str] | None = None, timeout: float = 3600) -> str:
    """Run `meltano ARGS` in the project; return its stdout; raise PipelineFailedError with the
    end of its log otherwise."""
    done = subprocess.run(
        [MELTANO, *args],
        cwd=PROJECT,
        env={**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        msg = f"meltano {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        raise PipelineFailedError(msg)
    return done.stdout


def shard_plugins(shard: int) -> tuple[str, str]:
    """A shard's own tap and target plugin names (meltano.yml)."""
    return f"tap-postgres--shard-{shard}", f"target-monk--shard-{shard}"


def state_id(tap: str, target: str = "target-monk") -> str:
    return f"dev:{tap}-to-{target}"


def check_shards(shards: int) -> None:
    if not 1 <= shards <= MAX_SHARDS:
        msg = f"shards must be 1 to {MAX_SHARDS} (meltano.yml declares {MAX_SHARDS}), got {shards}"
        raise ValueError(msg)


def prepare_system_database() -> None:
    """Create or upgrade Meltano's system database once, before runs start in parallel:
    the first commands on an empty database race to create its tables otherwise."""
    meltano("state", "list")


def run_shard(shard: int, shards: int, *options: str) -> int | None:
    """`meltano run` shard `shard` of `shards` (rows with id % shards = shard, BATCH
    mode, its own plugin name and state id); return its bookmark."""
    check_shards(shards)
    tap, target = shard_plugins(shard)
    meltano("run", *options, tap, target, env={"BACKFILL_SHARDS": str(shards)})
    return bookmark(state_id(tap, target))


def run_incremental(*options: str) -> int | None:
    """The scheduled job's pipeline: `meltano run tap-postgres target-monk`."""
    meltano("run", *options, INCREMENTAL_TAP, "target-monk")
    return bookmark(state_id(INCREMENTAL_TAP))


def bookmark(pipeline_state_id: str) -> int | None:
    """The replication key value (`id`) Meltano saved for a pipeline, if any."""
    text = meltano("state", "get", pipeline_state_id).strip()
    if not text:
        return None
    bookmarks = json.loads(text).get("singer_state", {}).get("bookmarks", {})
    value = bookmarks.get(STREAM, {}).get("replication_key_value")
    return None if value is None else int(value)


def continue_incremental_from(shard_bookmarks: t.Sequence[int | None]) -> int:
    """After a backfill, set the incremental pipeline's bookmark so that its next run
    starts where the shards ended without sending the table again: the lowest of the
    shards' bookmarks. Each shard saw every row of its class up to its bookmark, so
    every row below the lowest one was sent; tap-postgres' bookmark is inclusive, so
    the next run sends the rows from that id on again (at most one per shard when the
    table did not grow meanwhile), harmlessly: their keys are the same.

    Raises:
        ValueError: a shard has no bookmark (it failed, or extracted nothing).
    """
    if not shard_bookmarks or any(value is None for value in shard_bookmarks):
        msg = f"every shard needs a bookmark to continue from, got {list(shard_bookmarks)}"
        raise ValueError(msg)
    lowest = min(t.cast("list[int]", list(shard_bookmarks)))
    state = {
        "singer_state": {
            "bookmarks": {STREAM: {"replication_key": "id", "replication_key_value": lowest}}
        }
    }
    meltano("state", "set", "--force", state_id(INCREMENTAL_TAP), json.dumps(state))
    return lowest


def recent_days(days: int, today: dt.date | None = None) -> tuple[str, ...]:
    """reconcile's options for the `days` UTC days before today."""
    today = today or dt.datetime.now(dt.UTC).date()
    start, end = today - dt.timedelta(days=days), today - dt.timedelta(days=1)
    return ("--start", start.isoformat(), "--end", end.isoformat())


class BillDiffersError(RuntimeError):
    """reconcile found events missing, different or extra in Monk (its exit 1)."""


def reconcile(*options: str) -> tuple[dict[str, t.Any], str]:
    """`meltano invoke target-monk:reconcile OPTIONS`: its JSON report and printed table.

    Raises:
        BillDiffersError: differences (the table and verdict in the message).
        PipelineFailedError: it could not check.
    """
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "reconcile.json"
        done = subprocess.run(
            [MELTANO, "invoke", "target-monk:reconcile", *options, "--report", str(report_path)],
            cwd=PROJECT,
            env={**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"},
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        if done.returncode == 1:
            raise BillDiffersError(done.stdout[-5000:])
        if done.returncode != 0:
            msg = f"reconcile could not check (exit {done.returncode}):\n{done.stderr[-3000:]}"
            raise PipelineFailedError(msg)
        return json.loads(report_path.read_text()), done.stdout
