"""The size rule of the code base: every module under src/patronus is under 400 lines and every function
under 60 (physical lines; a function counts from its ``def`` line to its last line, decorators aside).

Modules of one concept and functions that fit on a screen are what let a newcomer find and change a
piece; this test keeps the rule true. No generated Python lives in src/patronus; should some ever do,
list it in ``GENERATED`` with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src" / "patronus"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
GENERATED: frozenset[str] = frozenset()  # paths relative to SOURCE


def _modules() -> list[Path]:
    modules = sorted(p for p in SOURCE.rglob("*.py") if p.relative_to(SOURCE).as_posix() not in GENERATED)
    assert len(modules) > 100, f"expected the whole package under {SOURCE}, found {len(modules)} modules"
    return modules


def _long_functions(source: str, where: str) -> list[str]:
    """``where:line name (n lines)`` for each function or method of at least MAX_FUNCTION_LINES lines."""
    return [
        f"{where}:{node.lineno} {node.name} ({lines} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (lines := (node.end_lineno or node.lineno) - node.lineno + 1) >= MAX_FUNCTION_LINES
    ]


def test_every_module_is_under_400_lines():
    too_long = [
        f"{path.relative_to(SOURCE)} ({lines} lines)"
        for path in _modules()
        if (lines := len(path.read_text().splitlines())) >= MAX_MODULE_LINES
    ]
    assert too_long == [], f"split these modules along their concepts (limit: under {MAX_MODULE_LINES})"


def test_every_function_is_under_60_lines():
    too_long = [
        entry
        for path in _modules()
        for entry in _long_functions(path.read_text(), str(path.relative_to(SOURCE)))
    ]
    assert too_long == [], f"split these functions into named steps (limit: under {MAX_FUNCTION_LINES})"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f():\n" + "    x = 1\n" * 58 + "    return x\n", ["m:1 f (60 lines)"]),
        ("def f():\n" + "    x = 1\n" * 57 + "    return x\n", []),
        (
            "class C:\n    @property\n    async def g(self):\n" + "        pass\n" * 59,
            ["m:3 g (60 lines)"],
        ),
        ("def outer():\n    def inner():\n" + "        pass\n" * 58, ["m:1 outer (60 lines)"]),
    ],
    ids=["60-lines", "59-lines", "decorated-async-method", "nested"],
)
def test_function_length_counts_from_def_to_last_line(source, expected):
    assert _long_functions(source, "m") == expected
