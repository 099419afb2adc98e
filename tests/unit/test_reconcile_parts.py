"""reconcile's parts that need no Monk: the comparison, runs of days, the token bucket
on a fake clock, the progress bar and lines."""

from __future__ import annotations

import json
import typing as t

from target_monk.monk.reads import RateLimit
from target_monk.proof.compare import compare, day_ranges


def test_compare_classifies_each_key() -> None:
    from target_monk.proof.ledger import LedgerEvent

    def row(
        key: str, accepted_at: str = "2026-03-01T00:00:00.000000Z", **changes: t.Any
    ) -> LedgerEvent:
        event = {
            "externalCustomerId": "c",
            "eventName": "e",
            "timestamp": "2026-03-01T10:00:00Z",
            "idempotencyKey": key,
            "properties": {"n": 2.5},
            **changes,
        }
        return LedgerEvent(key, "externalCustomerId", "c", json.dumps(event), accepted_at, "r")

    listed = [
        {**json.loads(row("same").event), "timestamp": "2026-03-01T10:00:00.000Z", "id": "x"},
        {**json.loads(row("changed").event), "eventName": "other"},
        {**json.loads(row("theirs").event)},
    ]
    ledger = [row("same"), row("changed"), row("lost"), row("new", "2026-03-02T00:00:00.000000Z")]
    result = compare(ledger, listed, settled_before="2026-03-01T12:00:00.000000Z")
    kinds = {f.key: (f.kind, f.fields) for f in result.findings}
    assert result.matched == {"2026-03-01": 1}
    assert kinds == {
        "changed": ("different", ("eventName",)),
        "lost": ("missing", ()),
        "new": ("pending", ()),
        "theirs": ("extra", ()),
    }


def test_day_ranges_join_consecutive_days_up_to_a_bound() -> None:
    days = ["2026-03-01", "2026-03-02", "2026-03-04", "2026-02-28"]
    assert day_ranges(days, {}, 10) == [("2026-02-28", "2026-03-03"), ("2026-03-04", "2026-03-05")]
    counts = {"2026-02-28": 4, "2026-03-01": 5, "2026-03-02": 20}
    assert day_ranges(days, counts, 10) == [
        ("2026-02-28", "2026-03-02"),
        ("2026-03-02", "2026-03-03"),  # above the bound: alone
        ("2026-03-04", "2026-03-05"),
    ]


def test_the_token_bucket_keeps_any_window_within_the_limit() -> None:
    now = [0.0]
    bucket = RateLimit(
        100, 60.0, clock=lambda: now[0], sleep=lambda seconds: now.__setitem__(0, now[0] + seconds)
    )
    times = []
    for _ in range(400):
        bucket.acquire()
        times.append(now[0])
    for first, start in enumerate(times):
        in_window = sum(1 for moment in times[first:] if moment - start < 60.0)
        assert in_window <= 100
    assert times[-1] < 400 / (90 / 60)  # and it goes at (100 - burst) a minute


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise() -> None:
    import io

    from target_monk.proof.report import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        progress = Progress(4, stream)
        for done in range(5):
            progress.update(done, done * 2, done * 1000)
    assert "\rreconcile [###############...............] 2/4 customers" in terminal.getvalue()
    assert terminal.getvalue().endswith("4/4 customers, 8 requests, 4,000 events listed\n")
    assert log.getvalue().splitlines() == [
        "reconcile: 0/4 customers, 0 requests, 0 events listed",
        "reconcile: 4/4 customers, 8 requests, 4,000 events listed",
    ]
