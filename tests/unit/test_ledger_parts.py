"""The ledger's parts, in-process: a failed write fails the batch, retention, a
PostgreSQL URL never shown with its password, the later version wins, its settings
checked at start."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from target_monk.errors import LedgerError
from target_monk.proof.ledger import Ledger, describe


def test_a_ledger_write_that_fails_fails_the_batch(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path / "l.sqlite"), run_id="r1")
    ledger.close()
    event = {
        "externalCustomerId": "c",
        "eventName": "e",
        "timestamp": "2026-03-15T00:00:00Z",
        "idempotencyKey": "k",
    }
    with pytest.raises(LedgerError, match=r"could not record them.*next run sends them again"):
        ledger.record("s", msgspec.json.encode({"events": [event]}), 1, "req_1")


def test_retention_forgets_old_days(tmp_path: Path) -> None:
    import datetime as dt

    ledger = Ledger(str(tmp_path / "l.sqlite"), run_id="r1")
    events = [
        {
            "externalCustomerId": "c",
            "eventName": "e",
            "timestamp": f"{day}T00:00:00Z",
            "idempotencyKey": day,
        }
        for day in ("2026-01-01", "2026-02-01", "2026-03-01")
    ]
    ledger.record("s", msgspec.json.encode({"events": events}), 3, "req_1")
    ledger.materialize()
    assert ledger.prune(40, today=dt.date(2026, 3, 5)) == 1
    assert sorted(ledger.events_by_key(["2026-01-01", "2026-02-01", "2026-03-01"])) == [
        "2026-02-01",
        "2026-03-01",
    ]
    ledger.close()


def test_a_postgres_url_is_never_shown_with_its_password() -> None:
    shown = describe("postgresql://billing:s3cret@db.internal:5432/meltano")
    assert shown == "postgresql://billing:***@db.internal:5432/meltano"


def test_a_later_version_wins_across_materializations(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path / "l.sqlite"), run_id="r1")
    for tokens in (1, 2, 3):
        event = {
            "externalCustomerId": "c",
            "eventName": "e",
            "timestamp": "2026-03-15T00:00:00Z",
            "idempotencyKey": "k",
            "properties": {"tokens": tokens},
        }
        ledger.record("s", msgspec.json.encode({"events": [event]}), 1, f"req_{tokens}")
        if tokens != 2:
            ledger.materialize()  # every body split and forgotten: sequence numbers go on
    [row] = ledger.events_by_key(["k"]).values()
    assert json.loads(row.event)["properties"] == {"tokens": 3} and row.request_id == "req_3"
    ledger.close()


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"ledger_url": "mysql://db/ledger"}, "ledger_url must be a postgresql:// URL"),
        ({"read_api_url": "http://api.example.com"}, "read_api_url 'http://api.example.com'"),
    ],
)
def test_ledger_and_read_settings_are_checked_at_start(settings: dict, reason: str) -> None:
    from target_monk.errors import ConfigError
    from target_monk.settings import Settings

    with pytest.raises(ConfigError, match=reason):
        Settings.from_config({"api_key": "mk_test_x", **settings})
    on = Settings.from_config({"api_key": "mk_test_x", "ledger_url": "postgresql://h/d"})
    assert on.ledger_location == "postgresql://h/d"
    assert Settings.from_config({"api_key": "k", "ledger": "false"}).ledger_location is None
