"""The settings: their JSON Schema (what --about lists and Meltano shows), and one
frozen `Settings` built once from the config: defaults filled, types converted, and
every check across settings done here and nowhere else. Every other module receives
the values it needs, never the raw config.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import typing as t
import urllib.parse
from dataclasses import dataclass, field, fields

from singer_sdk import typing as th

from target_monk.client import MAX_RETRY_AFTER_SECONDS, MonkClient
from target_monk.errors import ConfigError
from target_monk.mapping import MappingSettings

MAX_BATCH_EVENTS = 10_000
"""Monk's limit of events per request."""
DEFAULT_API_URL = "https://events-api.monk.com"
DEFAULT_READ_API_URL = "https://api.monk.com"

SECONDS = th.CustomType({"type": ["number", "string"], "pattern": r"^\s*\d+(\.\d+)?\s*$"})
"""A number of seconds, or its text: Meltano 4.4.1 cannot pass a `decimal` setting
from an environment variable, so these are `string` settings in the plugin
definitions (scripts/plugin_settings.py), and `Settings` reads the text."""

MAPPING_SCHEMA = th.PropertiesList(
    th.Property(
        "customer_id_field",
        th.StringType,
        default=MappingSettings.customer_id_field,
        description="Source field for customerId (Monk's customer UUID).",
    ),
    th.Property(
        "external_customer_id_field",
        th.StringType,
        default=MappingSettings.external_customer_id_field,
        description="Source field for externalCustomerId, used when customerId is empty.",
    ),
    th.Property(
        "event_name_field",
        th.StringType,
        default=MappingSettings.event_name_field,
        description="Source field for eventName.",
    ),
    th.Property(
        "event_name",
        th.StringType,
        description="A constant eventName for every record; wins over event_name_field.",
    ),
    th.Property(
        "timestamp_field",
        th.StringType,
        default=MappingSettings.timestamp_field,
        description="Source field for the event time (ISO 8601 or date-time; naive = UTC).",
    ),
    th.Property(
        "properties_field",
        th.StringType,
        default=MappingSettings.properties_field,
        description=(
            "If a record has an object in this field, it becomes the properties; "
            "otherwise every field not mapped above (except _sdc_*) does."
        ),
    ),
    th.Property(
        "property_fields",
        th.ArrayType(th.StringType),
        description=(
            "Only these source fields become properties (when there is no properties "
            "object). Default: every field not mapped above."
        ),
    ),
    th.Property(
        "idempotency_key_template",
        th.StringType,
        description=(
            "str.format template over the record's fields plus 'stream', e.g. "
            "'sync_{id}'. Default key: '{stream}:{key property values joined by :}'."
        ),
    ),
    th.Property(
        "numeric_properties",
        th.ArrayType(th.StringType),
        description=(
            "Properties sent as JSON numbers: text ('42', ' 12.50 ', '1e3') is parsed "
            "exactly; text that is not a number makes the record invalid. Properties the "
            "schema declares as number or integer are read the same way."
        ),
    ),
    th.Property(
        "key_namespace",
        th.StringType,
        description=(
            "Replaces the stream name in default keys ('{key_namespace}:{key values}'), "
            "so a renamed stream, an alias or another tap's name for the same table "
            "keeps its keys. Default: the stream name."
        ),
    ),
)
"""The settings that map a record to an event; each may be set per stream too."""

SCHEMA: dict[str, t.Any] = th.PropertiesList(
    th.Property(
        "api_key",
        th.StringType,
        required=True,
        secret=True,
        description="Monk API key (Bearer), with the usage:write scope.",
    ),
    th.Property(
        "api_url",
        th.StringType,
        default=DEFAULT_API_URL,
        description="Monk events host; batches go to {api_url}/v1/events/batch.",
    ),
    th.Property(
        "batch_size_rows",
        th.IntegerType(minimum=1, maximum=MAX_BATCH_EVENTS),
        default=5000,
        description="Events per request, 1 to 10,000 (Monk's limit).",
    ),
    th.Property(
        "max_batch_bytes",
        th.IntegerType(minimum=1000),
        default=5_000_000,
        description=(
            "Largest request body in bytes; a batch whose JSON would be larger is "
            "sent in parts. A safety margin: Monk publishes no byte limit."
        ),
    ),
    *MAPPING_SCHEMA,
    th.Property(
        "stream_overrides",
        th.ObjectType(additional_properties=MAPPING_SCHEMA),
        default={},
        description="Stream name -> any of the mapping settings, for that stream only.",
    ),
    th.Property(
        "request_timeout_seconds",
        SECONDS,
        default=60,
        description="Timeout of one request, in seconds.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0, maximum=20),
        default=5,
        description="Retries of one batch on 429, 5xx, timeouts and connection errors.",
    ),
    th.Property(
        "retry_backoff_seconds",
        SECONDS,
        default=1,
        description="First retry wait; each next one doubles (1, 2, 4, 8, 16 s), jittered.",
    ),
    th.Property(
        "max_retry_wait_seconds",
        SECONDS,
        default=60,
        description=(
            "Longest wait before one retry (Monk's Retry-After is honoured up to "
            f"{MAX_RETRY_AFTER_SECONDS:g} s)."
        ),
    ),
    th.Property(
        "flush_interval_seconds",
        SECONDS,
        default=60,
        description=(
            "A partial batch is sent, and the STATE behind it written, at most this "
            "long after its first record arrived, also while the tap is silent."
        ),
    ),
    th.Property(
        "max_buffered_events",
        th.IntegerType(minimum=1),
        default=50_000,
        description=(
            "Events buffered in all streams' partial batches at most; past it the "
            "largest partial batches are sent. Bounds memory whatever the number "
            "of streams."
        ),
    ),
    th.Property(
        "max_in_flight",
        th.IntegerType(minimum=1, maximum=32),
        default=4,
        description="Batches posted at once while input keeps being read.",
    ),
    th.Property(
        "on_invalid_record",
        th.StringType(allowed_values=["fail", "dead_letter"]),
        default="fail",
        description=(
            "fail: an invalid record fails the run before its batch is sent. "
            "dead_letter: it goes to dead_letter_path and delivery goes on; a batch "
            "Monk rejects (400/413/422) is split until the rejected events are found."
        ),
    ),
    th.Property(
        "on_deleted_record",
        th.StringType(allowed_values=["report", "fail"]),
        default="report",
        description=(
            "A record the tap marks deleted (_sdc_deleted_at set) is never sent as usage. "
            "report: it is set aside in deleted_records_path, counted, and warned of; "
            "delivery goes on. fail: the run fails, naming it."
        ),
    ),
    th.Property(
        "deleted_records_path",
        th.StringType,
        default="target-monk-deleted.jsonl",
        description=(
            "JSON Lines file of deleted source rows (appended): stream, key, deleted_at "
            "and the event that was billed for the row, when the record carries it."
        ),
    ),
    th.Property(
        "dead_letter_path",
        th.StringType,
        default="target-monk-dead-letter.jsonl",
        description="JSON Lines file for dead-lettered records and events (appended).",
    ),
    th.Property(
        "fail_on_dead_letter",
        th.BooleanType,
        default=False,
        description="Exit non-zero at the end of a run that dead-lettered anything.",
    ),
    th.Property(
        "dry_run",
        th.BooleanType,
        default=False,
        description=(
            "Map and check every record and write the request bodies to dry_run_path; "
            "send nothing and write no STATE (the bookmark never moves)."
        ),
    ),
    th.Property(
        "dry_run_path",
        th.StringType,
        default="target-monk-dry-run.jsonl",
        description="JSON Lines file for dry-run request bodies, one body per line.",
    ),
    th.Property(
        "summary_path",
        th.StringType,
        description=(
            "If set, write a receipt here: per customer and event name, the events "
            "and the sum of each numeric property delivered in this run."
        ),
    ),
    th.Property(
        "progress_every_batches",
        th.IntegerType(minimum=1),
        default=10,
        description="Log a progress line every this many accepted requests.",
    ),
    th.Property(
        "allow_insecure_http",
        th.BooleanType,
        default=False,
        description="Allow a plain http api_url to a host other than this machine.",
    ),
    th.Property(
        "ledger",
        th.BooleanType,
        default=True,
        description=(
            "Keep a delivery ledger: every event Monk accepted, as sent, with its "
            "requestId and run, for `target-monk reconcile` (see the README, 'Proving "
            "the bill'). Never written in a dry run."
        ),
    ),
    th.Property(
        "ledger_path",
        th.StringType,
        default="target-monk-ledger.sqlite",
        description="The ledger's SQLite file (WAL mode), unless ledger_url is set.",
    ),
    th.Property(
        "ledger_url",
        th.StringType,
        secret=True,
        description=(
            "A postgresql:// URL for the ledger instead of the file: sharded runs and "
            "clusters write one ledger concurrently (needs target-monk[postgres])."
        ),
    ),
    th.Property(
        "ledger_retention_days",
        th.IntegerType(minimum=1),
        default=400,
        description="Ledger rows are kept for events of the last this many days.",
    ),
    th.Property(
        "read_api_url",
        th.StringType,
        default=DEFAULT_READ_API_URL,
        description=(
            "Monk API host that reconcile reads events from "
            "(sandbox: https://api-sandbox.monk.com); the key needs usage:read."
        ),
    ),
    th.Property(
        "reconcile_settle_seconds",
        SECONDS,
        default=900,
        description=(
            "Events accepted less than this long ago and not yet listed by Monk are "
            "pending, not missing (Monk processes events asynchronously)."
        ),
    ),
    th.Property(
        "reconcile_requests_per_minute",
        th.IntegerType(minimum=1),
        default=100,
        description="Reconcile's request rate limit (Monk's: 100 a minute per IP).",
    ),
    th.Property(
        "validate_records",
        th.BooleanType,
        default=False,
        description=(
            "Also run the SDK's per-record JSON Schema validation. Off by default: "
            "every record is checked against Monk's rules anyway."
        ),
    ),
).to_dict()
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


@dataclass(frozen=True)
class Settings:
    """Every setting, typed, defaults filled and checked; built once per run."""

    api_key: str = field(repr=False)
    api_url: str
    allow_insecure_http: bool
    batch_size_rows: int
    max_batch_bytes: int
    mapping: MappingSettings
    stream_overrides: t.Mapping[str, MappingSettings]
    request_timeout_seconds: float
    max_retries: int
    retry_backoff_seconds: float
    max_retry_wait_seconds: float
    flush_interval_seconds: float
    max_buffered_events: int
    max_in_flight: int
    on_invalid_record: str
    on_deleted_record: str
    deleted_records_path: str
    dead_letter_path: str
    fail_on_dead_letter: bool
    dry_run: bool
    dry_run_path: str
    summary_path: str | None
    progress_every_batches: int
    batch_config: t.Mapping[str, t.Any] | None
    ledger_location: str | None
    """The ledger's file or PostgreSQL URL (None: no ledger)."""
    ledger_retention_days: int
    read_api_url: str
    reconcile_settle_seconds: float
    reconcile_requests_per_minute: int
    sdk_path_settings: tuple[str, ...]
    """The settings set that need singer-sdk's per-record steps (empty: the fast path)."""

    @property
    def sdk_path(self) -> bool:
        """Records take singer-sdk's per-record steps (else the fast path)."""
        return bool(self.sdk_path_settings)

    @property
    def dead_letter(self) -> bool:
        """Invalid records are dead-lettered instead of failing the run."""
        return self.on_invalid_record == "dead_letter"

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
        mapping = MappingSettings.from_values(values)
        built_in = set(sdk_settings) - set(SCHEMA["properties"])
        return cls(
            api_key=str(values.get("api_key", "")),
            api_url=str(values["api_url"]),
            allow_insecure_http=_flag(values, "allow_insecure_http"),
            batch_size_rows=batch_size_rows,
            max_batch_bytes=_number(values, "max_batch_bytes", int),
            mapping=mapping,
            stream_overrides=_stream_overrides(values["stream_overrides"], mapping),
            request_timeout_seconds=_seconds(values, "request_timeout_seconds", zero=False),
            max_retries=_number(values, "max_retries", int),
            retry_backoff_seconds=_seconds(values, "retry_backoff_seconds", zero=True),
            max_retry_wait_seconds=_seconds(values, "max_retry_wait_seconds", zero=True),
            flush_interval_seconds=_seconds(values, "flush_interval_seconds", zero=False),
            max_buffered_events=_number(values, "max_buffered_events", int),
            max_in_flight=_number(values, "max_in_flight", int),
            on_invalid_record=str(values["on_invalid_record"]),
            on_deleted_record=str(values["on_deleted_record"]),
            deleted_records_path=str(values["deleted_records_path"]),
            dead_letter_path=str(values["dead_letter_path"]),
            fail_on_dead_letter=_flag(values, "fail_on_dead_letter"),
            dry_run=_flag(values, "dry_run"),
            dry_run_path=str(values["dry_run_path"]),
            summary_path=str(values["summary_path"]) if values.get("summary_path") else None,
            progress_every_batches=_number(values, "progress_every_batches", int),
            batch_config=values.get("batch_config") or None,
            ledger_location=_ledger_location(values),
            ledger_retention_days=_number(values, "ledger_retention_days", int),
            read_api_url=str(values["read_api_url"]),
            reconcile_settle_seconds=_seconds(values, "reconcile_settle_seconds", zero=True),
            reconcile_requests_per_minute=_number(values, "reconcile_requests_per_minute", int),
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


ENV_PREFIX = "TARGET_MONK_"
"""Settings from the environment: singer-sdk's `--config ENV`, and Meltano's."""
ENV_NOT_SETTINGS = frozenset({"loglevel"})
"""TARGET_MONK_* variables that are not settings: singer-sdk's log level."""


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


def _flag(values: t.Mapping[str, t.Any], name: str) -> bool:
    """The setting as a boolean: true or false (or their text: 'true', 'False')."""
    value = values[name]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    msg = f"{name} must be true or false, got {value!r}"
    raise ConfigError(msg)


def _ledger_location(values: t.Mapping[str, t.Any]) -> str | None:
    """ledger_url if set (a PostgreSQL URL), else ledger_path; None when ledger is off."""
    if not _flag(values, "ledger"):
        return None
    url = values.get("ledger_url")
    if not url:
        return str(values["ledger_path"])
    if urllib.parse.urlsplit(str(url)).scheme not in ("postgresql", "postgres"):
        msg = "ledger_url must be a postgresql:// URL (or unset, for the SQLite ledger_path)"
        raise ConfigError(msg)
    return str(url)


def _stream_overrides(
    overrides: object, mapping: MappingSettings
) -> t.Mapping[str, MappingSettings]:
    """Each stream's mapping settings: its overrides over the run's."""
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
