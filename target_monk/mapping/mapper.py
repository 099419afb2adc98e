"""Turn one Singer record into one Monk event (`EventMapper`): fields, keys,
properties, flattening, numbers in text. Pure: no I/O, no clock of its own."""

from __future__ import annotations

import datetime as dt
import decimal
import string
import typing as t

from target_monk.errors import ConfigError, InvalidRecordError
from target_monk.mapping.schema import datelike_fields, numeric_fields
from target_monk.mapping.settings import MappingSettings
from target_monk.mapping.values import (
    MAX_FUTURE,
    NUMBER,
    PLAIN_TYPES,
    canonical_text,
    escaped,
    is_blank,
    is_uuid,
    primitive,
    utc_moment_and_text,
)

TEXT_NUMBER_SAMPLE = 1000
"""Records of a stream checked for properties that arrive as numbers in text."""
_MAX_PLANS = 64


def template_fields(stream: str, template: str | None) -> tuple[str, ...]:
    """The top-level names a key template uses (`{a.b}` and `{a[0]}` use `a`).

    Raises:
        ConfigError: a template that cannot give one key per row: it has
            positional fields, does not parse, or names no field of the record.
    """
    if not template:
        return ()
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        msg = f"idempotency_key_template {template!r} for stream '{stream}' does not parse: {exc}"
        raise ConfigError(msg) from None
    bases = tuple(dict.fromkeys(name.split(".")[0].split("[")[0] for name in names))
    if any(not base or base.isdigit() for base in bases):
        msg = (
            f"idempotency_key_template {template!r} has a positional field ({{}} or {{0}}): "
            "name the record's fields, e.g. 'sync_{id}'"
        )
        raise ConfigError(msg)
    if not set(bases) - {"stream"}:
        msg = (
            f"idempotency_key_template {template!r} names no field of the record, so "
            f"every row of stream '{stream}' would get the same key: use its key "
            "fields, e.g. 'sync_{id}'"
        )
        raise ConfigError(msg)
    return bases


class EventMapper:
    """Maps the records of one stream to Monk events."""

    def __init__(
        self,
        stream: str,
        key_properties: t.Sequence[str],
        settings: MappingSettings,
        schema: t.Mapping[str, t.Any] | None = None,
    ) -> None:
        """Check that the stream can be keyed, and precompute what every record needs.

        `schema` (the stream's JSON Schema) tells which string fields are date-like:
        their values are read as dates and times wherever they are used.

        Raises:
            ConfigError: the stream has neither key properties nor a template,
                or the template cannot give one key per row.
        """
        if not key_properties and not settings.idempotency_key_template:
            msg = (
                f"Stream '{stream}' has no key properties, so target-monk cannot derive "
                "a stable idempotencyKey for its records. Either make the tap declare "
                "key properties (e.g. a primary key), or set "
                "'idempotency_key_template' (e.g. \"sync_{id}\"), globally or in "
                f"stream_overrides['{stream}']."
            )
            raise ConfigError(msg)
        self.stream = stream
        self.key_properties = tuple(key_properties)
        self.settings = settings
        s = settings
        self._datelike = datelike_fields(schema)
        self._key_plan = tuple((name, self._datelike.get(name)) for name in key_properties)
        self.key_namespace = s.key_namespace or stream
        self._key_prefix = escaped(self.key_namespace) + ":"
        self.template_fields = template_fields(stream, s.idempotency_key_template)
        self.template_uses_stream = "stream" in self.template_fields
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
        self._datelike_properties = {
            name: kind
            for name, kind in self._datelike.items()
            if name not in self._used_fields
            and (s.property_fields is None or name in s.property_fields)
        }
        self._numeric_properties = tuple(
            sorted({*(s.numeric_properties or ()), *numeric_fields(schema)} - self._used_fields)
        )
        self._text_numbers: dict[str, bool] = {}
        self._sampled = 0

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
        """The same source row always gives the same key, across runs, versions and
        paths; distinct rows of a stream never share a default key.

        Default: `{stream}:{v1}:{v2}...` of the key properties' canonical texts (the
        stream's `key_namespace` instead of its name, if set); in a
        composite key, a `:` or `\\` inside any value but the last is escaped with `\\`
        (single values, and values without either, are as they always were)."""
        if self.template_fields:
            return self._template_key(record)
        plan = self._key_plan
        if len(plan) == 1:  # the common case
            name, datelike = plan[0]
            value = record.get(name)
            if type(value) is int or (type(value) is str and value and datelike is None):
                return f"{self._key_prefix}{value}"
            return self._key_prefix + self._key_text(record, name, value, datelike)
        last = len(plan) - 1
        parts = []
        for index, (name, datelike) in enumerate(plan):
            text = self._key_text(record, name, record.get(name), datelike)
            parts.append(text if index == last else escaped(text))
        return self._key_prefix + ":".join(parts)

    def _key_text(
        self, record: t.Mapping[str, t.Any], name: str, value: object, datelike: str | None
    ) -> str:
        if value is None or value == "":
            raise self._invalid(record, name, "key property is missing or empty")
        try:
            return canonical_text(value, datelike)
        except ValueError as exc:
            raise self._invalid(record, name, f"cannot be part of the key: {exc}") from None

    def _template_key(self, record: t.Mapping[str, t.Any]) -> str:
        """`idempotency_key_template` over the canonical texts of the fields it names
        (integers stay integers, so `{id:08d}` works; objects and arrays are passed
        as they are, for `{obj[a]}`)."""
        template = t.cast("str", self.settings.idempotency_key_template)
        values: dict[str, object] = {}
        for name in self.template_fields:
            if name == "stream":
                values[name] = self.stream
                continue
            value = record.get(name)
            if value is None or value == "":
                state = "null or empty" if name in record else "missing from the record"
                reason = f"{state} but used by idempotency_key_template {template!r}"
                raise self._invalid(record, name, reason)
            if type(value) is int or isinstance(value, (dict, list)):
                values[name] = value
            else:
                values[name] = self._key_text(record, name, value, self._datelike.get(name))
        try:
            return template.format_map(values)
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            raise self._invalid(
                record, "idempotency_key_template", f"cannot format {template!r}: {exc!r}"
            ) from None

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
        if customer_id is None or is_blank(customer_id):
            external_id = record.get(s.external_customer_id_field)
            if type(external_id) is not str or not external_id or external_id.isspace():
                external_id = self._external_id(record, external_id)
            event: dict[str, t.Any] = {"externalCustomerId": external_id}
        else:
            if type(customer_id) is not str or not is_uuid(customer_id):
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
            moment, text = utc_moment_and_text(raw_time)
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
        if value is None or is_blank(value):
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
            properties = self._flattened(record, nested)
        else:
            if s.property_fields is not None:
                names: t.Iterable[str] = s.property_fields
            else:
                names = self._unused_fields(tuple(record))
            properties = {k: record[k] for k in names if k in record}
            if self._datelike_properties:
                self._read_datelike(record, properties)
            if not PLAIN_TYPES.issuperset(map(type, properties.values())):
                properties = self._flattened(record, properties)
        if self._numeric_properties:
            self._read_numbers(record, properties)
        if self._sampled < TEXT_NUMBER_SAMPLE:
            self._sample_text_numbers(properties)
        return properties

    def _read_numbers(self, record: t.Mapping[str, t.Any], properties: dict[str, t.Any]) -> None:
        """Numeric properties (numeric_properties, or numbers by the schema) are sent as
        JSON numbers: text is parsed exactly (`" 42 "`, `"12.50"`, `"1e3"`; no
        thousands separators), empty text is no value (like null)."""
        for name in self._numeric_properties:
            if name not in properties:
                continue
            value = properties[name]
            if type(value) is str:
                text = value.strip()
                if not text:
                    del properties[name]
                elif NUMBER.fullmatch(text):
                    properties[name] = primitive(name, decimal.Decimal(text))
                else:
                    reason = (
                        f"{value!r} is not a number (a numeric property: digits with an "
                        "optional sign, decimal point and exponent; no thousands separators)"
                    )
                    raise self._invalid(record, name, reason)
            elif isinstance(value, bool) or not isinstance(value, (int, decimal.Decimal)):
                reason = f"a numeric property must be a number, got {type(value).__name__}"
                raise self._invalid(record, name, reason)

    def _sample_text_numbers(self, properties: t.Mapping[str, t.Any]) -> None:
        """Note, over a stream's first records, which properties always arrive as
        numbers in text (Monk's meters would not sum them)."""
        self._sampled += 1
        for name, value in properties.items():
            if name in self.key_properties:
                continue
            looks_numeric = type(value) is str and bool(NUMBER.fullmatch(value.strip()))
            if not looks_numeric:
                self._text_numbers[name] = False
            else:
                self._text_numbers.setdefault(name, True)

    def warnings(self) -> list[str]:
        """Properties that arrived as numbers in text in every record checked."""
        return [
            f"'{name}' arrives as text in stream '{self.stream}' (all of its first "
            f"{self._sampled} records); Monk's meters will not sum it: list it in "
            "numeric_properties"
            for name, text in sorted(self._text_numbers.items())
            if text
        ]

    def _read_datelike(self, record: t.Mapping[str, t.Any], properties: dict[str, t.Any]) -> None:
        """Date-like strings (by the schema) become their canonical text, as date and
        time objects do, so every path and file format sends the same text."""
        for name, datelike in self._datelike_properties.items():
            value = properties.get(name)
            if type(value) is str:
                try:
                    properties[name] = canonical_text(value, datelike)
                except ValueError as exc:
                    raise self._invalid(record, name, str(exc)) from None

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
            value = primitive(name, value)
        if name in out:
            msg = f"{name}: flattening a nested object collides with an existing key"
            raise ValueError(msg)
        out[name] = value
