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
interrupted reconcile resumes where it stopped. Knows nothing of Singer nor of HTTP.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import sys
import time
import typing as t
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import msgspec

from target_monk.errors import ReconcileError
from target_monk.ledger import utc_now_text
from target_monk.monk_reads import COMPARED_FIELDS, KEY_FIELD

if t.TYPE_CHECKING:
    from target_monk.client import Poster
    from target_monk.ledger import Ledger, LedgerEvent
    from target_monk.monk_reads import MonkReader

KINDS = ("matched", "pending", "missing", "different", "extra", "resent")
DIFFERENCES = ("missing", "different", "extra", "resent")
"""Kinds that make reconcile exit 1 (resent ones are proven by the next reconcile)."""

CHUNK_EVENTS = 100_000
"""A customer's range is compared in runs of days holding at most this many of the
ledger's events (one day more, alone): memory stays bounded whatever the range."""
Customer = tuple[str, str]
"""(customer field, customer): ('externalCustomerId', 'acme')."""


@dataclass(frozen=True)
class Finding:
    """One key that is not simply matched."""

    kind: str
    key: str
    customer_field: str
    customer: str
    day: str
    fields: tuple[str, ...] = ()
    """For `different`: the fields that differ."""


@dataclass
class CustomerResult:
    """What comparing one customer found: matched counts per day, and the rest."""

    matched: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    monk_events: int = 0

    def add(self, other: CustomerResult) -> None:
        """Count in what comparing another range of days found."""
        for day, count in other.matched.items():
            self.matched[day] = self.matched.get(day, 0) + count
        self.findings += other.findings
        self.monk_events += other.monk_events


def compare(
    ledger_events: t.Iterable[LedgerEvent],
    monk_events: t.Iterable[t.Mapping[str, t.Any]],
    settled_before: str,
) -> CustomerResult:
    """Compare one customer's ledger rows with the events Monk lists for them (same
    range). A ledger row accepted after `settled_before` (the ledger's instant text)
    that Monk does not list is pending. Pure."""
    result = CustomerResult()
    listed: dict[str, t.Mapping[str, t.Any]] = {}
    for event in monk_events:
        listed[str(event.get(KEY_FIELD))] = event
    result.monk_events = len(listed)
    matched: collections.Counter[str] = collections.Counter()
    for row in ledger_events:
        sent = msgspec.json.decode(row.event)
        day = str(sent["timestamp"])[:10]
        held = listed.pop(row.key, None)
        if held is None:
            kind = "pending" if row.accepted_at > settled_before else "missing"
            result.findings.append(Finding(kind, row.key, row.customer_field, row.customer, day))
            continue
        differing = differing_fields(sent, held)
        if differing:
            result.findings.append(
                Finding("different", row.key, row.customer_field, row.customer, day, differing)
            )
        else:
            matched[day] += 1
    for key, event in listed.items():  # Monk's, not in this customer's ledger rows
        customer_field = "customerId" if "customerId" in event else "externalCustomerId"
        customer = str(event.get(customer_field))
        day = str(event.get("timestamp", ""))[:10]
        result.findings.append(Finding("extra", key, customer_field, customer, day))
    result.matched = dict(matched)
    return result


def differing_fields(sent: t.Mapping[str, t.Any], held: t.Mapping[str, t.Any]) -> tuple[str, ...]:
    """The compared fields whose values differ: timestamps as instants, properties as
    JSON values (so 2.50 sent and 2.5 listed are equal)."""
    differing = []
    for name in COMPARED_FIELDS:
        mine, theirs = sent.get(name), held.get(name)
        if name == "timestamp" and mine is not None and theirs is not None:
            mine, theirs = _instant(mine), _instant(theirs)
        if mine != theirs:
            differing.append(name)
    return tuple(differing)


def _instant(value: object) -> object:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return value


def resolve_extras(findings: list[Finding], ledger: Ledger) -> list[Finding]:
    """An `extra` key the ledger has a row for is the ledger's event, listed under
    another customer or day: `different`, and no longer `missing` where the ledger
    has it. Only keys the ledger lacks stay extra."""
    extras = {f.key: f for f in findings if f.kind == "extra"}
    if not extras:
        return findings
    rows = ledger.events_by_key(extras)
    moved = {}
    for key, row in rows.items():
        sent = msgspec.json.decode(row.event)
        fields = differing_fields(sent, _as_listed(extras[key], sent))
        day = str(sent["timestamp"])[:10]
        moved[key] = Finding(
            "different", key, row.customer_field, row.customer, day, fields or ("customer",)
        )
    kept = [
        f for f in findings if not (f.key in moved and f.kind in ("extra", "missing", "pending"))
    ]
    return kept + list(moved.values())


def _as_listed(extra: Finding, sent: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """What Monk lists for a moved key, as far as the finding tells (its customer and
    day); the other fields as sent, so only customer or timestamp can differ."""
    listed = {k: v for k, v in sent.items() if k not in ("customerId", "externalCustomerId")}
    listed[extra.customer_field] = extra.customer
    if str(sent["timestamp"])[:10] != extra.day:
        listed["timestamp"] = extra.day
    return listed


def sampled_days(customer: Customer, days: list[str], fraction: float, seed: int) -> list[str]:
    """The days of a customer that a `--sample fraction` checks: chosen by a hash of
    (seed, customer, day), so a resumed or repeated reconcile picks the same ones."""
    chosen = []
    for day in days:
        digest = hashlib.sha256(f"{seed}|{customer[0]}|{customer[1]}|{day}".encode()).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 < fraction:
            chosen.append(day)
    return chosen


def day_ranges(days: list[str], counts: t.Mapping[str, int], limit: int) -> list[tuple[str, str]]:
    """ISO days as [start, end) ranges of consecutive days, each holding at most `limit`
    of the ledger's events by `counts` (a day above it alone): what one customer's
    comparison holds in memory at once."""
    ranges: list[tuple[str, str]] = []
    held = 0
    for day in sorted(days):
        following = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
        events = counts.get(day, 0)
        if ranges and ranges[-1][1] == day and held + events <= limit:
            ranges[-1] = (ranges[-1][0], following)
            held += events
        else:
            ranges.append((day, following))
            held = events
    return ranges


class Progress:
    """A bar on a terminal, plain lines (every 10 s and at the end) otherwise."""

    def __init__(self, total: int, stream: t.TextIO | None = None) -> None:
        """Count `total` customers."""
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last_line = 0.0

    def update(self, done: int, requests: int, events: int) -> None:
        """`done` customers compared so far, with `requests` made and `events` listed."""
        text = f"{done}/{self.total} customers, {requests} requests, {events:,} events listed"
        if self.tty:
            width = 30
            filled = width * done // max(self.total, 1)
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\rreconcile [{bar}] {text}")
            if done == self.total:
                self.stream.write("\n")
        elif done == self.total or time.monotonic() - self._last_line >= 10:
            self._last_line = time.monotonic()
            self.stream.write(f"reconcile: {text}\n")
        self.stream.flush()


@dataclass
class Report:
    """A reconcile's result: per customer and day, the counts of each kind; the keys
    that are not matched; what was resent; the cost in requests."""

    start: str
    end: str
    """Inclusive, as asked."""
    sample: float | None
    customers: int = 0
    cells: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    """customer ("field:value") -> day -> kind -> count."""
    findings: list[Finding] = field(default_factory=list)
    requests: int = 0
    throttled: int = 0
    seconds: float = 0.0

    def totals(self) -> dict[str, int]:
        """Each kind's count over every customer and day."""
        totals = dict.fromkeys(KINDS, 0)
        for days in self.cells.values():
            for counts in days.values():
                for kind, count in counts.items():
                    totals[kind] += count
        return totals

    @property
    def differs(self) -> bool:
        """Something is missing, extra or different, or was resent."""
        totals = self.totals()
        return any(totals[kind] for kind in DIFFERENCES)

    def to_json(self) -> dict[str, t.Any]:
        """The JSON report's content."""
        by_kind: dict[str, list[dict[str, t.Any]]] = {kind: [] for kind in KINDS[1:]}
        for finding in sorted(self.findings, key=lambda f: (f.kind, f.customer, f.day, f.key)):
            entry = asdict(finding)
            kind = entry.pop("kind")
            if kind != "different":
                entry.pop("fields")
            by_kind[kind].append(entry)
        return {
            "range": {"start": self.start, "end": self.end},
            "sample": self.sample,
            "result": "differences" if self.differs else "match",
            "totals": self.totals(),
            "customers": self.customers,
            "requests": self.requests,
            "throttled": self.throttled,
            "seconds": round(self.seconds, 3),
            "per_customer_day": self.cells,
            **by_kind,
        }

    def table(self, all_rows: bool) -> str:
        """Per customer and day: the count of each kind. Rows that only match are
        left out unless `all_rows`; a total line ends it."""
        columns = KINDS if self.totals()["resent"] else KINDS[:-1]
        header = ["customer", "day", *columns]
        rows = [
            [customer, day, *(str(counts.get(kind, 0)) for kind in columns)]
            for customer, days in sorted(self.cells.items())
            for day, counts in sorted(days.items())
            if all_rows or any(counts.get(kind) for kind in columns[1:])
        ]
        totals = self.totals()
        rows.append(["total", f"{len(rows)} rows shown", *(str(totals[k]) for k in columns)])
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines = [
            "  ".join(
                cell.ljust(width) if i < 2 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
            for row in [header, *rows]
        ]
        return "\n".join(lines)


def build_report(
    start: str,
    end: str,
    sample: float | None,
    results: t.Mapping[Customer, CustomerResult],
    ledger: Ledger,
) -> Report:
    """The report from every customer's result, `extra` keys resolved in the ledger."""
    report = Report(start, end, sample, customers=len(results))
    findings = [f for result in results.values() for f in result.findings]
    report.findings = resolve_extras(findings, ledger)
    for (customer_field, customer), result in results.items():
        days = report.cells.setdefault(f"{customer_field}:{customer}", {})
        for day, count in result.matched.items():
            days.setdefault(day, {})["matched"] = count
    for finding in report.findings:
        days = report.cells.setdefault(f"{finding.customer_field}:{finding.customer}", {})
        counts = days.setdefault(finding.day, {})
        counts[finding.kind] = counts.get(finding.kind, 0) + 1
    return report


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
    ) -> Report:
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


def resend_missing(report: Report, ledger: Ledger, poster: Poster, batch_size: int) -> int:
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
        body = b'{"events":[' + b",".join(rows[f.key].event.encode() for f in chunk) + b"]}"
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
