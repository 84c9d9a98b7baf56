"""The layout's rules, read from the import graph of the source tree (issue 13).

Every ``import`` statement counts, at module level, inside functions and under ``TYPE_CHECKING``
alike, so a cycle cannot hide behind a lazy import. The rules: only ``mailwarden.mta`` imports
pymilter; no import cycle between modules; the daemon's graph holds no training, evaluation,
figure or report module; detectors import only the shared contracts from the parent package;
no package folder holds more than 15 modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from conftest import REPO

ROOTS = {"mailwarden": REPO / "milter", "mailwarden.detectors": REPO / "detectors",
         "mailwarden.models": REPO / "models"}
MAX_MODULES = 15
# What a detector may import from the parent package: the shared contracts.
DETECTOR_CONTRACTS = {"mailwarden.message", "mailwarden.verdict", "mailwarden.options",
                      "mailwarden.sqlite"}
# The one sanctioned cross-edge: the allow-list detector reads the reviewers' decisions.
ALLOWLIST_EXCEPTION = {"mailwarden.quarantine.records", "mailwarden.quarantine.store"}


def module_files() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for prefix, root in ROOTS.items():
        for path in root.rglob("*.py"):
            rel = path.relative_to(root).with_suffix("").parts
            if rel and rel[0] == "detectors" and prefix == "mailwarden":
                continue
            name = ".".join((prefix, *rel))
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = module_files()


def _targets(node: ast.AST, current: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = current.split(".")
            parts = parts if is_package else parts[:-1]
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            yield sub if sub in MODULES else base


def imports_of(name: str) -> set[str]:
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        for target in _targets(node, name, path.name == "__init__.py"):
            found.add(target)
    return found


GRAPH = {name: {t for t in imports_of(name) if t in MODULES and t != name} for name in MODULES}
RAW = {name: imports_of(name) for name in MODULES}


def _cycle_from(start: str) -> list[str] | None:
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in GRAPH[node]:
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def reachable(starts: set[str]) -> set[str]:
    out, todo = set(), list(starts)
    while todo:
        node = todo.pop()
        if node not in out:
            out.add(node)
            todo.extend(GRAPH[node])
    return out


def test_only_mta_imports_pymilter() -> None:
    offenders = sorted(name for name, targets in RAW.items()
                       if any(t == "Milter" or t.startswith("Milter.") for t in targets)
                       and not name.startswith("mailwarden.mta."))
    assert offenders == []
    assert any("Milter" in RAW[name] for name in MODULES if name.startswith("mailwarden.mta."))


def test_no_import_cycle() -> None:
    cycles = [cycle for name in sorted(MODULES) if (cycle := _cycle_from(name))]
    assert cycles == []


def test_daemon_graph_has_no_training_or_report() -> None:
    from mailwarden.detectors import BUILTIN
    from mailwarden.sinks.base import BUILTIN_SINKS

    starts = {"mailwarden.mta.daemon", "mailwarden.mta.prefork"}
    starts |= {f"mailwarden.detectors.{name}" for name in BUILTIN}
    starts |= {f"mailwarden.{name}" for name in BUILTIN_SINKS}
    assert starts <= set(MODULES)
    daemon = reachable(starts)
    assert "mailwarden.engine" in daemon
    bad = sorted(m for m in daemon if m.startswith(("mailwarden.training", "mailwarden.report")))
    assert bad == []


def test_detectors_import_only_contracts() -> None:
    for name, targets in GRAPH.items():
        if not name.startswith("mailwarden.detectors"):
            continue
        parent = {t for t in targets if not t.startswith("mailwarden.detectors")}
        allowed = set(DETECTOR_CONTRACTS)
        if name.endswith(".allowlist"):
            allowed |= ALLOWLIST_EXCEPTION
        assert parent <= allowed, (name, sorted(parent - allowed))


def test_nothing_outside_training_imports_training() -> None:
    for name, targets in GRAPH.items():
        if name.startswith("mailwarden.training"):
            continue
        assert not any(t.startswith("mailwarden.training") for t in targets), name


def test_no_folder_holds_more_than_15_modules() -> None:
    folders: dict[Path, int] = {}
    for path in MODULES.values():
        if path.name != "__init__.py":
            folders[path.parent] = folders.get(path.parent, 0) + 1
    assert len(folders) > 10
    crowded = {str(k.relative_to(REPO)): v for k, v in folders.items() if v > MAX_MODULES}
    assert crowded == {}
