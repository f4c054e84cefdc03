"""The architecture as contracts that fail the build when broken (pyproject.toml, [tool.importlinter]): the
service's tiers as layers, training beside the service, the web framework and ONNX Runtime each in its one tier,
and no import cycle anywhere in service/, modelrepo/ or training/, imports under TYPE_CHECKING included."""

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "modelrepo", "training")


def test_the_import_contracts_hold():
    lint = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "0 broken" in lint.stdout


def test_no_module_imports_one_that_imports_it_back():
    """Every cycle, a package's __init__ and its own modules included (acyclic_siblings compares siblings)."""
    graph = grimp.build_graph(*PACKAGES)  # TYPE_CHECKING imports count
    cycles = {tuple(sorted((module, imported))) for module in graph.modules
              for imported in graph.find_modules_directly_imported_by(module)
              if graph.chain_exists(importer=imported, imported=module)}
    assert not cycles, sorted(cycles)


def test_the_cycle_check_sees_a_cycle(tmp_path, monkeypatch):
    """The check above fails on a package whose modules import each other (under TYPE_CHECKING too)."""
    package = tmp_path / "knot"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from knot import b\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from knot import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("knot")
    assert graph.chain_exists(importer="knot.b", imported="knot.a")
    assert graph.chain_exists(importer="knot.a", imported="knot.b")
