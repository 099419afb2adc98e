"""Deletes from a real log-based tap: PostgreSQL (wal_level=logical, wal2json) ->
`meltano run tap-postgres--log target-monk` -> Monk emulator.

Monk keeps the usage it accepted for a row that is later deleted (it has no delete
API), so the emulator must hold every row ever inserted, in its last version before
the delete; each delete is set aside and reported, never sent, never a failure.
"""

from __future__ import annotations

import json
import subprocess
import typing as t
from pathlib import Path

import pytest

from target_monk.emulator import MonkEmulator
from testkit.postgres import PgCluster
from testkit.processes import API_KEY, MELTANO, ROOT, emulator_totals, meltano_env

LOGICAL = ("wal_level=logical", "max_replication_slots=4", "max_wal_senders=4")


@pytest.fixture
def wal_pg(tmp_path: Path) -> t.Iterator[PgCluster]:
    if not list(Path("/usr/lib/postgresql").glob("*/lib/wal2json.so")):
        pytest.fail("wal2json is not installed: run scripts/setup --postgres as root")
    cluster = PgCluster(tmp_path / "pg", settings=LOGICAL).start()
    yield cluster
    cluster.stop()


def meltano_run(pg: PgCluster, emulator: MonkEmulator, tmp_path: Path, **env: str) -> str:
    done = subprocess.run(
        [MELTANO, "run", "tap-postgres--log", "target-monk"],
        cwd=ROOT,
        env=meltano_env(
            {
                **pg.env(),
                "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
                "TARGET_MONK_API_URL": emulator.url,
                "TARGET_MONK_API_KEY": API_KEY,
                "TARGET_MONK_DELETED_RECORDS_PATH": str(tmp_path / "deleted.jsonl"),
                **env,
            }
        ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if env.get("TARGET_MONK_ON_DELETED_RECORD") == "fail":
        assert done.returncode != 0
    else:
        assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def deletes(tmp_path: Path) -> list[dict]:
    path = tmp_path / "deleted.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("identity", ["DEFAULT", "FULL"])
def test_log_based_deletes_keep_the_bill_and_are_reported(
    wal_pg: PgCluster, emulator: MonkEmulator, tmp_path: Path, meltano_plugins: None, identity: str
) -> None:
    pg = wal_pg
    pg.psql(f"ALTER TABLE billing_events REPLICA IDENTITY {identity}")
    pg.psql("SELECT pg_create_logical_replication_slot('tappostgres', 'wal2json')")
    pg.seed(300)
    pg.psql("UPDATE billing_events SET tokens = tokens + 1000 WHERE id % 10 = 0")
    billed = pg.totals()  # what was ever inserted, in its last version
    deleted_ids = pg.psql("SELECT id FROM billing_events WHERE id % 7 = 0 ORDER BY id").split()
    pg.psql("DELETE FROM billing_events WHERE id % 7 = 0")

    stderr = meltano_run(pg, emulator, tmp_path)
    assert emulator_totals(emulator) == billed
    assert set(emulator.writes.values()) == {1}  # each row's latest version, once
    reported = deletes(tmp_path)
    assert sorted(d["key"] for d in reported) == sorted(f"sync_{i}" for i in deleted_ids)
    assert all(d["stream"] == "public-billing_events" and d["deleted_at"] for d in reported)
    if identity == "FULL":  # the whole row: the event that was billed for it
        assert all(d["event"] == emulator.events[d["key"]] for d in reported)
    else:  # the key only
        assert all(d["event"] is None for d in reported)
    assert f"{len(deleted_ids)} deleted source rows were set aside" in stderr

    # Later inserts and updates are still billed; a delete can fail the run if asked.
    pg.seed(20)
    pg.psql("UPDATE billing_events SET tokens = 5 WHERE id = 1")
    meltano_run(pg, emulator, tmp_path)
    assert emulator.events["sync_1"]["properties"]["tokens"] == 5
    assert len(emulator.events) == 320
    pg.psql("DELETE FROM billing_events WHERE id = 2")
    stderr = meltano_run(pg, emulator, tmp_path, TARGET_MONK_ON_DELETED_RECORD="fail")
    failed = [line for line in stderr.splitlines() if "target-monk failed:" in line]
    assert len(failed) == 1
    assert "(key 2)" in failed[0]
    assert "on_deleted_record" in failed[0]
    assert len(deletes(tmp_path)) == len(deleted_ids)  # nothing more set aside
