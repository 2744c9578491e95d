"""The layers point one way: an AST walk over the packages finds no import against them."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.architecture.layers import ROOT, imports_of, layer, violations


def test_no_import_breaks_the_layers() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    ("module", "offending", "expected"),
    [
        # the wrong-way imports fedsim had before the layers (issue #17)
        (
            "server/strategy.py",
            "from clients.app import make_client_app",
            "(server) imports clients",
        ),
        ("fedsim/federation.py", "import server.app", "(core) imports server"),
        (
            "fedsim/attacks/__init__.py",
            "from fedsim.run import runner",
            "(core) imports fedsim.run",
        ),
        ("fedsim/params.py", "from flwr.app import Array", "(core) imports flwr"),
        (
            "fedsim/federation.py",
            "from fedsim.secagg.masks import private_mask",
            "(core) imports fedsim.secagg.masks (protocol)",
        ),
        (
            "server/aggregators/base.py",
            "from fedsim.protocol import to_array_record",
            "(server-core)",
        ),
        ("clients/app.py", "from server.replies import ClientUpdate", "(clients) imports server"),
    ],
)
def test_the_layer_test_fails_on_a_reintroduced_import(
    tmp_path: Path, module: str, offending: str, expected: str
) -> None:
    for package in ("fedsim", "clients", "server"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    target = tmp_path / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n\ndef _f():\n    {offending}\n")
    found = violations(tmp_path)
    assert len(found) == 1 and expected in found[0], found


def test_relative_and_from_imports_resolve_to_modules(tmp_path: Path) -> None:
    (tmp_path / "server" / "sub").mkdir(parents=True)
    (tmp_path / "clients").mkdir()
    (tmp_path / "clients" / "app.py").write_text("")
    (tmp_path / "server" / "sub" / "__init__.py").write_text("from ..x import y\n")
    module = tmp_path / "server" / "sub" / "mod.py"
    module.write_text("from clients import app\nfrom . import other\n")
    found = [i.imported for i in imports_of(module, tmp_path)]
    assert found == ["clients.app", "server.sub"]
    assert [i.imported for i in imports_of(tmp_path / "server/sub/__init__.py", tmp_path)] == [
        "server.x"
    ]


def test_imports_between_layers_counted() -> None:
    """The counts the architecture note quotes (printed with -s); each adapter uses the protocol."""
    counts: Counter[tuple[str, str]] = Counter()
    for package in ("fedsim", "clients", "server"):
        for path in (ROOT / package).rglob("*.py"):
            for imp in imports_of(path):
                source, target = layer(imp.importer), layer(imp.imported)
                if source != target and target in {
                    "core",
                    "protocol",
                    "clients",
                    "server",
                    "server-core",
                    "orchestration",
                    "flwr",
                }:
                    counts[(source, target)] += 1
    print(sorted(counts.items()))
    assert counts[("clients", "protocol")] > 0 and counts[("server", "protocol")] > 0
    assert counts[("orchestration", "clients")] > 0 and counts[("orchestration", "server")] > 0


# Function-local imports of fedsim's own modules are allowed only where a process boundary or
# start-up time is the reason: the CLI (so `fedsim --help` and argument errors do not load torch
# and Flower) and code that runs inside a Ray worker (its imports happen in that process).
LOCAL_IMPORTS_ALLOWED = {"fedsim.cli", "fedsim.run.runtimes.ray_pool", "fedsim.run.sweep_exec"}


def test_no_function_local_import_of_our_modules_elsewhere() -> None:
    found = []
    for package in ("fedsim", "clients", "server"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for imp in imports_of(path):
                ours = imp.imported.split(".")[0] in ("fedsim", "clients", "server")
                if imp.local and ours and imp.importer not in LOCAL_IMPORTS_ALLOWED:
                    found.append(f"{imp.path.relative_to(ROOT)}:{imp.line} {imp.imported}")
    assert found == []
