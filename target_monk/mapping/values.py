"""Source values as Monk needs them: UTC timestamps, canonical texts for keys,
numbers read from text, JSON text. Pure: no I/O, no clock."""

from __future__ import annotations

import datetime as dt
import decimal
import re
import typing as t
import uuid

import msgspec

from target_monk.encoding import encode_json

MAX_FUTURE = dt.timedelta(hours=1)
"""Monk refuses events stamped more than this far in the future."""

_UTC = dt.UTC
PLAIN_TYPES = frozenset({str, int, bool})
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
"""A number as text: digits, an optional sign, decimal point and exponent."""


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
    """The one text of an aware UTC instant, as Monk documents timestamps:
    `2026-03-15T10:30:00Z`, with a fraction only if it has microseconds, without
    trailing zeros (`2026-03-15T10:30:00.25Z`)."""
    text = moment.isoformat()[:-6]
    return (text.rstrip("0") if moment.microsecond else text) + "Z"


def _parse_iso(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        msg = f"{text!r} is not an ISO 8601 date-time"
        raise ValueError(msg) from None


def utc_moment_and_text(value: object) -> tuple[dt.datetime, str]:
    """The instant, and its text for Monk. Formatting is costly, so a string already in
    the one canonical form (`YYYY-MM-DDTHH:MM:SSZ`) is sent as it came."""
    if (
        type(value) is str
        and len(value) == 20
        and value[19] == "Z"
        and value[10] == "T"
        and value[4] == value[7] == "-"
        and value[13] == value[16] == ":"
    ):
        return dt.datetime.fromisoformat(value), value
    moment = utc_timestamp(value)
    return moment, format_utc(moment)


def canonical_text(value: object, datelike: str | None = None) -> str:
    """The one text of a key or template value, whatever path the record took.

    Strings are kept as they are, unless the schema declares them date-like
    (`datelike` is 'date-time', 'date' or 'time'): then, as date-time objects are,
    by their value: a date-time as its UTC instant (`format_utc`), a date as
    `YYYY-MM-DD`, a time in ISO form. Integers in decimal; booleans `True`/`False`;
    decimals and floats as the shortest plain decimal of their value (`12.50` ->
    `12.5`, `5.0` -> `5`, `1E+2` -> `100`).

    Raises:
        ValueError: a date-like string that does not parse, a non-finite number, or a
            value with no canonical text (an object or an array).
    """
    kind = type(value)
    if kind is str:
        if datelike is None:
            return value  # type: ignore[return-value]
        value = _parse_datelike(value, datelike)  # type: ignore[arg-type]
    elif kind is int or kind is bool:
        return str(value)
    if isinstance(value, dt.datetime):
        return format_utc(utc_timestamp(value))
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, float)):
        return _number_text(value)
    if isinstance(value, (str, int)):  # subclasses
        return str(value)
    msg = f"a {type(value).__name__} has no canonical text for a key"
    raise ValueError(msg)


def _parse_datelike(text: str, datelike: str) -> dt.date | dt.time:
    parsers: dict[str, t.Callable[[str], dt.date | dt.time]] = {
        "date": dt.date.fromisoformat,
        "time": dt.time.fromisoformat,
    }
    parse = parsers.get(datelike, dt.datetime.fromisoformat)
    try:
        return parse(text.strip())
    except ValueError:
        msg = f"{text!r} is not an ISO 8601 {datelike}"
        raise ValueError(msg) from None


def _number_text(value: decimal.Decimal | float) -> str:
    number = value if isinstance(value, decimal.Decimal) else decimal.Decimal(repr(value))
    if not number.is_finite():
        msg = f"{value!r} is not a finite number"
        raise ValueError(msg)
    if not number:
        return "0"
    exact = decimal.Context(prec=max(1, len(number.as_tuple().digits)))
    return format(number.normalize(exact), "f")


def escaped(text: str) -> str:
    """A key part that other parts follow: `\\` and `:` escaped, so that no two
    distinct tuples of values give one key. Text with neither is unchanged."""
    if ":" in text or "\\" in text:
        return text.replace("\\", "\\\\").replace(":", "\\:")
    return text


def is_blank(value: object) -> bool:
    """None, or a string of nothing but white space."""
    return value is None or (type(value) is str and (not value or value.isspace()))


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def primitive(name: str, value: object) -> object:
    """The primitive form of a non-string, non-int property value. Decimals and floats
    are sent by value, as every file format and path gives the same number:
    `12.50` as 12.5, `3.00` and `3.0` as 3."""
    if isinstance(value, (decimal.Decimal, float)):
        try:
            text = _number_text(value)
        except ValueError as exc:
            msg = f"{name}: {exc}"
            raise ValueError(msg) from None
        return decimal.Decimal(text) if "." in text else int(text)
    if isinstance(value, (str, int)):  # incl. bool and str/int subclasses
        return value
    if isinstance(value, (list, tuple)):
        try:
            return json_text(value)
        except ValueError as exc:
            msg = f"{name}: {exc}"
            raise ValueError(msg) from None
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return canonical_text(value)
    msg = f"{name}: a {type(value).__name__} is not a primitive value"
    raise ValueError(msg)


def json_text(value: object) -> str:
    """Compact JSON text for an array property (Decimals as numbers)."""
    try:
        return encode_json(value).decode()
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        msg = f"cannot JSON-encode the array: {exc}"
        raise ValueError(msg) from None
