"""The settings, each declared once: its JSON Schema type, default, description,
secrecy and how its value is read and checked, as a field of the frozen `Settings`.
From those declarations come the settings schema (what --about lists and Meltano
shows; `scripts/plugin_settings.py` writes the plugin definitions and the docs' page
from it), the defaults, and one `Settings` built once from the config, with every check
across settings done here and nowhere else. Also the one loader of config files and
TARGET_MONK_* variables. Every other module receives the values it needs, never the
raw config.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import typing as t
import urllib.parse
from dataclasses import dataclass, field, fields
from pathlib import Path

from singer_sdk import typing as th

from target_monk.errors import ConfigError
from target_monk.mapping.settings import MappingSettings
from target_monk.monk.events import MonkClient
from target_monk.monk.http import MAX_RETRY_AFTER_SECONDS

MAX_BATCH_EVENTS = 10_000
"""Monk's limit of events per request."""
DEFAULT_API_URL = "https://events-api.monk.com"
DEFAULT_READ_API_URL = "https://api.monk.com"

SECONDS = th.CustomType({"type": ["number", "string"], "pattern": r"^\s*\d+(\.\d+)?\s*$"})
"""A number of seconds, or its text: Meltano 4.4.1 cannot pass a `decimal` setting
from an environment variable, so these are `string` settings in the plugin
definitions (scripts/plugin_settings.py), and `Settings` reads the text."""

Reader = t.Callable[[t.Mapping[str, t.Any], str], t.Any]
"""Reads one setting's value (from the config with defaults filled) and checks it.

Raises:
    ConfigError: naming the setting and why its value cannot work."""


@dataclass(frozen=True)
class Declared:
    """One setting's declaration (a `Settings` field's metadata)."""

    kind: th.JSONTypeHelper[t.Any]
    description: str
    default: t.Any
    read: Reader
    secret: bool
    required: bool

    def schema(self, name: str) -> th.Property[t.Any]:
        """The setting's JSON Schema property."""
        return th.Property(
            name,
            self.kind,
            required=self.required,
            secret=self.secret,
            default=self.default,
            description=self.description,
        )


def setting(
    kind: th.JSONTypeHelper[t.Any] | type[th.JSONTypeHelper[t.Any]],
    description: str,
    default: t.Any = None,
    *,
    read: Reader,
    secret: bool = False,
    required: bool = False,
) -> t.Any:
    """Declare a setting: a `Settings` field (never shown in its repr when secret)."""
    helper = kind() if isinstance(kind, type) else kind
    declared = Declared(helper, description, default, read, secret, required)
    return field(repr=not secret, metadata={"setting": declared})


N = t.TypeVar("N", int, float)


def _number(values: t.Mapping[str, t.Any], name: str, kind: type[N]) -> N:
    """The setting as an int or float (numbers, or text of one, as env vars give)."""
    value = values[name]
    try:
        if isinstance(value, bool):
            raise TypeError
        number = kind(value)
    except (TypeError, ValueError, ArithmeticError):
        msg = f"{name} must be a number ({kind.__name__}), got {value!r}"
        raise ConfigError(msg) from None
    if number != float(value):  # 2.5 for an int setting
        msg = f"{name} must be a whole number, got {value!r}"
        raise ConfigError(msg)
    return number


def _seconds(values: t.Mapping[str, t.Any], name: str, *, zero: bool) -> float:
    """A `SECONDS` setting: at least 0, or above 0 when `zero` is not allowed."""
    seconds = _number(values, name, float)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero):
        least = "at least" if zero else "more than"
        msg = f"{name} must be {least} 0 seconds, got {values[name]!r}"
        raise ConfigError(msg)
    return seconds


def flag(values: t.Mapping[str, t.Any], name: str) -> bool:
    """The setting as a boolean: true or false (or their text: 'true', 'False')."""
    value = values[name]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    msg = f"{name} must be true or false, got {value!r}"
    raise ConfigError(msg)


def text(values: t.Mapping[str, t.Any], name: str) -> str:
    """The setting as text (empty when unset: only a required one can be)."""
    return str(values.get(name, ""))


def optional_text(values: t.Mapping[str, t.Any], name: str) -> str | None:
    """The text, or None when unset or empty."""
    return str(values[name]) if values.get(name) else None


def integer(values: t.Mapping[str, t.Any], name: str) -> int:
    """The setting as a whole number (or its text, as environment variables give)."""
    return _number(values, name, int)


def seconds(*, zero: bool) -> Reader:
    """A `SECONDS` setting: at least 0, or above 0 when `zero` is not allowed."""
    return lambda values, name: _seconds(values, name, zero=zero)


def _mapping_schema() -> th.PropertiesList:
    """The mapping settings' schema, from `MappingSettings`' declarations."""
    return th.PropertiesList(
        *(
            th.Property(
                f.name,
                th.CustomType(f.metadata["kind"]),
                default=f.default,
                description=f.metadata["description"],
            )
            for f in fields(MappingSettings)
        )
    )


def _stream_overrides(values: t.Mapping[str, t.Any], name: str) -> t.Mapping[str, MappingSettings]:
    """Each stream's mapping settings: its overrides over the run's."""
    overrides, mapping = values[name], MappingSettings.from_values(values)
    if not isinstance(overrides, t.Mapping):
        msg = f"stream_overrides must be an object of stream names, got {overrides!r}"
        raise ConfigError(msg)
    names = {f.name for f in fields(MappingSettings)}
    per_stream = {}
    for stream, settings in overrides.items():
        settings = settings or {}
        unknown = set(settings) - names if isinstance(settings, t.Mapping) else {settings}
        if unknown:
            msg = (
                f"stream_overrides for '{stream}' has unknown setting(s) "
                f"{sorted(map(str, unknown))}; allowed: {sorted(names)}"
            )
            raise ConfigError(msg)
        per_stream[stream] = mapping.overridden(settings)
    return per_stream


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting, typed, defaults filled and checked; built once per run. The
    fields declared with `setting` are target-monk's own settings, in --about's order;
    `mapping`, `batch_config` and `sdk_path_settings` are read from several."""

    api_key: str = setting(
        th.StringType,
        "Monk API key (Bearer), with the usage:write scope.",
        read=text,
        secret=True,
        required=True,
    )
    api_url: str = setting(
        th.StringType,
        "Monk events host; batches go to {api_url}/v1/events/batch.",
        default=DEFAULT_API_URL,
        read=text,
    )
    batch_size_rows: int = setting(
        th.IntegerType(minimum=1, maximum=MAX_BATCH_EVENTS),
        "Events per request, 1 to 10,000 (Monk's limit).",
        default=5000,
        read=integer,
    )
    max_batch_bytes: int = setting(
        th.IntegerType(minimum=1000),
        (
            "Largest request body in bytes; a batch whose JSON would be larger is "
            "sent in parts. A safety margin: Monk publishes no byte limit."
        ),
        default=5_000_000,
        read=integer,
    )
    mapping: MappingSettings = field(metadata={"mapping": True})
    """The mapping settings (declared in `MappingSettings`), for every stream."""
    stream_overrides: t.Mapping[str, MappingSettings] = setting(
        th.ObjectType(additional_properties=_mapping_schema()),
        "Stream name -> any of the mapping settings, for that stream only.",
        default={},
        read=_stream_overrides,
    )
    request_timeout_seconds: float = setting(
        SECONDS,
        "Timeout of one request, in seconds.",
        default=60,
        read=seconds(zero=False),
    )
    max_retries: int = setting(
        th.IntegerType(minimum=0, maximum=20),
        "Retries of one batch on 429, 5xx, timeouts and connection errors.",
        default=5,
        read=integer,
    )
    retry_backoff_seconds: float = setting(
        SECONDS,
        "First retry wait; each next one doubles (1, 2, 4, 8, 16 s), jittered.",
        default=1,
        read=seconds(zero=True),
    )
    max_retry_wait_seconds: float = setting(
        SECONDS,
        (
            "Longest wait before one retry (Monk's Retry-After is honoured up to "
            f"{MAX_RETRY_AFTER_SECONDS:g} s)."
        ),
        default=60,
        read=seconds(zero=True),
    )
    flush_interval_seconds: float = setting(
        SECONDS,
        (
            "A partial batch is sent, and the STATE behind it written, at most this "
            "long after its first record arrived, also while the tap is silent."
        ),
        default=60,
        read=seconds(zero=False),
    )
    max_buffered_events: int = setting(
        th.IntegerType(minimum=1),
        (
            "Events buffered in all streams' partial batches at most; past it the "
            "largest partial batches are sent. Bounds memory whatever the number "
            "of streams."
        ),
        default=50_000,
        read=integer,
    )
    max_in_flight: int = setting(
        th.IntegerType(minimum=1, maximum=32),
        "Batches posted at once while input keeps being read.",
        default=4,
        read=integer,
    )
    on_invalid_record: str = setting(
        th.StringType(allowed_values=["fail", "dead_letter"]),
        (
            "fail: an invalid record fails the run before its batch is sent. "
            "dead_letter: it goes to dead_letter_path and delivery goes on; a batch "
            "Monk rejects (400/413/422) is split until the rejected events are found."
        ),
        default="fail",
        read=text,
    )
    on_deleted_record: str = setting(
        th.StringType(allowed_values=["report", "fail"]),
        (
            "A record the tap marks deleted (_sdc_deleted_at set) is never sent as usage. "
            "report: it is set aside in deleted_records_path, counted, and warned of; "
            "delivery goes on. fail: the run fails, naming it."
        ),
        default="report",
        read=text,
    )
    deleted_records_path: str = setting(
        th.StringType,
        (
            "JSON Lines file of deleted source rows (appended): stream, key, deleted_at "
            "and the event that was billed for the row, when the record carries it."
        ),
        default="target-monk-deleted.jsonl",
        read=text,
    )
    dead_letter_path: str = setting(
        th.StringType,
        "JSON Lines file for dead-lettered records and events (appended).",
        default="target-monk-dead-letter.jsonl",
        read=text,
    )
    fail_on_dead_letter: bool = setting(
        th.BooleanType,
        "Exit non-zero at the end of a run that dead-lettered anything.",
        default=False,
        read=flag,
    )
    dry_run: bool = setting(
        th.BooleanType,
        (
            "Map and check every record and write the request bodies to dry_run_path; "
            "send nothing and write no STATE (the bookmark never moves)."
        ),
        default=False,
        read=flag,
    )
    dry_run_path: str = setting(
        th.StringType,
        "JSON Lines file for dry-run request bodies, one body per line.",
        default="target-monk-dry-run.jsonl",
        read=text,
    )
    summary_path: str | None = setting(
        th.StringType,
        (
            "If set, write a receipt here: per customer and event name, the events "
            "and the sum of each numeric property delivered in this run."
        ),
        read=optional_text,
    )
    progress_every_batches: int = setting(
        th.IntegerType(minimum=1),
        "Log a progress line every this many accepted requests.",
        default=10,
        read=integer,
    )
    allow_insecure_http: bool = setting(
        th.BooleanType,
        "Allow a plain http api_url to a host other than this machine.",
        default=False,
        read=flag,
    )
    ledger: bool = setting(
        th.BooleanType,
        (
            "Keep a delivery ledger: every event Monk accepted, as sent, with its "
            "requestId and run, for `target-monk reconcile` (see the docs, 'Proving "
            "the bill'). Never written in a dry run."
        ),
        default=True,
        read=flag,
    )
    ledger_path: str = setting(
        th.StringType,
        "The ledger's SQLite file (WAL mode), unless ledger_url is set.",
        default="target-monk-ledger.sqlite",
        read=text,
    )
    ledger_url: str | None = setting(
        th.StringType,
        (
            "A postgresql:// URL for the ledger instead of the file: sharded runs and "
            "clusters write one ledger concurrently (needs target-monk[postgres])."
        ),
        read=optional_text,
        secret=True,
    )
    ledger_retention_days: int = setting(
        th.IntegerType(minimum=1),
        "Ledger rows are kept for events of the last this many days.",
        default=400,
        read=integer,
    )
    read_api_url: str = setting(
        th.StringType,
        (
            "Monk API host that reconcile reads events from "
            "(sandbox: https://api-sandbox.monk.com); the key needs usage:read."
        ),
        default=DEFAULT_READ_API_URL,
        read=text,
    )
    reconcile_settle_seconds: float = setting(
        SECONDS,
        (
            "Events accepted less than this long ago and not yet listed by Monk are "
            "pending, not missing (Monk processes events asynchronously)."
        ),
        default=900,
        read=seconds(zero=True),
    )
    reconcile_requests_per_minute: int = setting(
        th.IntegerType(minimum=1),
        "Reconcile's request rate limit (Monk's: 100 a minute per IP).",
        default=100,
        read=integer,
    )
    validate_records: bool = setting(
        th.BooleanType,
        (
            "Also run the SDK's per-record JSON Schema validation. Off by default: "
            "every record is checked against Monk's rules anyway."
        ),
        default=False,
        read=flag,
    )
    batch_config: t.Mapping[str, t.Any] | None = None
    """singer-sdk's `batch_config` (where BATCH files are read from), if set."""
    sdk_path_settings: tuple[str, ...] = ()
    """The settings set that need singer-sdk's per-record steps (empty: the fast path)."""

    @property
    def sdk_path(self) -> bool:
        """Records take singer-sdk's per-record steps (else the fast path)."""
        return bool(self.sdk_path_settings)

    @property
    def dead_letter(self) -> bool:
        """Invalid records are dead-lettered instead of failing the run."""
        return self.on_invalid_record == "dead_letter"

    @property
    def ledger_location(self) -> str | None:
        """The ledger's PostgreSQL URL or file (None: no ledger)."""
        if not self.ledger:
            return None
        return self.ledger_url or self.ledger_path

    def monk_client(self) -> MonkClient:
        """The client that posts batches to Monk as these settings say."""
        return MonkClient(
            self.api_url,
            self.api_key,
            timeout=self.request_timeout_seconds,
            max_retries=self.max_retries,
            backoff_seconds=self.retry_backoff_seconds,
            max_wait_seconds=self.max_retry_wait_seconds,
        )

    def mapping_for(self, stream: str) -> MappingSettings:
        """The mapping settings of `stream`: its stream_overrides over the run's."""
        return self.stream_overrides.get(stream, self.mapping)

    @classmethod
    def from_config(
        cls,
        config: t.Mapping[str, t.Any],
        sdk_settings: t.Iterable[str] = (),
        environ: t.Mapping[str, str] | None = None,
    ) -> Settings:
        """Read the config (a null value takes the default). `sdk_settings` are the
        names of singer-sdk's built-in settings, to tell which path records take;
        `environ`, the environment whose TARGET_MONK_* variables must name settings.

        Raises:
            ConfigError: naming the setting that cannot work, and why.
        """
        _refuse_unknown(config, set(sdk_settings), environ or {})
        values = {**DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        check_api_url(str(values["api_url"]), bool(values["allow_insecure_http"]))
        if values.get("load_method") == "overwrite":
            msg = (
                "load_method 'overwrite' cannot work with Monk: events it accepted cannot "
                "be deleted. Use append-only (the default) or upsert: both deliver by "
                "idempotency key, and Monk keeps the last write per key."
            )
            raise ConfigError(msg)
        batch_size_rows = _number(values, "batch_size_rows", int)
        if not 1 <= batch_size_rows <= MAX_BATCH_EVENTS:
            msg = (
                f"batch_size_rows must be 1 to {MAX_BATCH_EVENTS:,} (Monk's limit), "
                f"got {batch_size_rows}"
            )
            raise ConfigError(msg)
        check_api_url(
            str(values["read_api_url"]), bool(values["allow_insecure_http"]), "read_api_url"
        )
        declared = {f.name: f.metadata["setting"] for f in fields(cls) if "setting" in f.metadata}
        read = {name: setting.read(values, name) for name, setting in declared.items()}
        if read["ledger"] and read["ledger_url"]:
            _check_ledger_url(read["ledger_url"])
        built_in = set(sdk_settings) - set(SCHEMA["properties"])
        return cls(
            **read,
            mapping=MappingSettings.from_values(values),
            batch_config=values.get("batch_config") or None,
            sdk_path_settings=tuple(
                sorted(
                    name
                    for name, value in values.items()
                    if value
                    and name not in FAST_PATH_SETTINGS
                    and (name in SDK_PATH_SETTINGS or name in built_in)
                )
            ),
        )


def _schema() -> dict[str, t.Any]:
    """The settings' JSON Schema, from the declarations, in their order."""
    properties: list[th.Property[t.Any]] = []
    for f in fields(Settings):
        if "setting" in f.metadata:
            properties.append(f.metadata["setting"].schema(f.name))
        elif f.metadata.get("mapping"):
            properties.extend(_mapping_schema())
    return th.PropertiesList(*properties).to_dict()


SCHEMA: dict[str, t.Any] = _schema()
"""target-monk's own settings (singer-sdk adds its built-in ones; `SDK_PATH_SETTINGS`
and `FAST_PATH_SETTINGS` classify those)."""

DEFAULTS: dict[str, t.Any] = {
    name: spec["default"] for name, spec in SCHEMA["properties"].items() if "default" in spec
}
"""Every setting's default, from the schema: the one place defaults live."""

SDK_PATH_SETTINGS: dict[str, str] = {
    "validate_records": "JSON Schema validation of each record",
    "stream_maps": "stream maps transform, filter, alias or split records",
    "flattening_enabled": "flattening renames nested properties",
    "add_record_metadata": "adds (and otherwise removes) the _sdc_* metadata fields",
}
"""Settings that, when set, need singer-sdk's per-record steps: records take the SDK's
path. A built-in singer-sdk setting in neither this list nor FAST_PATH_SETTINGS (one
a newer singer-sdk adds) takes the SDK's path too: never skipped silently."""

FAST_PATH_SETTINGS: dict[str, str] = {
    "batch_size_rows": "target-monk's own batch size, on both paths",
    "batch_config": "where BATCH files are read from, on both paths",
    "load_method": "checked at start (overwrite refused); records are the same",
    "stream_map_config": "read by stream_maps only",
    "faker_config": "read by stream_maps only",
    "flattening_max_depth": "read with flattening_enabled only",
    "flattening_max_key_length": "read with flattening_enabled only",
    "flattening_separator": "read with flattening_enabled only",
}
"""Built-in singer-sdk settings the fast path honours or that change no record."""


ENV_PREFIX = "TARGET_MONK_"
"""Settings from the environment: singer-sdk's `--config ENV`, and Meltano's."""
ENV_NOT_SETTINGS = frozenset({"loglevel"})
"""TARGET_MONK_* variables that are not settings: singer-sdk's log level."""


def load_config(sources: t.Iterable[str], environ: t.Mapping[str, str]) -> dict[str, t.Any]:
    """The config from JSON files and/or `ENV` (TARGET_MONK_* variables), later
    sources over earlier ones, as singer-sdk's `--config` reads them.

    Raises:
        ConfigError: a file that cannot be read, or a variable that cannot be.
    """
    config: dict[str, t.Any] = {}
    for source in sources:
        if source == "ENV":
            config.update(config_from_env(environ))
            continue
        try:
            config.update(json.loads(Path(source).read_text()))
        except (OSError, ValueError) as exc:
            msg = f"cannot read --config {source}: {exc}"
            raise ConfigError(msg) from None
    return config


def config_from_env(
    environ: t.Mapping[str, str], schema: t.Mapping[str, t.Any] = SCHEMA
) -> dict[str, t.Any]:
    """The settings of `schema` set by TARGET_MONK_* variables: integers read as such,
    objects and arrays as JSON, anything else as its text (`Settings` reads it).

    Raises:
        ConfigError: naming a variable that is not what its setting needs (never its
            value: it may be a secret).
    """
    config: dict[str, t.Any] = {}
    for name, spec in schema["properties"].items():
        variable = ENV_PREFIX + name.upper()
        text = environ.get(variable)
        if text is None:
            continue
        types = spec.get("type") or []
        types = [types] if isinstance(types, str) else types
        try:
            if {"object", "array"} & set(types):
                config[name] = json.loads(text)
            elif "integer" in types and "string" not in types:
                config[name] = int(text)
            else:
                config[name] = text
        except ValueError:
            kind = "an integer" if "integer" in types else "JSON"
            msg = f"{variable} is not {kind}, as {name} must be"
            raise ConfigError(msg) from None
    return config


def _refuse_unknown(
    config: t.Mapping[str, t.Any], sdk_settings: set[str], environ: t.Mapping[str, str]
) -> None:
    """A setting target-monk does not know would be ignored: for a billing target a
    typo in a safety setting (`dryrun` for `dry_run`) would bill for real. The same
    for a TARGET_MONK_* variable that names no setting (`TARGET_MONK_DRYRUN`), which
    Meltano passes on untouched. Variables starting `TARGET_MONK__` are Meltano's
    (plugin extras, and inherited plugins such as `target-monk--shard-0`).

    Raises:
        ConfigError: naming each unknown setting, with the closest known one.
    """
    known = set(SCHEMA["properties"]) | sdk_settings
    known_vars = {ENV_PREFIX + name.upper() for name in known | ENV_NOT_SETTINGS}
    unknown = [(name, known) for name in sorted(set(config) - known)]
    unknown.extend(
        (name, known_vars)
        for name in sorted(environ)
        if name.startswith(ENV_PREFIX)
        and not name.startswith(ENV_PREFIX + "_")
        and name not in known_vars
    )
    if not unknown:
        return
    hints = []
    for name, names in unknown:
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    msg = (
        f"Unknown setting(s) {', '.join(hints)}: target-monk would ignore them. "
        "Correct or remove them (every setting: target-monk --about)"
    )
    raise ConfigError(msg)


def _check_ledger_url(url: str) -> None:
    """ledger_url must be a PostgreSQL URL (unset: the SQLite ledger_path)."""
    if urllib.parse.urlsplit(url).scheme not in ("postgresql", "postgres"):
        msg = "ledger_url must be a postgresql:// URL (or unset, for the SQLite ledger_path)"
        raise ConfigError(msg)


def check_api_url(api_url: str, allow_insecure_http: bool = False, name: str = "api_url") -> None:
    """Refuse a URL the key must not travel to: not http(s), or plain http to a host
    that is not this machine (unless allowed explicitly).

    Raises:
        ConfigError: naming the problem (never the key).
    """
    parts = urllib.parse.urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        msg = f"{name} must be an http(s) URL with a host, got {api_url!r}"
        raise ConfigError(msg)
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        msg = (
            f"{name} {api_url!r} is plain http to another machine: the API key would "
            "travel unencrypted. Use https, or set allow_insecure_http: true."
        )
        raise ConfigError(msg)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
