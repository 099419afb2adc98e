"""The rooms of docs/architecture.md hold: each room imports only the rooms and the
third-party libraries its row allows (type-only imports included), no imports form a
circle, and the run imports no singer-sdk."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from testkit.processes import ROOT

PACKAGE = ROOT / "target_monk"
ROW = re.compile(
    r"^\| `(?P<room>[\w.]+?)(?:\.py|/)` \| [^|]+ \| (?P<own>[^|]+) \| (?P<third>[^|]+) \|$"
)
WATCHED = {"singer_sdk": "singer-sdk", "requests": "requests", "click": "click"}
"""Third-party libraries a room may use only where its row says."""


def rooms() -> dict[str, tuple[set[str], set[str]]]:
    """Per room (`run`, `settings`): the rooms it may import, and the watched
    libraries it may import, from the table in docs/architecture.md."""
    table = {}
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        match = ROW.match(line)
        if match:
            own = {name.strip() for name in match["own"].split(",")} - {"nothing"}
            third = {name.strip() for name in match["third"].split(",")} - {"none"}
            table[match["room"]] = (own, third)
    return table


def room_of(module: str) -> str:
    """`target_monk.run.sender` -> `run`; `target_monk.cli` -> `cli`."""
    return module.removeprefix("target_monk.").split(".")[0]


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at run time or for type checking only."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def own_modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def test_every_room_has_a_row_and_imports_only_what_it_allows() -> None:
    table = rooms()
    modules = own_modules()
    found_rooms = {room_of(m) for m in modules} - {"target_monk", "__main__"}
    assert found_rooms == set(table), "docs/architecture.md's rooms and the package differ"
    for name, path in modules.items():
        room = room_of(name)
        if room not in table:
            continue
        may, libraries = table[room]
        found = imports(path)
        used = {room_of(m) for m in found if m.startswith("target_monk.")} - {room}
        assert used <= may, f"{name} imports {sorted(used - may)}, which room {room} may not"
        for library, label in WATCHED.items():
            uses = any(m.split(".")[0] == library for m in found)
            assert uses <= (label in libraries), f"{name} imports {label}: room {room} may not"


def test_no_circle_of_imports_even_type_only() -> None:
    modules = own_modules()
    graph = {name: imports(path) & set(modules) for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, f"import circle: {' -> '.join((*trail, name))}"
        if name in done:
            return
        for imported in graph[name]:
            visit(imported, (*trail, name))
        done.add(name)

    for name in graph:
        visit(name, ())


def test_the_run_and_monk_load_no_singer_sdk() -> None:
    """Importing the run and Monk's HTTP (and all they need at run time) loads no
    singer-sdk."""
    code = (
        "import sys, target_monk.run.run, target_monk.monk.reads; "
        "print(sorted({m for m in sys.modules if m.split('.')[0] == 'singer_sdk'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
