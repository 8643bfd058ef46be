"""The house's shape: imports between the code packages, the largest modules and functions.

Not a timing: it reads the source. Run it before and after a restructuring to see
what moved:

    .venv/bin/python bench/house.py

Arrows are counted between the five code packages (config, scoring, feedback,
governance, remediation), one per importing module and imported module. An arrow
"runs back up" when it goes against the flow's order (remediation > governance >
feedback > scoring > config helpers) and is not one the import contract allows by
rule: a reference to another app's models or choices, or an entry point (admin,
views, API views, consumers, commands, tasks) calling into any app.
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
# The flow's order, top first. config's wiring sits above everything, its helpers below.
ORDER = {
    "config-wiring": 0,
    "remediation": 1,
    "config-entry": 1.5,
    "governance": 2,
    "feedback": 3,
    "scoring": 4,
    "config": 5,
}
WIRING = ("config.urls", "config.asgi", "config.wsgi", "config.metrics")
# The entry points' helpers: they turn people's refused actions into HTTP and admin messages.
ENTRY_HELPERS = ("config.admin_actions", "config.api_errors")
ENTRY_POINT = re.compile(
    r"(\.admin|\.views|\.api\.views|\.consumers|\.management\.commands\.\w+|\.tasks)(\.|$)"
)
MODEL_REFERENCE = re.compile(r"\.(models|choices)(\.|$)")
SOURCE_DIRS = (*PACKAGES, "agent/warden_agent")


def package_of(module: str) -> str:
    if module.startswith(WIRING):
        return "config-wiring"
    if module.startswith(ENTRY_HELPERS):
        return "config-entry"
    return module.split(".")[0]


def allowed_by_rule(importer: str, imported: str) -> bool:
    return bool(MODEL_REFERENCE.search(imported) or ENTRY_POINT.search(importer))


REACH_OF = ("scoring.registry", "governance.audit", "governance.rules")


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


def import_arrows(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    arrows = []
    for importer in graph.modules:
        if ".migrations" in importer:
            continue
        for imported in graph.find_modules_directly_imported_by(importer):
            if ".migrations" in imported:
                continue
            if package_of(importer).split("-")[0] != package_of(imported).split("-")[0]:
                arrows.append((importer, imported))
    return arrows


def contract_exceptions() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    listed = []
    for contract in config["contracts"]:
        listed += [
            line
            for line in contract.get("ignore_imports", [])
            if not line.startswith("**") and not line.startswith("*.")
        ]
    return listed


def source_files() -> list[Path]:
    files = []
    for folder in SOURCE_DIRS:
        files += [path for path in (ROOT / folder).rglob("*.py") if "migrations" not in path.parts]
    return files


def main() -> None:
    graph = build_graph()
    arrows = import_arrows(graph)
    between = Counter((package_of(a), package_of(b)) for a, b in arrows)
    upward = [(a, b) for a, b in arrows if ORDER[package_of(a)] > ORDER[package_of(b)]]
    back_up = [(a, b) for a, b in upward if not allowed_by_rule(a, b)]
    print(f"Import arrows between packages: {len(arrows)}, in {len(between)} directions")
    for (src, dst), count in sorted(between.items(), key=lambda item: -item[1]):
        mark = "  (up)" if ORDER[src] > ORDER[dst] else ""
        print(f"  {src:>13} -> {dst:<13} {count:3}{mark}")
    print(
        f"Upward arrows: {len(upward)}; not allowed by rule (models, entry points): {len(back_up)}"
    )
    for importer, imported in sorted(back_up):
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
