"""The run: the parts built from `Settings`, and the policy over them.

A plain class, free of singer-sdk: the target (`target.py`) hands it streams, runs of
records, STATE values, ticks, the end of input, failures and signals. It decides when
a batch is sent (full, holding back the newest STATE, older than the flush interval,
past the buffer cap, at the end), and how a run ends: finished, failed, or stopped by
a signal. It never exits the process: the target does.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import typing as t
import uuid
from pathlib import Path

import msgspec

from target_monk.encoding import encode_json
from target_monk.errors import DeadLettersWrittenError, InvalidRecordError
from target_monk.mapping.key_space import KeySpace
from target_monk.mapping.mapper import EventMapper
from target_monk.monk.dry_run import DryRunClient
from target_monk.proof.ledger import Ledger
from target_monk.run.buffers import StreamBuffer
from target_monk.run.delivery import Delivery
from target_monk.run.files import DeadLetters, JsonLinesFile
from target_monk.run.sender import Sender
from target_monk.run.state_lines import StateLines
from target_monk.run.summary import RunSummary

if t.TYPE_CHECKING:
    from target_monk.errors import TargetMonkError
    from target_monk.monk.events import Poster
    from target_monk.settings import Settings

logger = logging.getLogger("target-monk")

BOUND_CHECK_RECORDS = 1000
"""Buffers may pass max_buffered_events by at most this many records."""


class Run:
    """Owns client, sender, delivery, STATE lines, dead letters, key space and report."""

    def __init__(self, settings: Settings) -> None:
        """Build every part from `settings`; nothing is sent or written yet."""
        self.settings = settings
        self.report = RunSummary(keep_usage=settings.summary_path is not None)
        self.dead_letters = (
            DeadLetters(JsonLinesFile(settings.dead_letter_path), self.report)
            if settings.dead_letter
            else None
        )
        self.dry_run_bodies = JsonLinesFile(settings.dry_run_path) if settings.dry_run else None
        self.client: Poster = (
            DryRunClient(self.dry_run_bodies.write_encoded)
            if self.dry_run_bodies is not None
            else settings.monk_client()
        )
        self.state_lines = StateLines(write=not settings.dry_run)
        self.ledger = self._open_ledger(settings)
        sender = Sender(
            self.client,
            self.report,
            self.dead_letters,
            max_batch_bytes=settings.max_batch_bytes,
            progress_every=settings.progress_every_batches,
            ledger=self.ledger,
        )
        self.delivery: Delivery[StreamBuffer] = Delivery(
            sender, self.state_lines.write, max_in_flight=settings.max_in_flight
        )
        self.key_space = KeySpace(settings.stream_overrides)
        self.deleted = JsonLinesFile(settings.deleted_records_path)
        self._buffers: dict[str, StreamBuffer] = {}
        self._records_read: collections.Counter[str] = collections.Counter()
        self._unchecked_records = 0
        self._summary: dict[str, t.Any] | None = None
        self._failure: TargetMonkError | None = None
        self._reporting = False

    @staticmethod
    def _open_ledger(settings: Settings) -> Ledger | None:
        """The delivery ledger (none in a dry run: nothing is accepted), this run
        registered in it and rows past the retention forgotten.

        Raises:
            LedgerError: it cannot be opened.
        """
        if settings.ledger_location is None or settings.dry_run:
            return None
        ledger = Ledger(settings.ledger_location, run_id=uuid.uuid4().hex)
        pruned = ledger.prune(settings.ledger_retention_days)
        if pruned:
            logger.info(
                "Ledger: forgot %d events older than %d days",
                pruned,
                settings.ledger_retention_days,
            )
        logger.info("Ledger: %s (run %s)", ledger.location, ledger.run_id)
        return ledger

    # Input, from the reading thread.

    def open_stream(
        self, stream: str, key_properties: t.Sequence[str], schema: t.Mapping[str, t.Any]
    ) -> StreamBuffer:
        """A stream's SCHEMA: check that it can be keyed, and give it a new buffer. The
        events of a buffer it replaces (a repeated SCHEMA) are sent first, so a key's
        later version never waits behind its earlier one.

        Raises:
            ConfigError: the stream cannot be mapped with the settings.
        """
        mapper = EventMapper(stream, key_properties, self.settings.mapping_for(stream), schema)
        self.key_space.add(mapper)
        self.report.key_fields[stream] = frozenset(key_properties)
        replaced = self._buffers.get(stream)
        if replaced is not None:
            self.send(replaced)
        buffer = StreamBuffer(mapper, self.settings.batch_size_rows, self.invalid_record)
        self._buffers[stream] = buffer
        return buffer

    def add_records(self, buffer: StreamBuffer, records: list[dict[str, t.Any]]) -> None:
        """A run of one stream's records, from either path: each full batch is sent,
        and with it the partial batches that hold back the newest STATE (so checkpoints
        keep moving during long backfills); then buffers are kept within their cap."""
        self._records_read[buffer.stream] += len(records)
        now = dt.datetime.now(dt.UTC)
        if any(record.get("_sdc_deleted_at") is not None for record in records):
            records = self._set_aside_deleted(buffer, records, now)
        done = 0
        while done < len(records):
            before = len(buffer.events)
            done = buffer.add(records, done, now)
            if len(buffer.events) > before:
                self.delivery.add(buffer, len(buffer.events) - before)
            if buffer.full:
                self.send(buffer)
                self._send_batches_holding_back_state()
        self._bound_buffers(len(records))

    def _set_aside_deleted(
        self, buffer: StreamBuffer, records: list[dict[str, t.Any]], now: dt.datetime
    ) -> list[dict[str, t.Any]]:
        """The records of a run that are not deletes. A delete (`_sdc_deleted_at` set, by
        a log-based tap) is never usage: Monk keeps what it accepted for the row, and
        has no way to take it back. It is set aside with its key and, if the record
        carries the whole row, the event billed for it; or the run fails, if asked.

        Raises:
            InvalidRecordError: a delete, when on_deleted_record is fail.
        """
        kept = []
        mapper = buffer.mapper
        for record in records:
            deleted_at = record.get("_sdc_deleted_at")
            if deleted_at is None:
                kept.append(record)
                continue
            if self.settings.on_deleted_record == "fail":
                reason = (
                    f"the source row was deleted at {deleted_at}; Monk keeps the usage it "
                    "accepted for it. Set on_deleted_record: report to set deletes aside "
                    "and go on"
                )
                raise InvalidRecordError(
                    buffer.stream, mapper.record_key(record), "_sdc_deleted_at", reason
                )
            key: str | None = None
            event: dict[str, t.Any] | None = None
            with contextlib.suppress(InvalidRecordError):  # e.g. only the key columns
                key = mapper.idempotency_key(record)
                event = mapper.map(record, now)
            self.deleted.write(
                {"stream": buffer.stream, "key": key, "deleted_at": deleted_at, "event": event}
            )
            self.report.deleted(buffer.stream)
        return kept

    def invalid_record(self, error: InvalidRecordError, record: dict[str, t.Any]) -> None:
        """A record that cannot become an event: dead-lettered, or the run fails.

        Raises:
            InvalidRecordError: `error`, unless on_invalid_record is dead_letter.
        """
        if self.dead_letters is None:
            raise error
        self.dead_letters.invalid(error, record)

    def state_received(self, state: dict[str, t.Any]) -> None:
        """A STATE: written once every record before it is accepted."""
        self.delivery.state_received(state)

    def send(self, buffer: StreamBuffer) -> None:
        """Hand the buffer's events to delivery (returns once it has a slot)."""
        events = buffer.take()
        if events:
            self.delivery.submit(buffer, events, buffer.stream)

    def tick(self) -> None:
        """Called at least every second, also while the input is silent: fail at once
        if a batch failed; send partial batches older than flush_interval_seconds (and
        what holds back the newest STATE with them)."""
        self.delivery.raise_if_failed()
        old = self.delivery.holders_older_than(self.settings.flush_interval_seconds)
        for buffer in old:
            self.send(buffer)
        if old:
            self._send_batches_holding_back_state()

    def _send_batches_holding_back_state(self) -> None:
        for buffer in self.delivery.holders_blocking_states():
            self.send(buffer)

    def _bound_buffers(self, records_added: int) -> None:
        """Past max_buffered_events in all partial batches, send the largest. Checked
        every BOUND_CHECK_RECORDS records (summing every stream's buffer for each
        record would cost as much as mapping it when streams interleave)."""
        self._unchecked_records += records_added
        if self._unchecked_records < BOUND_CHECK_RECORDS:
            return
        self._unchecked_records = 0
        for buffer in self.delivery.largest_holders(above=self.settings.max_buffered_events):
            self.send(buffer)

    # Ending a run.

    def finish(self) -> None:
        """End of input: send every partial batch, wait for all, write the last STATE;
        log the summary, write the usage file, say what was dead-lettered.

        Raises:
            DeliveryFailedError: a batch failed.
            DeadLettersWrittenError: something was dead-lettered and fail_on_dead_letter is on.
        """
        for buffer in self._buffers.values():
            self.send(buffer)
        self.delivery.finish()
        self._close_files()
        summary = self.log_summary()
        if summary["deleted"]:
            logger.warning(
                "%d deleted source rows were set aside in %s and not sent: Monk keeps the "
                "usage it accepted for them and has no delete API; issue credits in Monk "
                "for what should not be billed (see the docs, 'Deletes and renames')",
                summary["deleted"],
                self.deleted.path,
            )
        if self.dry_run_bodies is not None:
            logger.warning(
                "Dry run: nothing was sent and no STATE was written; %d request bodies are in %s",
                self.dry_run_bodies.count,
                self.dry_run_bodies.path,
            )
        if self.settings.summary_path is not None:
            usage = encode_json({"run": summary, "usage": self.report.usage()})
            Path(self.settings.summary_path).write_bytes(msgspec.json.format(usage) + b"\n")
        if summary["dead_lettered"] and self.dead_letters is not None:
            logger.warning(
                "%d records or events were dead-lettered to %s (see the docs, "
                "'When things go wrong')",
                summary["dead_lettered"],
                self.dead_letters.file.path,
            )
            if self.settings.fail_on_dead_letter:
                msg = f"{summary['dead_lettered']} dead-lettered (fail_on_dead_letter is on)"
                raise DeadLettersWrittenError(msg)

    def log_summary(self) -> dict[str, t.Any]:
        """Log what the run did, per stream and as one JSON line (once); return it."""
        if self._summary is None:
            warnings = self.key_space.warnings()
            for buffer in self._buffers.values():
                warnings.extend(buffer.mapper.warnings())
            self._summary = self.report.log_summary(logger, self._records_read, warnings)
        return self._summary

    def fail(self, error: TargetMonkError) -> None:
        """The one way a run fails (the caller has stopped reading): retry nothing, let
        the batches already handed to delivery make at most one attempt each and wait
        for them (at most 2 x request_timeout_seconds + 5 s: max_in_flight being
        posted, then the one waiting for a sender), write no STATE from then on, log
        the summary of what Monk accepted, then one `target-monk failed:` line."""
        self._failure = error
        self.client.stop()
        self.delivery.wait_for_running(timeout=2 * self.settings.request_timeout_seconds + 5)
        self._report_failure()

    def _report_failure(self) -> None:
        """No STATE from now on, files closed, the summary, then the one `target-monk
        failed:` line. Once: from `fail`, or from a signal handler that interrupted
        `fail` before this began (both run in the reading thread)."""
        self._reporting = True
        self.state_lines.close()
        self._close_files()
        self.log_summary()
        logger.error("target-monk failed: %s", self._failure)

    def _close_files(self) -> None:
        self.deleted.close()
        if self.ledger is not None:
            self.ledger.close()
        if self.dead_letters is not None:
            self.dead_letters.file.close()
        if self.dry_run_bodies is not None:
            self.dry_run_bodies.close()

    def on_signal(self, signum: int, exit_now: t.Callable[[int], t.NoReturn]) -> None:
        """SIGTERM/SIGINT: stop at once; never let a STATE out past an unaccepted
        record, nor half a STATE line (see `StateLines`). `exit_now` ends the process
        with 0 if every record received was accepted, else 1. During `fail`, the
        failure's line is the one line and the exit 1: reported at once if `fail` was
        still waiting for batches, else left to finish."""

        def stop() -> t.NoReturn:
            delivered = self.delivery.halt()
            if self._failure is not None:  # failing: the failure's line is the one line
                self._report_failure()
                exit_now(1)
            logger.error(
                "Received signal %d: stopping. %s",
                signum,
                "Every record received was accepted by Monk."
                if delivered
                else "Some records were not yet accepted by Monk; no STATE past them "
                "was written, so the next run sends them again.",
            )
            exit_now(0 if delivered else 1)

        if self._reporting:  # a failed run is saying so, then exits 1: let it finish
            return
        if self.state_lines.stop_after_line(stop):
            return
        self.state_lines.close()
        stop()
