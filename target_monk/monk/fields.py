"""The fields of a Monk event, as Monk's API names them, and what target-monk reads off
an event it built: which customer field it carries, and its UTC day."""

from __future__ import annotations

import typing as t

KEY = "idempotencyKey"
CUSTOMER_ID = "customerId"
"""Monk's customer UUID; wins over the external id when an event has both."""
EXTERNAL_CUSTOMER_ID = "externalCustomerId"
CUSTOMER_FIELDS = (CUSTOMER_ID, EXTERNAL_CUSTOMER_ID)
EVENT_NAME = "eventName"
TIMESTAMP = "timestamp"
PROPERTIES = "properties"


def customer_field(event: t.Mapping[str, t.Any]) -> str:
    """The customer field `event` carries: customerId if present, else externalCustomerId."""
    return CUSTOMER_ID if CUSTOMER_ID in event else EXTERNAL_CUSTOMER_ID


def day_of(timestamp: object) -> str:
    """The UTC day (YYYY-MM-DD) of an event's timestamp as target-monk writes it (UTC,
    ISO 8601): its first ten characters."""
    return str(timestamp)[:10]
