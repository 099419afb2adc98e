"""Every singer-sdk internal target-monk relies on still exists (an SDK upgrade that
renames one fails here, naming it, instead of silently skipping an override)."""

from __future__ import annotations

import importlib

import pytest

from target_monk.singer import sdk_internals
from target_monk.singer.sinks import MonkSink
from target_monk.singer.target import TargetMonk
from testkit.processes import API_KEY


def resolve(dotted: str) -> object:
    """Import the longest module prefix of `dotted`, then get the attributes after it."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            found = getattr(found, name)
        return found
    raise ImportError(dotted)


@pytest.mark.parametrize("dotted", list(sdk_internals.CLASS_MEMBERS))
def test_sdk_member_exists(dotted: str) -> None:
    try:
        resolve(dotted)
    except (ImportError, AttributeError) as exc:
        pytest.fail(
            f"singer-sdk no longer has {dotted} ({exc}); target-monk uses it: "
            f"{sdk_internals.CLASS_MEMBERS[dotted]}"
        )


def overrides(cls: type) -> list[tuple[str, object]]:
    """(name, function) of every member of `cls` marked @override (properties too)."""
    found = []
    for name, member in vars(cls).items():
        function = member.fget if isinstance(member, property) else member
        function = getattr(function, "__func__", function)  # classmethods
        if getattr(function, "__override__", False):
            found.append((name, function))
    return found


def test_overrides_override_something() -> None:
    """Every method target-monk marks @override exists in a base class."""
    for cls in (TargetMonk, MonkSink):
        for name, _ in overrides(cls):
            bases = [base for base in cls.__mro__[1:] if hasattr(base, name)]
            assert bases, f"{cls.__name__}.{name} overrides nothing in singer-sdk"


def test_instance_attributes_exist() -> None:
    target = TargetMonk(config={"api_key": API_KEY, "api_url": "http://127.0.0.1:9"})
    schema = {"properties": {"id": {"type": "integer"}}}
    sink = target.get_sink_class("s")(target, "s", schema, ["id"])
    for owner, names in (
        (target, sdk_internals.TARGET_ATTRIBUTES),
        (sink, sdk_internals.SINK_ATTRIBUTES),
    ):
        for name, use in names.items():
            assert hasattr(owner, name), (
                f"singer-sdk's {type(owner).__name__} has no attribute {name} any more; "
                f"target-monk uses it: {use}"
            )


def test_the_list_names_every_private_sdk_member_target_monk_overrides() -> None:
    listed = {dotted.rsplit(".", 1)[1] for dotted in sdk_internals.CLASS_MEMBERS}
    for cls in (TargetMonk, MonkSink):
        for name, _ in overrides(cls):
            assert name in listed, f"{cls.__name__}.{name} is missing from sdk_internals"
