"""Real PostgreSQL -> real `meltano run tap-postgres target-monk` -> Monk emulator."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from target_monk.emulator import MonkEmulator, Rule
from testkit.postgres import PgCluster
from testkit.processes import API_KEY, MELTANO, ROOT, emulator_totals, meltano_env, wait_until


class MeltanoRun:
    """`meltano run` for one test: its own state database, the test's Postgres and Monk."""

    def __init__(
        self, pg: PgCluster, emulator: MonkEmulator, tmp_path: Path, tap: str = "tap-postgres"
    ) -> None:
        self.tap = tap
        self.state_id = f"dev:{tap}-to-target-monk"
        self.env = meltano_env(
            {
                **pg.env(),
                "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
                "TARGET_MONK_API_URL": emulator.url,
                "TARGET_MONK_API_KEY": API_KEY,
            }
        )

    def command(self, *options: str) -> list[str]:
        return [MELTANO, "run", *options, self.tap, "target-monk"]

    def run(self, *options: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(*options),
            cwd=ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )

    def start(self) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def bookmark(self) -> int | None:
        done = subprocess.run(
            [MELTANO, "state", "get", self.state_id],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0 or not done.stdout.strip():
            return None
        state = json.loads(done.stdout)
        bookmarks = state.get("singer_state", {}).get("bookmarks", {})
        value = bookmarks.get("public-billing_events", {}).get("replication_key_value")
        return None if value is None else int(value)


def source_keys(pg: PgCluster, max_id: int | None = None) -> set[str]:
    where = f" WHERE id <= {max_id}" if max_id is not None else ""
    ids = pg.psql(f"SELECT id FROM billing_events{where}").split()
    return {f"sync_{i}" for i in ids}


def assert_exactly_delivered(pg: PgCluster, emulator: MonkEmulator) -> None:
    assert emulator.held_keys() == source_keys(pg)
    assert emulator_totals(emulator) == pg.totals()


def max_id(pg: PgCluster) -> int:
    return int(pg.psql("SELECT max(id) FROM billing_events"))


@pytest.mark.usefixtures("meltano_plugins")
def test_initial_load_then_incremental(pg: PgCluster, emulator: MonkEmulator, tmp_path) -> None:
    pipeline = MeltanoRun(pg, emulator, tmp_path)
    pg.seed(12_345)
    first = pipeline.run()
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(emulator.held_keys()) == 12_345
    assert_exactly_delivered(pg, emulator)
    assert sorted(r.count for r in emulator.accepted_requests()) == [2345, 5000, 5000]
    assert pipeline.bookmark() == max_id(pg) == 12_345

    pg.seed(2_500)
    requests_before = len(emulator.requests)
    # Every kind of setting from the environment, through Meltano (its `decimal` kind
    # would crash here: the *_seconds settings are `string`).
    second = pipeline.run(
        TARGET_MONK_REQUEST_TIMEOUT_SECONDS="30",
        TARGET_MONK_FLUSH_INTERVAL_SECONDS="0.5",
        TARGET_MONK_MAX_RETRIES="3",
        TARGET_MONK_DRY_RUN="false",
        TARGET_MONK_NUMERIC_PROPERTIES='["tokens"]',
    )
    assert second.returncode == 0, second.stderr[-3000:]
    new_requests = emulator.accepted_requests()[requests_before:]
    sent_again = {key for r in new_requests for key in r.keys}
    # tap-postgres' bookmark is inclusive (>=): the boundary row comes again, harmlessly.
    assert sent_again == {f"sync_{i}" for i in range(12_345, 14_846)}
    assert len(emulator.held_keys()) == 14_845
    assert_exactly_delivered(pg, emulator)
    assert emulator.writes["sync_12345"] == 2
    assert pipeline.bookmark() == 14_845


@pytest.mark.usefixtures("meltano_plugins")
def test_monk_failing_mid_run_never_moves_the_bookmark_past_accepted_events(
    pg: PgCluster, emulator: MonkEmulator, tmp_path
) -> None:
    pipeline = MeltanoRun(pg, emulator, tmp_path)
    pg.seed(23_456)
    emulator.fail_from = (3, Rule(status=503))
    failed = pipeline.run(TARGET_MONK_MAX_RETRIES="1", TARGET_MONK_MAX_IN_FLIGHT="1")
    assert failed.returncode != 0
    assert "did not accept batch #3" in failed.stderr
    bookmark = pipeline.bookmark()
    assert bookmark == 10_000, "expected the STATE after the two accepted batches"
    assert source_keys(pg, bookmark) <= emulator.held_keys()

    emulator.fail_from = None
    recovered = pipeline.run()
    assert recovered.returncode == 0, recovered.stderr[-3000:]
    assert_exactly_delivered(pg, emulator)
    assert pipeline.bookmark() == 23_456


@pytest.mark.usefixtures("meltano_plugins")
def test_sigkill_mid_run_then_rerun(pg: PgCluster, emulator: MonkEmulator, tmp_path) -> None:
    pipeline = MeltanoRun(pg, emulator, tmp_path)
    pg.seed(23_456)
    emulator.fail_from = (3, Rule(gate="held"))  # requests from the 3rd on wait: mid-run
    process = pipeline.start()
    wait_until(lambda: len(emulator.accepted_requests()) >= 2, timeout=120, process=process)
    wait_until(lambda: len(emulator.requests) >= 3, timeout=120, process=process)
    os.killpg(process.pid, signal.SIGKILL)
    emulator.fail_from = None
    emulator.gate("held").set()
    process.wait(timeout=30)
    delivered = len(emulator.held_keys())
    assert 0 < delivered < 23_456
    bookmark = pipeline.bookmark()
    if bookmark is not None:
        assert source_keys(pg, bookmark) <= emulator.held_keys()

    emulator.fail_from = None
    # The killed run still looks "running" to Meltano for 5 minutes; an operator
    # who knows it is dead reruns with --force.
    rerun = pipeline.run("--force")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_exactly_delivered(pg, emulator)
    assert pipeline.bookmark() == 23_456


@pytest.mark.usefixtures("meltano_plugins")
def test_batch_mode_tap_then_incremental(
    pg: PgCluster, emulator: MonkEmulator, tmp_path: Path
) -> None:
    """tap-postgres writing BATCH files: the same exact delivery and bookmark."""
    pipeline = MeltanoRun(pg, emulator, tmp_path, tap="tap-postgres--batch")
    pg.seed(23_456)
    first = pipeline.run()
    assert first.returncode == 0, first.stderr[-3000:]
    read = re.search(r"(\d+) records, (\d+) batch manifests", first.stderr)
    assert read, first.stderr[-3000:]
    assert (int(read[1]), int(read[2])) == (0, 3), "expected 3 BATCH files, no RECORD lines"
    assert_exactly_delivered(pg, emulator)
    assert set(emulator.writes.values()) == {1}
    assert pipeline.bookmark() == 23_456

    pg.seed(1_000)
    second = pipeline.run()
    assert second.returncode == 0, second.stderr[-3000:]
    assert_exactly_delivered(pg, emulator)
    assert emulator.writes["sync_23456"] == 2  # the inclusive bookmark's boundary row
    assert pipeline.bookmark() == 24_456
