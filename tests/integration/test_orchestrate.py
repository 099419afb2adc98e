"""Dagster runs the project's Meltano pipelines: a 4-shard backfill (real PostgreSQL as the
source and as Meltano's system database, the emulator as Monk), then new rows and the
incremental job: Monk holds exactly the source, and nothing was sent twice but the
inclusive bookmark's boundary rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from target_monk.emulator import MonkEmulator
from testkit.postgres import PgCluster
from testkit.processes import API_KEY, ROOT, emulator_totals, meltano_env

pytestmark = [pytest.mark.orchestrate, pytest.mark.usefixtures("meltano_plugins")]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def dagster_job(job: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DAGSTER, "job", "execute", "-f", "orchestrate/definitions.py", "-j", job],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_sharded_backfill_then_hourly_incremental(
    pg: PgCluster, emulator: MonkEmulator, tmp_path: Path
) -> None:
    pg.psql("CREATE DATABASE meltano_system", database="postgres")
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = meltano_env(
        {
            **pg.env(),
            "TARGET_MONK_API_URL": emulator.url,
            "TARGET_MONK_API_KEY": API_KEY,
            "MELTANO_DATABASE_URI": (
                f"postgresql+psycopg://postgres@127.0.0.1:{pg.port}/meltano_system"
            ),
            "DAGSTER_HOME": str(dagster_home),
            "BACKFILL_SHARDS": "4",
            "TARGET_MONK_LEDGER_URL": f"postgresql://postgres@127.0.0.1:{pg.port}/meltano_system",
            "TARGET_MONK_READ_API_URL": emulator.url,
        }
    )
    pg.seed(20_001)

    backfill = dagster_job("billing_events_backfill", env)
    assert backfill.returncode == 0, backfill.stderr[-4000:]
    assert "RUN_SUCCESS" in backfill.stderr + backfill.stdout
    source_ids = set(map(int, pg.psql("SELECT id FROM billing_events").split()))
    assert emulator.held_keys() == {f"sync_{i}" for i in source_ids}
    assert set(emulator.writes.values()) == {1}  # the shards are disjoint
    assert emulator_totals(emulator) == pg.totals()
    # Meltano's state lives in PostgreSQL: one bookmark per shard, and the handover.
    state_ids = set(pg.psql("SELECT state_id FROM state", database="meltano_system").split())
    assert {f"dev:tap-postgres--shard-{k}-to-target-monk--shard-{k}" for k in range(4)} <= state_ids
    assert "dev:tap-postgres-to-target-monk" in state_ids

    pg.seed(1_000)
    writes_before = dict(emulator.writes)
    incremental = dagster_job("billing_events_incremental", env)
    assert incremental.returncode == 0, incremental.stderr[-4000:]
    source_ids = set(map(int, pg.psql("SELECT id FROM billing_events").split()))
    assert emulator.held_keys() == {f"sync_{i}" for i in source_ids}
    assert emulator_totals(emulator) == pg.totals()
    sent_twice = {
        key
        for key, count in emulator.writes.items()
        if count > writes_before.get(key, 0) and key in writes_before
    }
    # The shards ended at ids 19998..20001 (one per class): the inclusive bookmark is the
    # lowest, so at most those four old rows go again.
    assert sent_twice <= {f"sync_{i}" for i in range(19_998, 20_002)}
    assert 1 <= len(sent_twice) <= 4

    # Proving the bill: the shards and the incremental run wrote one PostgreSQL ledger.
    reconcile = dagster_job("billing_reconcile", env)
    assert reconcile.returncode == 0, reconcile.stderr[-4000:]
    assert "Match: Monk holds the 21,001 events the ledger has" in reconcile.stderr
    rows = pg.psql("SELECT count(*) FROM target_monk_ledger", database="meltano_system")
    assert rows == "21001"
    runs = pg.psql(
        "SELECT count(*) FROM target_monk_ledger_runs WHERE events > 0", database="meltano_system"
    )
    assert runs == "5"  # four shards and the incremental run
    emulator.delete(["sync_7"])  # lost by Monk: missing once the settle time has passed
    differs = dagster_job("billing_reconcile", {**env, "TARGET_MONK_RECONCILE_SETTLE_SECONDS": "0"})
    assert differs.returncode != 0
    assert "1 missing" in differs.stderr + differs.stdout
