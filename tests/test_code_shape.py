"""The shape ARCHITECTURE.md promises: units small enough to read in one go.

No function of ``stmt/`` is over 80 lines (Triton kernels aside: a kernel is one
function by Triton's rules) and no class over 200. The layers themselves are checked by
``lint-imports`` (the contracts in ``pyproject.toml``), the imports at the top of each
module by ``ruff check`` (PLC0415 and TID253, the heavy modules listed there).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 200


def _is_triton_kernel(node: ast.FunctionDef) -> bool:
    """A Triton kernel or device function: an argument annotated ``tl.constexpr``."""
    args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
    return any(a.annotation is not None and "constexpr" in ast.unparse(a.annotation) for a in args)


def _units() -> list[tuple[str, str, int]]:
    """(kind, "file:line name", lines) of every function and class of stmt/."""
    out = []
    for path in sorted((ROOT / "stmt").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            lines = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)} "
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not _is_triton_kernel(node):
                    out.append(("function", where + node.name, lines))
            elif isinstance(node, ast.ClassDef):
                out.append(("class", where + node.name, lines))
    return out


def test_the_units_are_found():
    units = _units()
    assert any(kind == "class" and "Classifier" in name for kind, name, _ in units)
    assert sum(kind == "function" for kind, _, _ in units) > 500


@pytest.mark.parametrize(
    "kind, limit", [("function", MAX_FUNCTION_LINES), ("class", MAX_CLASS_LINES)]
)
def test_no_unit_is_too_long(kind, limit):
    long = [f"{name} ({n} lines)" for k, name, n in _units() if k == kind and n > limit]
    assert long == [], f"{kind}s over {limit} lines: {long}"


def test_a_long_function_is_caught(tmp_path):
    """The measure counts a function's lines from its ``def`` to its last line."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    node = ast.parse(f"def f():\n{body}\n").body[0]
    assert node.end_lineno - node.lineno + 1 == MAX_FUNCTION_LINES + 1
    assert not _is_triton_kernel(node)
    kernel = ast.parse("def k(X, BLOCK: tl.constexpr):\n    pass\n").body[0]
    assert _is_triton_kernel(kernel)
