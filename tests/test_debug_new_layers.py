"""What the debugger shows for BatchNorm1d, LayerNorm, Dropout and Embedding layers: each one's
chain-rule factor ‖∂L/∂in‖/‖∂L/∂out‖ (checked against PyTorch's gradients for the same weights),
Dropout's kept fraction, the inspector's notes, and the step-into formulas of the ops they use."""
from __future__ import annotations

import math

import numpy as np
import pytest

import calcml as cm
from calcml.debug import Session, load_model_file
from calcml.tui.app import DebuggerApp
from calcml.tui.text_inspector import FACTOR_NOTES, chain_links, chain_summary
from calcml.tui.text_layers import health
from tui_helpers import local, plain, run, settle

MODEL = '''
import numpy as np
import calcml as cm
cm.manual_seed(0)
rng = np.random.default_rng(0)
X = rng.normal(size=(32, 4)) * 3 + 1
y = rng.integers(0, 3, size=32).astype(float)
data = (X, y)
model = cm.nn.Sequential(cm.nn.Linear(4, 6), cm.nn.BatchNorm1d(6), cm.nn.Tanh(), cm.nn.LayerNorm(6),
                         {dropout}cm.nn.Linear(6, 3))
def loss(out, labels):
    return cm.nn.functional.cross_entropy(out, labels)
optimizer = cm.optim.SGD(model.parameters(), lr=0.1)
steps = 1
'''


def session(tmp_path, dropout: str = ""):
    path = tmp_path / "model.py"
    path.write_text(MODEL.format(dropout=dropout))
    spec = load_model_file(str(path))
    weights = [p.data.copy() for p in spec.model.parameters()]   # before the step changes them
    s = Session(spec)
    return s, s.run_to_end(), weights, spec


def test_batchnorm_and_layernorm_factors_match_pytorch(tmp_path):
    torch = pytest.importorskip("torch")
    s, final, weights, spec = session(tmp_path)
    layers = {layer.name: layer for layer in final.layers}
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.Tanh(), torch.nn.LayerNorm(6),
                              torch.nn.Linear(6, 3)).double()
    with torch.no_grad():
        for p, w in zip(net.parameters(), weights):
            p.copy_(torch.from_numpy(w))
    X, y = (torch.from_numpy(np.asarray(a)) for a in spec.data)
    acts = [X]
    for module in net:
        acts.append(module(acts[-1]))
        acts[-1].retain_grad()
    torch.nn.functional.cross_entropy(acts[-1], y.long()).backward()
    for i, kind in ((1, "BatchNorm1d"), (3, "LayerNorm")):
        layer = layers[str(i)]
        assert layer.type == kind
        expected = acts[i].grad.norm().item() / acts[i + 1].grad.norm().item()
        assert math.isclose(layer.grad_ratio, expected, rel_tol=1e-9)
        assert FACTOR_NOTES[kind] in plain_links(final.layers, "0")   # the factors above layer 0


def plain_links(layers, name) -> str:
    return " ".join(link.note for link in chain_links(layers, name))


def test_dropout_factor_and_kept_fraction_are_its_masks(tmp_path):
    s, final, _, _ = session(tmp_path, dropout="cm.nn.Dropout(0.4), ")
    layer = next(layer for layer in final.layers if layer.type == "Dropout")
    # one more step through the backend: the mask from its captured gradients, ∂L/∂in = mask · ∂L/∂out
    # (not from the values the probe reads)
    record = s.backend.step(_batch(s))
    c = record.captures[layer.name]
    seen = c.grad_out != 0
    mask = c.grad_x[seen] / c.grad_out[seen]
    assert set(np.round(np.unique(mask), 9)) <= {0.0, round(1 / 0.6, 9)}
    kept = np.count_nonzero(mask) / mask.size
    from calcml.debug.probes import activation_probe
    probe = activation_probe("dropout", s.backend.layer_module(layer.name))
    mean, dead, saturated, measured = probe.stats(c.out, c.x, 0.01)
    assert measured == pytest.approx(kept) and mean == pytest.approx(kept / 0.6)
    assert dead is None and saturated is None
    # in the snapshot: a kept fraction near 1 − p, shown in the layer table, and the factor's note
    assert 0.4 < layer.kept_fraction < 0.8 and "kept" in health(layer)
    assert math.isclose(layer.grad_ratio, layer.grad_in_norm / layer.grad_out_norm)
    assert "×1/(1−p) on the kept units" in plain_links(final.layers, "0")


def _batch(s):
    X, y = s.spec.data
    return cm.tensor(np.asarray(X)), cm.tensor(np.asarray(y))


def test_makemore_embedding_has_no_input_gradient_and_only_used_rows_get_one():
    backend = local("makemore_mlp.py", steps=3)
    layers = backend.state.snapshot.layers
    emb = layers[0]
    assert emb.type == "Embedding" and emb.grad_in_norm is None and emb.grad_out_norm > 0
    summary = plain_text(chain_summary(chain_links(layers, "0"), emb))
    assert "no gradient to pass on" in summary


def plain_text(text) -> str:
    return text.plain


def test_inspector_names_the_batchnorm_factor():
    backend = local("deep_batchnorm.py", steps=3)

    async def scenario():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause()
            await pilot.press("enter")                 # layer 0: every factor above it
            await settle(pilot, lambda: type(app.screen).__name__ == "InspectorScreen")
            table = plain(app.screen.query_one("#chain"))
            assert "BatchNorm1d" in table and "normalises by the batch's σ" in table
            assert "σ'(z) ≤ 1/4" in table

    run(scenario())


def test_step_into_has_formulas_for_the_new_layers_ops():
    from calcml.debug.tracesummary import summarise_trace
    from calcml.tracing import trace
    cm.manual_seed(0)
    model = cm.nn.Sequential(cm.nn.Linear(4, 6), cm.nn.BatchNorm1d(6), cm.nn.ELU(), cm.nn.Dropout(0.3),
                             cm.nn.LayerNorm(6))
    emb = cm.nn.Embedding(5, 4)
    X, idx = cm.tensor(np.random.default_rng(0).normal(size=(8, 4))), cm.tensor(np.arange(8) % 5 * 1.0)
    with trace() as t:
        model(X + emb(idx)).sin().cos().mean().backward()
    ops = summarise_trace(t).ops
    for phase in ("forward", "backward"):
        by_op = {op.op: op for op in ops if op.phase == phase}
        for name in ("getitem", "mean", "mul", "sqrt", "div", "elu", "sin", "cos"):
            assert by_op[name].formulas and all(by_op[name].formulas), (phase, name)
    names = {op.name for op in ops}
    assert {"W[indices]: the rows picked", "(x − batch mean)²", "× γ (weight)", "(x − mean)²"} <= names
    assert any(n.startswith("dropout(p=0.3)") for n in names)
