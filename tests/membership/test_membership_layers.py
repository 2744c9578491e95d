"""The membership and audit cores import no Flower, clients/ or server/ code."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_EXTERNAL = {"numpy", "scipy", "torch", "sklearn", "opacus"}
ALLOWED_STDLIB = {"__future__", "collections", "dataclasses", "math", "typing"}
ALLOWED_FEDSIM = ("fedsim.errors", "fedsim.validation", "fedsim.membership", "fedsim.audit")
MODULES = sorted((ROOT / "fedsim" / "membership").glob("*.py")) + sorted(
    (ROOT / "fedsim" / "audit").glob("*.py")
)


def imported_names(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_core_imports_only_core(path):
    for name in imported_names(path):
        top = name.split(".")[0]
        if top == "fedsim":
            assert name.startswith(ALLOWED_FEDSIM), f"{path.name} imports {name}"
        else:
            assert top in ALLOWED_EXTERNAL | ALLOWED_STDLIB, f"{path.name} imports {name}"
