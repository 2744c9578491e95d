"""The layer rules of fedsim's packages, and an AST walk that finds imports breaking them.

Layers, bottom to top (an import may point down or sideways within a layer, never up):

1. **core** — everything in ``fedsim/`` except the modules named below: scenario, data, models,
   training, DP, attacks, results. Imports no ``flwr``, ``clients``, ``server``.
2. **protocol** — ``fedsim.protocol``: the names both sides agree on and the array codec; and
   ``fedsim.secagg`` (with its submodules): Flower's SecAgg+ protocol core, built on Flower's
   own cryptographic primitives. Imports the core and ``flwr``.
3. **clients** / **server** — the Flower adapters. They import the core and the protocol,
   never each other. The server's pure core (``server.aggregators``) imports no ``flwr``
   and no protocol. Every threat family's math (gradient inversion included) is core.
4. **orchestration** — ``fedsim.run`` (runner, runtimes, sweeps) and ``fedsim.cli``: the only
   code that imports both sides.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("fedsim", "clients", "server")


@dataclass(frozen=True)
class Import:
    """One import statement: who imports what, where."""

    importer: str
    imported: str
    path: Path
    line: int
    local: bool  # inside a function or class body


def layer(module: str) -> str:
    """The layer a dotted module name belongs to."""
    if module == "fedsim.cli" or module.startswith(("fedsim.run.", "fedsim.__main__")):
        return "orchestration"
    if module == "fedsim.run":
        return "orchestration"
    if module in ("fedsim.protocol", "fedsim.secagg") or module.startswith("fedsim.secagg."):
        return "protocol"
    if module == "server.aggregators" or module.startswith("server.aggregators."):
        return "server-core"
    top = module.split(".")[0]
    if top == "fedsim":
        return "core"
    return top  # clients, server, flwr, or a third-party package


FORBIDDEN = {
    "core": {"clients", "server", "server-core", "protocol", "orchestration", "flwr"},
    "protocol": {"clients", "server", "server-core", "orchestration"},
    "server-core": {"clients", "server", "protocol", "orchestration", "flwr"},
    "clients": {"server", "server-core", "orchestration"},
    "server": {"clients", "orchestration"},
    "orchestration": set(),
}
"""For each layer of ours, the layers it must not import."""


def module_name(path: Path, root: Path = ROOT) -> str:
    """``fedsim/run/runner.py`` → ``fedsim.run.runner``; packages drop ``__init__``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = ROOT) -> list[Import]:
    """Every absolute import in ``path`` (relative ones resolved against its package)."""
    importer = module_name(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
            )
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(importer, alias.name, path, child.lineno, local))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = importer.split(".")
                    is_package = path.name == "__init__.py"
                    keep = len(package) - child.level + (1 if is_package else 0)
                    base = ".".join(package[:keep] + ([base] if base else []))
                for alias in child.names:
                    # `from server import aggregators` imports the module server.aggregators
                    target = (
                        f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}", root) else base
                    )
                    found.append(Import(importer, target, path, child.lineno, local))
            visit(child, inner)

    visit(tree, False)
    return found


def _is_module(name: str, root: Path) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(root: Path = ROOT) -> list[str]:
    """One line per import that breaks :data:`FORBIDDEN`."""
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for imp in imports_of(path, root):
                source, target = layer(imp.importer), layer(imp.imported)
                if target in FORBIDDEN.get(source, set()):
                    where = f"{imp.path.relative_to(root)}:{imp.line}"
                    out.append(
                        f"{where}: {imp.importer} ({source}) imports {imp.imported} ({target})"
                    )
    return out
