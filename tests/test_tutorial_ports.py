"""Tutorial-style PyTorch programs (tests/tutorials/*.py, each written for `import torch`) run
unchanged with torch and, with only their import lines rewritten (`import calcml as torch`,
`import calcml.nn as nn`, `from calcml.utils.data import ...`), with calcml. Both runs must train
(the loss falls by a stated factor, the accuracy reaches a stated level); the programs that are
deterministic in float64 (weights set from a seeded numpy generator, no shuffling, no dropout)
must reach torch's final loss to 1e-8. The calcml run is made with torch made unimportable, so
it passes where torch is not installed; only the comparison needs torch."""
from __future__ import annotations

import math
import re
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import calcml as cm

TUTORIALS = Path(__file__).parent / "tutorials"

# name: (the factor by which the final loss is below the first, the lowest accuracy or None,
#        whether the run is deterministic in float64 and so must match torch's to 1e-8)
PROGRAMS = {
    "two_layer_autograd": (20, None, True),
    "polynomial_sequential": (50, None, True),
    "classifier_dataloader": (8, 0.9, False),
    "mlp_batchnorm_checkpoint": (3, 0.9, False),
    "autoencoder": (50, None, True),
    "makemore_mlp": (2.5, None, False),
}

_IMPORT = re.compile(r"^(import torch\b|from torch\b)")


def port(source: str) -> str:
    """The program with `torch` replaced by `calcml` in its import lines, and nothing else changed."""
    lines = []
    for line in source.splitlines(keepends=True):
        line = re.sub(r"^import torch((?:\.\w+)*) as (\w+)", r"import calcml\1 as \2", line)
        line = re.sub(r"^import torch$", "import calcml as torch", line, flags=re.M)
        line = re.sub(r"^from torch((?:\.\w+)*) import", r"from calcml\1 import", line)
        lines.append(line)
    return "".join(lines)


def _run(source: str, name: str) -> dict:
    # a fresh namespace per run, as `python program.py` would give; the program leaves `result`
    namespace = {"__name__": "__main__", "__file__": str(TUTORIALS / f"{name}.py")}
    exec(compile(source, f"{name}.py", "exec"), namespace)
    return namespace["result"]


@lru_cache(maxsize=None)
def run_calcml(name: str) -> dict:
    source = port((TUTORIALS / f"{name}.py").read_text())
    blocked = {key: sys.modules.pop(key) for key in list(sys.modules) if key == "torch" or key.startswith("torch.")}
    sys.modules["torch"] = None   # `import torch` anywhere in this run is an ImportError
    try:
        return _run(source, name)
    finally:
        del sys.modules["torch"]
        sys.modules.update(blocked)


@lru_cache(maxsize=None)
def run_torch(name: str) -> dict:
    pytest.importorskip("torch")
    return _run((TUTORIALS / f"{name}.py").read_text(), name)


def _check_trains(result: dict, name: str) -> None:
    factor, min_accuracy, _ = PROGRAMS[name]
    assert math.isfinite(result["final_loss"])
    assert result["final_loss"] * factor < result["first_loss"], result
    if min_accuracy is not None:
        assert result["accuracy"] >= min_accuracy, result


def test_every_program_in_the_folder_is_checked():
    assert sorted(p.stem for p in TUTORIALS.glob("*.py")) == sorted(PROGRAMS)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_the_port_changes_only_import_lines_and_leaves_no_torch_import(name):
    source = (TUTORIALS / f"{name}.py").read_text()
    ported = port(source)
    changed = [(a, b) for a, b in zip(source.splitlines(), ported.splitlines()) if a != b]
    assert len(source.splitlines()) == len(ported.splitlines())
    assert changed and all(_IMPORT.match(a) and b.split()[1].startswith("calcml") for a, b in changed)
    assert not any(_IMPORT.match(line) for line in ported.splitlines())
    assert "import torch" in source   # written for torch
    assert "np.random.default_rng(" in source or "manual_seed(" in source   # and seeded


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_the_program_trains_under_calcml_with_only_the_imports_changed(name):
    _check_trains(run_calcml(name), name)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_the_program_trains_under_torch_as_written(name):
    _check_trains(run_torch(name), name)


@pytest.mark.parametrize("name", sorted(n for n, (_, _, deterministic) in PROGRAMS.items() if deterministic))
def test_a_deterministic_program_reaches_torchs_final_loss_to_1e_8(name):
    ours, theirs = run_calcml(name), run_torch(name)
    assert ours["first_loss"] == pytest.approx(theirs["first_loss"], rel=1e-12)
    assert ours["final_loss"] == pytest.approx(theirs["final_loss"], rel=1e-8, abs=1e-12)


def test_the_polynomial_fit_finds_torchs_coefficients():
    ours, theirs = run_calcml("polynomial_sequential"), run_torch("polynomial_sequential")
    np.testing.assert_allclose(ours["coefficients"], theirs["coefficients"], rtol=1e-8, atol=1e-12)
    # the odd powers carry sin: x − x³/6 is what a least-squares cubic approaches
    assert ours["coefficients"][1] > 0.5 and ours["coefficients"][3] < 0


def test_the_checkpoint_restores_the_model_and_the_schedule_in_both():
    for result in (run_calcml("mlp_batchnorm_checkpoint"), run_torch("mlp_batchnorm_checkpoint")):
        assert result["restored_max_difference"] == 0.0
        assert result["final_lr"] == result["restored_lr"] == 0.02 * 0.5 ** 3   # StepLR halved it 3 times
        assert result["restored_epoch"] == 59


def test_the_makemore_model_has_torchs_parameter_count_and_samples_its_vocabulary():
    ours, theirs = run_calcml("makemore_mlp"), run_torch("makemore_mlp")
    assert ours["n_parameters"] == theirs["n_parameters"] == 21 * 8 + 24 * 64 + 64 + 64 * 21 + 21
    assert len(ours["samples"]) == 5 and all(set(s) <= set(ours["vocab"]) - {"."} for s in ours["samples"])


def test_the_classifier_reaches_torchs_accuracy_level():
    ours, theirs = run_calcml("classifier_dataloader"), run_torch("classifier_dataloader")
    assert ours["train_accuracy"] >= 0.95 and theirs["train_accuracy"] >= 0.95
    assert abs(ours["accuracy"] - theirs["accuracy"]) <= 0.1


def test_round_at_the_top_level_is_torchs():
    torch = pytest.importorskip("torch")
    x = np.array([0.5, 1.5, 2.5, -0.5, 1.26, -2.345, 3.7])
    assert cm.round(cm.tensor(x)).tolist() == torch.round(torch.tensor(x)).tolist()   # half to even
    np.testing.assert_allclose(cm.round(cm.tensor(x), decimals=1).numpy(),
                               torch.round(torch.tensor(x), decimals=1).numpy())
    w = cm.tensor(x, requires_grad=True)
    (cm.round(w) * w).sum().backward()   # round's own derivative is 0, as torch's
    np.testing.assert_array_equal(w.grad.numpy(), np.round(x))
