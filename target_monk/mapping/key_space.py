"""`KeySpace`: the keys of one run's streams, across streams; refuses two streams
that would share keys. Pure."""

from __future__ import annotations

import typing as t

from target_monk.errors import ConfigError

if t.TYPE_CHECKING:
    from target_monk.mapping.mapper import EventMapper


class KeySpace:
    """The keys of one run's streams, across streams: a key template without
    `{stream}`, and a key namespace, may serve one stream only (two would share keys),
    and each `stream_overrides` name must be a stream's exact name."""

    def __init__(self, stream_overrides: t.Iterable[str]) -> None:
        """Remember the override names to check streams against."""
        self._overrides = set(stream_overrides)
        self._streams: set[str] = set()
        self._template_streams: dict[str, str] = {}
        self._namespace_streams: dict[str, str] = {}

    def add(self, mapper: EventMapper) -> None:
        """Check a stream as its SCHEMA arrives, before any of its records.

        Raises:
            ConfigError: an override meant for this stream but misspelt, or a
                template without `{stream}`, or a key namespace, that another stream
                already uses.
        """
        stream = mapper.stream
        self._streams.add(stream)
        for name in self._overrides:
            if name != stream and _loose(name) == _loose(stream):
                msg = (
                    f"stream_overrides has '{name}' but the stream is '{stream}': the "
                    "name must match exactly, or the override does not apply"
                )
                raise ConfigError(msg)
        template = mapper.settings.idempotency_key_template
        if template and not mapper.template_uses_stream:
            first = self._template_streams.setdefault(template, stream)
            if first != stream:
                msg = (
                    f"idempotency_key_template {template!r} has no {{stream}} and serves "
                    f"streams '{first}' and '{stream}': rows of both with the same values "
                    "would share a key and Monk would keep only one. Add {stream} to it, "
                    "or set a template per stream in stream_overrides."
                )
                raise ConfigError(msg)
        if not template:
            first = self._namespace_streams.setdefault(mapper.key_namespace, stream)
            if first != stream:
                msg = (
                    f"streams '{first}' and '{stream}' both key their events as "
                    f"'{mapper.key_namespace}:...' (key_namespace): rows of both with the "
                    "same key values would share a key and Monk would keep only one. "
                    "Give each stream its own key_namespace in stream_overrides."
                )
                raise ConfigError(msg)

    def warnings(self) -> list[str]:
        """What to tell at the end of the run: overrides that matched no stream."""
        unused = sorted(self._overrides - self._streams)
        if not unused:
            return []
        return [
            f"stream_overrides names {unused}, which no stream of this run matched: "
            "check the names (they must equal the tap's stream names exactly)"
        ]


def _loose(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())
