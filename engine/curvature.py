"""Second order: Hessian-vector products, the Hessian, and estimates of its spectrum.

Notation: θ = all the parameters, flattened and concatenated in the order given (n numbers);
L(θ) a scalar loss; g = ∇L(θ) its gradient; H = ∇²L(θ), the n×n Hessian, Hᵢⱼ = ∂²L/∂θᵢ∂θⱼ.

Everything here is built on ONE primitive, the Hessian-vector product, computed exactly by
double backward (Pearlmutter's trick), never by finite differences:

    H·v = ∇θ (gᵀv)          g computed with create_graph=True, so that gᵀv = Σᵢ gᵢvᵢ is itself
                            a scalar in a graph, and its gradient is the i-th row of H dotted
                            with v, for every i at once.

One HVP costs about as much as two or three backward passes, and needs no n×n matrix, so the
estimates below work for models far too big for `hessian`.

    hvp(f, params, v)                 H·v
    hessian(f, params)                H itself, column j = H·eⱼ (n HVPs, n² numbers)
    top_eigenvalues(f, params, k)     the k largest eigenvalues of H (Lanczos)
    trace(f, params)                  tr H = Σᵢ Hᵢᵢ (Hutchinson: E[zᵀHz] for random ±1 vectors z)
    diagonal(f, params)               diag H (E[z ⊙ Hz] for the same z)

`f` is a function of no arguments that builds the loss from `params` (a closure over the model
and a batch): it is called once per public call, with gradients on. To take several estimates
from one graph, build `HessianOperator(loss, params)` once and use `lanczos(op, k)` and
`hutchinson(op, samples)` (the trace and the diagonal from the same products). `params` is a list of
Tensors (or nn.Parameters) with requires_grad=True, or a Module (its .parameters()).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .tensor import Tensor, enable_grad
from .tensor import grad as _grad

__all__ = ["hvp", "hessian", "top_eigenvalues", "trace", "diagonal", "HessianOperator", "lanczos",
           "hutchinson", "Hutchinson"]

DEFAULT_MAX_SIZE = 5000


def _param_list(params) -> list:
    if isinstance(params, Tensor):
        params = [params]
    elif hasattr(params, "parameters") and callable(params.parameters):
        params = params.parameters()
    params = list(params)
    if not params:
        raise ValueError("params is empty: pass the list of tensors to differentiate with respect to")
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"params[{i}] is a {type(p).__name__}, not a calcml Tensor")
        if not p.requires_grad:
            raise ValueError(f"params[{i}]{' ' + repr(p.name) if p.name else ''} does not require grad; "
                             "create it with requires_grad=True (nn.Parameters do)")
    return params


class FlatVectors:
    """Flat float64 vectors of length n = Σ sizes, and one array per parameter: the layout a
    Hessian operator's products use (the engine's below, and the PyTorch backend's)."""

    def _layout(self, shapes) -> None:
        self.shapes = [tuple(shape) for shape in shapes]
        self.sizes = [int(np.prod(shape)) for shape in self.shapes]
        self.n = sum(self.sizes)
        self._offsets = np.cumsum([0] + self.sizes)

    def flatten(self, arrays) -> np.ndarray:
        out = np.zeros(self.n)
        for k, a in enumerate(arrays):
            if a is not None:
                a = np.asarray(a.data if isinstance(a, Tensor) else a, dtype=np.float64)
                if a.shape != self.shapes[k]:
                    raise ValueError(f"array {k} has shape {a.shape}, "
                                     f"but params[{k}] has shape {self.shapes[k]}")
                out[self._offsets[k]:self._offsets[k + 1]] = a.reshape(-1)
        return out

    def unflatten(self, vector: np.ndarray) -> list:
        return [np.array(vector[self._offsets[k]:self._offsets[k + 1]]).reshape(self.shapes[k])
                for k in range(len(self.shapes))]


class HessianOperator(FlatVectors):
    """H as a linear map v ↦ H·v at the current θ, from one loss Tensor and its graph.

    Built once: g = ∇L with create_graph=True (one backward, recorded). Each `matvec` then costs
    one backward pass through the graph of g. The graph is not consumed, so any number of
    products can be taken. Vectors are flat float64 arrays of length n = Σ p.size.
    """

    def __init__(self, loss: Tensor, params):
        self.params = _param_list(params)
        if not isinstance(loss, Tensor):
            raise TypeError(f"the loss must be a calcml Tensor, got {type(loss).__name__}")
        if loss.data.size != 1:
            raise ValueError(f"the loss must be a scalar (one number), got shape {loss.shape}; "
                             "reduce it with .sum() or .mean()")
        if not loss.requires_grad:
            raise ValueError("the loss does not depend on any tensor that requires grad "
                             "(was it computed under cm.no_grad()?)")
        self.loss = loss
        self._layout([p.shape for p in self.params])
        with enable_grad():
            self._grads = _grad(loss, self.params, create_graph=True, allow_unused=True)
        # g as numpy, float64 (zeros for parameters the loss does not use)
        self.gradient = self.flatten([None if g is None else g.data for g in self._grads])

    # -- the product ----------------------------------------------------------------------------
    def matvec(self, v: np.ndarray) -> np.ndarray:
        """H·v = ∇θ(gᵀv), by a second backward pass through the graph of g."""
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (self.n,):
            raise ValueError(f"expected a flat vector of length {self.n}, got shape {v.shape}")
        pieces = self.unflatten(v)
        total = None
        with enable_grad():
            for g, p, piece in zip(self._grads, self.params, pieces):
                if g is None or not g.requires_grad:  # g absent or constant in θ: no term of H·v
                    continue
                term = (g * piece.astype(p.dtype, copy=False)).sum()
                total = term if total is None else total + term
            if total is None:  # the gradient does not depend on θ at all: L is linear, H = 0
                return np.zeros(self.n)
            hv = _grad(total, self.params, allow_unused=True)
        return self.flatten([None if h is None else h.data for h in hv])

    __matmul__ = matvec

    def dense(self, max_size: int = DEFAULT_MAX_SIZE) -> np.ndarray:
        """The n×n Hessian, column j = H·eⱼ (eⱼ the j-th unit vector): n HVPs."""
        _check_size(self.n, max_size, "build the Hessian")
        H = np.empty((self.n, self.n))
        e = np.zeros(self.n)
        for j in range(self.n):
            e[j] = 1.0
            H[:, j] = self.matvec(e)
            e[j] = 0.0
        return H


def _check_size(n: int, max_size, what: str) -> None:
    if max_size is not None and n > max_size:
        raise ValueError(
            f"refusing to {what}: there are {n} parameters, more than max_size={max_size}. "
            f"The dense Hessian takes {n} Hessian-vector products (each about two backward passes) "
            f"and an {n}×{n} matrix of {n * n:,} float64 numbers ({n * n * 8 / 2**20:,.1f} MiB), "
            "and solving with it costs O(n³) time. Pass max_size=... (e.g. max_size=None for no limit) "
            "to do it anyway, or use HVP-based estimates: cm.hvp, cm.curvature.top_eigenvalues, "
            "cm.curvature.trace, cm.curvature.diagonal."
        )


def _operator(f, params) -> HessianOperator:
    if not callable(f):
        raise TypeError("f must be a function of no arguments that returns the loss Tensor")
    params = _param_list(params)
    with enable_grad():
        loss = f()
    return HessianOperator(loss, params)


# -- public functions -----------------------------------------------------------------------------

def hvp(f, params, v) -> list:
    """The Hessian-vector product H·v of the scalar f() with respect to `params`, exactly.

    H·v = ∇θ(∇θL · v): one backward with create_graph=True gives g = ∇L as a graph, a second
    backward of gᵀv gives H·v. `v` is a list of arrays shaped like `params` (or one array when
    params is a single Tensor); the result is a list of float64 numpy arrays of the same shapes.
    """
    single = isinstance(params, Tensor)
    op = _operator(f, params)
    vs = [v] if single and not isinstance(v, (list, tuple)) else list(v)
    if len(vs) != len(op.params):
        raise ValueError(f"v has {len(vs)} arrays but there are {len(op.params)} parameters")
    result = op.unflatten(op.matvec(op.flatten(vs)))
    return result[0] if single and not isinstance(v, (list, tuple)) else result


def hessian(f, params, max_size: int | None = DEFAULT_MAX_SIZE) -> np.ndarray:
    """The dense Hessian H = [∂²L/∂θᵢ∂θⱼ] over the flattened, concatenated params (n×n float64).

    Column j is H·eⱼ, one exact HVP per column (n in all). The matrix is returned as computed,
    NOT symmetrised: exact double backward gives Hᵢⱼ and Hⱼᵢ by different summation orders, so
    they agree to rounding (about 1e-16 relative), and a visible asymmetry would mean a wrong
    second derivative somewhere, which symmetrising would hide. Refuses (ValueError) above
    `max_size` parameters; max_size=None removes the limit.
    """
    params = _param_list(params)
    _check_size(sum(p.size for p in params), max_size, "build the Hessian")  # before any work
    return _operator(f, params).dense(max_size)


def top_eigenvalues(f, params, k: int = 1, iters: int = 100, tol: float = 1e-8, seed=0,
                    return_vectors: bool = False):
    """The k largest (algebraic, not absolute) eigenvalues of H, descending, by Lanczos.

    Lanczos builds an orthonormal basis q₁, q₂, ... of the Krylov space span{q₁, Hq₁, H²q₁, ...},
    one HVP per step, and the tridiagonal T = QᵀHQ:
        w = H·qⱼ − βⱼ₋₁·qⱼ₋₁,   αⱼ = qⱼᵀw,   w ← w − αⱼ·qⱼ,   βⱼ = ‖w‖,   qⱼ₊₁ = w/βⱼ
    (here with full re-orthogonalisation of w against every earlier q, so rounding does not
    create spurious copies of converged eigenvalues). The eigenvalues θ of the small T ("Ritz
    values") approach the extreme eigenvalues of H fast; the residual of each is
    ‖H·y − θ·y‖ = βⱼ·|last entry of its eigenvector of T|. The iteration stops when the top k
    residuals are ≤ tol·max(1, |θ|max), after `iters` HVPs, or after n (then the values are exact).

    Returns a numpy array of k values; with return_vectors=True, also the (n, k) matrix of the
    corresponding unit eigenvectors of H (Ritz vectors), flat over the concatenated params.
    """
    return lanczos(_operator(f, params), k, iters, tol, seed, return_vectors)


def lanczos(op: HessianOperator, k: int = 1, iters: int = 100, tol: float = 1e-8, seed=0,
            return_vectors: bool = False):
    """`top_eigenvalues` on an operator already built (so that one graph serves several estimates)."""
    n = op.n
    k = int(k)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of parameters ({n}), got {k}")
    rng = np.random.default_rng(seed)
    steps = max(min(int(iters), n), k)
    Q = np.zeros((n, steps + 1))
    alphas, betas = [], []

    def fresh_start(count):
        """A random unit vector orthogonal to the first `count` basis vectors."""
        for _ in range(10):
            q = rng.standard_normal(n)
            for _ in range(2):
                q -= Q[:, :count] @ (Q[:, :count].T @ q)
            norm = np.linalg.norm(q)
            if norm > 1e-8:
                return q / norm
        raise RuntimeError("Lanczos could not find a new direction")

    Q[:, 0] = fresh_start(0)
    theta = S = None
    for j in range(steps):
        w = op.matvec(Q[:, j])
        alpha = float(Q[:, j] @ w)
        w -= alpha * Q[:, j]
        if j > 0:
            w -= betas[-1] * Q[:, j - 1]
        for _ in range(2):  # full re-orthogonalisation, twice ("twice is enough")
            w -= Q[:, :j + 1] @ (Q[:, :j + 1].T @ w)
        beta = float(np.linalg.norm(w))
        alphas.append(alpha)
        T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        theta, S = np.linalg.eigh(T)
        scale = max(1.0, float(np.max(np.abs(theta))))
        m = j + 1
        if m == n:
            break
        if m >= k:
            residuals = beta * np.abs(S[-1, -k:])
            if np.all(residuals <= tol * scale):
                break
        if beta <= 1e-10 * scale:
            # an invariant subspace: its eigenvalues are exact; continue from a new orthogonal start
            Q[:, j + 1] = fresh_start(j + 1)
            betas.append(0.0)
        else:
            Q[:, j + 1] = w / beta
            betas.append(beta)
    m = len(alphas)
    order = np.argsort(theta)[::-1][:k]
    values = theta[order]
    if return_vectors:
        vectors = Q[:, :m] @ S[:, order]
        return values, vectors
    return values


def _rademacher_products(op: HessianOperator, samples: int, seed):
    samples = int(samples)
    if samples < 2:
        raise ValueError(f"samples must be at least 2 (for a standard error), got {samples}")
    rng = np.random.default_rng(seed)
    for _ in range(samples):
        z = rng.integers(0, 2, size=op.n) * 2.0 - 1.0  # each entry +1 or −1 with probability ½
        yield z, op.matvec(z)


def trace(f, params, samples: int = 100, seed=0):
    """tr H = Σᵢ Hᵢᵢ by Hutchinson's estimator; returns (estimate, standard_error).

    For z with independent entries ±1 (Rademacher), E[zᵀHz] = Σᵢⱼ Hᵢⱼ E[zᵢzⱼ] = Σᵢ Hᵢᵢ, since
    E[zᵢzⱼ] = 1 if i = j else 0. The estimate is the mean of zᵀHz over `samples` draws (one HVP
    each); the standard error is their sample standard deviation / √samples. (The variance of
    one draw is 2·Σᵢ≠ⱼ Hᵢⱼ²: a diagonal H is estimated exactly.)
    """
    values = np.array([z @ hz for z, hz in _rademacher_products(_operator(f, params), samples, seed)])
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def diagonal(f, params, samples: int = 100, seed=0):
    """diag H by E[z ⊙ Hz] (z Rademacher); returns (estimate, standard_error), each a list of
    arrays shaped like `params`.

    (z ⊙ Hz)ᵢ = zᵢ Σⱼ Hᵢⱼ zⱼ = Hᵢᵢ + Σⱼ≠ᵢ Hᵢⱼ zᵢzⱼ, and the second sum has mean 0. The standard
    error is elementwise: the sample standard deviation of (z ⊙ Hz)ᵢ / √samples.
    """
    estimate = hutchinson(_operator(f, params), samples, seed)
    return estimate.diagonal, estimate.diagonal_se


@dataclass(frozen=True)
class Hutchinson:
    """The trace and the diagonal of H from the same Rademacher products (see `trace`, `diagonal`)."""
    trace: float
    trace_se: float
    diagonal: list        # arrays shaped like the params
    diagonal_se: list


def hutchinson(op: HessianOperator, samples: int = 100, seed=0) -> Hutchinson:
    """`trace` and `diagonal` at once on an operator already built: one HVP per sample for both."""
    rows, traces = [], []
    for z, hz in _rademacher_products(op, samples, seed):
        rows.append(z * hz)
        traces.append(z @ hz)
    rows, traces = np.array(rows), np.array(traces)
    root = math.sqrt(len(rows))
    return Hutchinson(float(traces.mean()), float(traces.std(ddof=1) / root),
                      op.unflatten(rows.mean(axis=0)), op.unflatten(rows.std(axis=0, ddof=1) / root))
