"""Turn one Singer record into one Monk event. Pure: no I/O, no clock of its own."""

from __future__ import annotations

import datetime as dt
import decimal
import typing as t
import uuid
from dataclasses import dataclass, fields

import msgspec

MAX_FUTURE = dt.timedelta(hours=1)
"""Monk refuses events stamped more than this far in the future."""

_UTC = dt.timezone.utc
_PRIMITIVES = (str, bool, int, float)


class InvalidRecordError(ValueError):
    """A record that cannot become a valid Monk event."""

    def __init__(self, stream: str, record_key: str, field: str, reason: str) -> None:
        """Name the stream, the record's key, the field and the reason."""
        self.stream = stream
        self.record_key = record_key
        self.field = field
        self.reason = reason
        super().__init__(
            f"Invalid record in stream '{stream}' (key {record_key}): field '{field}': {reason}"
        )


class MappingConfigError(ValueError):
    """A stream's mapping settings cannot work for that stream."""


@dataclass(frozen=True)
class MappingSettings:
    """Which source fields become which Monk event fields."""

    customer_id_field: str = "customer_id"
    external_customer_id_field: str = "external_customer_id"
    event_name_field: str = "event_name"
    event_name: str | None = None
    timestamp_field: str = "timestamp"
    properties_field: str = "properties"
    property_fields: tuple[str, ...] | None = None
    idempotency_key_template: str | None = None

    @classmethod
    def from_config(cls, config: t.Mapping[str, t.Any], stream: str) -> MappingSettings:
        """Read the target config, with `stream_overrides[stream]` taking precedence."""
        names = {f.name for f in fields(cls)}
        overrides = (config.get("stream_overrides") or {}).get(stream) or {}
        unknown = set(overrides) - names
        if unknown:
            msg = (
                f"stream_overrides for '{stream}' has unknown setting(s) "
                f"{sorted(unknown)}; allowed: {sorted(names)}"
            )
            raise MappingConfigError(msg)
        merged = {n: config[n] for n in names if config.get(n) is not None}
        merged.update({n: v for n, v in overrides.items() if v is not None})
        if merged.get("property_fields") is not None:
            merged["property_fields"] = tuple(merged["property_fields"])
        return cls(**merged)


def utc_timestamp(value: object) -> dt.datetime:
    """Parse an ISO 8601 string, `datetime` or `date` into an aware UTC datetime.

    Naive values are taken as UTC.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            msg = f"{value!r} is not an ISO 8601 date-time"
            raise ValueError(msg) from None
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        msg = f"expected an ISO 8601 string or a datetime, got {type(value).__name__}"
        raise ValueError(msg)
    if value.tzinfo is None:
        return value.replace(tzinfo=_UTC)
    return value.astimezone(_UTC)


def format_utc(moment: dt.datetime) -> str:
    """Format an aware UTC datetime the way Monk documents it: `...T10:30:00Z`."""
    return moment.replace(tzinfo=None).isoformat() + "Z"


class EventMapper:
    """Maps the records of one stream to Monk events."""

    def __init__(
        self,
        stream: str,
        key_properties: t.Sequence[str],
        settings: MappingSettings,
    ) -> None:
        """Check that the stream can be keyed, and precompute what every record needs.

        Raises:
            MappingConfigError: the stream has neither key properties nor a template.
        """
        if not key_properties and not settings.idempotency_key_template:
            msg = (
                f"Stream '{stream}' has no key properties, so target-monk cannot derive "
                "a stable idempotencyKey for its records. Either make the tap declare "
                "key properties (e.g. a primary key), or set "
                "'idempotency_key_template' (e.g. \"sync_{id}\"), globally or in "
                f"stream_overrides['{stream}']."
            )
            raise MappingConfigError(msg)
        self.stream = stream
        self.key_properties = tuple(key_properties)
        self.settings = settings
        s = settings
        self._used_fields = frozenset(
            {
                s.customer_id_field,
                s.external_customer_id_field,
                s.timestamp_field,
                s.properties_field,
            }
            | ({s.event_name_field} if s.event_name is None else set())
        )

    def record_key(self, record: t.Mapping[str, t.Any]) -> str:
        """Describe the record for error messages: its key property values."""
        if self.key_properties:
            return ":".join(repr(record.get(k)) for k in self.key_properties)
        return "(no key properties)"

    def _invalid(
        self, record: t.Mapping[str, t.Any], field: str, reason: str
    ) -> InvalidRecordError:
        return InvalidRecordError(self.stream, self.record_key(record), field, reason)

    def idempotency_key(self, record: t.Mapping[str, t.Any]) -> str:
        """The same source row always gives the same key, across runs and versions."""
        template = self.settings.idempotency_key_template
        if template:
            try:
                return template.format_map({**record, "stream": self.stream})
            except KeyError as missing:
                raise self._invalid(
                    record,
                    str(missing.args[0]),
                    f"missing from the record but used by idempotency_key_template {template!r}",
                ) from None
            except (IndexError, ValueError, AttributeError) as exc:
                raise self._invalid(
                    record, "idempotency_key_template", f"cannot format {template!r}: {exc}"
                ) from None
        parts = []
        for name in self.key_properties:
            value = record.get(name)
            if value is None or value == "":
                raise self._invalid(record, name, "key property is missing or empty")
            parts.append(str(value))
        return f"{self.stream}:{':'.join(parts)}"

    def map(self, record: t.Mapping[str, t.Any], now: dt.datetime) -> dict[str, t.Any]:
        """Return the Monk event for `record`, valid by every rule of Monk's API.

        Args:
            record: the record, with date-time fields possibly already parsed.
            now: the current time (aware), for the no-more-than-1h-ahead rule.

        Raises:
            InvalidRecordError: naming the stream, record key, field and reason.
        """
        s = self.settings
        event: dict[str, t.Any] = {}

        customer_id = _non_empty(record.get(s.customer_id_field))
        if customer_id is not None:
            if not isinstance(customer_id, str) or not _is_uuid(customer_id):
                raise self._invalid(
                    record,
                    s.customer_id_field,
                    f"customerId must be a Monk customer UUID, got {customer_id!r}",
                )
            event["customerId"] = customer_id
        else:
            external_id = _non_empty(record.get(s.external_customer_id_field))
            if external_id is None:
                raise self._invalid(
                    record,
                    f"{s.customer_id_field}/{s.external_customer_id_field}",
                    "neither a customer id nor an external customer id is set",
                )
            if isinstance(external_id, bool) or not isinstance(external_id, (str, int)):
                raise self._invalid(
                    record,
                    s.external_customer_id_field,
                    f"externalCustomerId must be a string, got {type(external_id).__name__}",
                )
            event["externalCustomerId"] = str(external_id)

        if s.event_name is not None:
            event_name, name_field = s.event_name, "event_name (setting)"
        else:
            event_name, name_field = record.get(s.event_name_field), s.event_name_field
        if not isinstance(event_name, str) or not event_name.strip():
            raise self._invalid(
                record, name_field, f"eventName must be a non-empty string, got {event_name!r}"
            )
        event["eventName"] = event_name

        raw_time = record.get(s.timestamp_field)
        if raw_time is None or raw_time == "":
            raise self._invalid(
                record,
                s.timestamp_field,
                "timestamp is required (events are billed in the period of their timestamp)",
            )
        try:
            moment = utc_timestamp(raw_time)
        except (ValueError, OverflowError) as exc:
            raise self._invalid(record, s.timestamp_field, str(exc)) from None
        if moment - now > MAX_FUTURE:
            raise self._invalid(
                record,
                s.timestamp_field,
                f"{format_utc(moment)} is more than 1 hour in the future",
            )
        event["timestamp"] = format_utc(moment)
        event["idempotencyKey"] = self.idempotency_key(record)

        nested = record.get(s.properties_field)
        if isinstance(nested, dict):
            source: t.Mapping[str, t.Any] = nested
        elif s.property_fields is not None:
            source = {k: record[k] for k in s.property_fields if k in record}
        else:
            source = {
                k: v
                for k, v in record.items()
                if k not in self._used_fields and not k.startswith("_sdc_")
            }
        properties: dict[str, t.Any] = {}
        try:
            _flatten_into(properties, "", source)
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            raise self._invalid(record, field, reason) from None
        if properties:
            event["properties"] = properties
        return event


def _non_empty(value: object) -> object:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _flatten_into(out: dict[str, t.Any], prefix: str, source: t.Mapping[str, t.Any]) -> None:
    """Monk takes only primitive property values: flatten objects to `a.b` keys,
    JSON-encode arrays, drop nulls, keep Decimal as a number, datetimes as ISO strings.

    Raises:
        ValueError: "<field>: <reason>" for a value that has no faithful primitive form.
    """
    for key, value in source.items():
        name = f"{prefix}{key}"
        if value is None:
            continue
        if isinstance(value, dict):
            _flatten_into(out, f"{name}.", value)
            continue
        if isinstance(value, _PRIMITIVES):
            if isinstance(value, float) and not _finite(value):
                msg = f"{name}: {value!r} is not a finite number"
                raise ValueError(msg)
        elif isinstance(value, decimal.Decimal):
            if not value.is_finite():
                msg = f"{name}: {value!r} is not a finite number"
                raise ValueError(msg)
        elif isinstance(value, (list, tuple)):
            try:
                value = json_text(value)
            except ValueError as exc:
                msg = f"{name}: {exc}"
                raise ValueError(msg) from None
        elif isinstance(value, (dt.datetime, dt.date, dt.time)):
            value = value.isoformat()
        else:
            msg = f"{name}: a {type(value).__name__} is not a primitive value"
            raise ValueError(msg)
        if name in out:
            msg = f"{name}: flattening a nested object collides with an existing key"
            raise ValueError(msg)
        out[name] = value


def _finite(value: float) -> bool:
    return value - value == 0


def json_text(value: object) -> str:
    """Compact JSON text for an array property (Decimals as numbers)."""
    try:
        return _ENCODER.encode(value).decode()
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        msg = f"cannot JSON-encode the array: {exc}"
        raise ValueError(msg) from None


def _enc_hook(obj: object) -> object:
    msg = f"a {type(obj).__name__} is not JSON"
    raise TypeError(msg)


_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook, decimal_format="number")
