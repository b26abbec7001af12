"""Check analytic gradients against central finite differences in float64."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tensor import Tensor, grad, tensor


@dataclass
class InputCheck:
    shape: tuple
    max_abs_error: float
    max_rel_error: float
    ok: bool


@dataclass
class GradcheckResult:
    ok: bool
    inputs: list

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        lines = [f"gradcheck {'passed' if self.ok else 'FAILED'}"]
        for i, c in enumerate(self.inputs):
            lines.append(f"  input {i} {c.shape}: max abs error {c.max_abs_error:.3g}, "
                         f"max rel error {c.max_rel_error:.3g}{'' if c.ok else '  <-- mismatch'}")
        return "\n".join(lines)


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              seed: int = 0) -> GradcheckResult:
    """Compare the engine's gradient of `fn(*inputs)` with central differences.

    `inputs` are arrays or Tensors (copied to float64). A non-scalar output is reduced with a
    fixed random projection, sum(out * r), which checks the whole Jacobian in one pass.
    An input passes when |analytic - numeric| <= atol + rtol * |numeric| everywhere
    (PyTorch's gradcheck tolerances by default).
    """
    xs = [tensor(np.array(x.data if isinstance(x, Tensor) else x, dtype=np.float64), requires_grad=True)
          for x in inputs]
    out = fn(*xs)
    projection = None
    if out.data.size != 1:
        projection = np.random.default_rng(seed).standard_normal(out.shape)

    def scalar(*args):
        y = fn(*args)
        return float(np.sum(y.data * projection)) if projection is not None else float(y.data)

    target = (out * projection).sum() if projection is not None else out
    analytic = grad(target, xs, allow_unused=True)
    checks = []
    for k, x in enumerate(xs):
        a = np.zeros(x.shape) if analytic[k] is None else analytic[k].data
        numeric = np.zeros(x.shape)
        flat = x.data.reshape(-1)
        for j in range(flat.size):
            original = flat[j]
            flat[j] = original + eps
            plus = scalar(*xs)
            flat[j] = original - eps
            minus = scalar(*xs)
            flat[j] = original
            numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
        diff = np.abs(a - numeric)
        max_abs = float(diff.max()) if diff.size else 0.0
        max_rel = float((diff / np.maximum(np.abs(numeric), 1e-12)).max()) if diff.size else 0.0
        ok = bool(np.all(diff <= atol + rtol * np.abs(numeric)))
        checks.append(InputCheck(tuple(x.shape), max_abs, max_rel, ok))
    return GradcheckResult(all(c.ok for c in checks), checks)
