import ast
from pathlib import Path

import fedsim.evasion

PACKAGE = Path(fedsim.evasion.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_evasion_is_a_core_package():
    # core layer: no Flower, no clients/ or server/; ART only behind AutoAttack
    for path in sorted(PACKAGE.glob("*.py")):
        roots = {name.split(".")[0] for name in imported_modules(path)}
        assert not roots & {"flwr", "clients", "server"}, path.name
        if path.name != "autoattack.py":
            assert "art" not in roots, path.name


def test_all_is_sorted_and_complete():
    assert fedsim.evasion.__all__ == sorted(fedsim.evasion.__all__)
    assert all(hasattr(fedsim.evasion, name) for name in fedsim.evasion.__all__)
