"""Cost of one MLP (and one small CNN) training step: the calcml engine against hand-written numpy and PyTorch.

One step is: forward through Linear-ReLU-Linear-ReLU-Linear, mean cross-entropy loss on
integer labels, backward, and a plain SGD update (p -= lr * grad). It is timed three ways,
in float64:

  engine  calcml: cm.nn.Sequential, cm.nn.functional.cross_entropy, loss.backward(),
          zero grads, SGD by hand on p.data (not calcml.optim, so the number is the engine's);
  numpy   the same math written directly in numpy, with the backward derived by hand:
          the floor that an autograd engine built on numpy can approach;
  torch   PyTorch on the CPU, same architecture and loss, when torch is installed.

All three start from the engine's initial weights and see the same batch. Before timing, every
measuring process runs one step of each and checks that the losses, gradients and updated
weights agree, so a fast but wrong implementation cannot pass.

Why only ratios are the targets: absolute microseconds depend on the CPU, the BLAS library,
its thread count and on whatever else the (often shared, 2-core) machine is doing. Ratios
measured in the same process, in interleaved rounds, cancel most of that. The table prints
per-step times for orientation, but the PASS/MISS targets are ratios:

  engine/numpy <= 3    at the tiny size (per-op Python overhead dominates there)
  engine/numpy <= 1.3  at the medium and large sizes (BLAS should dominate there)
  engine/torch <  1    at the tiny size
  engine/torch <= 2    for the small CNN (conv 16, pool, conv 32, fc 10 on 1×8×8, batch 64)

One thread is the headline: the targets are judged on a measurement in a child process started
with OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS set to 1 (and torch told
set_num_threads(1)). With two BLAS threads on a shared 2-core machine, one competing process
makes a step up to 3x slower (the threads spin and wait for each other at every call), so
two-thread ratios swing from run to run; one-thread ratios do not. The same measurement with
each library's default threads (the three variables removed; torch's default intra-op threads,
or --torch-threads) is printed beside it, as what a user gets out of the box.

One process per pair of contestants: for each size and thread setting, one child process times
the engine against numpy (torch is never imported there) and another times torch against numpy.
numpy is the yardstick in both, so engine/torch = (engine/numpy) / (torch/numpy), each ratio
measured within one process. In the torch process, a pause of PAUSE_S comes between a numpy
round and a torch round: after a call, multi-threaded OpenBLAS (and torch's OpenMP pool) keep
their threads spinning for a while, and torch timed straight after numpy, while OpenBLAS's
threads still spun, looked 1.8x slower than it is.

Timing method: every implementation is warmed up, then a number of steps per round is chosen
so that each round lasts about 0.1 s (up to 40 rounds or ~20 s per process; default-thread
processes up to 15 rounds or ~8 s; --quick: 3 rounds of 0.02 s); rounds are interleaved, the
order alternating each round so no one always runs after the other. The reported cost is the
minimum over rounds of the mean per-step time in a round: on a shared machine, other work only
ever adds time, so the quietest round is the best estimate of what a step itself costs. A ratio
is the ratio of those minima; beside it, the spread is min/median/max of the per-round ratios
(the two contestants' times in the same round; for engine/torch, every engine/numpy round ratio
divided by every torch/numpy one). Each row also shows the 1-minute load average (os.getloadavg)
when its processes finished. The garbage collector is left on, as in a real training loop.

    python benchmarks/engine_step.py                 # full run, about 1 minute (2 with torch)
    python benchmarks/engine_step.py --quick         # smoke run, a few seconds
    python benchmarks/engine_step.py --sizes tiny    # some sizes only
    python benchmarks/engine_step.py --threads 1     # only the one-thread measurement
    python benchmarks/engine_step.py --profile tiny  # cProfile the engine step instead (one thread)
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import numpy as np

import calcml as cm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchutil sits beside this script
import benchutil as bu  # noqa: E402

torch = None  # imported only by the process that times torch (load_torch)

SIZES = {  # name: (layer widths, batch size)
    "tiny": ((2, 16, 16, 2), 32),
    "medium": ((784, 256, 256, 10), 64),
    "large": ((784, 1024, 1024, 10), 256),
    # a small CNN: 1×8×8 images, conv 3×3 → 16 channels, ReLU, 2×2 max pool, conv 3×3 → 32, ReLU, fc 10
    "cnn": (("8x8", "c16", "p2", "c32", "10"), 64),
}
LR = 0.01
SEED = 0
PAUSE_S = 0.25   # between a numpy round and a torch round: spinning BLAS/OpenMP threads go to sleep

# (size, implementation pair, bound): the ratio must be <= bound (< bound for "faster than").
TARGETS = [
    ("tiny", ("engine", "numpy"), 3.0, "<="),
    ("medium", ("engine", "numpy"), 1.3, "<="),
    ("large", ("engine", "numpy"), 1.3, "<="),
    ("tiny", ("engine", "torch"), 1.0, "<"),
    ("cnn", ("engine", "torch"), 2.0, "<="),
]
PAIRS = (("engine", "numpy"), ("torch", "numpy"), ("engine", "torch"))


def load_torch() -> bool:
    global torch
    try:
        import torch as module
    except ImportError:
        return False
    torch = module
    return True


# -- the problem -------------------------------------------------------------------------------

def make_problem(size: str):
    """The engine's model (with its own initialisation) and one batch of data."""
    widths, batch = SIZES[size]
    cm.manual_seed(SEED)
    if size == "cnn":
        model = cm.nn.Sequential(
            cm.nn.Conv2d(1, 16, 3, padding=1), cm.nn.ReLU(), cm.nn.MaxPool2d(2),
            cm.nn.Conv2d(16, 32, 3, padding=1), cm.nn.ReLU(), cm.nn.Flatten(), cm.nn.Linear(32 * 4 * 4, 10))
        rng = np.random.default_rng(SEED + 1)
        return model, rng.standard_normal((batch, 1, 8, 8)), rng.integers(0, 10, size=batch)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        if i:
            layers.append(cm.nn.ReLU())
        layers.append(cm.nn.Linear(n_in, n_out))
    model = cm.nn.Sequential(*layers)
    rng = np.random.default_rng(SEED + 1)
    x = rng.standard_normal((batch, widths[0]))
    y = rng.integers(0, widths[-1], size=batch)
    return model, x, y


def initial_weights(model):
    """[(W, b), ...] copies of the engine's Linear (and Conv2d) layers' parameters."""
    return [(m.weight.data.copy(), m.bias.data.copy()) for m in model if getattr(m, "weight", None) is not None]


# -- (a) the calcml engine -------------------------------------------------------------------------


def cross_entropy_and_grad(z, rows, y):
    """The hand-written steps' loss and dL/dz: cross-entropy via a max-shifted log-softmax,
    loss = mean(log Σ exp(z) − z[label]), dL/dz = (softmax − onehot)/n (z is overwritten)."""
    n = z.shape[0]
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    loss = np.log(s).mean() - z[rows, y].mean()
    dz = e
    dz /= s
    dz[rows, y] -= 1.0
    dz *= 1.0 / n
    return loss, dz

class EngineStep:
    name = "engine"
    library = "numpy"   # whose threads it runs on (see benchmark(): a pause between libraries)

    def __init__(self, model, x, y, lr=LR):
        self.model, self.lr = model, lr
        self.params = list(model.parameters())
        self.x = cm.tensor(x)
        self.y = y
        self.cross_entropy = cm.nn.functional.cross_entropy

    def step(self):
        loss = self.cross_entropy(self.model(self.x), self.y)
        self.model.zero_grad()
        loss.backward()
        lr = self.lr
        for p in self.params:
            p.data -= lr * p.grad.data   # .grad is a Tensor; its array, as before
        return loss

    def loss_value(self, loss) -> float:
        return loss.item()

    def state(self):
        """(gradients, parameters) as numpy arrays, in the order W1, b1, W2, b2, ..."""
        return [p.grad.data for p in self.params], [p.data for p in self.params]


# -- (b) hand-written numpy ----------------------------------------------------------------------

class NumpyStep:
    """The same step in plain numpy, written for speed: no graph, in-place where it is safe."""

    name = "numpy"
    library = "numpy"

    def __init__(self, weights, x, y, lr=LR):
        (self.W1, self.b1), (self.W2, self.b2), (self.W3, self.b3) = [
            (W.copy(), b.copy()) for W, b in weights
        ]
        self.x, self.y, self.lr = x, y, lr
        self.rows = np.arange(len(y))
        self.grads = None

    def step(self):
        x, y, rows = self.x, self.y, self.rows
        W1, b1, W2, b2, W3, b3 = self.W1, self.b1, self.W2, self.b2, self.W3, self.b3

        # forward: Linear, ReLU, Linear, ReLU, Linear (ReLU applied in place)
        h1 = x @ W1.T
        h1 += b1
        np.maximum(h1, 0.0, out=h1)
        h2 = h1 @ W2.T
        h2 += b2
        np.maximum(h2, 0.0, out=h2)
        z = h2 @ W3.T
        z += b3

        loss, dz = cross_entropy_and_grad(z, rows, y)
        gW3 = dz.T @ h2
        gb3 = dz.sum(axis=0)
        dh2 = dz @ W3
        dh2 *= h2 > 0            # ReLU: h2 > 0 exactly where its input was > 0
        gW2 = dh2.T @ h1
        gb2 = dh2.sum(axis=0)
        dh1 = dh2 @ W2
        dh1 *= h1 > 0
        gW1 = dh1.T @ x
        gb1 = dh1.sum(axis=0)

        # SGD (after the backward: dh2 and dh1 need the old W3 and W2)
        lr = self.lr
        W1 -= lr * gW1
        b1 -= lr * gb1
        W2 -= lr * gW2
        b2 -= lr * gb2
        W3 -= lr * gW3
        b3 -= lr * gb3
        self.grads = (gW1, gb1, gW2, gb2, gW3, gb3)
        return loss

    def loss_value(self, loss) -> float:
        return float(loss)

    def state(self):
        return list(self.grads), [self.W1, self.b1, self.W2, self.b2, self.W3, self.b3]


class NumpyCNNStep(NumpyStep):
    """The CNN step in plain numpy: im2col by sliding_window_view, channels last, one BLAS product
    per convolution and per weight gradient, the backward by hand."""

    def step(self):
        x, y, rows = self.x, self.y, self.rows
        W1, b1, W2, b2, W3, b3 = self.W1, self.b1, self.W2, self.b2, self.W3, self.b3
        n = x.shape[0]
        win = np.lib.stride_tricks.sliding_window_view
        # conv 1 (1 → 16, 3×3, padding 1) as rows (n, i, j) × channels, then ReLU
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        cols1 = win(xp, (3, 3), axis=(2, 3)).transpose(0, 2, 3, 1, 4, 5).reshape(n * 64, 9)
        h1 = cols1 @ W1.reshape(16, -1).T
        h1 += b1
        np.maximum(h1, 0.0, out=h1)
        # 2×2 max pool
        h1r = h1.reshape(n, 4, 2, 4, 2, 16)
        p = h1r.max(axis=(2, 4))
        # conv 2 (16 → 32, 3×3, padding 1), ReLU
        pp = np.pad(p, ((0, 0), (1, 1), (1, 1), (0, 0)))
        cols2 = win(pp, (3, 3), axis=(1, 2)).reshape(n * 16, 16 * 9)   # (c, kh, kw), as W2's
        W2r = W2.reshape(32, -1)
        h2 = cols2 @ W2r.T
        h2 += b2
        np.maximum(h2, 0.0, out=h2)
        # flatten as N×C×H×W, then fc
        hf = h2.reshape(n, 16, 32).transpose(0, 2, 1).reshape(n, 512)
        z = hf @ W3.T
        z += b3
        loss, dz = cross_entropy_and_grad(z, rows, y)
        gW3 = dz.T @ hf
        gb3 = dz.sum(axis=0)
        dh2 = (dz @ W3).reshape(n, 32, 16).transpose(0, 2, 1).reshape(n * 16, 32)
        dh2 *= h2 > 0
        gW2 = (dh2.T @ cols2).reshape(W2.shape)
        gb2 = dh2.sum(axis=0)
        dcols = (dh2 @ W2r).reshape(n, 4, 4, 16, 3, 3)
        dpp = np.zeros((n, 6, 6, 16))
        for i in range(3):
            for j in range(3):
                dpp[:, i:i + 4, j:j + 4, :] += dcols[..., i, j]
        dp = dpp[:, 1:5, 1:5, :]
        # the pool's gradient to each window's maximum (a tie is at 0, where ReLU's mask zeroes it)
        dh1 = ((h1r == p[:, :, None, :, None, :]) * dp[:, :, None, :, None, :]).reshape(n * 64, 16)
        dh1 *= h1 > 0
        gW1 = (dh1.T @ cols1).reshape(W1.shape)
        gb1 = dh1.sum(axis=0)

        lr = self.lr
        for param, grad in zip((W1, b1, W2, b2, W3, b3), (gW1, gb1, gW2, gb2, gW3, gb3)):
            param -= lr * grad
        self.grads = (gW1, gb1, gW2, gb2, gW3, gb3)
        return loss


# -- (c) PyTorch ------------------------------------------------------------------------------------

class TorchStep:
    """PyTorch CPU float64; SGD by hand with the fused in-place p.sub_(grad, alpha=lr)."""

    name = "torch"
    library = "torch"

    def __init__(self, weights, x, y, lr=LR):
        layers = []
        for i, (W, b) in enumerate(weights):
            if i:
                layers.append(torch.nn.ReLU())
            linear = torch.nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(W))
                linear.bias.copy_(torch.from_numpy(b))
            layers.append(linear)
        self.model = torch.nn.Sequential(*layers)
        self.params = list(self.model.parameters())
        self.x = torch.from_numpy(x.copy())
        self.y = torch.from_numpy(y.astype(np.int64))
        self.lr = lr
        self.cross_entropy = torch.nn.functional.cross_entropy

    def step(self):
        loss = self.cross_entropy(self.model(self.x), self.y)
        for p in self.params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in self.params:
                p.sub_(p.grad, alpha=self.lr)
        return loss

    def loss_value(self, loss) -> float:
        return loss.item()

    def state(self):
        return ([p.grad.numpy() for p in self.params], [p.detach().numpy() for p in self.params])


class TorchCNNStep(TorchStep):
    def __init__(self, weights, x, y, lr=LR):
        nn = torch.nn
        self.model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                   nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                   nn.Linear(32 * 4 * 4, 10)).double()
        self.params = list(self.model.parameters())
        with torch.no_grad():
            for p, value in zip(self.params, [a for pair in weights for a in pair]):
                p.copy_(torch.from_numpy(value))
        self.x = torch.from_numpy(x.copy())
        self.y = torch.from_numpy(y.astype(np.int64))
        self.lr = lr
        self.cross_entropy = torch.nn.functional.cross_entropy




# -- checking and timing (in a child process) -----------------------------------------------------

def build(size: str, with_torch: bool):
    model, x, y = make_problem(size)
    weights = initial_weights(model)
    cnn = size == "cnn"
    impls = [EngineStep(model, x, y), (NumpyCNNStep if cnn else NumpyStep)(weights, x, y)]
    if with_torch:
        impls.append((TorchCNNStep if cnn else TorchStep)(weights, x, y))
    return impls


def check_agreement(impls, size: str) -> str:
    """One step of each; the loss, every gradient and every updated parameter must agree."""
    reference = impls[0]
    ref_loss = reference.loss_value(reference.step())
    ref_grads, ref_params = (list(map(np.array, part)) for part in reference.state())
    for impl in impls[1:]:
        loss = impl.loss_value(impl.step())
        grads, params = impl.state()
        where = f"{size}: {impl.name} vs {reference.name}"
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-10, atol=0, err_msg=f"{where}: loss")
        for k, (g, ref) in enumerate(zip(grads, ref_grads)):
            scale = np.abs(ref).max()
            np.testing.assert_allclose(g, ref, rtol=1e-8, atol=1e-10 * scale,
                                       err_msg=f"{where}: gradient of parameter {k}")
        for k, (p, ref) in enumerate(zip(params, ref_params)):
            np.testing.assert_allclose(p, ref, rtol=1e-10, atol=1e-12,
                                       err_msg=f"{where}: parameter {k} after the update")
    names = ", ".join(impl.name for impl in impls)
    return f"{names} agree (loss {ref_loss:.6f}, {len(ref_grads)} gradients, updated weights)"


def time_steps(step, n: int) -> float:
    """Seconds per step over n consecutive steps."""
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def steps_for(step, round_seconds: float) -> int:
    """Warm up, then the number of steps that takes about round_seconds on a quiet machine."""
    n = 1
    while time_steps(step, n) * n < 0.01 and n < 1 << 16:  # a timing batch of >= 10 ms
        n *= 2
    per_step = min(time_steps(step, n) for _ in range(5))  # the quietest of a few batches
    return max(1, round(round_seconds / per_step))


def benchmark(impls, rounds: int, round_seconds: float, budget_seconds: float):
    """{name: [seconds per step in each round]} from interleaved, order-alternating rounds.

    Waits PAUSE_S whenever the next implementation runs on another library's threads than the
    last one timed. Stops early (after at least 5 rounds) once the process has used its time
    budget, so that a very noisy machine cannot make the run take much longer than planned.
    """
    last = [None]

    def settle(impl):
        if last[0] is not None and impl.library != last[0]:
            time.sleep(PAUSE_S)
            for _ in range(3):   # untimed: caches warm again after the pause
                impl.step()
        last[0] = impl.library

    counts = {}
    for impl in impls:
        settle(impl)
        counts[impl.name] = steps_for(impl.step, round_seconds)
    times = {impl.name: [] for impl in impls}
    start = time.perf_counter()
    for r in range(rounds):
        if r >= 5 and time.perf_counter() - start > budget_seconds:
            break
        shift = r % len(impls)
        for impl in impls[shift:] + impls[:shift]:
            settle(impl)
            times[impl.name].append(time_steps(impl.step, counts[impl.name]))
    return times, counts


def child(args) -> int:
    """Time one pair (engine and numpy, or numpy and torch) at one size; emit the times."""
    size, threads = args.sizes, bu.current_threads()
    torch_threads = None
    if args.child == "torch":
        if not load_torch():
            raise SystemExit("torch is not importable in the child process")
        torch_threads = 1 if threads == bu.ONE else (args.torch_threads or torch.get_num_threads())
        torch.set_num_threads(torch_threads)
    impls = build(size, with_torch=args.child == "torch")
    agree = check_agreement(impls, size)
    timed = impls[:2] if args.child == "engine" else impls[1:]
    rounds, round_ms, budget = (float(v) for v in args.plan.split(","))
    times, counts = benchmark(timed, int(rounds), round_ms / 1000, budget)
    bu.emit({"times": times, "counts": counts, "agree": agree, "load": bu.load_now(),
             "torch": torch.__version__ if torch is not None else None, "torch_threads": torch_threads,
             "blas": blas_summary()})
    return 0


# -- ratios (in the parent) -------------------------------------------------------------------------

def ratio(runs: dict, a: str, b: str):
    """(ratio of the best per-step times, [per-round ratios]) of a pair; None if not measured.

    runs: {"engine": the engine/numpy child's result, "torch": the torch/numpy child's or None}."""
    if (a, b) == ("engine", "torch"):
        en, tn = ratio(runs, "engine", "numpy"), ratio(runs, "torch", "numpy")
        if en is None or tn is None:
            return None
        return en[0] / tn[0], [x / y for x in en[1] for y in tn[1]]
    res = runs.get("engine" if a == "engine" else "torch")
    if res is None:
        return None
    times = res["times"]
    return min(times[a]) / min(times[b]), [x / y for x, y in zip(times[a], times[b])]


# -- reporting --------------------------------------------------------------------------------------

def blas_summary() -> str:
    try:
        import threadpoolctl
    except ImportError:
        try:  # numpy's own build record: which BLAS, not how many threads
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            return f"{blas.get('name')} {blas.get('version')} (threadpoolctl not installed: thread count not shown)"
        except Exception:  # noqa: BLE001 - only a description
            return "unknown (threadpoolctl not installed)"
    parts = []
    for info in threadpoolctl.threadpool_info():
        if info.get("user_api") != "blas":
            continue
        prefix = os.path.basename(info.get("filepath", ""))
        parts.append(f"{info.get('internal_api')} {info.get('version')} "
                     f"({info.get('architecture', '?')}, {info.get('num_threads')} threads, {prefix})")
    return "; ".join(parts) or "no BLAS found by threadpoolctl"


def print_header(args) -> None:
    print("calcml engine step benchmark: forward + cross-entropy + backward + SGD, float64")
    print(f"  python {sys.version.split()[0]}, numpy {np.__version__}, calcml {cm.__version__}, "
          f"{os.cpu_count()} CPUs, load average {bu.load_average()}")
    print(f"  BLAS: {blas_summary()}")
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    if coretype:
        print(f"  OPENBLAS_CORETYPE={coretype} (left as set)")
    if args.has_torch:
        threads = args.torch_threads or "its default"
        print(f"  torch: installed; timed in its own processes (1 thread; default run: {threads} intra-op threads)")
    else:
        print("  torch: not installed, skipped")
    settings = " and ".join(bu.threads_label(t) for t in args.settings)
    print(f"  measured with {settings}, {bu.THREAD_VARS[0]}/OMP/MKL_NUM_THREADS set per child process; "
          f"targets judged on 1 thread")
    mode = "quick" if args.quick else "full"
    plans = "; ".join(f"{bu.threads_label(t)}: up to {int(p[0])} rounds of ~{p[1]:g} ms, ~{p[2]:g} s per process"
                      for t, p in args.plans.items() if t in args.settings)
    print(f"  mode: {mode}; {plans}")


def fmt(value, width, spec) -> str:
    return f"{'-' if value is None else format(value, spec):>{width}}"


def fmt_ratio(r, width: int = 22) -> str:
    return f"{'-':>{width}}" if r is None else f"{r[0]:>6.2f} {bu.fmt_spread(r[1]):<15}".rjust(width)


def print_table(results, sizes, settings) -> None:
    print()
    print(f"{'size':<28}{'threads':<9}{'engine µs':>10}{'numpy µs':>10}{'torch µs':>10}"
          f"{'engine/numpy':>22}{'torch/numpy':>22}{'engine/torch':>22}{'load':>7}")
    for size in sizes:
        widths, batch = SIZES[size]
        label = f"{size} {'-'.join(map(str, widths))} b{batch}"
        for threads in settings:
            runs = results[size][threads]
            best = {name: min(ts) * 1e6 for res in runs.values() if res for name, ts in res["times"].items()}
            best["numpy"] = min(runs["engine"]["times"]["numpy"]) * 1e6  # the engine process's numpy
            load = max(res["load"] for res in runs.values() if res)
            print(f"{label:<28}{threads:<9}" + fmt(best.get("engine"), 10, ".1f") + fmt(best.get("numpy"), 10, ".1f")
                  + fmt(best.get("torch"), 10, ".1f")
                  + "".join(fmt_ratio(ratio(runs, a, b)) for a, b in PAIRS) + f"{load:>7.2f}")
            label = ""
    print("(µs per step: minimum over rounds; a ratio is the ratio of those minima, followed by the "
          "min/median/max of the per-round ratios;")
    print(" threads 1: one BLAS/OpenMP thread; default: each library's own count; load: the highest "
          "1-minute load average as its processes ended)")


def print_targets(results) -> None:
    print(f"\ntargets  (judged on 1 thread; load average now {bu.load_average()})")
    for size, (a, b), bound, relation in TARGETS:
        if size not in results:
            continue
        value = ratio(results[size][bu.ONE], a, b)
        label = f"  {size:<7} {a}/{b} {relation} {bound:g}"
        if value is None:
            print(f"{label:<36} SKIP ({b} not available)")
            continue
        ok = value[0] <= bound if relation == "<=" else value[0] < bound
        default = ratio(results[size][bu.DEFAULT], a, b) if bu.DEFAULT in results[size] else None
        beside = f"; default threads {default[0]:.2f}" if default is not None else ""
        print(f"{label:<36} {'PASS' if ok else 'MISS'}  ({value[0]:.2f}; rounds {bu.fmt_spread(value[1])}{beside})")


def profile_engine(size: str, seconds: float) -> None:
    """cProfile the engine's step at one size; top functions by own time."""
    import cProfile
    import pstats

    impl = build(size, with_torch=False)[0]
    n = steps_for(impl.step, seconds)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        impl.step()
    profiler.disable()
    print(f"cProfile of {n} engine steps at size {size}, 1 BLAS thread (times include profiler overhead)")
    stats = pstats.Stats(profiler).strip_dirs().sort_stats("tottime")
    stats.print_stats(30)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few short rounds: a smoke run")
    parser.add_argument("--sizes", default="tiny,medium,large,cnn",
                        help="comma-separated subset of: " + ", ".join(SIZES))
    parser.add_argument("--threads", choices=("both", bu.ONE, bu.DEFAULT), default="both",
                        help="measure with one BLAS thread (the targets), the default threads, or both (default)")
    parser.add_argument("--torch-threads", type=int, metavar="N",
                        help="torch intra-op threads in the default-thread run (0 or unset: torch's default)")
    parser.add_argument("--profile", metavar="SIZE", choices=list(SIZES),
                        help="instead of the benchmark, cProfile the engine step at this size (one thread)")
    parser.add_argument("--child", choices=("engine", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)   # rounds,round_ms,budget_s for a child
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose from {list(SIZES)}")

    if args.profile:
        bu.reexec_one_thread()
        profile_engine(args.profile, seconds=1.0 if args.quick else 5.0)
        return 0

    args.plans = ({bu.ONE: (3, 20, 5), bu.DEFAULT: (3, 20, 5)} if args.quick
                  else {bu.ONE: (40, 100, 20), bu.DEFAULT: (15, 100, 8)})
    args.settings = bu.SETTINGS if args.threads == "both" else (args.threads,)
    args.has_torch = importlib.util.find_spec("torch") is not None
    print_header(args)

    print("\nmeasuring: one process per pair, size and thread setting; agreement after one step checked in each")
    results = {}
    for size in sizes:
        results[size] = {}
        for threads in args.settings:
            runs = results[size][threads] = {"engine": None, "torch": None}
            for kind in ("engine", "torch") if args.has_torch else ("engine",):
                command = [__file__, "--child", kind, "--sizes", size,
                           "--plan", ",".join(map(str, args.plans[threads]))]
                if args.torch_threads:
                    command += ["--torch-threads", args.torch_threads]
                res = runs[kind] = bu.run_child(command, threads)
                pair = "engine vs numpy" if kind == "engine" else "numpy vs torch"
                extra = (f", torch {res['torch']} on {res['torch_threads']} thread(s)" if kind == "torch" else "")
                print(f"  {size:<7}{threads:<8} {pair}: {len(res['times']['numpy'])} rounds{extra}; "
                      f"{res['agree']}; load {res['load']:.2f}", flush=True)
    print_table(results, sizes, args.settings)
    if bu.ONE in args.settings:
        print_targets(results)
    else:
        print("\ntargets: not judged (they are judged on the one-thread measurement: run without --threads default)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
