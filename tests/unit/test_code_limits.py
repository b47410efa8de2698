"""The team's size limits on the operator's code: small modules named by responsibility, short
functions. A module that outgrows 300 lines wants splitting by responsibility; a function over 50
lines wants its steps named."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.harness.apiserver import REPO_ROOT

PACKAGE = REPO_ROOT / "operator" / "modelroute"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 50


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_modules_stay_within_300_lines() -> None:
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in _modules()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_functions_stay_within_50_lines() -> None:
    long: dict[str, int] = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.name}"] = lines
    assert long == {}
