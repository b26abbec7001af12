"""Attention whose softmax is inside one fused function (`F.scaled_dot_product_attention`,
`nn.MultiheadAttention`, `nn.TransformerEncoderLayer`) has a softmax site of its own: its
probabilities are computed again beside the function and measured as a written-out softmax's
are, with the model's own computation (and its RNG) left exactly as it was."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from calcml.debug import Session, SessionConfig, torch_functional  # noqa: E402
from calcml.debug.torch_backend import TorchBackend                # noqa: E402
from helpers import make_spec                                      # noqa: E402

D = torch.float64
X = np.random.default_rng(3).normal(size=(12, 6, 4))
Y = X[:, :, :1].mean(1)


class Heads(torch.nn.Module):
    """Attention over (batch, tokens, 4): written out (`fused=False`) or through
    F.scaled_dot_product_attention, the same weights and scale either way."""

    def __init__(self, scale, fused, heads=1):
        super().__init__()
        self.q, self.k, self.v = (torch.nn.Linear(4, 4, dtype=D) for _ in range(3))
        self.head = torch.nn.Linear(4, 1, dtype=D)
        self.scale, self.fused, self.heads = scale, fused, heads

    def split(self, t):
        B, T, E = t.shape
        return t.view(B, T, self.heads, E // self.heads).transpose(1, 2)

    def forward(self, x):
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        if self.fused:
            y = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            y = (q @ k.transpose(-2, -1) * self.scale).softmax(-1) @ v
        return self.head(y.transpose(1, 2).reshape(x.shape).mean(1))


def session(model, steps=3, data=(X, Y), **config):
    spec = make_spec(model, F.mse_loss, data, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), steps=steps)
    run = Session(spec, SessionConfig(curvature_every=0, **config))
    return run, run.run_to_end()


def layer(snapshot, name):
    return next(entry for entry in snapshot.layers if entry.name == name)


@pytest.mark.parametrize("scale", [0.5, 40.0])
def test_the_fused_softmax_gives_the_numbers_of_the_same_softmax_written_out(scale):
    torch.manual_seed(0)
    written, fused = Heads(scale, fused=False, heads=2), Heads(scale, fused=True, heads=2)
    fused.load_state_dict(written.state_dict())
    _, a = session(written)
    run, b = session(fused)
    site = layer(b, "softmax()")
    assert site.type == "attention" and site.activation == "softmax"
    assert site.grad_in_norm is None and site.grad_out_norm is None   # the fused function makes no logits
    mine = layer(a, "softmax()")
    assert site.mean_local_derivative == pytest.approx(mine.mean_local_derivative, rel=1e-12)
    assert site.saturated_fraction == pytest.approx(mine.saturated_fraction, abs=1e-12)
    for name in ("q", "k", "v", "head"):
        assert layer(b, name).params["weight"].grad_norm == pytest.approx(layer(a, name).params["weight"].grad_norm, rel=1e-10)
    if scale > 1:
        assert site.saturated_fraction > 0.5
        events = [w for w in run.warnings if w.kind == "saturation" and w.layer == "softmax()"]
        assert events and "of softmax rows put over 99% of their weight on one entry" in events[0].message
    else:
        assert not [w for w in run.warnings if w.kind == "saturation"]


def sdpa_cases():
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(3, 4, 5, 8, generator=g, dtype=D) for _ in range(3))
    bool_mask = torch.rand(3, 1, 5, 5, generator=g) > 0.3
    bool_mask[..., 0] = True                      # (every row keeps one key: no row of NaNs)
    float_mask = torch.randn(5, 5, generator=g, dtype=D)
    k2, v2 = k[:, :2], v[:, :2]                   # two key/value heads shared by four query heads
    return [((q, k, v), {}), ((q, k, v), {"is_causal": True}), ((q, k, v), {"attn_mask": bool_mask}),
            ((q, k, v), {"attn_mask": float_mask, "scale": 0.3}), ((q, k2, v2), {"enable_gqa": True})]


@pytest.mark.parametrize("case", range(5))
def test_the_probabilities_computed_again_make_the_fused_functions_own_output(case):
    """p·v with the p computed beside the function is the function's output (torch's kernel, not
    ours): the scale, causal and boolean or additive masks, and grouped heads read as it reads them."""
    args, kwargs = sdpa_cases()[case]
    p = torch_functional.attention_probabilities(F.scaled_dot_product_attention, args, kwargs)
    v = args[2]
    if kwargs.get("enable_gqa"):
        v = v.repeat_interleave(args[0].size(-3) // v.size(-3), dim=-3)
    assert torch.allclose(p @ v, F.scaled_dot_product_attention(*args, **kwargs), rtol=1e-12, atol=1e-13)
    assert torch.allclose(p.sum(-1), torch.ones((), dtype=D))


def test_a_large_batch_is_measured_on_its_first_examples(monkeypatch):
    torch.manual_seed(0)
    fused = Heads(3.0, fused=True, heads=2)
    written = Heads(3.0, fused=False, heads=2)
    written.load_state_dict(fused.state_dict())
    per_example = 2 * 6 * 6          # heads × tokens × tokens
    monkeypatch.setattr(torch_functional, "ATTENTION_ENTRIES", 5 * per_example + 7)
    _, b = session(fused, steps=1)
    # the written-out softmax of the first five examples alone, at the same weights
    _, a = session(written, steps=1, data=(X[:5], Y[:5]))
    site, mine = layer(b, "softmax()"), layer(a, "softmax()")
    assert site.mean_local_derivative == pytest.approx(mine.mean_local_derivative, rel=1e-12)
    assert site.saturated_fraction == pytest.approx(mine.saturated_fraction, abs=1e-12)
    _, whole = session(written, steps=1)     # (the whole batch measures otherwise)
    assert layer(whole, "softmax()").mean_local_derivative != pytest.approx(site.mean_local_derivative, rel=1e-6)


class Encoder(torch.nn.Module):
    def __init__(self, dropout=0.1):
        super().__init__()
        self.block = torch.nn.TransformerEncoderLayer(4, 2, 8, dropout=dropout, batch_first=True, dtype=D)
        self.head = torch.nn.Linear(4, 1, dtype=D)

    def forward(self, x):
        return self.head(self.block(x).mean(1))


def test_a_transformer_layer_shows_its_attentions_softmax():
    torch.manual_seed(0)
    model = Encoder()
    start = Encoder()
    start.load_state_dict(model.state_dict())
    _, snap = session(model, steps=1)
    site = layer(snap, "block.self_attn.softmax()")
    assert site.type == "attention" and [e.name for e in snap.layers].index("block.self_attn.softmax()") == 1
    # by hand: the heads' weights nn.MultiheadAttention gives (dropout off), at the first step's weights
    x = torch.as_tensor(X)
    with torch.no_grad():
        start.eval()
        _, p = start.block.self_attn(x, x, x, need_weights=True, average_attn_weights=False)
    p = p.numpy()
    assert site.mean_local_derivative == pytest.approx(float(np.mean(p * (1 - p))), rel=1e-12)
    assert site.saturated_fraction == pytest.approx(float(np.mean(p.max(-1) > 0.99)), abs=1e-15)


def test_the_model_trains_exactly_as_it_does_without_calcml():
    """The probabilities computed beside the function draw no random numbers and change nothing:
    with dropout in the attention and after it, the debugged steps give the losses and the
    weights of plain PyTorch steps from the same RNG state, bit for bit."""
    torch.manual_seed(0)
    debugged, plain = Encoder(dropout=0.2), Encoder(dropout=0.2)
    plain.load_state_dict(debugged.state_dict())
    backend = TorchBackend(debugged, F.mse_loss, torch.optim.SGD(debugged.parameters(), lr=0.05))
    optimizer = torch.optim.SGD(plain.parameters(), lr=0.05)
    x, y = backend.as_batch((X, Y))
    for step in range(3):
        torch.manual_seed(10 + step)
        record = backend.step((x, y))
        backend.apply_update(record, None)
        assert "block.self_attn.softmax()" in record.captures
        torch.manual_seed(10 + step)
        loss = F.mse_loss(plain(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert record.loss == float(loss.detach())
        for a, b in zip(debugged.parameters(), plain.parameters()):
            assert torch.equal(a, b)


def test_the_softmax_is_not_computed_again_in_a_step_recorded_op_by_op():
    torch.manual_seed(0)
    model = Heads(1.0, fused=True)
    backend = TorchBackend(model, F.mse_loss, torch.optim.SGD(model.parameters(), lr=0.01))
    batch = backend.as_batch((X, Y))
    plain = backend.step(batch)
    assert "softmax()" in plain.captures
    traced = backend.step(batch, traced=True)
    ops = [op.op for op in traced.trace.ops if op.phase == "forward"]
    assert not any("softmax" in op for op in ops), ops          # only the model's own ops
    assert "softmax()" not in traced.captures
    assert backend._functional.recording is False


def test_the_chain_of_factors_passes_the_attention_softmax_and_layers_that_did_not_run_by():
    """The inspector's chain from the loss down to the attention: every product measured. The
    softmax measured beside the fused function has no gradients, and the out_proj of
    nn.MultiheadAttention never runs as a module (F.linear reads its weights): neither is a link."""
    from calcml.tui.text_inspector import chain_links, chain_summary
    torch.manual_seed(0)
    _, snap = session(Encoder(), steps=2)
    links = chain_links(snap.layers, "block.self_attn")
    names = [link.layer for link in links]
    assert "block.self_attn.softmax()" not in names and "block.self_attn.out_proj" not in names
    assert all(link.product is not None for link in links), [(link.layer, link.product) for link in links]
    assert links[-1].product == layer(snap, "block.self_attn").params["in_proj_weight"].grad_norm
    assert links[0].product == layer(snap, "head").grad_out_norm
    # the site itself, inspected, shows its own row last, and says why it has no gradient
    site = chain_links(snap.layers, "block.self_attn.softmax()")
    assert site[-1].layer == "block.self_attn.softmax()" and site[-1].factor is None
    said = chain_summary(site, layer(snap, "block.self_attn.softmax()")).plain
    assert "computed again beside it" in said and "no gradient of its own" in said
    assert "beside" not in chain_summary(links, layer(snap, "block.self_attn")).plain


def test_a_long_layer_type_keeps_its_last_words_in_the_tables():
    """nn.MultiheadAttention's out_proj is a NonDynamicallyQuantizableLinear: 31 letters would
    push the table's numbers off an 80-column screen. The kind of layer it is stays readable."""
    from calcml.tui.format import TYPE_WIDTH, short_type
    from calcml.tui.text_layers import layer_cells
    assert short_type("NonDynamicallyQuantizableLinear") == "…QuantizableLinear"
    assert short_type("MultiheadAttention") == "MultiheadAttention"
    assert short_type("TransformerEncoderLayer") == "…EncoderLayer"
    assert short_type("X" * 40) == "…" + "X" * (TYPE_WIDTH - 1)
    torch.manual_seed(0)
    _, snap = session(Encoder(), steps=1)
    cells = {layer.name: layer_cells(layer, {}, {}) for layer in snap.layers}
    assert cells["block.self_attn.out_proj"][2] == "…QuantizableLinear"
    assert all(len(row[2]) <= TYPE_WIDTH for row in cells.values())


class SelfAttentionBlock(torch.nn.Module):
    """h + attn(h, h, h): self-attention with a residual shortcut around it."""

    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Linear(4, 8, dtype=D)
        self.attn = torch.nn.MultiheadAttention(8, 2, batch_first=True, dtype=D)
        self.head = torch.nn.Linear(8, 1, dtype=D)

    def forward(self, x, attention_input=None):
        h = self.inp(x)
        a = self.attn(*(3 * (h if attention_input is None else attention_input(h),)), need_weights=False)[0]
        return self.head((h + a).mean(1)), h, a


def test_self_attention_gets_its_own_share_of_its_inputs_gradient_and_its_outputs():
    """nn.MultiheadAttention returns (output, weights) and reads h as query, key and value: its
    ‖∂L/∂out‖ is that of its output, and it is a fork (h also takes the shortcut) whose own share
    of ∂L/∂h is what the three reads pass back together, against torch's autograd with a leaf of
    its own for the attention's input."""
    torch.manual_seed(0)
    model = SelfAttentionBlock()

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            return self.net(x)[0]
    wrapped = Wrapped()
    backend = TorchBackend(wrapped, F.mse_loss, torch.optim.SGD(wrapped.parameters(), lr=0.01))
    x, y = backend.as_batch((X, Y))
    leaf = {}

    def own_leaf(h):
        leaf["h"] = h.detach().requires_grad_()
        return leaf["h"]
    out, h, a = model(x, own_leaf)
    h.retain_grad()
    a.retain_grad()
    F.mse_loss(out, y).backward()
    share = leaf["h"].grad                       # through the attention alone
    whole = share + h.grad                       # and the shortcut
    for _ in range(2):                           # (the first step finds the forks, the next uses them)
        c = backend.step((x, y)).captures["net.attn"]
        np.testing.assert_allclose(np.asarray(c.grad_out), a.grad.numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(np.asarray(c.grad_x), share.numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(np.asarray(c.grad_x_total), whole.numpy(), rtol=1e-12, atol=1e-15)
        assert not np.allclose(np.asarray(c.grad_x), np.asarray(c.grad_x_total))


def test_a_layer_called_with_keywords_is_measured_as_one_called_with_arguments():
    """attn(query=h, key=h, value=h): the input is the first keyword's, and the numbers are those
    of attn(h, h, h)."""

    class ByKeyword(SelfAttentionBlock):
        def forward(self, x):
            h = self.inp(x)
            return self.head((h + self.attn(query=h, key=h, value=h, need_weights=False)[0]).mean(1))

    class ByPosition(SelfAttentionBlock):
        def forward(self, x):
            return super().forward(x)[0]
    torch.manual_seed(0)
    by_keyword, by_position = ByKeyword(), ByPosition()
    by_position.load_state_dict(by_keyword.state_dict())
    records = []
    for model in (by_keyword, by_position):
        backend = TorchBackend(model, F.mse_loss, torch.optim.SGD(model.parameters(), lr=0.01))
        records.append([backend.step(backend.as_batch((X, Y))).captures["attn"] for _ in range(2)])
    for a, b in zip(*records):
        for field in ("x", "out", "grad_x", "grad_out", "grad_x_total"):
            assert getattr(a, field) is not None, field
            np.testing.assert_allclose(np.asarray(getattr(a, field)), np.asarray(getattr(b, field)),
                                       rtol=1e-12, atol=1e-15, err_msg=field)


def test_where_the_probabilities_cannot_be_computed_again_the_step_goes_on_without_them(monkeypatch):
    def fails(*args, **kwargs):
        raise RuntimeError("an input this computation does not take")
    monkeypatch.setattr(torch_functional, "_sdpa_probabilities", fails)
    torch.manual_seed(0)
    model = Heads(1.0, fused=True)
    backend = TorchBackend(model, F.mse_loss, torch.optim.SGD(model.parameters(), lr=0.01))
    record = backend.step(backend.as_batch((X, Y)))
    assert "softmax()" not in record.captures and record.captures["head"].grad_out is not None
    assert math.isfinite(record.loss)
