"""Repair: post the events Monk is missing again, exactly as the ledger holds them."""

from __future__ import annotations

import typing as t
from dataclasses import replace

from target_monk.monk.events import batch_of_encoded

if t.TYPE_CHECKING:
    from target_monk.monk.events import Poster
    from target_monk.proof.ledger import Ledger
from target_monk.proof.report import ReconcileReport


def resend_missing(report: ReconcileReport, ledger: Ledger, poster: Poster, batch_size: int) -> int:
    """Post the `missing` events again, byte for byte as the ledger has them (same keys:
    harmless), through `poster` and its acceptance rules; they become `resent`, and the
    ledger notes the new acceptance. Return how many.

    Raises:
        MonkError: a batch was not accepted (those before it are resent).
    """
    missing = [f for f in report.findings if f.kind == "missing"]
    resent = 0
    for first in range(0, len(missing), batch_size):
        chunk = missing[first : first + batch_size]
        rows = ledger.events_by_key(f.key for f in chunk)
        body = batch_of_encoded(rows[f.key].event.encode() for f in chunk)
        receipt = poster.send_batch(body, f"{len(chunk)} missing events (resend)", len(chunk))
        ledger.resent([f.key for f in chunk], receipt.request_id)
        resent += len(chunk)
        for finding in chunk:
            counts = report.cells[f"{finding.customer_field}:{finding.customer}"][finding.day]
            counts["missing"] -= 1
            counts["resent"] = counts.get("resent", 0) + 1
        chunk_keys = {f.key for f in chunk}
        report.findings = [
            replace(f, kind="resent") if f.kind == "missing" and f.key in chunk_keys else f
            for f in report.findings
        ]
    return resent
