"""Dagster definitions for target-monk's Meltano project: a sharded backfill, the
hourly incremental job, and the daily reconcile that proves the bill.

    uv sync --group orchestrate
    export TAP_POSTGRES_HOST=... TAP_POSTGRES_PORT=... TAP_POSTGRES_USER=... \\
           TAP_POSTGRES_PASSWORD=... TAP_POSTGRES_DATABASE=... \\
           TARGET_MONK_API_URL=... TARGET_MONK_API_KEY=... \\
           MELTANO_DATABASE_URI=postgresql+psycopg://USER:PASSWORD@HOST/meltano \\
           DAGSTER_HOME=/path/to/dagster-home
    dagster job execute -f orchestrate/definitions.py -j billing_events_backfill
    dagster job execute -f orchestrate/definitions.py -j billing_events_incremental
    dagster job execute -f orchestrate/definitions.py -j billing_reconcile

The shards and the incremental job write one ledger when TARGET_MONK_LEDGER_URL names a
PostgreSQL database (Meltano's system database's server is fine): the reconcile job
reads it.

Ops run `meltano run` (orchestrate/pipelines.py) rather than dagster-meltano: that
package (1.5.5, last released in 2023) reads the project's jobs by running the Meltano
CLI when definitions load, is one singleton per process, and runs Meltano through
dagster-shell's command strings; a shard needs its own plugin name and state id, which
plain ops pass directly.
"""

# No `from __future__ import annotations`: Dagster reads the op annotations at runtime.
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipelines


class BackfillConfig(dg.Config):
    """How many disjoint shards (id % shards) run in parallel."""

    shards: int = int(os.environ.get("BACKFILL_SHARDS", "4"))


@dg.op(out=dg.DynamicOut(tuple))
def plan_shards(
    context: dg.OpExecutionContext, config: BackfillConfig
) -> Iterator[dg.DynamicOutput[tuple]]:
    """One output per shard: (shard, shards)."""
    pipelines.check_shards(config.shards)
    pipelines.prepare_system_database()
    context.log.info(f"Backfill in {config.shards} shards (id % {config.shards})")
    for shard in range(config.shards):
        yield dg.DynamicOutput((shard, config.shards), mapping_key=f"shard_{shard}")


@dg.op
def run_shard(context: dg.OpExecutionContext, shard_of: tuple) -> int | None:
    """`meltano run tap-postgres--shard-K target-monk` for one shard."""
    shard, shards = shard_of
    bookmark = pipelines.run_shard(shard, shards)
    context.log.info(f"Shard {shard} of {shards} done; bookmark id {bookmark}")
    return bookmark


@dg.op
def continue_incremental(context: dg.OpExecutionContext, bookmarks: list) -> int:
    """Hand over to the incremental job: its bookmark becomes the shards' lowest."""
    lowest = pipelines.continue_incremental_from(bookmarks)
    context.log.info(f"Incremental pipeline continues from id {lowest} (inclusive)")
    return lowest


@dg.job(executor_def=dg.multiprocess_executor.configured({"max_concurrent": pipelines.MAX_SHARDS}))
def billing_events_backfill() -> None:
    """Every shard in parallel, then the incremental job's bookmark."""
    continue_incremental(plan_shards().map(run_shard).collect())


@dg.op
def run_incremental(context: dg.OpExecutionContext) -> int | None:
    """`meltano run tap-postgres target-monk` (RECORD mode, from the saved bookmark)."""
    bookmark = pipelines.run_incremental()
    context.log.info(f"Incremental run done; bookmark id {bookmark}")
    return bookmark


@dg.job
def billing_events_incremental() -> None:
    """The scheduled pipeline."""
    run_incremental()


hourly = dg.ScheduleDefinition(job=billing_events_incremental, cron_schedule="0 * * * *")


class ReconcileConfig(dg.Config):
    """The days to check: the last `days` UTC days up to yesterday, or (0) the days the
    runs of the last 24 hours delivered."""

    days: int = 0


@dg.op
def reconcile_recent_days(context: dg.OpExecutionContext, config: ReconcileConfig) -> dict:
    """`meltano invoke target-monk:reconcile`: fails (with the table) when Monk does not
    hold exactly what the ledger says it accepted."""
    options = pipelines.recent_days(config.days) if config.days else ()
    report, table = pipelines.reconcile(*options)
    context.log.info(table)
    return report["totals"]


@dg.job
def billing_reconcile() -> None:
    """Proving the bill: the ledger against Monk's own records, per customer and day."""
    reconcile_recent_days()


daily = dg.ScheduleDefinition(job=billing_reconcile, cron_schedule="30 6 * * *")

defs = dg.Definitions(
    jobs=[billing_events_backfill, billing_events_incremental, billing_reconcile],
    schedules=[hourly, daily],
)
