"""Optimisers with PyTorch's names, defaults and update rules: `cm.optim.SGD`, `Adam`, ...

    opt = cm.optim.Adam(model.parameters(), lr=1e-3)
    for x, y in data:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

Checkpoints: `opt.state_dict()` / `opt.load_state_dict(d)` (PyTorch's layout, cm.save-able).
Learning-rate schedules: `cm.optim.lr_scheduler` (StepLR, CosineAnnealingLR, OneCycleLR, ...).

Notation in the docstrings: θ a parameter, g = ∇θL its gradient, η the learning rate,
λ the weight decay, t the step count (1 for the first step). Every operation is element-wise.
Updates are written in place into `p.data`, so the model's references stay valid and
float32 parameters stay float32.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from ..tensor import Tensor, enable_grad

__all__ = ["Optimizer", "SGD", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdamW", "Newton", "lr_scheduler"]


def _check(name: str, value, low: float = 0.0, below: float | None = None) -> None:
    # `not value >= low` also rejects NaN.
    if not value >= low or (below is not None and not value < below):
        bound = f"in [{low}, {below})" if below is not None else f">= {low}"
        raise ValueError(f"invalid {name}: {value!r} (must be {bound})")


class Optimizer:
    """Base class: holds the parameter groups and per-parameter state; subclasses define `_update`.

    params: an iterable of Tensors, or of dicts ("parameter groups") each with a 'params' entry
    and optional hyper-parameters overriding `defaults`, e.g.
        SGD([{'params': body.parameters()}, {'params': head.parameters(), 'lr': 0.1}], lr=0.01)
    """

    def __init__(self, params, defaults: dict):
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Tensors or of dicts, not a single Tensor; "
                            "wrap it in a list: [p]")
        self.defaults = dict(defaults)
        self.state: dict = defaultdict(dict)  # parameter -> its buffers (Tensors hash by identity)
        self.param_groups: list[dict] = []
        groups = list(params)
        if not groups:
            raise TypeError("the optimiser got an empty parameter list (a generator of "
                            "model.parameters() can only be consumed once)")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters, filling hyper-parameters it does not set from the defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a parameter group must be a dict, not {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("parameters must be given in a fixed order (a list), not a set")
        params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"the optimiser can only update calcml Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("cannot optimise a non-leaf tensor (the result of an op); "
                                 "optimise the leaf parameters it was computed from")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or seen & {id(p) for p in params}:
            raise ValueError("a parameter appears more than once in the optimiser's parameter groups")
        group = {**self.defaults, **param_group, "params": params}
        self._validate(group)
        self.param_groups.append(group)

    def _validate(self, group: dict) -> None:
        """Raise ValueError for an invalid hyper-parameter of a group."""

    def state_dict(self) -> dict:
        """The optimiser's state in PyTorch's layout, to checkpoint and resume training:
            {'state': {index: {'step': ..., 'exp_avg': array, ...}},
             'param_groups': [{'lr': ..., ..., 'params': [indices]}]}
        Parameters are numbered 0, 1, ... in the order of the groups; only those with state appear
        in 'state'. Unlike PyTorch the arrays are copies, so the dict is a snapshot that later steps
        do not change. It holds only arrays, numbers, tuples and strings: cm.save can write it.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: (list(v) if isinstance(v, list) else v) for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if self.state.get(p):
                    state[index[id(p)]] = {k: (v.copy() if isinstance(v, np.ndarray) else v)
                                           for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a state from `state_dict()` (or `cm.load` of a saved one): the same parameter
        groups, of the same sizes, in the same order. The groups' hyper-parameters are replaced by
        the saved ones; arrays are copied (in each parameter's dtype), so the dict stays as it was."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError("an optimiser state dict is a dict with the keys 'state' and 'param_groups' "
                             "(from optimizer.state_dict())")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has a different number of parameter groups "
                             f"({len(saved_groups)}) than the optimiser ({len(self.param_groups)})")
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"loaded state dict contains a parameter group that doesn't match the size of "
                                 f"optimizer's group: group {i} has {len(saved['params'])} parameters there, "
                                 f"{len(group['params'])} here")
            lacking = [k for k in self.defaults if k not in saved]
            if lacking:
                raise ValueError(f"loaded parameter group {i} lacks {', '.join(map(repr, lacking))}: is it the "
                                 f"state of another kind of optimiser than {type(self).__name__}?")
        by_index = {}
        for group, saved in zip(self.param_groups, saved_groups):
            by_index.update(zip(saved["params"], group["params"]))
        unknown = [i for i in state_dict["state"] if i not in by_index]
        if unknown:
            raise ValueError(f"loaded state dict has state for parameters {unknown} that no group lists")
        new_state: dict = defaultdict(dict)
        for i, buffers in state_dict["state"].items():
            p = by_index[i]
            new_state[p] = {k: self._restore(p, i, k, v) for k, v in buffers.items()}
        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            new = {k: (list(v) if isinstance(v, list) else v) for k, v in saved.items() if k != "params"}
            if isinstance(new.get("betas"), list):  # a list after a round trip through JSON-like formats
                new["betas"] = tuple(new["betas"])
            new["params"] = group["params"]
            self._validate(new)
            new_groups.append(new)
        self.state, self.param_groups = new_state, new_groups

    @staticmethod
    def _restore(p: Tensor, index, key, value):
        if isinstance(value, Tensor):
            value = value.data
        if isinstance(value, np.ndarray) and value.ndim > 0:
            if value.shape != p.data.shape:
                raise ValueError(f"loaded state {key!r} of parameter {index} has shape {value.shape}, "
                                 f"but the parameter has shape {p.data.shape}")
            return np.array(value, dtype=p.data.dtype)  # a copy: training must not write into the dict
        if isinstance(value, (np.ndarray, np.generic)):
            return value.item()
        return value

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (p.grad = None), so the next backward does not add to old ones."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:  # zeros in a new array: a step record holding the old one keeps its values
                    p.grad.data = np.zeros_like(p.grad.data)

    def step(self, closure=None):
        """Update every parameter that has a gradient; return closure()'s value if one is given.

        closure: optional callable that recomputes the loss (zero_grad, forward, backward)
        and returns it; it runs before the update, which then uses the gradients it produced.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                # Never modify p.grad itself: only read it, in the parameter's dtype.
                g = np.asarray(p.grad.data, dtype=p.data.dtype)
                self._update(p, g, group, self.state[p])
        return loss

    def _update(self, p: Tensor, g: np.ndarray, group: dict, state: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define _update() or step()")

    def _group_of(self, p: Tensor) -> dict:
        for group in self.param_groups:
            if any(q is p for q in group["params"]):
                return group
        raise ValueError("this tensor is not one of the optimiser's parameters")

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines) + "\n)"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum: θ ← θ − η·∇θL.

    g ← g + λ·θ                               (weight_decay λ, if λ ≠ 0)
    with momentum μ ≠ 0:
        b ← g  on the first step,  b ← μ·b + (1 − τ)·g  after    (dampening τ)
        g ← g + μ·b  if nesterov,  else  g ← b
    θ ← θ − η·g
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _validate(self, group):
        _check("learning rate", group["lr"])
        _check("momentum", group["momentum"])
        _check("weight_decay", group["weight_decay"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires momentum > 0 and dampening = 0")

    def _update(self, p, g, group, state):
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p.data
        mu = group["momentum"]
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= mu
                buf += (1 - group["dampening"]) * g
            g = g + mu * buf if group["nesterov"] else buf
        p.data -= group["lr"] * g


class Adagrad(Optimizer):
    """Adagrad: a per-element step that shrinks with the sum of that element's squared gradients.

    g ← g + λ·θ                        (if λ ≠ 0)
    η_t = η / (1 + (t − 1)·lr_decay)
    s ← s + g²                         (s starts at initial_accumulator_value)
    θ ← θ − η_t · g / (√s + ε)
    """

    def __init__(self, params, lr: float = 0.01, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps))

    def _validate(self, group):
        for key in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            _check("learning rate" if key == "lr" else key, group[key])

    def _clr(self, group, step):
        return group["lr"] / (1 + (step - 1) * group["lr_decay"])

    def _update(self, p, g, group, state):
        if not state:
            state["step"] = 0
            state["sum"] = np.full_like(p.data, group["initial_accumulator_value"])
        state["step"] += 1
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p.data
        state["sum"] += g * g
        p.data -= self._clr(group, state["step"]) * g / (np.sqrt(state["sum"]) + group["eps"])

    def effective_lr(self, p):
        """η_t / (√s + ε) per element, as of the last step (None before the first)."""
        group, state = self._group_of(p), self.state.get(p)
        if not state:
            return None
        return self._clr(group, state["step"]) / (np.sqrt(state["sum"]) + group["eps"])


class Adadelta(Optimizer):
    """Adadelta: the step's size comes from running averages of g² and of past steps², not from η alone.

    g ← g + λ·θ                                  (if λ ≠ 0)
    v ← ρ·v + (1 − ρ)·g²
    Δ = √(u + ε) / √(v + ε) · g                  (u: running average of Δ², starts at 0)
    u ← ρ·u + (1 − ρ)·Δ²
    θ ← θ − η·Δ                                  (η = 1.0 by default: Δ already has θ's units)
    """

    def __init__(self, params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay))

    def _validate(self, group):
        _check("learning rate", group["lr"])
        if not 0.0 <= group["rho"] <= 1.0:
            raise ValueError(f"invalid rho value: {group['rho']!r} (must be in [0, 1])")
        _check("epsilon value", group["eps"])
        _check("weight_decay value", group["weight_decay"])

    def _update(self, p, g, group, state):
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(p.data)
            state["acc_delta"] = np.zeros_like(p.data)
        state["step"] += 1
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p.data
        rho, eps = group["rho"], group["eps"]
        v, u = state["square_avg"], state["acc_delta"]
        v *= rho
        v += (1 - rho) * g * g
        delta = np.sqrt(u + eps) / np.sqrt(v + eps) * g
        u *= rho
        u += (1 - rho) * delta * delta
        p.data -= group["lr"] * delta


class RMSprop(Optimizer):
    """RMSprop: divide the gradient by a running root-mean-square of recent gradients.

    g ← g + λ·θ                                  (if λ ≠ 0)
    v ← α·v + (1 − α)·g²
    d = √v + ε,  or if centered:  ḡ ← α·ḡ + (1 − α)·g,  d = √(v − ḡ²) + ε
    θ ← θ − η·g/d,  or with momentum μ:  b ← μ·b + g/d,  θ ← θ − η·b
    """

    def __init__(self, params, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def _validate(self, group):
        _check("learning rate", group["lr"])
        for key in ("alpha", "eps", "weight_decay", "momentum"):
            _check(key, group[key])

    def _denominator(self, group, state):
        v = state["square_avg"]
        if group["centered"]:
            v = v - state["grad_avg"] ** 2
        return np.sqrt(v) + group["eps"]

    def _update(self, p, g, group, state):
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(p.data)
            if group["momentum"] > 0:
                state["momentum_buffer"] = np.zeros_like(p.data)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(p.data)
        state["step"] += 1
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p.data
        alpha = group["alpha"]
        state["square_avg"] *= alpha
        state["square_avg"] += (1 - alpha) * g * g
        if group["centered"]:
            state["grad_avg"] *= alpha
            state["grad_avg"] += (1 - alpha) * g
        d = self._denominator(group, state)
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf *= group["momentum"]
            buf += g / d
            p.data -= group["lr"] * buf
        else:
            p.data -= group["lr"] * g / d

    def effective_lr(self, p):
        """η / d per element (d as in the update rule), as of the last step (None before the first).

        With momentum the step is η·b, b accumulating g/d; this still gives the per-element scale.
        """
        group, state = self._group_of(p), self.state.get(p)
        if not state:
            return None
        return group["lr"] / self._denominator(group, state)


class Adam(Optimizer):
    """Adam: momentum on g plus a per-element scale from g², both bias-corrected.

    g ← g + λ·θ                                  (if λ ≠ 0; coupled L2, compare AdamW)
    m ← β1·m + (1 − β1)·g,      m̂ = m / (1 − β1ᵗ)
    v ← β2·v + (1 − β2)·g²,     v̂ = v / (1 − β2ᵗ)   (amsgrad: v̂ uses v_max ← max(v_max, v))
    θ ← θ − η · m̂ / (√v̂ + ε)
    The bias correction undoes m, v starting at 0: on step 1, m̂ = g and v̂ = g², so every
    element moves by about η whatever the gradient's size.
    """

    def __init__(self, params, lr: float = 0.001, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad))

    def _validate(self, group):
        _check("learning rate", group["lr"])
        _check("eps", group["eps"])
        if len(group["betas"]) != 2:
            raise ValueError(f"betas must be a pair (β1, β2), got {group['betas']!r}")
        _check("beta1", group["betas"][0], below=1.0)
        _check("beta2", group["betas"][1], below=1.0)
        _check("weight_decay", group["weight_decay"])

    def _decay(self, p, g, group):
        """Adam's weight decay: added to the gradient (L2 regularisation)."""
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p.data
        return g

    def _denominator(self, group, state):
        v = state["max_exp_avg_sq"] if group["amsgrad"] else state["exp_avg_sq"]
        bias_correction2 = 1 - group["betas"][1] ** state["step"]
        return np.sqrt(v) / math.sqrt(bias_correction2) + group["eps"]  # √v̂ + ε

    def _update(self, p, g, group, state):
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p.data)
        state["step"] += 1
        g = self._decay(p, g, group)
        beta1, beta2 = group["betas"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * g * g
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        step_size = group["lr"] / (1 - beta1 ** state["step"])  # η / (1 − β1ᵗ): m̂ folded in
        p.data -= step_size * (m / self._denominator(group, state))

    def effective_lr(self, p):
        """η / (√v̂ + ε) per element, with bias correction as of the last step (None before
        the first); the step applied is this times m̂."""
        group, state = self._group_of(p), self.state.get(p)
        if not state:
            return None
        return group["lr"] / self._denominator(group, state)


class AdamW(Adam):
    """Adam with decoupled weight decay: θ shrinks directly instead of via the gradient.

    θ ← θ − η·λ·θ                                (before the Adam step; g is left alone)
    then the Adam update with λ = 0:  θ ← θ − η · m̂ / (√v̂ + ε)
    Unlike Adam's L2 term, the decay is not divided by √v̂, so every weight decays at rate ηλ.
    """

    def __init__(self, params, lr: float = 0.001, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, amsgrad: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)

    def _decay(self, p, g, group):
        p.data *= 1 - group["lr"] * group["weight_decay"]
        return g


class Newton(Optimizer):
    """Newton's method with the exact Hessian: θ ← θ − η·d, where (H + λI)·d = g.

    Notation as above, plus H = ∇²L(θ) the n×n Hessian over all the parameters (flattened and
    concatenated in order), λ the damping, n = Σ p.size.

    Why it works: near θ the loss is approximately the quadratic model
        m(θ − d) = L(θ) − gᵀd + ½ dᵀHd,
    whose minimiser solves H·d = g. On a quadratic loss one step with η = 1 lands on the
    minimum; near a minimum with H positive definite the error is squared every step
    ("quadratic convergence": ‖g_{k+1}‖ ≈ C·‖g_k‖², the number of correct digits doubles).

    Each step:
      1. loss = closure()  (PyTorch's convention: zero_grad, forward, backward, return loss).
         The closure MUST return the loss Tensor itself, with its graph (not loss.item()), and
         everything that should be optimised, penalties included, must be part of it: Newton
         differentiates that Tensor twice itself, g = ∇L with create_graph=True, then column j of
         H = ∇(gᵀeⱼ) (n Hessian-vector products, cm.curvature.HessianOperator). The `.grad` the
         closure's backward left on the parameters is not read (nor changed): g and H come from
         the same graph, so they always describe the same function.
      2. H's eigenvalues μ₁ ≤ ... ≤ μₙ (of (H + Hᵀ)/2: exact double backward gives a symmetric
         H up to rounding) tell whether the quadratic model has a minimum (all μ > 0).
      3. Solve (H + λI)·d = g by Cholesky (H + λI = LLᵀ) with λ = damping. If H is not
         positive definite (μ₁ ≤ 0: a saddle, a maximum or a flat direction, where the quadratic
         model has no minimum and the plain Newton step may go uphill, towards the saddle),
         raise λ tenfold until λ ≥ 2|μ₁| (Levenberg–Marquardt), so that every eigenvalue of
         H + λI is ≥ λ/2; λ is also raised if the Cholesky factorisation fails. With H + λI
         positive definite, gᵀd > 0, so −d is a descent direction, and a large λ makes the step
         ≈ g/λ, a short gradient-descent step.
      4. θ ← θ − η·d (η = the group's lr; groups may differ in lr, damping is global).

    `state_info` (a dict, replaced every step, for the debugger) holds: step, loss (before the
    step), n_params, grad_norm ‖g‖, newton_decrement √(gᵀd) (with λ → 0 this is
    √(gᵀH⁻¹g), and ½·decrement² is the decrease the quadratic model predicts for η = 1,
    an estimate of L(θ) − min L near the minimum), min_eigenvalue and max_eigenvalue of H,
    condition_number (μₙ/μ₁ when positive definite, else inf), positive_definite (μ₁ > 0),
    damping (the one asked for), damping_used (λ actually used), damped (True when λ had to be
    raised), step_norm ‖η·d‖ and a one-line message.

    Cost: n HVPs and an O(n³) factorisation per step, so it refuses more than max_size
    parameters (ValueError at construction; pass max_size=None to lift the limit).

        opt = cm.optim.Newton(model.parameters(), lr=1.0, damping=1e-4)
        def closure():
            opt.zero_grad()
            loss = loss_fn(model(X), y)
            loss.backward()
            return loss
        for _ in range(10):
            opt.step(closure)
            print(opt.state_info["grad_norm"], opt.state_info["newton_decrement"])
    """

    requires_closure = True  # step() re-evaluates the loss (the debugger passes a closure)

    def __init__(self, params, lr: float = 1.0, damping: float = 1e-4, max_size: int | None = 5000):
        super().__init__(params, dict(lr=lr))
        _check("damping", damping)
        self.damping = float(damping)
        self.max_size = max_size
        from ..curvature import _check_size
        _check_size(sum(p.size for g in self.param_groups for p in g["params"]), max_size,
                    "use Newton's method")
        self.state_info: dict = {}

    def _validate(self, group):
        _check("learning rate", group["lr"])

    def step(self, closure=None):
        """One Newton step; `closure` is required and must return the loss Tensor (with graph)."""
        from ..curvature import HessianOperator
        if closure is None:
            raise ValueError("Newton needs a closure that recomputes the loss and returns the loss "
                             "Tensor: opt.step(closure), as torch.optim.LBFGS")
        with enable_grad():
            loss = closure()
        if not isinstance(loss, Tensor):
            raise TypeError(f"the closure must return the loss Tensor (not {type(loss).__name__}): "
                            "Newton differentiates it twice to get the Hessian")
        params = [p for group in self.param_groups for p in group["params"]]
        op = HessianOperator(loss, params)
        g = op.gradient
        H = op.dense(self.max_size)
        if not (np.all(np.isfinite(H)) and np.all(np.isfinite(g))):
            raise FloatingPointError("Newton: the gradient or the Hessian has non-finite entries; "
                                     "no step taken")
        H_sym = 0.5 * (H + H.T)
        eigenvalues = np.linalg.eigvalsh(H_sym)
        mu_min, mu_max = float(eigenvalues[0]), float(eigenvalues[-1])
        positive_definite = mu_min > 0
        lam = self.damping
        tiny = 1e-10 * max(1.0, abs(mu_max), abs(mu_min))

        def raise_(lam):
            return 10.0 * lam if lam > 0 else tiny

        if not positive_definite:
            # Levenberg–Marquardt: raise λ tenfold until it dominates the negative curvature
            # (λ ≥ 2|μ₁|, so every eigenvalue of H + λI is ≥ λ/2 and the step is ≤ 2‖g‖/λ)
            while lam < -2.0 * mu_min:
                lam = raise_(lam)
        identity = np.eye(op.n)
        tries = 0
        while True:
            try:
                factor = np.linalg.cholesky(H_sym + lam * identity)
                break
            except np.linalg.LinAlgError:  # positive definite only up to rounding
                tries += 1
                if tries > 60:
                    raise FloatingPointError("Newton: could not make H + λI positive definite") from None
                lam = raise_(lam)
        damped = lam != self.damping
        d = np.linalg.solve(factor.T, np.linalg.solve(factor, g))  # (LLᵀ)d = g
        decrement2 = float(g @ d)
        steps = op.unflatten(d)
        step_norm_sq = 0.0
        k = 0
        for group in self.param_groups:
            for p in group["params"]:
                delta = group["lr"] * steps[k]
                step_norm_sq += float(np.sum(delta * delta))
                p.data -= delta.astype(p.data.dtype, copy=False)
                k += 1
        if positive_definite and not damped:
            message = f"H positive definite (min eigenvalue {mu_min:.3g}): Newton step with damping {lam:g}"
        elif not damped:
            message = (f"H not positive definite (min eigenvalue {mu_min:.3g}), but H + {lam:g}·I is: "
                       "damped Newton step")
        else:
            message = (f"H + {self.damping:g}·I not positive definite (min eigenvalue of H {mu_min:.3g}): "
                       f"damping raised to {lam:.3g} (Levenberg–Marquardt), a shorter step closer "
                       "to gradient descent")
        self.state_info = {
            "step": self.state_info.get("step", 0) + 1,
            "loss": float(loss.data),
            "n_params": op.n,
            "grad_norm": float(np.linalg.norm(g)),
            "newton_decrement": math.sqrt(max(decrement2, 0.0)),
            "min_eigenvalue": mu_min,
            "max_eigenvalue": mu_max,
            "condition_number": mu_max / mu_min if positive_definite else math.inf,
            "positive_definite": positive_definite,
            "damping": self.damping,
            "damping_used": lam,
            "damped": damped,
            "step_norm": math.sqrt(step_norm_sq),
            "message": message,
        }
        return loss


from . import lr_scheduler  # noqa: E402  (calcml.optim.lr_scheduler, as torch.optim.lr_scheduler)
