"""What a run did: per-stream totals, progress, the closing summary, the usage file, and
metrics in singer-sdk's `METRIC:` format."""

from __future__ import annotations

import decimal
import json
import logging
import os
import threading
import time
import typing as t
from dataclasses import asdict, dataclass, field

from target_monk.monk.fields import customer_field


@dataclass
class StreamTotals:
    """Counts for one stream."""

    records_read: int = 0
    events_accepted: int = 0
    dead_lettered: int = 0
    deleted: int = 0
    requests: int = 0
    """HTTP requests made, whatever their answer (or none)."""
    requests_accepted: int = 0
    retries: int = 0
    """Requests that repeated an earlier one of the same batch."""
    bytes: int = 0
    """Request bodies Monk accepted."""


@dataclass
class _CustomerUsage:
    events: int = 0
    sums: dict[str, t.Any] = field(default_factory=dict)


class RunSummary:
    """Thread-safe tallies of accepted and dead-lettered events.

    With `keep_usage`, it also sums, per customer and event name, the count of
    events and every property delivered as a number (but a stream's key properties),
    for reconciliation with Monk.
    """

    def __init__(self, keep_usage: bool = False) -> None:
        """Start the clock."""
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._streams: dict[str, StreamTotals] = {}
        self._keep_receipt = keep_usage
        self._usage: dict[tuple[str, str, str], _CustomerUsage] = {}
        self.key_fields: dict[str, frozenset[str]] = {}
        """Per stream, its key properties: never summed in the receipt."""

    def _totals(self, stream: str) -> StreamTotals:
        totals = self._streams.get(stream)
        if totals is None:
            totals = self._streams[stream] = StreamTotals()
        return totals

    def accepted(
        self, stream: str, events: list[dict[str, t.Any]], body_bytes: int, attempts: int
    ) -> int:
        """Count one accepted request; return the number of requests accepted so far."""
        with self._lock:
            totals = self._totals(stream)
            totals.events_accepted += len(events)
            totals.requests += attempts
            totals.requests_accepted += 1
            totals.retries += attempts - 1
            totals.bytes += body_bytes
            if self._keep_receipt:
                self._add_usage(events, self.key_fields.get(stream, frozenset()))
            return sum(s.requests_accepted for s in self._streams.values())

    def failed(self, stream: str, attempts: int) -> None:
        """Count the requests made for a batch (or part) Monk did not accept."""
        with self._lock:
            totals = self._totals(stream)
            totals.requests += attempts
            totals.retries += max(attempts - 1, 0)

    def deleted(self, stream: str) -> None:
        """Count a deleted source row set aside (never sent as usage)."""
        with self._lock:
            self._totals(stream).deleted += 1

    def dead_lettered(self, stream: str, count: int = 1) -> None:
        """Count records or events written to the dead-letter file."""
        with self._lock:
            self._totals(stream).dead_lettered += count

    def _add_usage(self, events: list[dict[str, t.Any]], key_fields: frozenset[str]) -> None:
        for event in events:
            id_kind = customer_field(event)
            usage = self._usage.get((id_kind, event[id_kind], event["eventName"]))
            if usage is None:
                usage = _CustomerUsage()
                self._usage[(id_kind, event[id_kind], event["eventName"])] = usage
            usage.events += 1
            for name, value in (event.get("properties") or {}).items():
                if name in key_fields or isinstance(value, bool):
                    continue
                if isinstance(value, (int, float, decimal.Decimal)):
                    usage.sums[name] = usage.sums.get(name, 0) + value

    def events_accepted(self) -> int:
        """Events accepted so far, all streams."""
        with self._lock:
            return sum(s.events_accepted for s in self._streams.values())

    def events_per_second(self) -> float:
        """Accepted events per second since the start."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return self.events_accepted() / elapsed

    def summary(self, records_read: t.Mapping[str, int]) -> dict[str, t.Any]:
        """Per-stream totals plus elapsed time and rate, as one JSON-able object."""
        elapsed = time.monotonic() - self.started
        with self._lock:
            for stream, count in records_read.items():
                self._totals(stream).records_read = count
            streams = {name: asdict(totals) for name, totals in sorted(self._streams.items())}
        accepted = sum(s["events_accepted"] for s in streams.values())
        for totals in streams.values():
            totals["events_per_second"] = round(totals["events_accepted"] / max(elapsed, 1e-9))
        return {
            "streams": streams,
            "records_read": sum(s["records_read"] for s in streams.values()),
            "events_accepted": accepted,
            "dead_lettered": sum(s["dead_lettered"] for s in streams.values()),
            "deleted": sum(s["deleted"] for s in streams.values()),
            "requests": sum(s["requests"] for s in streams.values()),
            "retries": sum(s["retries"] for s in streams.values()),
            "elapsed_seconds": round(elapsed, 3),
            "events_per_second": round(accepted / max(elapsed, 1e-9)),
        }

    def log_summary(
        self, logger: logging.Logger, records_read: t.Mapping[str, int], warnings: list[str]
    ) -> dict[str, t.Any]:
        """Log a line per stream, the warnings, and the whole summary as one JSON line
        (`target-monk summary: {...}`, for machines); return it."""
        summary = self.summary(records_read)
        summary["warnings"] = warnings
        for warning in warnings:
            logger.warning("%s", warning)
        for stream, totals in summary["streams"].items():
            logger.info(
                "Summary for stream '%s': %d records read, %d events accepted, "
                "%d dead-lettered, %d deleted rows set aside, %d requests (%d accepted, "
                "%d retries), %d bytes accepted, %.0f events/s",
                stream,
                totals["records_read"],
                totals["events_accepted"],
                totals["dead_lettered"],
                totals["deleted"],
                totals["requests"],
                totals["requests_accepted"],
                totals["retries"],
                totals["bytes"],
                totals["events_per_second"],
            )
        logger.info("target-monk summary: %s", json.dumps(summary, sort_keys=True))
        return summary

    def usage(self) -> list[dict[str, t.Any]]:
        """Per customer and event name: events and numeric property sums delivered."""
        with self._lock:
            return [
                {id_kind: customer, "eventName": name, "events": u.events, "sums": u.sums}
                for (id_kind, customer, name), u in sorted(self._usage.items())
            ]


METRICS = logging.getLogger("singer_sdk.metrics")
"""singer-sdk's metrics logger: its settings (`metrics_log_level`, ...) apply to
target-monk's metrics too."""


def log_metric(kind: str, metric: str, value: float, tags: dict[str, t.Any]) -> None:
    """One `METRIC: {...}` line, as singer-sdk writes its own (`kind`: timer or counter)."""
    if METRICS.isEnabledFor(logging.INFO):
        tags = {**tags, "pid": os.getpid()}
        point = {"type": kind, "metric": metric, "value": value, "tags": tags}
        METRICS.info("METRIC: %s", json.dumps(point, separators=(",", ":")))
