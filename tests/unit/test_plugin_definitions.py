"""The settings every plugin definition declares are exactly `--about`'s: meltano.yml
(names, kinds, sensitivity, capabilities) and every setting documented."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest
import yaml

from testkit.processes import ROOT, TARGET

sys.path.insert(0, str(ROOT / "scripts"))

from plugin_settings import generated, setting_definitions


@pytest.fixture(scope="module")
def about() -> dict:
    done = subprocess.run(
        [*TARGET, "--about", "--format", "json"], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def declared(definition: dict) -> dict[str, tuple[str, bool]]:
    return {
        s["name"]: (s.get("kind", "string"), bool(s.get("sensitive")))
        for s in definition["settings"]
    }


def test_every_setting_is_described(about: dict) -> None:
    settings = about["settings"]["properties"]
    assert len(settings) >= 39
    undocumented = [name for name, spec in settings.items() if not spec.get("description")]
    assert undocumented == []
    assert settings["api_key"].get("secret") is True
    assert [name for name, spec in settings.items() if spec.get("secret")] == [
        "api_key",
        "ledger_url",
    ]
    assert settings["batch_size_rows"]["default"] == 5000


def test_meltano_yml_declares_every_setting_as_about_does(about: dict) -> None:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    [loader] = [p for p in project["plugins"]["loaders"] if p["name"] == "target-monk"]
    assert declared(loader) == declared({"settings": setting_definitions(about)})
    assert loader["capabilities"] == about["capabilities"]


def test_hub_definition_is_what_about_says(about: dict) -> None:
    hub = yaml.safe_load((ROOT / "hub" / "target-monk.yml").read_text())
    assert hub["settings"] == setting_definitions(about)  # descriptions and defaults too
    assert hub["capabilities"] == about["capabilities"]
    assert hub["settings_group_validation"] == [["api_key"]]
    assert (hub["name"], hub["namespace"], hub["executable"], hub["pip_url"]) == (
        "target-monk",
        "target_monk",
        "target-monk",
        "target-monk",
    )
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert hub["repo"] == pyproject["project"]["urls"]["Repository"]
    assert "logo_url" not in hub  # until a logo is published: no placeholder


def test_every_generated_file_is_as_the_declarations_say(about: dict) -> None:
    """meltano.yml's settings, the hub definition and the docs' settings table are
    written from --about (`scripts/plugin_settings.py --write`)."""
    stale = [
        str(path.relative_to(ROOT))
        for path, text in generated(about).items()
        if path.read_text() != text
    ]
    assert stale == [], "run .venv/bin/python scripts/plugin_settings.py --write"
