"""The package's layers, checked statically: the runtime never imports torch or the training,
model, export or kernel layers (the .pt backend reaches it through an entry point); faces never
imports data (both use the neutral fer_edge.paths); the modules both sides share (metadata,
decisions, paths) are torch-free. The behavioural twin (importing the runtime with torch
blocked) lives in tests/test_package.py."""
import ast
from pathlib import Path

import pytest

import fer_edge

PKG = Path(fer_edge.__file__).resolve().parent
TRAINING_SIDE = ("torch", "fer_edge.train", "fer_edge.models", "fer_edge.export", "fer_edge.ops")


def imports(path: Path) -> set[str]:
    """Every module a file imports (statements at any depth, and import_module("...") literals)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return found


def offending(files, banned) -> dict:
    bad = {}
    for f in files:
        hits = sorted(m for m in imports(f) if any(m == b or m.startswith(b + ".") for b in banned))
        if hits:
            bad[str(f.relative_to(PKG))] = hits
    return bad


def test_the_runtime_never_imports_the_training_side():
    files = list((PKG / "runtime").rglob("*.py"))
    assert len(files) >= 8
    assert offending(files, TRAINING_SIDE) == {}


@pytest.mark.parametrize("module", ["metadata.py", "decisions.py", "paths.py", "_native.py"])
def test_shared_modules_are_torch_free(module):
    assert offending([PKG / module], TRAINING_SIDE + ("fer_edge.runtime",)) == {}


def test_faces_never_import_data():
    assert offending(list((PKG / "faces").rglob("*.py")), ("fer_edge.data",)) == {}


def test_the_checker_sees_nested_and_dynamic_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    import torch.nn\n    from fer_edge.train import x\n"
                 "    importlib.import_module('fer_edge.export.api')\n")
    assert imports(f) >= {"torch.nn", "fer_edge.train", "fer_edge.export.api"}
