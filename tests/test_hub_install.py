"""The one-line install works: `meltano add loader target-monk --from-ref
hub/target-monk.yml` in a fresh `meltano init` project (offline, pip_url pointed at
this checkout) installs the target, and `meltano invoke` delivers through it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import API_KEY, MELTANO, ROOT, interleaved_input, meltano_env

from target_monk.testing.emulator import MonkEmulator

pytestmark = pytest.mark.orchestrate


def test_add_from_the_hub_definition_then_invoke(emulator: MonkEmulator, tmp_path: Path) -> None:
    env = meltano_env({"PIP_CONSTRAINT": str(ROOT / "requirements.lock")})
    subprocess.run(
        [MELTANO, "init", "project", "--no_usage_stats"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    project = tmp_path / "project"
    definition = yaml.safe_load((ROOT / "hub" / "target-monk.yml").read_text())
    definition["pip_url"] = str(ROOT)  # this checkout, instead of PyPI
    (tmp_path / "target-monk.yml").write_text(yaml.safe_dump(definition))

    added = subprocess.run(
        [MELTANO, "add", "loader", "target-monk", "--from-ref", str(tmp_path / "target-monk.yml")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert added.returncode == 0, added.stderr[-3000:]
    settings = subprocess.run(
        [MELTANO, "config", "list", "target-monk", "--all"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    assert "flush_interval_seconds" in settings
    assert "Required settings: api_key" in settings  # settings_group_validation

    data = interleaved_input({"s": 1200}, state_every=600)
    invoked = subprocess.run(
        [MELTANO, "invoke", "target-monk"],
        cwd=project,
        env={**env, "TARGET_MONK_API_URL": emulator.url, "TARGET_MONK_API_KEY": API_KEY},
        input=data.text(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert invoked.returncode == 0, invoked.stderr[-3000:]
    assert emulator.held_keys() == data.keys_before_state[-1][1]
    states = [json.loads(line) for line in invoked.stdout.splitlines() if line.startswith("{")]
    assert states[-1] == data.keys_before_state[-1][0]
