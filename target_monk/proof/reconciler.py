"""reconcile: does Monk hold what the ledger says it accepted? Per customer and UTC day.

For each customer the ledger has events of in the range, Monk's events are listed
(`MonkReader`) and compared by idempotency key with the ledger's:

- matched: Monk lists the key, with the same customer, name, timestamp and properties;
- missing: the ledger has it, Monk does not list it, and it was accepted longer than
  the settle time ago (Monk processes asynchronously);
- pending: as missing, but accepted within the settle time;
- different: Monk lists the key with another customer, name, timestamp or properties;
- extra: Monk lists a key the ledger has no row for (sent by someone else, or by a
  run without a ledger).

Work goes customer by customer; each customer's result is saved as it is done, so an
interrupted reconcile resumes where it stopped. Knows nothing of Singer nor of HTTP."""

from __future__ import annotations

import datetime as dt
import json
import time
import typing as t
from dataclasses import asdict
from pathlib import Path

from target_monk.errors import ReconcileError
from target_monk.proof.ledger import utc_now_text

if t.TYPE_CHECKING:
    from target_monk.monk.reads import MonkReader
    from target_monk.proof.ledger import Ledger
from target_monk.proof.compare import (
    Customer,
    CustomerResult,
    Finding,
    compare,
    day_ranges,
    sampled_days,
)
from target_monk.proof.report import Progress, ReconcileReport, build_report

CHUNK_EVENTS = 100_000
"""A customer's range is compared in runs of days holding at most this many of the
ledger's events (one day more, alone): memory stays bounded whatever the range."""


class Reconciler:
    """Compares the ledger with Monk for a range of days, customer by customer."""

    def __init__(
        self,
        ledger: Ledger,
        reader: MonkReader,
        settle_seconds: float,
        progress_stream: t.TextIO | None = None,
    ) -> None:
        """Read the ledger and Monk (through `reader`); pending within `settle_seconds`."""
        self.ledger = ledger
        self.reader = reader
        self.settle_seconds = settle_seconds
        self.progress_stream = progress_stream

    def run(
        self,
        start: dt.date,
        end: dt.date,
        sample: float | None = None,
        seed: int = 0,
        resume_file: Path | None = None,
    ) -> ReconcileReport:
        """Reconcile days `start` to `end` (inclusive). With `resume_file`, customers
        done in an earlier, interrupted run with the same arguments are not read again,
        and each customer's result is saved there once done.

        Raises:
            ReconcileError: Monk could not be read (what is done so far is saved).
        """
        started = time.monotonic()
        self.ledger.materialize()
        first, stop = start.isoformat(), (end + dt.timedelta(days=1)).isoformat()
        days = [(start + dt.timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]
        customers = self.ledger.customers(first, stop)
        signature = {"start": first, "end": end.isoformat(), "sample": sample, "seed": seed}
        results = _load_resume(resume_file, signature)
        progress = Progress(len(customers), self.progress_stream)
        listed = 0
        progress.update(len([c for c in customers if c in results]), 0, 0)
        for customer in customers:
            if customer in results:
                continue
            chosen = sampled_days(customer, days, sample, seed) if sample is not None else days
            counts = self.ledger.day_counts(*customer, first, stop)
            result = CustomerResult()
            for range_start, range_end in day_ranges(chosen, counts, CHUNK_EVENTS):
                settled_before = utc_now_text(ago=dt.timedelta(seconds=self.settle_seconds))
                result.add(
                    compare(
                        self.ledger.events(*customer, range_start, range_end),
                        self.reader.events(*customer, range_start, range_end),
                        settled_before,
                    )
                )
            results[customer] = result
            listed += result.monk_events
            _save_resume(resume_file, signature, customer, results[customer])
            progress.update(len(results), self.reader.requests, listed)
        report = build_report(first, end.isoformat(), sample, results, self.ledger)
        report.requests = self.reader.requests
        report.throttled = self.reader.throttled
        report.seconds = time.monotonic() - started
        if resume_file is not None and resume_file.exists():
            resume_file.unlink()
        return report


def _load_resume(path: Path | None, signature: dict[str, t.Any]) -> dict[Customer, CustomerResult]:
    """Customers done by an interrupted reconcile with the same arguments (JSON Lines:
    the arguments, then a customer's result per line; a line cut by a kill is dropped).

    Raises:
        ReconcileError: the file is from a reconcile with other arguments.
    """
    if path is None or not path.exists():
        return {}
    lines = path.read_text().splitlines()
    saved = json.loads(lines[0]) if lines else {}
    if saved != signature:
        msg = (
            f"{path} is from a reconcile with other arguments ({saved}); run that one "
            "again to finish it, or delete the file"
        )
        raise ReconcileError(msg)
    results = {}
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except ValueError:
            break
        results[(entry["customer_field"], entry["customer"])] = CustomerResult(
            matched=entry["matched"],
            findings=[Finding(**{**f, "fields": tuple(f["fields"])}) for f in entry["findings"]],
            monk_events=entry["monk_events"],
        )
    return results


def _save_resume(
    path: Path | None, signature: dict[str, t.Any], customer: Customer, result: CustomerResult
) -> None:
    """Append one customer's result (the arguments first, in a new file)."""
    if path is None:
        return
    with path.open("a") as file:
        if file.tell() == 0:
            file.write(json.dumps(signature) + "\n")
        entry = {"customer_field": customer[0], "customer": customer[1], **asdict(result)}
        file.write(json.dumps(entry) + "\n")
