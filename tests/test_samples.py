"""Each sample model, run headless through the Session, shows exactly the warnings its docstring promises.

Some runs are shortened (steps=...) where the behaviour already shows, to keep the suite fast.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import calcml as cm
from calcml.debug import Session, load_model_file
from calcml.debug.quantities.chain_rule import chain_products

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
                     "spirals_adam", "sine_mlp", "nan_demo", "newton_logreg", "lr_edge", "adam_vs_sgd",
                     "bayes_regression", "bayes_linear_exact", "hmc_logreg", "torch_residual",
                     "torch_train_script", "torch_digits_cnn", "torch_attention",
                     "residual_mlp", "deep_batchnorm", "makemore_mlp", "digits_cnn"}   # the last: a training script (test_torch_script.py)


def test_torch_residual_is_quiet_and_learns_through_its_shortcuts():
    pytest.importorskip("torch")
    s, final = run("torch_residual", steps=300)
    assert started(s) == set() and s.state == "finished" and s.backend.optimizer_name == "SGD"
    first = s.history.series("loss")[:10].mean()
    assert final.loss < 0.1 * first
    relus = [layer for layer in final.layers if layer.type == "ReLU"]
    assert len(relus) == 8 and all(0 < layer.mean_local_derivative < 1 for layer in relus)
    products = [p for _, p in chain_products(final.layers)]
    assert min(products) > 0.1     # the shortcuts carry the gradient down to the first layer


def test_residual_mlp_is_quiet_and_its_chain_joins_the_shortcuts():
    s, final = run("residual_mlp", steps=300)
    assert started(s) == set() and s.state == "finished"
    assert final.loss < 0.1 * s.history.series("loss")[:10].mean()
    forks = [layer for layer in final.layers if layer.grad_in_total_norm is not None]
    assert [layer.name for layer in forks] == [f"blocks.{b}.fc1" for b in range(8)]
    # the shortcut carries more of the gradient than the block's own path
    assert all(layer.other_paths_ratio > 1.5 for layer in forks)
    assert min(p for _, p in chain_products(final.layers)) > 0.1


def test_digits_cnn_learns_quietly_and_counts_dead_units_by_channel():
    s, final = run("digits_cnn")
    assert started(s) == set() and final.loss < 0.1
    dead = {layer.name: layer.dead_fraction for layer in final.layers if layer.type == "ReLU"}
    assert (dead["1"] * 8) % 1 == 0 and (dead["4"] * 16) % 1 == 0 and dead["4"] <= 0.125   # whole channels


def test_torch_digits_cnn_kills_its_relu_channels_and_learns_at_a_lower_rate(tmp_path):
    pytest.importorskip("torch")
    s, final = run("torch_digits_cnn", steps=60)
    assert started(s) == {"dead_relu"} and {e.layer for e in s.warnings} == {"1", "3"}
    dead = {layer.name: layer.dead_fraction for layer in final.layers if layer.type == "ReLU"}
    assert (dead["1"] * 8) % 1 == 0 and (dead["3"] * 16) % 1 == 0      # whole channels
    assert final.loss > 2.0                                              # stalled near log 10
    fixed = tmp_path / "torch_digits_cnn.py"
    fixed.write_text((SAMPLES / "torch_digits_cnn.py").read_text().replace("lr=2.0", "lr=0.05"))
    s = Session(load_model_file(str(fixed), steps=400))
    final = s.run_to_end()
    assert started(s) == set() and final.loss < 0.2


def test_torch_attention_saturates_its_softmax_until_scaled_as_the_docstring_says(tmp_path):
    pytest.importorskip("torch")

    def at_50(path):
        s = Session(load_model_file(str(path), steps=50))
        final = s.run_to_end()
        layers = {layer.name: layer for layer in final.layers}
        grads = {name: layers[f"block.{name}"].params["weight"].grad_norm for name in "qkv"}
        return s, final, layers["block.softmax()"], grads
    s, final, softmax, grads = at_50(SAMPLES / "torch_attention.py")
    assert started(s) == {"saturation"} and {e.layer for e in s.warnings} == {"block.softmax()"}
    assert softmax.type == "F.softmax" and softmax.mean_local_derivative < 0.25 / 10
    assert grads["q"] < grads["v"] / 3 and grads["k"] < grads["v"] / 3
    fixed = tmp_path / "torch_attention.py"
    fixed.write_text((SAMPLES / "torch_attention.py").read_text().replace(
        "SCALE = 4.0 ", "SCALE = 1 / math.sqrt(WIDTH) "))
    s2, final2, softmax2, grads2 = at_50(fixed)
    assert started(s2) == set() and softmax2.mean_local_derivative > 2 * softmax.mean_local_derivative
    assert grads2["q"] > grads["q"] and grads2["k"] > grads["k"] and final2.loss < final.loss


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


def test_the_vanishing_warning_names_the_factors_that_shrink_the_gradient():
    """At the step it starts, the message counts the factors ‖∂L/∂in‖/‖∂L/∂out‖ below 1 between
    the layer and the loss, and names the smallest, as the layers' own numbers give them."""
    steps = []
    s, _ = run("deep_sigmoid", steps=20, on_step=steps.append)
    event = next(w for w in s.warnings if w.kind == "vanishing_gradient" and w.layer == "0")
    layers = next(snap for snap in steps if snap.step == event.step).layers
    above = [(layer.grad_in_norm / layer.grad_out_norm, layer) for layer in layers[1:]
             if layer.grad_in_norm is not None and layer.grad_out_norm]
    factor, smallest = min(above, key=lambda pair: pair[0])
    shrinking = sum(f < 1 for f, _ in above)
    assert shrinking > 1 and smallest.type == "Sigmoid"
    assert (f"{shrinking} factors below 1, the smallest {smallest.name} (Sigmoid) ×{factor:.3g}"
            in event.message), event.message


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


def test_newton_logreg_reaches_a_tiny_gradient_in_a_handful_of_steps():
    s, final = run("newton_logreg")
    assert started(s) == set() and s.state == "finished"
    g = s.history.series("newton.grad_norm")
    assert np.min(g[:8]) < 1e-10
    assert final.optimizer_state["positive_definite"] and not final.optimizer_state["damped"]


def test_lr_edge_is_flagged_before_it_diverges():
    s, final = run("lr_edge")
    assert started(s) == {"lr_too_large", "loss_diverging", "exploding_gradient"}
    first = {e.kind: e.step for e in reversed(s.warnings) if e.event == "start"}
    assert first["lr_too_large"] == 1 and first["loss_diverging"] > first["lr_too_large"] + 3
    spec = load_model_file(str(SAMPLES / "lr_edge.py"))
    assert s.curvature.lambda_max == pytest.approx(spec.namespace["lambda_max"], rel=1e-8)
    assert s.curvature.lr_edge < s.lr < 1.2 * s.curvature.lr_edge   # just past the edge


def test_lr_edge_halved_learns():
    s, final = run("lr_edge", before=lambda s: s.scale_lr(0.5))
    assert started(s) == set() and final.loss < 0.05


def test_adam_vs_sgd_per_parameter_steps_win():
    s, final = run("adam_vs_sgd")
    assert started(s) == set() and final.loss < 1e-3
    (layer,) = final.layers
    a, b = layer.params["a"], layer.params["b"]
    assert b.hessian_diag > 300 * a.hessian_diag          # H ≈ diag(2, 1800)
    assert a.effective_lr > 10 * b.effective_lr           # Adam's steps follow the curvature
    # gradient descent just under its edge, same steps: a has hardly moved
    spec = load_model_file(str(SAMPLES / "adam_vs_sgd.py"))
    lam = 2 * np.linalg.eigvalsh(spec.data[0].T @ spec.data[0] / len(spec.data[0]))[-1]
    spec.optimizer = cm.optim.SGD(spec.model.parameters(), lr=0.9 * 2 / lam)
    sgd = Session(spec)
    sgd_final = sgd.run_to_end()
    assert started(sgd) == set() and sgd_final.loss > 100 * final.loss


def test_sine_mlp_bends_its_curve_into_the_sine_quietly():
    s = Session(load_model_file(str(SAMPLES / "sine_mlp.py")))
    first = s.initial_snapshot().data_view
    s.run_to_end()
    last = s.snapshot.data_view
    assert started(s) == set() and s.state == "finished"
    assert first.kind == last.kind == "curve" and first.fit > 0.5 and last.fit < 0.02
    xs = np.linspace(*last.x_range, last.columns)
    inside = np.abs(xs) <= 3                       # the data's range
    assert np.max(np.abs(np.array(last.values) - np.sin(xs))[inside]) < 0.1


def test_deep_batchnorm_fixes_deep_sigmoids_vanishing_gradient():
    s, final = run("deep_batchnorm", steps=100)
    plain, plain_final = run("deep_sigmoid", steps=100)
    assert "vanishing_gradient" not in started(s) and "vanishing_gradient" in started(plain)
    assert started(s) <= {"lr_too_large"}          # the sharp start its docstring explains
    to_first = dict((layer.name, p) for layer, p in chain_products(final.layers))["0"]
    plain_first = dict((layer.name, p) for layer, p in chain_products(plain_final.layers))["0"]
    assert to_first > 1e6 * plain_first            # measured: about 4.7 against 1e-8


def test_makemore_mlp_learns_from_log_27_and_its_embedding_passes_nothing_on():
    s, final = run("makemore_mlp")
    losses = s.history.series("loss")
    assert abs(losses[:3].mean() - np.log(27)) < 0.3 and losses[-20:].mean() < 2.0
    assert started(s) == set()
    emb = final.layers[0]
    assert emb.type == "Embedding" and emb.grad_in_norm is None and emb.params["weight"].grad_norm > 0


def test_torch_attention_through_the_fused_function_is_measured_and_warned_about_alike(tmp_path):
    """The docstring's other claim: with F.scaled_dot_product_attention(q, k, v, scale=SCALE) in
    place of the written-out attention, the same softmax (measured beside the fused function)
    saturates as much and is warned about, and the training is the same."""
    pytest.importorskip("torch")
    fused = tmp_path / "torch_attention.py"
    source = (SAMPLES / "torch_attention.py").read_text()
    written = ("        scores = self.q(h) @ self.k(h).transpose(-2, -1) * self.scale\n"
               "        x = x + self.proj(scores.softmax(-1) @ self.v(h))\n")
    assert written in source
    fused.write_text(source.replace(written, "        x = x + self.proj(F.scaled_dot_product_attention(\n"
                                              "            self.q(h), self.k(h), self.v(h), scale=self.scale))\n"))
    runs = []
    for path in (SAMPLES / "torch_attention.py", fused):
        s = Session(load_model_file(str(path), steps=50))
        runs.append((s, s.run_to_end()))
    (s, final), (s2, final2) = runs
    assert started(s2) == {"saturation"} and {e.layer for e in s2.warnings} == {"block.softmax()"}
    mine, theirs = (next(layer for layer in f.layers if layer.name == "block.softmax()") for f in (final, final2))
    assert theirs.type == "attention" and theirs.grad_out_norm is None
    assert theirs.mean_local_derivative == pytest.approx(mine.mean_local_derivative, rel=1e-3)
    assert theirs.saturated_fraction == pytest.approx(mine.saturated_fraction, abs=0.02)
    assert final2.loss == pytest.approx(final.loss, rel=1e-3)
