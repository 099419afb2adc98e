"""Recorded output of a classic singer-python tap (pipelinewise-tap-postgres, FULL_TABLE):
ACTIVATE_VERSION, `version` on records, a repeated SCHEMA and `currently_syncing` in
STATE are all handled, and every row is delivered exactly once, on either path."""

from __future__ import annotations

from pathlib import Path

import pytest

from target_monk.emulator import MonkEmulator
from testkit.processes import ROOT, base_config, emulator_totals, run_target

FIXTURE = ROOT / "tests" / "fixtures" / "pipelinewise-tap-postgres-1.8.4-full-table.singer"
GUIDE_MAPPING = {
    "event_name_field": "event_type",
    "timestamp_field": "occurred_at",
    "property_fields": ["region", "model", "tokens"],
    "idempotency_key_template": "sync_{id}",
}


@pytest.mark.parametrize("settings", [{}, {"validate_records": True}], ids=["fast", "sdk"])
def test_full_table_output_of_a_singer_python_tap(
    emulator: MonkEmulator, tmp_path: Path, settings: dict
) -> None:
    config = base_config(emulator, **GUIDE_MAPPING, **settings)
    run = run_target(config, FIXTURE.read_bytes(), tmp_path, emulator)

    assert run.returncode == 0, run.stderr[-3000:]
    assert emulator.held_keys() == {f"sync_{g}" for g in range(1, 41)}
    assert set(emulator.writes.values()) == {1}
    assert emulator_totals(emulator) == {  # events and token sums per customer
        f"cus_{c}": (10, sum(g * 11 % 97 for g in range(1, 41) if g % 4 == c)) for c in range(4)
    }
    first = emulator.events["sync_1"]
    assert first["timestamp"] == "2026-03-15T10:07:30.25Z"
    assert first["eventName"] == "tokens_in"
    assert run.states[-1] == {
        "bookmarks": {
            "public-billing_events": {
                "last_replication_method": "FULL_TABLE",
                "version": 1795962756061,
                "xmin": None,
            }
        },
        "currently_syncing": None,
    }
    assert (
        run.stderr.count("ACTIVATE_VERSION 1795962756061 for stream 'public-billing_events'") == 2
    )
