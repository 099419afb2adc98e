"""Numbers that arrive as text, from a real CSV tap: tap-spreadsheets (PyPI, in
.venv-tap-spreadsheets) declares every column a string. With numeric_properties Monk
gets numbers, summed exactly; without it, the run warns."""

from __future__ import annotations

import collections
import decimal
import json
import subprocess
from pathlib import Path

import pytest

from target_monk.emulator import MonkEmulator
from testkit.processes import ROOT, base_config, run_target

TAP = ROOT / ".venv-tap-spreadsheets" / "bin" / "tap-spreadsheets"
DAYS, ROWS_PER_DAY = 3, 1000
MAPPING = {
    "external_customer_id_field": "customer",
    "event_name_field": "event",
    "timestamp_field": "at",
    "property_fields": ["tokens", "region"],
}


def csv_exports(folder: Path, bad: dict[int, str] | None = None) -> dict[str, decimal.Decimal]:
    """Daily CSV exports of usage; per customer, the exact sum of tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    sums: collections.defaultdict[str, decimal.Decimal] = collections.defaultdict(decimal.Decimal)
    row = 0
    for day in range(1, DAYS + 1):
        lines = ["id,customer,event,at,tokens,region"]
        for _ in range(ROWS_PER_DAY):
            row += 1
            customer = f"cus_{row % 7}"
            tokens = (bad or {}).get(row) or f"{row * 37 % 1000}.{row % 10000:04d}"
            if row not in (bad or {}):
                sums[customer] += decimal.Decimal(tokens)
            quoted = f'"{tokens}"' if "," in tokens else tokens
            lines.append(f"{row},{customer},api_call,2026-03-0{day}T10:00:00Z,{quoted},eu")
        (folder / f"usage-2026-03-0{day}.csv").write_text("\n".join(lines) + "\n")
    return dict(sums)


def tap_output(folder: Path, tmp_path: Path) -> bytes:
    assert TAP.exists(), "tap-spreadsheets is missing: run scripts/setup"
    config = tmp_path / "tap.json"
    files = [{"path": f"{folder}/*.csv", "format": "csv", "table_name": "usage"}]
    config.write_text(json.dumps({"files": [{**files[0], "primary_keys": ["id"]}]}))
    done = subprocess.run(
        [str(TAP), "--config", str(config)], capture_output=True, check=True, timeout=120
    )
    return done.stdout


def test_csv_quantities_are_billed_as_exact_numbers(emulator: MonkEmulator, tmp_path: Path) -> None:
    expected = csv_exports(tmp_path / "exports")
    output = tap_output(tmp_path / "exports", tmp_path)
    assert b'"tokens":{"type":["string","null"]}' in output  # the tap says: text
    config = base_config(emulator, **MAPPING, numeric_properties=["tokens"])
    run = run_target(config, output, tmp_path, emulator)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(emulator.events) == DAYS * ROWS_PER_DAY
    sums: collections.defaultdict[str, decimal.Decimal] = collections.defaultdict(decimal.Decimal)
    for event in emulator.events.values():
        tokens = event["properties"]["tokens"]
        assert isinstance(tokens, (int, float)), f"sent as {tokens!r}"
        sums[event["externalCustomerId"]] += decimal.Decimal(repr(tokens))
    assert dict(sums) == expected  # to the last decimal
    assert "arrives as text" not in run.stderr


def test_csv_text_that_is_not_a_number_fails_naming_the_field(
    emulator: MonkEmulator, tmp_path: Path
) -> None:
    csv_exports(tmp_path / "exports", bad={1500: "1,000"})
    output = tap_output(tmp_path / "exports", tmp_path)
    config = base_config(emulator, **MAPPING, numeric_properties=["tokens"])
    run = run_target(config, output, tmp_path, emulator)
    assert run.returncode == 1
    failed = [line for line in run.stderr.splitlines() if "target-monk failed:" in line]
    assert len(failed) == 1
    assert "key '1500'" in failed[0]
    assert "field 'tokens'" in failed[0]
    assert "'1,000' is not a number" in failed[0]


@pytest.mark.parametrize("setting", [None, ["tokens"]])
def test_text_numbers_are_warned_of_unless_declared(
    emulator: MonkEmulator, tmp_path: Path, setting: list[str] | None
) -> None:
    csv_exports(tmp_path / "exports")
    output = tap_output(tmp_path / "exports", tmp_path)
    run = run_target(
        base_config(emulator, **MAPPING, numeric_properties=setting), output, tmp_path, emulator
    )
    assert run.returncode == 0, run.stderr[-3000:]
    warned = "'tokens' arrives as text in stream 'usage'" in run.stderr
    assert warned == (setting is None)
    assert "'region' arrives as text" not in run.stderr  # not a number
