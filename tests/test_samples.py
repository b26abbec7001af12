"""Each sample model, run headless through the Session, shows exactly the warnings its docstring promises.

Some runs are shortened (steps=...) where the behaviour already shows, to keep the suite fast.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calcml.debug import Session, load_model_file

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"


def run(name, steps=None, before=None, on_step=None):
    spec = load_model_file(str(SAMPLES / f"{name}.py"), steps=steps)
    s = Session(spec)
    if before is not None:
        before(s)
    final = s.run_to_end(on_step=on_step)
    return s, final


def started(session) -> set:
    return {e.kind for e in session.warnings if e.event == "start"}


def test_every_sample_is_covered():
    names = {p.stem for p in SAMPLES.glob("*.py")} - {"__init__"}
    assert names == {"xor_mlp", "deep_sigmoid", "deep_relu", "dead_relu", "exploding", "l1_vs_l2",
                     "spirals_adam", "nan_demo"}


def test_xor_mlp_is_healthy_and_learns():
    s, final = run("xor_mlp")
    assert started(s) == set() and s.state == "finished" and s.step_count == 300
    assert final.loss < 0.1


@pytest.fixture(scope="module")
def deep_pair():
    steps = 200
    return run("deep_sigmoid", steps=steps), run("deep_relu", steps=steps)


def test_deep_sigmoid_shows_vanishing_gradients(deep_pair):
    (s, final), _ = deep_pair
    assert started(s) == {"vanishing_gradient"} and s.state == "finished"
    layers = {e.layer for e in s.warnings}
    assert "0" in layers                                   # the layer nearest the input
    assert "18" not in layers                              # not the last Linear: the reference


def test_deep_relu_is_quiet_and_learns_far_better(deep_pair):
    (sig, sig_final), (relu, relu_final) = deep_pair
    assert started(relu) == set() and relu.state == "finished"
    assert relu.step_count == sig.step_count
    assert relu_final.loss < 0.5 * sig_final.loss


def test_dead_relu_shows_dead_relu():
    s, final = run("dead_relu")
    assert started(s) == {"dead_relu"} and s.state == "finished"
    (event,) = [e for e in s.warnings if e.event == "start"]
    assert event.layer == "1" and event.value >= 0.5


def test_exploding_shows_exploding_gradient():
    s, final = run("exploding", steps=40)
    assert started(s) == {"exploding_gradient"} and s.state == "finished"
    assert "0" in {e.layer for e in s.warnings}


def test_l1_vs_l2_is_quiet():
    s, final = run("l1_vs_l2")
    assert started(s) == set() and s.state == "finished" and s.regularizer.kind == "L1"


def irrelevant_weights(reg):
    """The 17 weights of the irrelevant features after a full run with L1 (the file's) or L2 (swapped)."""
    before = None if reg == "L1" else (lambda s: s.set_regularizer("L2", 0.05))
    s, final = run("l1_vs_l2", before=before)
    assert started(s) == set() and final.regularizer == (reg, 0.05)
    w = s.model.weight.data.ravel()
    assert w.shape == (20,) and np.all(np.abs(w[:3]) > 0.5)     # the 3 informative features are learned
    return np.abs(w[3:])


@pytest.fixture(scope="module")
def l1_l2():
    return irrelevant_weights("L1"), irrelevant_weights("L2")


def test_l1_shrinks_the_irrelevant_weights_far_more_than_l2(l1_l2):
    l1, l2 = l1_l2
    assert np.mean(l1) < 0.2 * np.mean(l2) and np.median(l1) < 0.2 * np.median(l2)
    assert np.sum(l1 < 1e-3) > np.sum(l2 < 1e-3)


def test_l1_vs_l2_sparsity_as_documented(l1_l2):
    l1, l2 = l1_l2
    assert np.sum(l1 < 1e-3) >= 15             # (almost) all irrelevant weights reach about zero with L1
    assert np.sum(l2 < 1e-3) <= 2              # with L2 they shrink but stay away from zero (bar chance)


def test_spirals_adam_is_healthy():
    s, final = run("spirals_adam", steps=300)
    assert started(s) == set() and s.state == "finished"
    assert final.loss < 0.2 and final.val_loss is not None and final.val_loss < 0.5


def test_nan_demo_stops_at_the_log_before_updating():
    after_first = {}

    def keep(snap):
        if snap.step == 1:
            after_first.update({n: p.data.copy() for n, p in s_model.named_parameters()})

    spec = load_model_file(str(SAMPLES / "nan_demo.py"))
    s_model = spec.model
    s = Session(spec)
    final = s.run_to_end(on_step=keep)
    # lr 500 is far past the edge 2/λ_max: said at step 1, before the NaN at step 2
    assert started(s) == {"lr_too_large", "non_finite"}
    assert s.state == "stopped" and s.stop_info.reason == "non_finite" and final.stop.reason == "non_finite"
    too_large, event = s.warnings
    assert too_large.kind == "lr_too_large" and too_large.step == 1 and too_large.value == 500.0
    assert event.op == "log" and event.layer is None          # in the hand-written loss function
    assert s.step_count == event.step == 2 and "log" in s.stop_info.detail
    for name, p in s_model.named_parameters():                 # the NaN step was not applied
        np.testing.assert_array_equal(p.data, after_first[name])
        assert np.all(np.isfinite(p.data))
