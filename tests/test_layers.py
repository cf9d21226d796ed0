"""The code's layers point one way: a scan of every import (also those inside functions)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def parse(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_text(), str(path))
    except SystemError:  # CPython 3.11's AST depth counter is shared by threads (gh-106905):
        return ast.parse(path.read_text(), str(path))  # a thread of another test compiled


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, by full dotted name ("from a import b" counts a.b)."""
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" \
        else module_name(path)
    found = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def modules_under(folder: str) -> dict[str, Path]:
    return {module_name(p): p for p in (ROOT / folder).rglob("*.py")
            if "migrations" not in p.parts}


def test_the_incidents_app_does_not_import_its_project():
    offenders = {name: sorted(i for i in imports_of(path) if i.split(".")[0] == "wfproject")
                 for name, path in modules_under("incidents").items()}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_workflow_modules_use_only_the_workflow_api():
    allowed = {"incidents", "incidents.workflow"}
    offenders = {name: sorted(i for i in imports_of(path)
                              if i.split(".")[0] == "incidents" and i not in allowed)
                 for name, path in modules_under("workflows").items()}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_registry_is_a_plain_table():
    found = imports_of(ROOT / "incidents" / "engine" / "registry.py")
    assert sorted(i for i in found if i.startswith("incidents.engine")) == []


def test_the_engine_modules_import_no_circle():
    engine = modules_under("incidents/engine")
    graph = {name: {i for i in imports_of(path) if i in engine and i != name}
             for name, path in engine.items()}
    circles = []

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            circles.append(" -> ".join([*trail[trail.index(name):], name]))
            return
        for target in sorted(graph[name]):
            visit(target, [*trail, name])

    for name in sorted(graph):
        visit(name, [])
    assert sorted(set(circles)) == []


def test_the_scan_sees_imports_inside_functions():
    # The scan must catch the kind of import that hid the circles before.
    source = ROOT / "tests" / "test_layers.py"
    assert "ast" in imports_of(source)
    assert imports_of(ROOT / "incidents" / "engine" / "dispatch.py") >= {
        "incidents.engine.runs", "incidents.engine.ledger"}


def test_only_the_ledger_changes_a_status():
    """Every `.update(status=...)` of a message or an incident is in engine/ledger.py."""
    writers = set()
    for name, path in modules_under("incidents").items():
        for node in ast.walk(parse(path)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "update"
                    and any(k.arg == "status" for k in node.keywords)):
                writers.add(name)
    assert writers == {"incidents.engine.ledger"}
