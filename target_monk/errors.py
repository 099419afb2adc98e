"""Every failure target-monk reports: one family, one base.

A `TargetMonkError` ends a run the one way (`Run.fail`: summary, then one
`target-monk failed:` line, exit 1, no STATE after). Any other exception is a bug in
target-monk and keeps its traceback. Imports nothing of target-monk, so every module
may raise these.
"""

from __future__ import annotations

import typing as t


class TargetMonkError(Exception):
    """A failure target-monk knows and reports in one line."""


class ConfigError(TargetMonkError):
    """Settings that cannot work: for the whole run, or for one stream's SCHEMA."""


class InputError(TargetMonkError):
    """The tap broke the Singer spec: a line that is not a message, a message without
    its fields or before its stream's SCHEMA, a BATCH file that cannot be read."""


class InvalidRecordError(TargetMonkError):
    """A record that cannot become a valid Monk event (dead-lettered if asked to)."""

    def __init__(self, stream: str, record_key: str, field: str, reason: str) -> None:
        """Name the stream, the record's key, the field and the reason."""
        self.stream = stream
        self.record_key = record_key
        self.field = field
        self.reason = reason
        super().__init__(
            f"Invalid record in stream '{stream}' (key {record_key}): field '{field}': {reason}"
        )


class DeadLettersWrittenError(TargetMonkError):
    """The run dead-lettered records and fail_on_dead_letter is on."""


class LedgerError(TargetMonkError):
    """The delivery ledger cannot be opened, written or read."""


class ReconcileError(TargetMonkError):
    """`reconcile` could not check: Monk's read API failed for good, or bad arguments."""


class DeliveryFailedError(TargetMonkError):
    """Raised in the reading thread once any batch has failed for good."""


class MonkError(TargetMonkError):
    """Delivery to Monk failed for good."""

    attempts = 0
    """HTTP requests made for the batch before it failed (set by the client)."""


class MonkAuthError(MonkError):
    """Monk refused the API key (401/403): stop at once."""


class MonkUnavailableError(MonkError):
    """Retries of a batch ran out on 429, 5xx, timeouts or connection errors."""


class MonkAnswerError(MonkError):
    """An answer that is not Monk accepting exactly the events sent: a 2xx with another
    body or count, or a redirect. Never retried, never taken as acceptance."""


class MonkRejectedError(MonkError):
    """Monk rejected a batch as a whole (400/413/422): never retried as is; with
    dead-lettering on, the batch is split to find the events Monk refuses."""

    def __init__(self, what: str, status: int, error: dict[str, t.Any]) -> None:
        """Keep Monk's error envelope for the caller."""
        self.status = status
        self.code = str(error.get("code", ""))
        self.message = str(error.get("message", ""))
        self.request_id = str(error.get("requestId", ""))
        self.error = error
        super().__init__(
            f"Monk rejected {what}: HTTP {status} {self.code}: {self.message} "
            f"(requestId {self.request_id or 'none'})"
        )

    @property
    def field(self) -> str | None:
        """The field Monk names in the first of its error details, if any."""
        details = self.error.get("details") or [{}]
        first = details[0] if isinstance(details[0], dict) else {}
        return first.get("field")
