"""The layering the design promises, read from the source's imports: the engine never imports the
interface, and the quantities see a framework only through the backend interface."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "engine"
QUANTITIES = ENGINE / "debug" / "quantities"

# What a quantity may import from calcml.debug: the backend interface and the framework-free
# modules (statistics of arrays, thresholds and conditions, schedules, the published records,
# the data view's reading of outputs on host arrays).
QUANTITY_MAY_IMPORT = {"backend", "diagnostics", "probes", "schedule", "snapshot", "context", "dataview", "batchnoise"}
# The calcml engine's own modules, which only a calcml backend may use.
ENGINE_INTERNALS = {"tensor", "ops", "tracing", "scope", "nn", "optim", "curvature", "bayes", "mcmc", "reg",
                    "data", "composites", "gradcheck", "calcml_backend", "bayesprobe", "curvatureprobe",
                    "tracesummary", "session", "worker", "loader"}


def imports(path: Path) -> list:
    """(module, level) of every import in a file: `from ..x import y` is ('x', 2)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.module is None:
                found += [(alias.name, node.level) for alias in node.names]
            else:
                found.append((node.module, node.level))
    return found


@pytest.mark.parametrize("path", sorted(ENGINE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_engine_never_imports_the_interface(path):
    for module, level in imports(path):
        top = module.split(".")[0]
        assert not (level == 0 and (top in ("textual", "rich", "plotext", "textual_plotext", "tui")
                                    or module.startswith("calcml.tui"))), f"{path.name} imports {module}"


@pytest.mark.parametrize("path", sorted(QUANTITIES.glob("*.py")), ids=lambda p: p.name)
def test_quantities_reach_a_framework_only_through_the_backend(path):
    for module, level in imports(path):
        if level == 0:
            assert module.split(".")[0] in ("__future__", "math", "collections", "numpy", "typing", "dataclasses"), \
                f"{path.name} imports {module}"
        elif level == 1:
            continue      # a sibling quantity or the base
        else:
            name = module.split(".")[0]
            assert level == 2 and name in QUANTITY_MAY_IMPORT, f"{path.name} imports {'.' * level}{module}"
            assert name not in ENGINE_INTERNALS


def test_the_rule_catches_an_engine_import(tmp_path):
    """The check above can fail: a quantity importing the engine's tensors is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from ...tensor import Tensor\nfrom ..session import Session\n")
    found = imports(bad)
    assert ("tensor", 3) in found and ("session", 2) in found
    assert all(not (level == 2 and module in QUANTITY_MAY_IMPORT) for module, level in found)
