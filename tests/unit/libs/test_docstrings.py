"""Every public function, class and method of ``libs`` says what it does (its shapes, units, what it raises)."""

from __future__ import annotations

import ast
from pathlib import Path

LIBS = Path(__file__).resolve().parents[3] / "libs"


def _public(tree: ast.Module) -> set[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            assert isinstance(node.value, ast.List | ast.Tuple)
            return {e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return None


def undocumented(path: Path) -> list[str]:
    """Public definitions of ``path`` (those in ``__all__``, or not starting with ``_``) without a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    exported = _public(tree)
    missing: list[str] = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) or node.name.startswith("_"):
            continue
        if exported is not None and node.name not in exported:
            continue
        if ast.get_docstring(node) is None:
            missing.append(node.name)
        if isinstance(node, ast.ClassDef):
            missing += [
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                and not item.name.startswith("_")
                and ast.get_docstring(item) is None
            ]
    return missing


def test_every_public_definition_of_libs_has_a_docstring() -> None:
    files = sorted(LIBS.rglob("*.py"))
    assert len(files) > 20
    missing = {str(p.relative_to(LIBS)): names for p in files if (names := undocumented(p))}
    assert missing == {}


def test_a_missing_docstring_is_found(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('__all__ = ["f", "C"]\n\ndef f(): pass\n\nclass C:\n    """C."""\n    def g(self): pass\n')
    assert undocumented(module) == ["f", "C.g"]
