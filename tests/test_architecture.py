"""The rooms of docs/architecture.md hold: each module imports only what its row of the
table allows (type-only imports included), and no imports form a circle."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "target_monk"
TABLE_ROW = re.compile(r"^\| (`[^|]+`) \| [^|]+ \| ([^|]+) \|$")


def allowed_imports() -> dict[str, tuple[set[str], bool]]:
    """Per module (dotted, below target_monk): the modules it may import, and whether
    it may import singer-sdk, from the table in docs/architecture.md."""
    allowed = {}
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        match = TABLE_ROW.match(line)
        if not match or match[1] == "`file`":
            continue
        own, _, sdk = match[2].strip().partition("; ")
        names = {n.strip() for n in own.replace("type:", ",").split(",")} - {"nothing", ""}
        for module in re.findall(r"`([\w/]+)\.py`", match[1]):
            allowed[module.replace("/", ".")] = (names, sdk == "singer-sdk")
    return allowed


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
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if not name.endswith("__init__") and name != "__main__":
            modules[name] = path
    return modules


def test_every_module_has_a_row_and_imports_only_what_it_allows() -> None:
    allowed = allowed_imports()
    modules = own_modules()
    assert set(modules) == set(allowed), "docs/architecture.md's table and the modules differ"
    for name, path in modules.items():
        may, sdk = allowed[name]
        found = imports(path)
        own = {m.removeprefix("target_monk.") for m in found if m.startswith("target_monk.")}
        own = {m.split(".")[-1] if name.startswith("testing.") else m for m in own}
        assert own <= may, f"{name} imports {sorted(own - may)}, which its row does not allow"
        uses_sdk = any(m.split(".")[0] == "singer_sdk" for m in found)
        assert uses_sdk <= sdk, f"{name} imports singer-sdk, which its row does not allow"


def test_no_circle_of_imports_even_type_only() -> None:
    modules = own_modules()
    graph = {
        name: {m.removeprefix("target_monk.") for m in imports(path)} & set(modules)
        for name, path in modules.items()
    }
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


def test_the_pipeline_runs_without_singer_sdk() -> None:
    """Importing the pipeline (and all it needs at run time) loads no singer-sdk."""
    code = (
        "import sys, target_monk.pipeline; "
        "print(sorted({m for m in sys.modules if m.split('.')[0] == 'singer_sdk'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
