"""Settings (unit): defaults, types, every check across settings, and which record
path the settings choose."""

from __future__ import annotations

import re

import pytest

from target_monk.errors import ConfigError
from target_monk.mapping import MappingSettings
from target_monk.settings import (
    DEFAULTS,
    FAST_PATH_SETTINGS,
    SDK_PATH_SETTINGS,
    Settings,
)
from target_monk.target import TargetMonk

KEY = "mk_test_" + "cd34" * 12
SDK_SETTINGS = TargetMonk.sdk_settings()


def settings(**config: object) -> Settings:
    return Settings.from_config({"api_key": KEY, **config}, SDK_SETTINGS)


def test_defaults_filled_from_the_schema_and_types_converted() -> None:
    built = settings(request_timeout_seconds="30", max_in_flight=2.0, summary_path=None)
    assert built.request_timeout_seconds == 30.0
    assert built.max_in_flight == 2
    assert built.batch_size_rows == DEFAULTS["batch_size_rows"] == 5000
    assert built.api_url == DEFAULTS["api_url"]
    assert built.summary_path is None
    assert built.mapping == MappingSettings()
    assert not built.dead_letter
    assert not built.sdk_path


def test_text_from_the_environment_is_read_as_the_setting_s_type() -> None:
    built = settings(batch_size_rows="100", dry_run="false", fail_on_dead_letter="True")
    assert (built.batch_size_rows, built.dry_run, built.fail_on_dead_letter) == (100, False, True)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"batch_size_rows": "abc"}, "batch_size_rows must be a number"),
        ({"max_in_flight": 2.5}, "max_in_flight must be a whole number"),
        ({"max_retries": True}, "max_retries must be a number"),
        ({"dry_run": "yes"}, "dry_run must be true or false"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_by_name(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(**config)


def test_a_null_setting_takes_its_default() -> None:
    assert settings(batch_size_rows=None).batch_size_rows == 5000


def test_the_key_never_shows() -> None:
    assert KEY not in repr(settings())


def test_stream_overrides_over_the_run_settings() -> None:
    built = settings(
        event_name_field="kind",
        timestamp_field="at",
        property_fields=["x", "y"],
        stream_overrides={"b": {"event_name": "b_event", "timestamp_field": "when"}},
    )
    assert built.mapping_for("a") == MappingSettings(
        event_name_field="kind", timestamp_field="at", property_fields=("x", "y")
    )
    assert built.mapping_for("b") == MappingSettings(
        event_name_field="kind",
        event_name="b_event",
        timestamp_field="when",
        property_fields=("x", "y"),
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"stream_overrides": {"a": {"nope": 1}}}, "unknown setting"),
        ({"stream_overrides": {"a": "x"}}, "unknown setting"),
        ({"stream_overrides": ["a"]}, "stream_overrides must be an object"),
        ({"load_method": "overwrite"}, "load_method 'overwrite'"),
        ({"batch_size_rows": 10_001}, "batch_size_rows must be 1 to 10,000"),
        ({"batch_size_rows": 0}, "batch_size_rows must be 1 to 10,000"),
        ({"api_url": "ftp://monk"}, "api_url must be an http"),
        ({"api_url": "http://events.example.com"}, "plain http to another machine"),
    ],
)
def test_settings_that_cannot_work_are_refused(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(**config)


def test_insecure_http_when_allowed() -> None:
    built = settings(api_url="http://events.example.com", allow_insecure_http=True)
    assert built.api_url == "http://events.example.com"


def test_every_sdk_setting_of_this_singer_sdk_is_classified() -> None:
    """A setting a newer singer-sdk adds fails here until someone decides which path it
    needs (unclassified, it would take the SDK's path, never be skipped)."""
    unclassified = SDK_SETTINGS - set(SDK_PATH_SETTINGS) - set(FAST_PATH_SETTINGS)
    assert not unclassified, f"classify these singer-sdk settings: {sorted(unclassified)}"
    assert not set(SDK_PATH_SETTINGS) & set(FAST_PATH_SETTINGS)


@pytest.mark.parametrize("name", sorted(SDK_PATH_SETTINGS))
def test_each_per_record_setting_forces_the_sdk_path(name: str) -> None:
    value = {"stream_maps": {"s": {"x": "1"}}}.get(name, True)
    built = settings(**{name: value})
    assert built.sdk_path
    assert built.sdk_path_settings == (name,)


@pytest.mark.parametrize("name", sorted(FAST_PATH_SETTINGS))
def test_settings_the_fast_path_honours_keep_it(name: str) -> None:
    assert not settings(**{name: {"batch_size_rows": 100}.get(name, 1)}).sdk_path


def test_an_unknown_sdk_setting_takes_the_sdk_path_and_off_settings_do_not() -> None:
    future = Settings.from_config({"api_key": KEY, "new_sdk_step": True}, {"new_sdk_step"})
    assert future.sdk_path_settings == ("new_sdk_step",)
    assert not settings(validate_records=False, stream_maps={}, flattening_enabled=None).sdk_path


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"dryrun": True}, "'dryrun' (did you mean 'dry_run'?)"),
        ({"batch_size": 100}, "'batch_size' (did you mean 'batch_size_rows'?)"),
        ({"zzz": 1, "dry_rn": True}, "'dry_rn' (did you mean 'dry_run'?), 'zzz':"),
    ],
)
def test_an_unknown_setting_is_refused_with_the_closest_known_one(
    config: dict, message: str
) -> None:
    """Issue #18: `dryrun: true` sent real events and `batch_size: 100` ran with 5,000."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings(**config)
