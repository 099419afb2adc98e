"""Turn one Singer record into one Monk event. Pure: no I/O, no clock of its own."""

from __future__ import annotations

import datetime as dt
import decimal
import string
import typing as t
import uuid
from dataclasses import dataclass, fields

import msgspec

MAX_FUTURE = dt.timedelta(hours=1)
"""Monk refuses events stamped more than this far in the future."""

_UTC = dt.UTC
_PLAIN_TYPES = frozenset({str, int, bool})
_MAX_PLANS = 64


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
        value = _parse_iso(value.strip())
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        msg = f"expected an ISO 8601 string or a datetime, got {type(value).__name__}"
        raise ValueError(msg)
    if value.tzinfo is None:
        return value.replace(tzinfo=_UTC)
    return value if value.tzinfo is _UTC else value.astimezone(_UTC)


def format_utc(moment: dt.datetime) -> str:
    """Format an aware UTC datetime the way Monk documents it: `...T10:30:00Z`."""
    return moment.isoformat()[:-6] + "Z"


def _parse_iso(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        if text[-1:] in ("Z", "z"):  # Python 3.10 does not read the Z suffix
            return dt.datetime.fromisoformat(text[:-1] + "+00:00")
        msg = f"{text!r} is not an ISO 8601 date-time"
        raise ValueError(msg) from None


def _utc_moment_and_text(value: object) -> tuple[dt.datetime, str]:
    """The instant, and its text for Monk. Formatting is costly, so a UTC string in
    extended ISO 8601 form is sent as it came (with `+00:00` written as `Z`)."""
    if type(value) is str and value[10:11] == "T" and value[4:5] == value[7:8] == "-":
        try:
            moment = dt.datetime.fromisoformat(value)  # reads "Z" from Python 3.11 on
        except ValueError:
            moment = _parse_iso(value)
        if moment.tzinfo is _UTC:
            if value[-1] == "Z":
                return moment, value
            if value.endswith("+00:00"):
                return moment, value[:-6] + "Z"
    moment = utc_timestamp(value)
    return moment, format_utc(moment)


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
        template = s.idempotency_key_template or ""
        self._template_uses_stream = "stream" in {
            (name or "").split(".")[0].split("[")[0]
            for _, name, _, _ in string.Formatter().parse(template)
        }
        self._property_plans: dict[tuple[str, ...], tuple[str, ...]] = {}
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
                if self._template_uses_stream:
                    return template.format_map({**record, "stream": self.stream})
                return template.format_map(record)
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

        Written for speed (it runs once per record): the common case of each field
        takes the first, cheapest branch.

        Args:
            record: the record, with date-time fields possibly already parsed.
            now: the current time (aware), for the no-more-than-1h-ahead rule.

        Raises:
            InvalidRecordError: naming the stream, record key, field and reason.
        """
        s = self.settings
        customer_id = record.get(s.customer_id_field)
        if customer_id is None or _blank(customer_id):
            external_id = record.get(s.external_customer_id_field)
            if type(external_id) is not str or not external_id or external_id.isspace():
                external_id = self._external_id(record, external_id)
            event: dict[str, t.Any] = {"externalCustomerId": external_id}
        else:
            if type(customer_id) is not str or not _is_uuid(customer_id):
                raise self._invalid(
                    record,
                    s.customer_id_field,
                    f"customerId must be a Monk customer UUID, got {customer_id!r}",
                )
            event = {"customerId": customer_id}

        event_name = s.event_name or record.get(s.event_name_field)
        if type(event_name) is not str or not event_name or event_name.isspace():
            raise self._invalid(
                record,
                "event_name (setting)" if s.event_name else s.event_name_field,
                f"eventName must be a non-empty string, got {event_name!r}",
            )
        event["eventName"] = event_name

        raw_time = record.get(s.timestamp_field)
        if raw_time is None or (type(raw_time) is str and (not raw_time or raw_time.isspace())):
            raise self._invalid(
                record,
                s.timestamp_field,
                "timestamp is required (events are billed in the period of their timestamp)",
            )
        try:
            moment, text = _utc_moment_and_text(raw_time)
        except (ValueError, OverflowError) as exc:
            raise self._invalid(record, s.timestamp_field, str(exc)) from None
        if moment - now > MAX_FUTURE:
            raise self._invalid(
                record, s.timestamp_field, f"{text} is more than 1 hour in the future"
            )
        event["timestamp"] = text
        event["idempotencyKey"] = self.idempotency_key(record)

        properties = self._properties(record)
        if properties:
            event["properties"] = properties
        return event

    def _external_id(self, record: t.Mapping[str, t.Any], value: object) -> str:
        """externalCustomerId from a value that is not a plain non-blank string."""
        s = self.settings
        if value is None or _blank(value):
            raise self._invalid(
                record,
                f"{s.customer_id_field}/{s.external_customer_id_field}",
                "neither a customer id nor an external customer id is set",
            )
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self._invalid(
                record,
                s.external_customer_id_field,
                f"externalCustomerId must be a string, got {type(value).__name__}",
            )
        return str(value)

    def _properties(self, record: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        s = self.settings
        nested = record.get(s.properties_field)
        if isinstance(nested, dict):
            return self._flattened(record, nested)
        if s.property_fields is not None:
            names: t.Iterable[str] = s.property_fields
        else:
            names = self._unused_fields(tuple(record))
        properties = {k: record[k] for k in names if k in record}
        if _PLAIN_TYPES.issuperset(map(type, properties.values())):
            return properties  # the common case: nothing to flatten, drop or convert
        return self._flattened(record, properties)

    def _unused_fields(self, fields: tuple[str, ...]) -> tuple[str, ...]:
        """The record's fields not mapped to event fields, nor `_sdc_*` (cached by layout:
        a stream's records nearly always have the same fields in the same order)."""
        plan = self._property_plans.get(fields)
        if plan is None:
            used = self._used_fields
            plan = tuple(f for f in fields if f not in used and not f.startswith("_sdc_"))
            if len(self._property_plans) < _MAX_PLANS:
                self._property_plans[fields] = plan
        return plan

    def _flattened(
        self, record: t.Mapping[str, t.Any], source: t.Mapping[str, t.Any]
    ) -> dict[str, t.Any]:
        properties: dict[str, t.Any] = {}
        try:
            _flatten_into(properties, "", source.items())
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            raise self._invalid(record, field, reason) from None
        return properties


def _blank(value: object) -> bool:
    """None, or a string of nothing but white space."""
    return value is None or (type(value) is str and (not value or value.isspace()))


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _flatten_into(out: dict[str, t.Any], prefix: str, items: t.Iterable[tuple[str, t.Any]]) -> None:
    """Monk takes only primitive property values: flatten objects to `a.b` keys,
    JSON-encode arrays, drop nulls, keep Decimal as a number, datetimes as ISO strings.

    Raises:
        ValueError: "<field>: <reason>" for a value that has no faithful primitive form.
    """
    for key, value in items:
        kind = type(value)
        if kind is str or kind is int or kind is bool:  # the common case, first
            name = prefix + key if prefix else key
        elif value is None:
            continue
        elif isinstance(value, dict):
            _flatten_into(out, f"{prefix}{key}.", value.items())
            continue
        else:
            name = f"{prefix}{key}"
            value = _primitive(name, value)
        if name in out:
            msg = f"{name}: flattening a nested object collides with an existing key"
            raise ValueError(msg)
        out[name] = value


def _primitive(name: str, value: object) -> object:
    """The primitive form of a non-string, non-int property value."""
    if isinstance(value, (str, int, float)):  # incl. bool and str/int subclasses
        if isinstance(value, float) and not _finite(value):
            msg = f"{name}: {value!r} is not a finite number"
            raise ValueError(msg)
        return value
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            msg = f"{name}: {value!r} is not a finite number"
            raise ValueError(msg)
        return value
    if isinstance(value, (list, tuple)):
        try:
            return json_text(value)
        except ValueError as exc:
            msg = f"{name}: {exc}"
            raise ValueError(msg) from None
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    msg = f"{name}: a {type(value).__name__} is not a primitive value"
    raise ValueError(msg)


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
