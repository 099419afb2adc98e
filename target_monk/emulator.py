"""A local Monk events API for tests and demos: strict, scriptable, on 127.0.0.1.

Models `POST /v1/events/batch` as Monk documents it: Bearer auth, whole-batch
rejection with the error envelope, the 10,000-event cap, exactly one customer
id, primitive-only properties, the 1-hour-future rule, and last-write-wins
idempotency on `idempotencyKey` (required here, stricter than Monk: target-monk
always sends one). Any request can be scripted (status,
Retry-After, delay, a gate the test opens, dropped connection, an answer cut off after
its headers, events stored and the connection then dropped, a raw answer or redirect);
every request is recorded.

Also serves the read API reconcile uses, in the shape target-monk assumes
(`target_monk.monk.reads`): `GET /v1/events` filtered by customer and timestamp,
paginated with a cursor, events visible only `settle_seconds` after they were stored,
limited to `read_limit` requests per window (429 with Retry-After past it), and
scriptable (`read_faults`: a Rule per coming read request: status, Retry-After, gate,
delay, drop, raw body).

Standalone: `python -m target_monk.emulator --port 8787 --api-key mk_test_...`
serves until interrupted. Control endpoints: `GET /_emulator/events`,
`/_emulator/requests`, `/_emulator/stats`; `POST /_emulator/reset`, and
`POST /_emulator/fail_from` with `{"request": n, "rule": {"status": 503}}` (or
`{"delay": 0.25}`, ...) to script every request from the n-th on, and
`POST /_emulator/fail_every` with `{"every": n, "rule": {...}}` for every n-th request;
`POST /_emulator/delete` with `{"keys": [...]}` forgets events (as if Monk lost them),
`POST /_emulator/reads` with `{"settle_seconds": s, "limit": n, "window": s}` sets the
read API's behaviour, and `GET /_emulator/reads` lists when each read request came.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import hashlib
import itertools
import json
import math
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec

MAX_EVENTS = 10_000
MAX_BODY_BYTES = 20 * 1024 * 1024  # assumed: Monk publishes no byte limit
PRIMITIVE_TYPES = frozenset({str, int, float, bool})
EVENT_FIELDS = frozenset(
    {
        "customerId",
        "externalCustomerId",
        "eventName",
        "timestamp",
        "idempotencyKey",
        "properties",
        "contractId",
    }
)


@dataclass
class Rule:
    """What to do with one scripted request instead of (or before) the usual."""

    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    """Seconds to wait before handling the request (it is stored only after)."""
    latency: float = 0.0
    """Seconds to wait after handling it, before answering (like the network's way back)."""
    drop: bool = False
    code: str = "SCRIPTED"
    body: str | None = None
    """Answer with this raw body (and `status`, default 200) instead of Monk's."""
    location: str | None = None
    """A Location header (for scripted redirects)."""
    gate: str | None = None
    """Hold the request until the test opens this gate (`emulator.gate(name).set()`)."""
    cut: bool = False
    """Handle the request as usual (accepted events are stored), then send the answer's
    headers and half its body and close the connection: the answer is cut off."""
    accept_then_drop: bool = False
    """Handle the request as usual (accepted events are stored), then close the
    connection without answering."""


@dataclass
class RequestRecord:
    """One POST to the batch endpoint, as the emulator saw and answered it."""

    number: int
    received_at: float
    status: int = 0
    count: int = 0
    keys: list[str] = field(default_factory=list)
    body_bytes: int = 0
    accepted_at: float = 0.0
    """When it was stored and answered 202 (0: it was not)."""
    dropped: bool = False


class MonkEmulator:
    """The emulator's state plus an HTTP server thread."""

    def __init__(
        self,
        api_key: str = "mk_test_" + "0" * 48,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        """Create (not start) an emulator that accepts `api_key`."""
        self.api_keys = {api_key}
        self.read_only_keys: set[str] = set()
        self.unknown_customers: set[str] = set()
        self.max_body_bytes = max_body_bytes
        self.script: dict[int, Rule] = {}
        self.script_by_key: dict[str, Rule] = {}
        self.fail_from: tuple[int, Rule] | None = None
        self.fail_every: list[tuple[int, Rule]] = []
        """(n, rule): every n-th request is handled by the rule (the first match wins)."""
        self.events: dict[str, dict[str, Any]] = {}
        self.stored_at: dict[str, float] = {}
        self.settle_seconds = 0.0
        """Events are listed by the read API only this long after they were stored."""
        self.read_limit: tuple[int, float] = (100, 60.0)
        """Read requests allowed per window of seconds (Monk: 100 a minute per IP)."""
        self.read_times: list[float] = []
        """When each read request arrived (limited or not)."""
        self.read_faults: collections.deque[Rule] = collections.deque()
        """Rules for the coming read requests, one each (status, retry_after, delay, drop)."""
        self.writes: collections.Counter[str] = collections.Counter()
        self.requests: list[RequestRecord] = []
        self.gates: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._server = _QuietServer((host, port), _handler_for(self))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL to use as the target's api_url."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> MonkEmulator:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Open every gate, stop serving."""
        self._open_gates()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MonkEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _open_gates(self) -> None:
        with self.lock:
            for gate in self.gates.values():
                gate.set()
            self.gates.clear()

    def reset(self) -> None:
        """Forget events, requests and scripts; open every gate."""
        self._open_gates()
        with self.lock:
            self.events.clear()
            self.stored_at.clear()
            self.read_times.clear()
            self.read_faults.clear()
            self.writes.clear()
            self.requests.clear()
            self.script.clear()
            self.script_by_key.clear()
            self.fail_from = None
            self.fail_every.clear()

    def gate(self, name: str) -> threading.Event:
        """The gate a `Rule(gate=name)` request waits at (at most 60 s): `.set()` opens it."""
        with self.lock:
            return self.gates.setdefault(name, threading.Event())

    def accepted_requests(self) -> list[RequestRecord]:
        """Requests answered 202, in the order they were accepted."""
        with self.lock:
            done = [r for r in self.requests if r.status == 202]
        return sorted(done, key=lambda r: r.accepted_at)

    def held_keys(self) -> set[str]:
        """Idempotency keys held."""
        with self.lock:
            return set(self.events)

    def delete(self, keys: list[str]) -> None:
        """Forget these events, as if Monk had lost them."""
        with self.lock:
            for key in keys:
                self.events.pop(key, None)
                self.stored_at.pop(key, None)

    def max_reads_in_window(self) -> int:
        """The most read requests that arrived within any one `read_limit` window."""
        window = self.read_limit[1]
        with self.lock:
            times = sorted(self.read_times)
        most, first = 0, 0
        for last, moment in enumerate(times):
            while moment - times[first] >= window:
                first += 1
            most = max(most, last - first + 1)
        return most

    # Request handling.

    def _rule_for(self, number: int, body: bytes) -> Rule | None:
        if number in self.script:
            return self.script[number]
        for key in list(self.script_by_key):
            if f'"idempotencyKey":"{key}"'.encode() in body.replace(b" ", b""):
                return self.script_by_key.pop(key)
        if self.fail_from and number >= self.fail_from[0]:
            return self.fail_from[1]
        return next((rule for every, rule in self.fail_every if number % every == 0), None)

    def handle_batch(
        self, auth: str | None, body: bytes, record: RequestRecord
    ) -> tuple[int, dict, dict]:
        """Answer one batch request: (status, JSON body, extra headers); note it in `record`."""
        request_id = f"req_{uuid.uuid4().hex[:16]}"
        key = auth[7:] if auth and auth.startswith("Bearer ") else None
        if key is None or key not in self.api_keys | self.read_only_keys:
            return _error(401, "UNAUTHORIZED", "Missing or invalid API key", request_id)
        if key in self.read_only_keys:
            return _error(403, "FORBIDDEN", "API key lacks the usage:write scope", request_id)
        if len(body) > self.max_body_bytes:
            return _error(413, "PAYLOAD_TOO_LARGE", "Request body too large", request_id)
        try:
            payload = msgspec.json.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return _error(400, "INVALID_JSON", "Body is not valid JSON", request_id)
        events = payload.get("events") if isinstance(payload, dict) else None
        if not isinstance(events, list):
            return _error(400, "INVALID_REQUEST", 'Body must be {"events": [...]}', request_id)
        if not events:
            return _error(400, "INVALID_REQUEST", "events must not be empty", request_id)
        if len(events) > MAX_EVENTS:
            return _error(
                413, "BATCH_TOO_LARGE", f"At most {MAX_EVENTS} events per request", request_id
            )
        latest = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=1)
        details = []
        for index, event in enumerate(events):
            problem = validate_event(event, latest)
            if problem is None and isinstance(event, dict):
                customer = event.get("externalCustomerId") or event.get("customerId")
                if customer in self.unknown_customers:
                    problem = ("externalCustomerId", f"unknown customer {customer!r}")
            if problem:
                details.append({"index": index, "field": problem[0], "reason": problem[1]})
        if details:
            first = details[0]
            message = (
                f"{len(details)} invalid event(s); event {first['index']}: "
                f"{first['field']}: {first['reason']}"
            )
            status, answer, headers = _error(422, "VALIDATION_ERROR", message, request_id)
            answer["error"]["details"] = details[:100]
            return status, answer, headers
        keys = [event["idempotencyKey"] for event in events]
        stored_at = time.time()
        with self.lock:
            self.events.update(zip(keys, events, strict=True))
            self.stored_at.update(dict.fromkeys(keys, stored_at))
            self.writes.update(keys)
            record.count, record.keys, record.accepted_at = len(events), keys, time.time()
        body_ = {"status": "accepted", "count": len(events), "requestId": request_id}
        return 202, body_, {}

    def list_events(self, auth: str | None, query: dict[str, list[str]]) -> tuple[int, dict, dict]:
        """Answer `GET /v1/events` in the assumed shape (see `target_monk.monk.reads`)."""
        request_id = f"req_{uuid.uuid4().hex[:16]}"
        now = time.time()
        with self.lock:
            self.read_times.append(now)
            limit, window = self.read_limit
            recent = [moment for moment in self.read_times[:-1] if now - moment < window]
            if len(recent) >= limit:
                self.read_times.pop()  # refused: not counted as a request served
                wait = math.ceil(recent[len(recent) - limit] + window - now)
                status, answer, _ = _error(429, "RATE_LIMITED", "Too many requests", request_id)
                return status, answer, {"Retry-After": str(max(1, wait))}
        key = auth[7:] if auth and auth.startswith("Bearer ") else None
        if key is None or key not in self.api_keys | self.read_only_keys:
            return _error(401, "UNAUTHORIZED", "Missing or invalid API key", request_id)
        args = {name: values[-1] for name, values in query.items()}
        fields = [name for name in ("customerId", "externalCustomerId") if name in args]
        if len(fields) != 1 or "start" not in args or "end" not in args:
            message = "exactly one of customerId and externalCustomerId, and start and end"
            return _error(400, "INVALID_REQUEST", message, request_id)
        try:
            start, end = _instant(args["start"]), _instant(args["end"])
            size = int(args.get("limit", "100"))
            offset = int(args.get("cursor", "c0")[1:])
        except ValueError:
            return _error(400, "INVALID_REQUEST", "bad start, end, limit or cursor", request_id)
        if not 1 <= size <= 1000:
            return _error(400, "INVALID_REQUEST", "limit must be 1 to 1000", request_id)
        field_, customer = fields[0], args[fields[0]]
        with self.lock:
            visible = [
                (event["timestamp"], key)
                for key, event in self.events.items()
                if event.get(field_) == customer
                and start <= _instant(event["timestamp"]) < end
                and now >= self.stored_at[key] + self.settle_seconds
            ]
            visible.sort()
            page = [
                {
                    **self.events[key],
                    "id": "evt_" + hashlib.sha256(key.encode()).hexdigest()[:20],
                    "receivedAt": dt.datetime.fromtimestamp(self.stored_at[key], dt.UTC)
                    .isoformat()
                    .replace("+00:00", "Z"),
                }
                for _, key in visible[offset : offset + size]
            ]
        more = offset + size < len(visible)
        answer = {
            "data": page,
            "hasMore": more,
            "nextCursor": f"c{offset + size}" if more else None,
        }
        return 200, answer, {}


def _instant(text: str) -> dt.datetime:
    """A date or an ISO 8601 UTC instant, as a naive UTC datetime."""
    return dt.datetime.fromisoformat(text.removesuffix("Z")).replace(tzinfo=None)


def validate_event(event: object, latest: dt.datetime) -> tuple[str, str] | None:
    """Monk's rules for one event: (field, reason) of the first broken one, or None.

    `latest` is the latest acceptable timestamp (now + 1 hour), naive UTC. The common
    case is checked with set operations first: the emulator must keep up in benchmarks.
    """
    if type(event) is not dict:
        return ("event", "must be an object")
    if not EVENT_FIELDS.issuperset(event):
        return (next(name for name in event if name not in EVENT_FIELDS), "unknown field")
    customer_id = event.get("customerId")
    if ("customerId" in event) == ("externalCustomerId" in event):
        return ("customerId", "exactly one of customerId and externalCustomerId is required")
    if customer_id is not None or "customerId" in event:
        if not _is_uuid(customer_id):
            return ("customerId", "must be a customer UUID")
    elif not _non_empty_string(event["externalCustomerId"]):
        return ("externalCustomerId", "must be a non-empty string")
    if not _non_empty_string(event.get("eventName")):
        return ("eventName", "must be a non-empty string")
    if "timestamp" in event:
        problem = _timestamp_problem(event["timestamp"], latest)
        if problem:
            return ("timestamp", problem)
    if not _non_empty_string(event.get("idempotencyKey")):
        # Stricter than Monk (where it is optional): target-monk must always send one.
        return ("idempotencyKey", "required, a non-empty string")
    if "contractId" in event and not _is_uuid(event["contractId"]):
        return ("contractId", "must be a contract UUID")
    if "properties" in event:
        properties = event["properties"]
        if type(properties) is not dict:
            return ("properties", "must be an object")
        if not PRIMITIVE_TYPES.issuperset(map(type, properties.values())):
            name = next(k for k, v in properties.items() if type(v) not in PRIMITIVE_TYPES)
            return (f"properties.{name}", "values must be strings, numbers or booleans")
    return None


def _non_empty_string(value: object) -> bool:
    return type(value) is str and bool(value) and not value.isspace()


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _timestamp_problem(value: object, latest: dt.datetime) -> str | None:
    if type(value) is not str or not value.endswith("Z"):
        return "must be an ISO 8601 UTC string ending in Z"
    try:
        moment = dt.datetime.fromisoformat(value[:-1])
    except ValueError:
        return "is not ISO 8601"
    if moment.tzinfo is not None:
        return "must be an ISO 8601 UTC string ending in Z"
    if moment > latest:
        return "is more than 1 hour in the future"
    return None


def _scripted(rule: Rule) -> tuple[int, dict, dict]:
    """A rule's error answer: its status and code, with its Retry-After if any."""
    headers = {"Retry-After": rule.retry_after} if rule.retry_after else {}
    status, answer, _ = _error(rule.status or 500, rule.code, "scripted", "req_scripted")
    return status, answer, headers


def _error(status: int, code: str, message: str, request_id: str) -> tuple[int, dict, dict]:
    return status, {"error": {"code": code, "message": message, "requestId": request_id}}, {}


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up mid-request (killed targets, timeouts) are not errors here."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(emulator: MonkEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall per response

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def _reply(self, status: int, answer: object, headers: dict | None = None) -> None:
            self._reply_raw(status, json.dumps(answer), headers, "application/json")

        def _reply_raw(
            self,
            status: int,
            text: str,
            headers: dict | None = None,
            content_type: str = "text/html",
        ) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _hold(self, rule: Rule | None) -> None:
            """A rule's gate (opened by the test), then its delay, before handling."""
            if rule and rule.gate:
                emulator.gate(rule.gate).wait(60)
            if rule and rule.delay:
                time.sleep(rule.delay)

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            if parts.path == "/v1/events":
                rule = emulator.read_faults.popleft() if emulator.read_faults else None
                self._hold(rule)
                if rule and rule.drop:
                    self.close_connection = True
                    return
                if rule and rule.body is not None:
                    self._reply_raw(rule.status or 200, rule.body, None, "application/json")
                    return
                if rule and rule.status:
                    status, answer, headers = _scripted(rule)
                else:
                    query = urllib.parse.parse_qs(parts.query)
                    status, answer, headers = emulator.list_events(
                        self.headers.get("Authorization"), query
                    )
                self._reply(status, answer, headers)
            elif self.path.startswith("/_emulator/reads"):
                with emulator.lock:
                    self._reply(200, list(emulator.read_times))
            elif self.path.startswith("/_emulator/events"):
                with emulator.lock:
                    self._reply(200, list(emulator.events.values()))
            elif self.path.startswith("/_emulator/requests"):
                with emulator.lock:
                    self._reply(200, [asdict(r) for r in emulator.requests])
            elif self.path.startswith("/_emulator/stats"):
                with emulator.lock:
                    writes = sum(emulator.writes.values())
                    self._reply(200, {"events": len(emulator.events), "writes": writes})
            else:
                self._reply(404, {"error": {"code": "NOT_FOUND", "message": self.path}})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/_emulator/reset":
                emulator.reset()
                self._reply(200, {"ok": True})
                return
            if self.path == "/_emulator/fail_from":  # {"request": n, "rule": {Rule fields}}
                script = json.loads(body)
                emulator.fail_from = (int(script["request"]), Rule(**script["rule"]))
                self._reply(200, {"ok": True})
                return
            if self.path == "/_emulator/delete":  # {"keys": [...]}
                emulator.delete(list(json.loads(body)["keys"]))
                self._reply(200, {"ok": True})
                return
            if self.path == "/_emulator/reads":  # {"settle_seconds", "limit", "window"}
                script = json.loads(body)
                emulator.settle_seconds = float(script.get("settle_seconds", 0))
                emulator.read_limit = (
                    int(script.get("limit", 100)),
                    float(script.get("window", 60)),
                )
                self._reply(200, {"ok": True})
                return
            if self.path == "/_emulator/fail_every":  # {"every": n, "rule": {Rule fields}}
                script = json.loads(body)
                emulator.fail_every.append((int(script["every"]), Rule(**script["rule"])))
                self._reply(200, {"ok": True})
                return
            if self.path != "/v1/events/batch":
                self._reply(404, {"error": {"code": "NOT_FOUND", "message": self.path}})
                return
            number = next(emulator._numbers)
            record = RequestRecord(number, time.time(), body_bytes=len(body))
            with emulator.lock:
                emulator.requests.append(record)
            rule = emulator._rule_for(number, body)
            self._hold(rule)
            if rule and rule.drop:
                record.dropped = True
                self.close_connection = True
                return
            if rule and (rule.body is not None or rule.location):
                record.status = rule.status or 200
                headers = {"Location": rule.location} if rule.location else {}
                self._reply_raw(record.status, rule.body or "", headers)
                return
            if rule and rule.status:
                status, answer, headers = _scripted(rule)
            else:
                status, answer, headers = emulator.handle_batch(
                    self.headers.get("Authorization"), body, record
                )
            record.status = status
            if rule and rule.latency:
                time.sleep(rule.latency)
            if rule and rule.cut:
                self._reply_cut(status, answer)
                return
            if rule and rule.accept_then_drop:
                record.dropped = True
                self.close_connection = True
                return
            self._reply(status, answer, headers)

        def _reply_cut(self, status: int, answer: object) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True

    return Handler


def main() -> None:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()
    emulator = MonkEmulator(args.api_key, args.host, args.port)
    print(f"Monk emulator on {emulator.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        emulator._server.serve_forever()


if __name__ == "__main__":
    main()
