"""The ledger's events against Monk's listing, per customer and UTC day: the kinds
of finding, which fields differ, samples and runs of days. Pure: no I/O."""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import typing as t
from dataclasses import dataclass, field

import msgspec

from target_monk.monk.fields import CUSTOMER_FIELDS, customer_field, day_of
from target_monk.monk.reads import COMPARED_FIELDS, KEY_FIELD

if t.TYPE_CHECKING:
    from target_monk.proof.ledger import Ledger, LedgerEvent

KINDS = ("matched", "pending", "missing", "different", "extra", "resent")
DIFFERENCES = ("missing", "different", "extra", "resent")
"""Kinds that make reconcile exit 1 (resent ones are proven by the next reconcile)."""
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
        day = day_of(sent["timestamp"])
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
        field = customer_field(event)
        day = day_of(event.get("timestamp", ""))
        result.findings.append(Finding("extra", key, field, str(event.get(field)), day))
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
        day = day_of(sent["timestamp"])
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
    listed = {k: v for k, v in sent.items() if k not in CUSTOMER_FIELDS}
    listed[extra.customer_field] = extra.customer
    if day_of(sent["timestamp"]) != extra.day:
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
