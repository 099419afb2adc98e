"""The delivery ledger: one row per idempotency key Monk accepted, last write wins (as in
Monk), with the event exactly as sent, the requestId that carried it, when, and in
which run. An SQLite file (the default, WAL mode) or PostgreSQL (a URL: sharded runs
and clusters write one ledger concurrently).

Two steps keep it off the hot path. A sender thread writes each request's body, as
sent, once Monk has accepted it and before the batch counts as accepted: one row per
request, the bytes already encoded (no STATE is written past an event the ledger
lacks, and an event Monk did not accept never has a row: a crash mid-write rolls the
transaction back). `materialize` (run by reconcile) later splits the bodies into one
row per key, the latest version winning, and forgets the bodies. Knows nothing of
Singer, nor of HTTP.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import typing as t
import urllib.parse
from dataclasses import dataclass

import msgspec

from target_monk.errors import LedgerError
from target_monk.monk.fields import customer_field, day_of

EVENTS_TABLE = "target_monk_ledger"
REQUESTS_TABLE = "target_monk_ledger_requests"
RUNS_TABLE = "target_monk_ledger_runs"

_COLUMNS = (
    "idempotency_key",
    "customer_field",
    "customer",
    "event_name",
    "event_time",
    "day",
    "event",
    "stream",
    "request_id",
    "accepted_at",
    "run_id",
    "seq",
)


def _schema(*, postgres: bool) -> tuple[str, ...]:
    """The ledger's tables (created if missing)."""
    # Sequence numbers never reused (SQLite's AUTOINCREMENT): they order a key's versions.
    serial, blob = (
        ("BIGSERIAL PRIMARY KEY", "BYTEA")
        if postgres
        else ("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB")
    )
    requests = f"""CREATE TABLE IF NOT EXISTS {REQUESTS_TABLE} (
        seq {serial},
        request_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        stream TEXT NOT NULL,
        accepted_at TEXT NOT NULL,
        events BIGINT NOT NULL,
        body {blob} NOT NULL)"""
    events = _EVENTS.format("" if postgres else " WITHOUT ROWID")  # no second copy of keys
    return (requests, events, *_SCHEMA)


_EVENTS = f"""CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (
        idempotency_key TEXT PRIMARY KEY,
        customer_field TEXT NOT NULL,
        customer TEXT NOT NULL,
        event_name TEXT NOT NULL,
        event_time TEXT NOT NULL,
        day TEXT NOT NULL,
        event TEXT NOT NULL,
        stream TEXT NOT NULL,
        request_id TEXT NOT NULL,
        accepted_at TEXT NOT NULL,
        run_id TEXT NOT NULL,
        seq BIGINT NOT NULL){{}}"""
_SCHEMA = (
    f"CREATE INDEX IF NOT EXISTS {EVENTS_TABLE}_customer_day ON {EVENTS_TABLE} (customer, day)",
    f"CREATE INDEX IF NOT EXISTS {EVENTS_TABLE}_day ON {EVENTS_TABLE} (day)",
    f"""CREATE TABLE IF NOT EXISTS {RUNS_TABLE} (
        run_id TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        first_day TEXT,
        last_day TEXT,
        events BIGINT NOT NULL DEFAULT 0)""",
)
_UPSERT = (
    f"INSERT INTO {EVENTS_TABLE} ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)}) "
    "ON CONFLICT (idempotency_key) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS[1:])
    + f" WHERE excluded.seq > {EVENTS_TABLE}.seq"
)
"""A key's row is replaced by a later request's version only (last write wins)."""


class _Body(msgspec.Struct):
    """A request body, each event kept as the very bytes sent."""

    events: list[msgspec.Raw]


def utc_now_text(ago: dt.timedelta = dt.timedelta(0)) -> str:
    """Now (or `ago` before now), as the ledger writes instants: ISO 8601 UTC with
    microseconds, 'Z'. Texts of this one form sort as the instants do."""
    return (dt.datetime.now(dt.UTC) - ago).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LedgerEvent:
    """One ledger row, as reconcile reads it."""

    key: str
    customer_field: str
    customer: str
    event: str
    """The event's JSON, byte for byte as sent."""
    accepted_at: str
    request_id: str


def describe(location: str) -> str:
    """The ledger's location for messages: a URL without its password."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme.startswith("postgres") and parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return location


class Ledger:
    """One connection to the ledger, shared by the sender threads (under a lock)."""

    def __init__(self, location: str, run_id: str | None = None) -> None:
        """Open (and create) the ledger at `location`: a file path, or a
        `postgresql://` URL. With `run_id`, this run is registered in it.

        Raises:
            LedgerError: it cannot be opened or created.
        """
        self.location = describe(location)
        self.run_id = run_id
        self._lock = threading.Lock()
        self._postgres = urllib.parse.urlsplit(location).scheme.startswith("postgres")
        try:
            self._connection = self._connect(location)
            with self._transaction() as cursor:
                if self._postgres:  # concurrent CREATE ... IF NOT EXISTS can collide
                    cursor.execute("SELECT pg_advisory_xact_lock(7310428)")
                for statement in _schema(postgres=self._postgres):
                    cursor.execute(statement)
                if run_id is not None:
                    cursor.execute(
                        self._sql(f"INSERT INTO {RUNS_TABLE} (run_id, started_at) VALUES (?, ?)"),
                        (run_id, utc_now_text()),
                    )
        except LedgerError:
            raise
        except Exception as exc:  # sqlite3.Error, psycopg.Error, OSError
            msg = f"Cannot open the ledger at {self.location}: {_reason(exc)}"
            raise LedgerError(msg) from None

    def _connect(self, location: str) -> t.Any:
        if self._postgres:
            try:
                import psycopg
            except ImportError:
                msg = (
                    "A PostgreSQL ledger needs psycopg: pip install 'target-monk[postgres]' "
                    "(or add it to the plugin's pip_url)"
                )
                raise LedgerError(msg) from None
            return psycopg.connect(location, autocommit=False)
        connection = sqlite3.connect(location, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA busy_timeout=30000")
        return connection

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self._postgres else statement

    def _transaction(self) -> t.ContextManager[t.Any]:
        return _Transaction(self._connection, postgres=self._postgres)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    # Writing (sender threads): one row per accepted request.

    def record(self, stream: str, body: bytes, count: int, request_id: str) -> None:
        """Monk accepted the request `body` of `count` events: keep it, in one
        transaction with this run's count.

        Raises:
            LedgerError: it could not be written (the run fails; no STATE after).
        """
        try:
            with self._lock, self._transaction() as cursor:
                cursor.execute(
                    self._sql(
                        f"INSERT INTO {REQUESTS_TABLE} (request_id, run_id, stream, "
                        "accepted_at, events, body) VALUES (?, ?, ?, ?, ?, ?)"
                    ),
                    (request_id, self.run_id or "", stream, utc_now_text(), count, body),
                )
                cursor.execute(
                    self._sql(f"UPDATE {RUNS_TABLE} SET events = events + ? WHERE run_id = ?"),
                    (count, self.run_id or ""),
                )
        except Exception as exc:  # sqlite3.Error, psycopg.Error
            msg = (
                f"Monk accepted {count} events of stream '{stream}' (requestId "
                f"{request_id}) but the ledger at {self.location} could not record them: "
                f"{_reason(exc)}. No STATE past them is written: the next run sends them "
                "again (same keys: harmless)"
            )
            raise LedgerError(msg) from None

    # One row per key (reconcile, before reading).

    def materialize(self, chunk: int = 20) -> int:
        """Split the recorded request bodies into one row per key, in the order Monk
        accepted them (a later version of a key replaces an earlier one), note each
        run's first and last event day, and forget the bodies. Return how many events.

        Raises:
            LedgerError: a recorded body is not a batch of events.
        """
        done = 0
        while True:
            with self._lock, self._transaction() as cursor:
                cursor.execute(
                    self._sql(
                        "SELECT seq, request_id, run_id, stream, accepted_at, body FROM "
                        f"{REQUESTS_TABLE} ORDER BY seq LIMIT ?"
                    ),
                    (chunk,),
                )
                requests = cursor.fetchall()
                if not requests:
                    break

                rows, days = _rows_of(requests)
                cursor.executemany(self._sql(_UPSERT), rows)
                for run_id, (first, last) in days.items():
                    cursor.execute(
                        self._sql(
                            f"UPDATE {RUNS_TABLE} SET first_day = CASE WHEN first_day IS NULL "
                            "OR first_day > ? THEN ? ELSE first_day END, last_day = CASE WHEN "
                            "last_day IS NULL OR last_day < ? THEN ? ELSE last_day END "
                            "WHERE run_id = ?"
                        ),
                        (first, first, last, last, run_id),
                    )
                cursor.executemany(
                    self._sql(f"DELETE FROM {REQUESTS_TABLE} WHERE seq = ?"),
                    [(request[0],) for request in requests],
                )
                done += len(rows)
        if done and not self._postgres:  # fold the write-ahead log back into the file
            with self._lock:
                self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return done

    def resent(self, keys: list[str], request_id: str) -> None:
        """These keys' events, resent as they are, were accepted again."""
        with self._lock, self._transaction() as cursor:
            cursor.executemany(
                self._sql(
                    f"UPDATE {EVENTS_TABLE} SET accepted_at = ?, request_id = ? "
                    "WHERE idempotency_key = ?"
                ),
                [(utc_now_text(), request_id, key) for key in keys],
            )

    def prune(self, retention_days: int, today: dt.date | None = None) -> int:
        """Forget events whose day is more than `retention_days` before today (and
        bodies recorded that long ago, if never materialized); return how many."""
        cutoff = (today or dt.datetime.now(dt.UTC).date()) - dt.timedelta(days=retention_days)
        with self._lock, self._transaction() as cursor:
            cursor.execute(
                self._sql(f"DELETE FROM {EVENTS_TABLE} WHERE day < ?"), (cutoff.isoformat(),)
            )
            forgotten = int(cursor.rowcount)
            cursor.execute(
                self._sql(f"DELETE FROM {REQUESTS_TABLE} WHERE accepted_at < ?"),
                (cutoff.isoformat(),),
            )
            return forgotten

    # Reading (reconcile, after `materialize`).

    def days_of_runs_since(self, since: str) -> tuple[str, str] | None:
        """The first and last event day delivered by the runs started at `since` (an
        instant text) or later, or else by the last run that delivered any."""
        with self._lock, self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    f"SELECT MIN(first_day), MAX(last_day) FROM {RUNS_TABLE} WHERE events > 0 "
                    f"AND (started_at >= ? OR started_at = (SELECT MAX(started_at) FROM "
                    f"{RUNS_TABLE} WHERE events > 0))"
                ),
                (since,),
            )
            first, last = cursor.fetchone()
        return (str(first), str(last)) if first else None

    def customers(self, start: str, end: str) -> list[tuple[str, str]]:
        """(customer field, customer) of every customer with events on days
        `start` <= day < `end` (ISO dates), sorted."""
        with self._lock, self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    f"SELECT DISTINCT customer_field, customer FROM {EVENTS_TABLE} "
                    "WHERE day >= ? AND day < ? ORDER BY customer_field, customer"
                ),
                (start, end),
            )
            return [(str(field), str(customer)) for field, customer in cursor.fetchall()]

    def events(self, field: str, customer: str, start: str, end: str) -> list[LedgerEvent]:
        """A customer's events on days `start` <= day < `end`."""
        with self._lock, self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "SELECT idempotency_key, customer_field, customer, event, accepted_at, "
                    f"request_id FROM {EVENTS_TABLE} WHERE customer = ? AND customer_field = ? "
                    "AND day >= ? AND day < ?"
                ),
                (customer, field, start, end),
            )
            return [LedgerEvent(*map(str, row)) for row in cursor.fetchall()]

    def day_counts(self, field: str, customer: str, start: str, end: str) -> dict[str, int]:
        """How many events a customer has per day, `start` <= day < `end`."""
        with self._lock, self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    f"SELECT day, COUNT(*) FROM {EVENTS_TABLE} WHERE customer = ? AND "
                    "customer_field = ? AND day >= ? AND day < ? GROUP BY day"
                ),
                (customer, field, start, end),
            )
            return {str(day): int(count) for day, count in cursor.fetchall()}

    def events_by_key(self, keys: t.Iterable[str]) -> dict[str, LedgerEvent]:
        """The ledger's rows for these keys (those it has)."""
        found: dict[str, LedgerEvent] = {}
        wanted = list(keys)
        with self._lock, self._transaction() as cursor:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                cursor.execute(
                    self._sql(
                        "SELECT idempotency_key, customer_field, customer, event, accepted_at, "
                        f"request_id FROM {EVENTS_TABLE} WHERE idempotency_key IN "
                        f"({', '.join('?' for _ in chunk)})"
                    ),
                    chunk,
                )
                for row in cursor.fetchall():
                    found[str(row[0])] = LedgerEvent(*map(str, row))
        return found


class _Transaction:
    """BEGIN ... COMMIT on a cursor (ROLLBACK on an exception), for either database."""

    def __init__(self, connection: t.Any, *, postgres: bool) -> None:
        self.connection = connection
        self.postgres = postgres

    def __enter__(self) -> t.Any:
        if self.connection is None:
            msg = "the ledger is closed"
            raise LedgerError(msg)
        self.cursor = self.connection.cursor()
        if not self.postgres:
            self.cursor.execute("BEGIN IMMEDIATE")
        return self.cursor

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.connection.commit() if self.postgres else self.cursor.execute("COMMIT")
        elif self.postgres:
            self.connection.rollback()
        else:
            self.cursor.execute("ROLLBACK")
        self.cursor.close()


def _rows_of(
    requests: list[tuple[t.Any, ...]],
) -> tuple[list[tuple[t.Any, ...]], dict[str, tuple[str, str]]]:
    """One row per event of the recorded requests (in their order), and each run's
    first and last event day among them.

    Raises:
        LedgerError: a body that is not a batch of events.
    """
    rows = []
    days: dict[str, tuple[str, str]] = {}
    for seq, request_id, run_id, stream, accepted_at, body in requests:
        try:
            raws = msgspec.json.decode(bytes(body), type=_Body).events
        except msgspec.ValidationError as exc:
            msg = f"request {request_id} in the ledger is not a batch of events: {exc}"
            raise LedgerError(msg) from None
        for raw in raws:
            text = bytes(raw).decode()
            event = msgspec.json.decode(text)
            field = customer_field(event)
            timestamp = event["timestamp"]
            day = day_of(timestamp)
            rows.append(
                (
                    event["idempotencyKey"],
                    field,
                    event[field],
                    event["eventName"],
                    timestamp,
                    day,
                    text,
                    stream,
                    request_id,
                    accepted_at,
                    run_id,
                    seq,
                )
            )
            first, last = days.get(run_id, (day, day))
            days[run_id] = (min(first, day), max(last, day))
    return rows, days


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
