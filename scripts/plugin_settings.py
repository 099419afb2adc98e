"""Meltano setting definitions for target-monk, from `target-monk --about --format json`.

    .venv/bin/python scripts/plugin_settings.py           # the settings: block, YAML

`meltano.yml` and `hub/target-monk.yml` declare exactly these (tests/test_plugin_definitions.py
compares them); rerun this after adding a setting and paste its output.
"""

from __future__ import annotations

import json
import subprocess
import sys
import typing as t
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
KINDS = {
    "string": "string",
    "integer": "integer",
    "number": "decimal",
    "boolean": "boolean",
    "array": "array",
    "object": "object",
}


def about() -> dict[str, t.Any]:
    done = subprocess.run(
        [sys.executable, "-m", "target_monk", "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(done.stdout)


def kind_of(spec: dict[str, t.Any]) -> str:
    """Meltano's kind for a JSON Schema property: its first non-null type; `options`
    for a string with allowed values."""
    types = spec.get("type") or ["string"]
    types = [types] if isinstance(types, str) else types
    first = next(kind for kind in types if kind != "null")
    if first == "string" and spec.get("enum"):
        return "options"
    return KINDS[first]


WORDS = {"api": "API", "url": "URL", "http": "HTTP", "id": "ID"}


def label_of(name: str, spec: dict[str, t.Any]) -> str:
    if spec.get("title"):
        return str(spec["title"])
    words = [WORDS.get(word, word) for word in name.split("_")]
    return " ".join([words[0][:1].upper() + words[0][1:], *words[1:]])


def setting_definitions(about_json: dict[str, t.Any] | None = None) -> list[dict[str, t.Any]]:
    """One Meltano setting definition per setting `--about` lists, in its order."""
    properties = (about_json or about())["settings"]["properties"]
    settings = []
    for name, spec in properties.items():
        setting: dict[str, t.Any] = {
            "name": name,
            "kind": kind_of(spec),
            "label": label_of(name, spec),
            "description": " ".join((spec.get("description") or "").split()),
        }
        if spec.get("secret"):
            setting["sensitive"] = True
        if setting["kind"] == "options":
            setting["options"] = [{"label": v, "value": v} for v in spec["enum"]]
        if spec.get("default") is not None:
            setting["value"] = spec["default"]
        settings.append(setting)
    return settings


def main() -> None:
    print(yaml.safe_dump({"settings": setting_definitions()}, sort_keys=False, width=88))


if __name__ == "__main__":
    main()
