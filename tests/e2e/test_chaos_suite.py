"""The randomized chaos suite (testkit/chaos.py) on a fixed set of seeds,
and proof that its checks catch a broken target: the three violations issue #19's
chaos run found, brought back, and four more (testkit/sabotage.py).

`scripts/chaos --minutes N` runs it longer, on new seeds."""

from __future__ import annotations

import concurrent.futures
import sys
from pathlib import Path

import pytest

from testkit.chaos import (
    Result,
    Scenario,
    fault_rule,
    record_message,
    run_scenario,
    save,
    schema_message,
    state_message,
)
from testkit.processes import ROOT

SEEDS = (2026, 19)
SCENARIOS_PER_SEED = 24
SABOTAGE = [sys.executable, str(ROOT / "testkit" / "sabotage.py")]


def run_all(scenarios: list[Scenario], folder: Path, command: list[str] | None = None) -> list:
    args = {} if command is None else {"command": command}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(run_scenario, s, folder / f"{s.seed}-{s.number}", **args) for s in scenarios
        ]
        return [future.result() for future in futures]


def failures(results: list[Result], out: Path) -> list[str]:
    return [
        f"{r.scenario.describe()}: {r.violations[:3]} (saved in {save(r, out)})"
        for r in results
        if not r.ok
    ]


@pytest.mark.parametrize("seed", SEEDS)
def test_fixed_seeds_keep_every_invariant(seed: int, tmp_path: Path) -> None:
    scenarios = [Scenario.generate(seed, n) for n in range(SCENARIOS_PER_SEED)]
    results = run_all(scenarios, tmp_path)
    assert failures(results, tmp_path / "failed") == []
    # The set mixes what it claims to.
    kinds = {m["type"] for s in scenarios for m in s.messages}
    assert kinds >= {"SCHEMA", "RECORD", "STATE", "BATCH", "ACTIVATE_VERSION"}
    assert any(r.scenario.kill and r.runs[0].killed_by for r in results)
    assert any(s.corrupt_at is not None for s in scenarios) or seed != SEEDS[0]
    assert sum(len(s.faults) for s in scenarios) > SCENARIOS_PER_SEED


BROKEN = [
    ("schema-late", ("repeat_schema", "versions")),
    ("cut-not-retried", ("faults",)),
    ("late-signal", ("sigterm_after_summary",)),
    ("state-early", ("faults",)),
    ("drop-record", ()),
    ("stale-version", ("versions",)),
    ("ledger-early", ("faults",)),
]


@pytest.mark.parametrize(("mode", "force"), BROKEN, ids=[mode for mode, _ in BROKEN])
def test_the_suite_catches_a_broken_target(
    mode: str, force: tuple[str, ...], tmp_path: Path
) -> None:
    """Each breakage is caught within a few forced scenarios (its feature turned on)."""
    caught = []
    for batch in range(4):
        scenarios = [Scenario.generate(7, n, force) for n in range(batch * 4, batch * 4 + 4)]
        if mode == "cut-not-retried":
            for scenario in scenarios:
                scenario.faults = {2: {"name": "cut", "cut": True}}
                scenario.settings["max_retries"] = 2
        caught = [r for r in run_all(scenarios, tmp_path, [*SABOTAGE, mode]) if not r.ok]
        if caught:
            break
    assert caught, f"no scenario caught {mode}"


def test_a_late_landing_is_told_apart_from_a_violation(tmp_path: Path) -> None:
    """Monk stores a request the target gave up on (it timed out) after the retry was
    accepted and after the row's next version was: Monk's last write wins keeps the
    older version. No sender can prevent that; the suite reports it apart, and still
    fails a target that sends the older version itself (test above, stale-version)."""
    messages = [
        schema_message("s", "int", extra=False),
        record_message("s", "int", 1, 1),
        record_message("s", "int", 1, 2),
        state_message(2, ""),
    ]
    settings = {**Scenario.generate(0, 0).settings, "batch_size_rows": 1, "max_in_flight": 1}
    settings.update(max_retries=2, validate_records=False, flush_interval_seconds=60)
    slow = {**fault_rule("timeout"), "delay": 6.0}  # stored long after the retry and v2
    scenario = Scenario(0, 0, messages, settings, faults={1: slow})
    result = run_scenario(scenario, tmp_path)
    assert result.ok, result.violations
    assert result.late_landings, "the timed-out request should have landed after version 2"
    assert "is held at version 1 < 2" in result.late_landings[0]
