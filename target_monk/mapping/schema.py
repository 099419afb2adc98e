"""What a stream's JSON Schema says of its fields: date-like and numeric ones."""

from __future__ import annotations

import typing as t

DATELIKE_FORMATS = frozenset({"date-time", "date", "time"})


def datelike_fields(schema: t.Mapping[str, t.Any] | None) -> dict[str, str]:
    """Top-level fields the stream's JSON Schema declares as strings of format
    date-time, date or time (also inside anyOf), with that format."""
    found = {}
    for name, spec in ((schema or {}).get("properties") or {}).items():
        for option in (spec, *(spec.get("anyOf") or ())) if isinstance(spec, dict) else ():
            kinds = option.get("type") if isinstance(option, dict) else None
            kinds = [kinds] if isinstance(kinds, str) else kinds or []
            if "string" in kinds and option.get("format") in DATELIKE_FORMATS:
                found[name] = option["format"]
                break
    return found


def numeric_fields(schema: t.Mapping[str, t.Any] | None) -> set[str]:
    """Top-level fields the stream's JSON Schema declares as numbers or integers only
    (not also as strings)."""
    found = set()
    for name, spec in ((schema or {}).get("properties") or {}).items():
        kinds = spec.get("type") if isinstance(spec, dict) else None
        kinds = {kinds} if isinstance(kinds, str) else set(kinds or ())
        if kinds & {"number", "integer"} and "string" not in kinds:
            found.add(name)
    return found
