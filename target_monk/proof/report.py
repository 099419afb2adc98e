"""What reconcile found, for people and for programs: the progress bar, the table
per customer and day, the JSON report."""

from __future__ import annotations

import sys
import time
import typing as t
from dataclasses import asdict, dataclass, field

if t.TYPE_CHECKING:
    from target_monk.proof.ledger import Ledger
from target_monk.proof.compare import (
    DIFFERENCES,
    KINDS,
    Customer,
    CustomerResult,
    Finding,
    resolve_extras,
)


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
class ReconcileReport:
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
) -> ReconcileReport:
    """The report from every customer's result, `extra` keys resolved in the ledger."""
    report = ReconcileReport(start, end, sample, customers=len(results))
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
