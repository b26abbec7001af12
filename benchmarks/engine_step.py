"""Cost of one MLP training step: the calcml engine against hand-written numpy and PyTorch.

One step is: forward through Linear-ReLU-Linear-ReLU-Linear, mean cross-entropy loss on
integer labels, backward, and a plain SGD update (p -= lr * grad). It is timed three ways,
in float64, in one process:

  engine  calcml: cm.nn.Sequential, cm.nn.functional.cross_entropy, loss.backward(),
          zero grads, SGD by hand on p.data (not calcml.optim, so the number is the engine's);
  numpy   the same math written directly in numpy, with the backward derived by hand:
          the floor that an autograd engine built on numpy can approach;
  torch   PyTorch on the CPU, same architecture and loss, when `import torch` works.
          At the tiny size torch runs on one intra-op thread: no op there is big enough to
          share out, and on a busy 2-vCPU machine its OpenMP thread barriers alone can make a
          2-thread step ten times slower, which would flatter the engine. Elsewhere torch
          keeps its default thread count (numpy's BLAS keeps its own default too);
          --torch-threads overrides this.

All three start from the engine's initial weights and see the same batch. Before timing,
the script runs one step of each and checks that the losses, gradients and updated weights
agree, so a fast but wrong implementation cannot pass.

Why only ratios are the targets: absolute microseconds depend on the CPU, the BLAS library,
its thread count and on whatever else the (often shared, 2-core) machine is doing. Ratios
measured in the same process, in interleaved rounds, cancel most of that. The table prints
per-step times for orientation, but the PASS/MISS targets are ratios:

  engine/numpy <= 3    at the tiny size (per-op Python overhead dominates there)
  engine/numpy <= 1.3  at the medium and large sizes (BLAS should dominate there)
  engine/torch <  1    at the tiny size

Timing method: every implementation is warmed up, then a number of steps per round is chosen
so that each round lasts about 0.1 s (up to 40 rounds or
~30 s per size; --quick: 3 rounds of 0.02 s); rounds are interleaved (engine, numpy, torch, with the
order rotated each round so no one always runs after the same neighbour). The reported cost is
the minimum over rounds of the mean per-step time in a round: on a shared machine, other work
only ever adds time, so the quietest round is the best estimate of what a step itself costs
(with multi-threaded BLAS on 2 vCPUs a preempted thread can slow a matmul tenfold). The footer
prints each implementation's median/min spread, so you can see how noisy the run was. The
garbage collector is left on, as in a real training loop.

    python benchmarks/engine_step.py                 # full run, about a minute
    python benchmarks/engine_step.py --quick         # smoke run, a few seconds
    python benchmarks/engine_step.py --sizes tiny    # some sizes only
    python benchmarks/engine_step.py --profile tiny  # cProfile the engine step instead
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import calcml as cm

try:
    import torch
except ImportError:  # torch is optional
    torch = None
TORCH_DEFAULT_THREADS = torch.get_num_threads() if torch is not None else None

SIZES = {  # name: (layer widths, batch size)
    "tiny": ((2, 16, 16, 2), 32),
    "medium": ((784, 256, 256, 10), 64),
    "large": ((784, 1024, 1024, 10), 256),
}
LR = 0.01
SEED = 0

# (size, implementation pair, bound): the ratio must be <= bound (< bound for "faster than").
TARGETS = [
    ("tiny", ("engine", "numpy"), 3.0, "<="),
    ("medium", ("engine", "numpy"), 1.3, "<="),
    ("large", ("engine", "numpy"), 1.3, "<="),
    ("tiny", ("engine", "torch"), 1.0, "<"),
]


# -- the problem -------------------------------------------------------------------------------

def make_problem(size: str):
    """The engine's model (with its own initialisation) and one batch of data."""
    widths, batch = SIZES[size]
    cm.manual_seed(SEED)
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
    """[(W, b), ...] copies of the engine's Linear layers' parameters."""
    return [(m.weight.data.copy(), m.bias.data.copy()) for m in model if isinstance(m, cm.nn.Linear)]


# -- (a) the calcml engine -------------------------------------------------------------------------

class EngineStep:
    name = "engine"

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
            p.data -= lr * p.grad
        return loss

    def loss_value(self, loss) -> float:
        return loss.item()

    def state(self):
        """(gradients, parameters) as numpy arrays, in the order W1, b1, W2, b2, ..."""
        return [p.grad for p in self.params], [p.data for p in self.params]


# -- (b) hand-written numpy ----------------------------------------------------------------------

class NumpyStep:
    """The same step in plain numpy, written for speed: no graph, in-place where it is safe."""

    name = "numpy"

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
        n = x.shape[0]

        # forward: Linear, ReLU, Linear, ReLU, Linear (ReLU applied in place)
        h1 = x @ W1.T
        h1 += b1
        np.maximum(h1, 0.0, out=h1)
        h2 = h1 @ W2.T
        h2 += b2
        np.maximum(h2, 0.0, out=h2)
        z = h2 @ W3.T
        z += b3

        # cross-entropy via a max-shifted log-softmax: loss = mean(log Σ exp(z) - z[label])
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        loss = np.log(s).mean() - z[rows, y].mean()

        # backward: dL/dz = (softmax - onehot) / n
        dz = e
        dz /= s
        dz[rows, y] -= 1.0
        dz *= 1.0 / n
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


# -- (c) PyTorch ------------------------------------------------------------------------------------

class TorchStep:
    """PyTorch CPU float64; SGD by hand with the fused in-place p.sub_(grad, alpha=lr)."""

    name = "torch"

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


# -- checking and timing --------------------------------------------------------------------------

def build(size: str):
    model, x, y = make_problem(size)
    weights = initial_weights(model)
    impls = [EngineStep(model, x, y), NumpyStep(weights, x, y)]
    if torch is not None:
        impls.append(TorchStep(weights, x, y))
    return impls


def check_agreement(impls, size: str) -> None:
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
    print(f"  {size}: {names} agree (loss {ref_loss:.6f}, {len(ref_grads)} gradients, updated weights)")


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
    """{name: [seconds per step in each round]} from interleaved, order-rotated rounds.

    Stops early (after at least 5 rounds) once the size has used its time budget, so that a
    very noisy machine cannot make the run take much longer than planned.
    """
    counts = {impl.name: steps_for(impl.step, round_seconds) for impl in impls}
    times = {impl.name: [] for impl in impls}
    start = time.perf_counter()
    for r in range(rounds):
        if r >= 5 and time.perf_counter() - start > budget_seconds:
            break
        shift = r % len(impls)
        for impl in impls[shift:] + impls[:shift]:
            times[impl.name].append(time_steps(impl.step, counts[impl.name]))
    return times, counts


def ratio(times, a: str, b: str):
    """Ratio of the two implementations' best (minimum) per-step times; None if one is missing."""
    if a not in times or b not in times:
        return None
    return min(times[a]) / min(times[b])


# -- reporting --------------------------------------------------------------------------------------

def blas_summary() -> str:
    try:
        import threadpoolctl
    except ImportError:
        return "threadpoolctl not installed (BLAS details skipped)"
    parts = []
    for info in threadpoolctl.threadpool_info():
        if info.get("user_api") != "blas":
            continue
        prefix = os.path.basename(info.get("filepath", ""))
        parts.append(f"{info.get('internal_api')} {info.get('version')} "
                     f"({info.get('architecture', '?')}, {info.get('num_threads')} threads, {prefix})")
    return "; ".join(parts) or "no BLAS found by threadpoolctl"


def torch_threads(size: str, option) -> int | None:
    """Intra-op threads for torch at this size (see the module docstring)."""
    if torch is None:
        return None
    if option is not None:
        return option or TORCH_DEFAULT_THREADS
    return 1 if size == "tiny" else TORCH_DEFAULT_THREADS


def print_header(args) -> None:
    print("calcml engine step benchmark: forward + cross-entropy + backward + SGD, float64")
    print(f"  python {sys.version.split()[0]}, numpy {np.__version__}, calcml {cm.__version__}, "
          f"{os.cpu_count()} CPUs")
    print(f"  BLAS: {blas_summary()}")
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    if coretype:
        print(f"  OPENBLAS_CORETYPE={coretype} (left as set)")
    if torch is not None:
        threads = ", ".join(f"{size} {torch_threads(size, args.torch_threads)}" for size in args.size_list)
        print(f"  torch {torch.__version__}, default {TORCH_DEFAULT_THREADS} intra-op threads; "
              f"used here: {threads}")
    else:
        print("  torch: not installed, skipped")
    mode = "quick" if args.quick else "full"
    print(f"  mode: {mode}, up to {args.rounds} interleaved rounds of ~{args.round_ms:g} ms per implementation "
          f"(at most ~{args.budget_s:g} s per size)")


def fmt(value, width, spec) -> str:
    return f"{'-' if value is None else format(value, spec):>{width}}"


def print_table(results) -> None:
    print()
    print(f"{'size':<28}{'engine µs':>11}{'numpy µs':>11}{'torch µs':>11}"
          f"{'engine/numpy':>14}{'torch/numpy':>13}{'engine/torch':>14}")
    for size, (times, counts) in results.items():
        widths, batch = SIZES[size]
        label = f"{size} {'-'.join(map(str, widths))} b{batch}"
        best = {name: min(ts) * 1e6 for name, ts in times.items()}
        print(f"{label:<28}"
              + fmt(best.get("engine"), 11, ".1f") + fmt(best.get("numpy"), 11, ".1f")
              + fmt(best.get("torch"), 11, ".1f")
              + fmt(ratio(times, "engine", "numpy"), 14, ".2f")
              + fmt(ratio(times, "torch", "numpy"), 13, ".2f")
              + fmt(ratio(times, "engine", "torch"), 14, ".2f"))
    print("(µs per step: minimum over rounds; ratios are ratios of those minima)")
    for size, (times, counts) in results.items():
        detail = ", ".join(f"{name} {counts[name]} steps/round, spread {statistics.median(ts) / min(ts):.2f}"
                           for name, ts in times.items())
        print(f"  {size}: {len(next(iter(times.values())))} rounds; {detail}")


def print_targets(results) -> None:
    print("\ntargets")
    for size, (a, b), bound, relation in TARGETS:
        if size not in results:
            continue
        value = ratio(results[size][0], a, b)
        label = f"  {size:<7} {a}/{b} {relation} {bound:g}"
        if value is None:
            print(f"{label:<36} SKIP ({b} not available)")
            continue
        ok = value <= bound if relation == "<=" else value < bound
        print(f"{label:<36} {'PASS' if ok else 'MISS'}  ({value:.2f})")


def profile_engine(size: str, seconds: float) -> None:
    """cProfile the engine's step at one size; top functions by own time."""
    import cProfile
    import pstats

    impl = build(size)[0]
    n = steps_for(impl.step, seconds)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        impl.step()
    profiler.disable()
    print(f"cProfile of {n} engine steps at size {size} (times include profiler overhead)")
    stats = pstats.Stats(profiler).strip_dirs().sort_stats("tottime")
    stats.print_stats(30)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few short rounds: a smoke run")
    parser.add_argument("--sizes", default="tiny,medium,large",
                        help="comma-separated subset of: " + ", ".join(SIZES))
    parser.add_argument("--torch-threads", type=int, metavar="N",
                        help="torch intra-op threads at every size (0: torch's default); "
                             "default: 1 at the tiny size, torch's default elsewhere")
    parser.add_argument("--profile", metavar="SIZE", choices=list(SIZES),
                        help="instead of the benchmark, cProfile the engine step at this size")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose from {list(SIZES)}")
    args.size_list = sizes
    args.rounds, args.round_ms, args.budget_s = (3, 20, 5) if args.quick else (40, 100, 30)

    if args.profile:
        profile_engine(args.profile, seconds=1.0 if args.quick else 5.0)
        return 0

    print_header(args)
    print("\nagreement after one step")
    problems = {}
    for size in sizes:
        if torch is not None:
            torch.set_num_threads(torch_threads(size, args.torch_threads))
        problems[size] = build(size)
        check_agreement(problems[size], size)

    results = {}
    for size in sizes:
        if torch is not None:
            torch.set_num_threads(torch_threads(size, args.torch_threads))
        results[size] = benchmark(problems[size], args.rounds, args.round_ms / 1000, args.budget_s)
    print_table(results)
    print_targets(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
