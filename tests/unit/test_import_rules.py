"""The import rules of docs/architecture.md, checked on every module of the production tree.

- a service imports only itself, ``libs`` and third-party packages: never another service;
- ``libs`` never imports a service;
- nothing in ``libs`` or ``services`` imports the ``stockwire`` CLI (it is the composition root).

Every ``import`` statement counts, also those inside functions and under ``TYPE_CHECKING``: a type-only
import is still a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(module: str, source: str, *, is_package: bool) -> list[tuple[int, str]]:
    """Absolute names of every module ``source`` imports, with the line of each import."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                found.append((node.lineno, ".".join([*base, node.module] if node.module else base)))
            else:
                found.append((node.lineno, node.module or ""))
    return found


def _top(name: str, depth: int) -> str:
    return ".".join(name.split(".")[:depth])


def violations(module: str, source: str, *, is_package: bool = False) -> list[str]:
    """The import rules the module ``module`` (its text ``source``) breaks, one line each."""
    layer = _top(module, 1)
    broken: list[str] = []
    for line, name in _imports(module, source, is_package=is_package):
        where = f"{module}:{line} imports {name}"
        if _top(name, 1) == "stockwire":
            broken.append(f"{where}: nothing imports the stockwire CLI")
        elif layer == "libs" and _top(name, 1) == "services":
            broken.append(f"{where}: libs never import a service")
        elif layer == "services" and _top(name, 1) == "services" and _top(name, 2) != _top(module, 2):
            broken.append(f"{where}: a service never imports another service")
    return broken


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_the_production_tree_keeps_the_import_rules() -> None:
    modules = sorted(p for layer in ("libs", "services") for p in (ROOT / layer).rglob("*.py"))
    assert len(modules) > 50, "the production tree was not found"
    broken = [
        line
        for path in modules
        for line in violations(
            _module_name(path), path.read_text(encoding="utf-8"), is_package=path.name == "__init__.py"
        )
    ]
    assert broken == []


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("services.ingress.x", "from services.inventory.domain import model\n", "another service"),
        ("services.ingress.x", "from ..inventory import api\n", "another service"),
        ("services.ingress.x", "def f():\n    import stockwire.cli\n", "stockwire CLI"),
        ("libs.x", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import services.ingress\n", "libs never"),
        ("libs.x", "from stockwire.sim import model\n", "stockwire CLI"),
    ],
)
def test_a_broken_rule_is_reported(module: str, source: str, rule: str) -> None:
    broken = violations(module, source)
    assert len(broken) == 1 and rule in broken[0]


def test_own_service_and_libs_imports_are_allowed() -> None:
    source = "from . import webhook\nfrom .store import spool\nfrom services.ingress import app\nimport libs.bus\n"
    assert violations("services.ingress.probe", source) == []
    assert violations("services.ingress", "from . import app\n", is_package=True) == []
