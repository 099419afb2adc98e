"""Settings (unit): defaults, types, every check across settings, and which record
path the settings choose."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from target_monk.emulator import MonkEmulator
from target_monk.errors import ConfigError
from target_monk.mapping.settings import MappingSettings
from target_monk.settings import (
    DEFAULTS,
    FAST_PATH_SETTINGS,
    SDK_PATH_SETTINGS,
    Settings,
)
from target_monk.singer.target import TargetMonk
from testkit.messages import interleaved_input
from testkit.processes import API_KEY, TARGET, meltano_env

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


def test_variables_must_name_settings_but_meltano_s_own_pass() -> None:
    environ = {
        "TARGET_MONK_DRY_RUN": "true",  # a setting
        "TARGET_MONK_STREAM_MAPS": "{}",  # singer-sdk's
        "TARGET_MONK_LOGLEVEL": "debug",  # singer-sdk's log level
        "TARGET_MONK__SHARD_0_API_KEY": KEY,  # Meltano's, for target-monk--shard-0
        "TARGET_MONKEY": "x",  # another prefix
    }
    Settings.from_config({"api_key": KEY}, TargetMonk.sdk_settings(), environ)
    with pytest.raises(ConfigError, match=re.escape("'TARGET_MONK_DRYRUN' (did you mean")):
        Settings.from_config({"api_key": KEY}, (), {**environ, "TARGET_MONK_DRYRUN": "true"})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"flush_interval_seconds": "0"}, "flush_interval_seconds must be more than 0 seconds"),
        ({"retry_backoff_seconds": -1}, "retry_backoff_seconds must be at least 0 seconds"),
        ({"request_timeout_seconds": "inf"}, "request_timeout_seconds must be more than 0"),
    ],
)
def test_seconds_are_bounded_also_as_text(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(**config)
    assert (
        settings(flush_interval_seconds="0.5", retry_backoff_seconds="0").flush_interval_seconds
        == 0.5
    )


CONFIG_ERRORS = [
    pytest.param(["--config", "{broken"], {}, "cannot read --config", id="config-not-json"),
    pytest.param(["--config", "/nonexistent.json"], {}, "nonexistent.json", id="no-config-file"),
    pytest.param(["--config", "{}"], {}, "'api_key' is a required property", id="no-api-key"),
    pytest.param(
        ["--config", '{"api_key": 12345678901}'], {}, "not of type 'string'", id="key-of-wrong-type"
    ),
    pytest.param(
        ["--config", "ENV"],
        {"TARGET_MONK_API_KEY": KEY, "TARGET_MONK_BATCH_SIZE_ROWS": "abc"},
        "TARGET_MONK_BATCH_SIZE_ROWS is not an integer",
        id="env-not-an-integer",
    ),
    pytest.param(
        ["--config", "ENV"],
        {"TARGET_MONK_API_KEY": KEY, "TARGET_MONK_STREAM_OVERRIDES": "{x"},
        "TARGET_MONK_STREAM_OVERRIDES is not JSON",
        id="env-not-json",
    ),
    pytest.param(
        ["--config", f'{{"api_key": "{KEY}", "dryrun": true}}'],
        {},
        "'dryrun' (did you mean 'dry_run'?)",
        id="unknown-setting",
    ),
    pytest.param(
        ["--config", "ENV"],
        {"TARGET_MONK_API_KEY": KEY, "TARGET_MONK_DRYRUN": "true"},
        "'TARGET_MONK_DRYRUN' (did you mean 'TARGET_MONK_DRY_RUN'?)",
        id="unknown-variable",
    ),
    pytest.param(  # Meltano passes its environment on, whatever --config is
        ["--config", f'{{"api_key": "{KEY}"}}'],
        {"TARGET_MONK_BATCH_SIZE": "100"},
        "'TARGET_MONK_BATCH_SIZE' (did you mean 'TARGET_MONK_BATCH_SIZE_ROWS'?)",
        id="unknown-variable-with-a-config-file",
    ),
    pytest.param(
        ["--config", "ENV"],
        {"TARGET_MONK_API_KEY": KEY, "TARGET_MONK_FLUSH_INTERVAL_SECONDS": "0"},
        "flush_interval_seconds must be more than 0 seconds",
        id="env-seconds-out-of-range",
    ),
]


@pytest.mark.parametrize(("args", "env", "reason"), CONFIG_ERRORS)
def test_every_config_error_is_one_line_and_exit_1(
    args: list[str], env: dict[str, str], reason: str, tmp_path: Path
) -> None:
    """The process: no traceback, nothing on stdout, one `target-monk failed:` line naming
    the reason, no secret."""
    if args[1].startswith("{"):
        (tmp_path / "config.json").write_text(args[1])
        args = ["--config", str(tmp_path / "config.json")]
    done = subprocess.run(
        [*TARGET, *args],
        input="",
        capture_output=True,
        text=True,
        env={**meltano_env({}), **env},
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    failed = [line for line in done.stderr.splitlines() if "target-monk failed:" in line]
    assert len(failed) == 1, done.stderr
    assert reason in failed[0]
    assert "Traceback" not in done.stderr
    assert KEY not in done.stderr
    assert "12345678901" not in done.stderr


def test_seconds_settings_from_the_environment(emulator: MonkEmulator, tmp_path: Path) -> None:
    """What Meltano passes for a `string` setting set from an environment variable."""
    data = interleaved_input({"s": 10}, state_every=10)
    env = {
        "TARGET_MONK_API_KEY": API_KEY,
        "TARGET_MONK_API_URL": emulator.url,
        "TARGET_MONK_REQUEST_TIMEOUT_SECONDS": "30",
        "TARGET_MONK_FLUSH_INTERVAL_SECONDS": "0.5",
    }
    done = subprocess.run(
        [*TARGET, "--config", "ENV"],
        input=data.text(),
        capture_output=True,
        text=True,
        env={**meltano_env({}), **env},
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert emulator.held_keys() == data.keys_before_state[-1][1]
