"""The house's shape: imports between layers, the largest modules and functions.

Not a timing: it reads the source. Run it before and after a restructuring to see
what moved:

    .venv/bin/python bench/house.py

Arrows are counted one per importing module and imported module, between the layers
the import contract states (pyproject.toml, [tool.importlinter], contract "direction"),
so the same script measures any commit by its own contract. An arrow "runs back up"
when its importer sits in a lower layer than the module it imports; the contract
allows some by rule (a reference to another app's models or choices, an entry point
calling into any app) and lists the rest as exceptions. Modules in no layer (models,
admin, API views, template tags...) are left out of the layer count; the five code
packages are counted as well, as a newcomer first sees them.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections import Counter
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "remediation", "governance", "feedback", "scoring")
ENTRY_POINT = re.compile(
    r"(\.admin|\.views|\.api\.views|\.consumers|\.management\.commands\.\w+|\.tasks)(\.|$)"
)
MODEL_REFERENCE = re.compile(r"\.(models|choices)(\.|$)")
SOURCE_DIRS = (*PACKAGES, "agent/warden_agent")
REACH_OF = ("scoring.registry", "governance.audit", "governance.rules")


def contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return next(item for item in config["contracts"] if item["id"] == "direction")


def layers() -> list[list[str]]:
    """The contract's layers, top first, each a list of module names."""
    return [re.split(r"\s*[:|]\s*", layer.strip()) for layer in contract()["layers"]]


def layer_of(module: str, stated: list[list[str]]) -> int | None:
    """The index (0 = top) of the most specific layer member `module` is or is inside."""
    best, length = None, -1
    for index, members in enumerate(stated):
        for member in members:
            if (module == member or module.startswith(member + ".")) and len(member) > length:
                best, length = index, len(member)
    return best


def allowed_by_rule(importer: str, imported: str) -> bool:
    return bool(MODEL_REFERENCE.search(imported) or ENTRY_POINT.search(importer))


def build_graph() -> grimp.ImportGraph:
    sys.path.insert(0, str(ROOT))
    return grimp.build_graph(*PACKAGES, include_external_packages=False)


def reach(graph: grimp.ImportGraph, name: str) -> set[str]:
    """The project modules `name` (a module or package) imports, directly or not, outside
    itself."""
    modules = {name} | (graph.find_children(name) and graph.find_descendants(name))
    reached: set[str] = set()
    for module in modules:
        reached |= graph.find_upstream_modules(module)
    return {module for module in reached - modules if ".migrations" not in module}


def imports(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    return [
        (importer, imported)
        for importer in graph.modules
        if ".migrations" not in importer
        for imported in graph.find_modules_directly_imported_by(importer)
        if ".migrations" not in imported
    ]


def contract_exceptions() -> list[str]:
    return [
        line
        for line in contract().get("ignore_imports", [])
        if not line.startswith("**") and not line.startswith("*.")
    ]


def source_files() -> list[Path]:
    files = []
    for folder in SOURCE_DIRS:
        files += [path for path in (ROOT / folder).rglob("*.py") if "migrations" not in path.parts]
    return files


def main() -> None:
    graph = build_graph()
    every = imports(graph)
    top = Counter(
        (a.split(".")[0], b.split(".")[0]) for a, b in every if a.split(".")[0] != b.split(".")[0]
    )
    print(f"Arrows between the five packages: {sum(top.values())}, in {len(top)} directions")
    print(
        "  " + ", ".join(f"{a}->{b} {n}" for (a, b), n in sorted(top.items(), key=lambda i: -i[1]))
    )

    stated = layers()
    placed = [(a, b, layer_of(a, stated), layer_of(b, stated)) for a, b in every]
    between = [(a, b, i, j) for a, b, i, j in placed if None not in (i, j) and i != j]
    up = [(a, b) for a, b, i, j in between if i > j]
    back_up = sorted((a, b) for a, b in up if not allowed_by_rule(a, b))
    directions = Counter((i, j) for _, _, i, j in between)
    print(
        f"Contract layers: {len(stated)}; arrows between them: {len(between)} in "
        f"{len(directions)} directions, {sum(1 for i, j in directions if i > j)} of them up"
    )
    print(f"Arrows back up: {len(up)}; not allowed by rule (models, entry points): {len(back_up)}")
    for importer, imported in back_up:
        print(f"  {importer} -> {imported}")
    exceptions = contract_exceptions()
    print(f"Import contract exceptions: {len(exceptions)}")
    for line in exceptions:
        print(f"  {line}")

    for name in REACH_OF:
        if name in graph.modules:
            reached = reach(graph, name)
            models = sum(1 for module in reached if MODEL_REFERENCE.search(module))
            print(f"{name} reaches {len(reached)} modules ({models} of them models or choices)")
            root = name.split(".")[0]
            others = sorted(
                module
                for module in reached
                if not MODEL_REFERENCE.search(module) and not module.startswith(root + ".")
            )
            print(f"  outside {root}, besides models: {', '.join(others) or 'none'}")

    sizes, functions = [], []
    for path in source_files():
        text = path.read_text()
        name = str(path.relative_to(ROOT))
        sizes.append((text.count("\n"), name))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append((node.end_lineno - node.lineno + 1, f"{name}:{node.name}"))
    print(
        f"Largest modules (of {len(sizes)}; over 500 lines: {sum(1 for n, _ in sizes if n > 500)})"
    )
    for lines, name in sorted(sizes, reverse=True)[:12]:
        print(f"  {lines:5}  {name}")
    print(f"Largest functions (over 80 lines: {sum(1 for n, _ in functions if n > 80)})")
    for lines, name in sorted(functions, reverse=True)[:12]:
        print(f"  {lines:5}  {name}")


if __name__ == "__main__":
    main()
