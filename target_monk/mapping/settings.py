"""The settings that map a record to an event, per run or per stream: each declared
once, with its default, its JSON Schema type and its description (`settings.py` builds
the settings schema from these)."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field, fields, replace

TEXT: dict[str, t.Any] = {"type": ["string"]}
TEXTS: dict[str, t.Any] = {"type": ["array"], "items": {"type": ["string"]}}


def declared(default: t.Any, kind: dict[str, t.Any], description: str) -> t.Any:
    """A mapping setting: its default, JSON Schema type and description."""
    return field(default=default, metadata={"kind": kind, "description": description})


@dataclass(frozen=True)
class MappingSettings:
    """Which source fields become which Monk event fields."""

    customer_id_field: str = declared(
        "customer_id", TEXT, "Source field for customerId (Monk's customer UUID)."
    )
    external_customer_id_field: str = declared(
        "external_customer_id",
        TEXT,
        "Source field for externalCustomerId, used when customerId is empty.",
    )
    event_name_field: str = declared("event_name", TEXT, "Source field for eventName.")
    event_name: str | None = declared(
        None, TEXT, "A constant eventName for every record; wins over event_name_field."
    )
    timestamp_field: str = declared(
        "timestamp", TEXT, "Source field for the event time (ISO 8601 or date-time; naive = UTC)."
    )
    properties_field: str = declared(
        "properties",
        TEXT,
        (
            "If a record has an object in this field, it becomes the properties; "
            "otherwise every field not mapped above (except _sdc_*) does."
        ),
    )
    property_fields: tuple[str, ...] | None = declared(
        None,
        TEXTS,
        (
            "Only these source fields become properties (when there is no properties "
            "object). Default: every field not mapped above."
        ),
    )
    idempotency_key_template: str | None = declared(
        None,
        TEXT,
        (
            "str.format template over the record's fields plus 'stream', e.g. "
            "'sync_{id}'. Default key: '{stream}:{key property values joined by :}'."
        ),
    )
    numeric_properties: tuple[str, ...] | None = declared(
        None,
        TEXTS,
        (
            "Properties sent as JSON numbers: text ('42', ' 12.50 ', '1e3') is parsed "
            "exactly; text that is not a number makes the record invalid. Properties the "
            "schema declares as number or integer are read the same way."
        ),
    )
    key_namespace: str | None = declared(
        None,
        TEXT,
        (
            "Replaces the stream name in default keys ('{key_namespace}:{key values}'), "
            "so a renamed stream, an alias or another tap's name for the same table "
            "keeps its keys. Default: the stream name."
        ),
    )

    @classmethod
    def from_values(cls, values: t.Mapping[str, t.Any]) -> MappingSettings:
        """From setting values by name (other names are ignored; null: the default)."""
        return cls().overridden(values)

    def overridden(self, values: t.Mapping[str, t.Any]) -> MappingSettings:
        """These settings with `values` (by name; null: unchanged) taking precedence."""
        names = {f.name for f in fields(self)}
        changes = {n: v for n, v in values.items() if n in names and v is not None}
        for name in ("property_fields", "numeric_properties"):
            if changes.get(name) is not None:
                changes[name] = tuple(changes[name])
        return replace(self, **changes)
