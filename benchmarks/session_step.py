"""What the debugger's diagnostics cost: a Session step against a bare engine training step.

Target: a session step with every diagnostic on costs <= 1.2x a bare engine step on the
784-256-256-10, batch-64 MLP.

The model: cm.nn.Sequential Linear-ReLU-Linear-ReLU-Linear, float64, random inputs with 784
features, 10 classes, one fixed batch of 64, cross_entropy, cm.optim.SGD lr 0.01.

  bare     a plain loop: loss = cross_entropy(model(X), y); optimizer.zero_grad();
           loss.backward(); optimizer.step()   (with L2: reg.add_to_grads(model) before the step)
  session  calcml.debug.session.Session over a ModelSpec built directly (data=(X, y) as one
           full batch, so the session neither copies nor shuffles), configured as calcml-debug
           runs it (`session_config()`), driven by ticks. Every diagnostic is on: the layer
           recorder (retained layer gradients), per-parameter norms, update ratios and sparsity
           (every 10 steps, held to a fiftieth of the training time: the 'detail every' column
           says how often they were measured), activation statistics, warning conditions,
           history, breakpoint check, snapshot, and the histograms when the session computes them; for
           the tiny model (354 parameters) also the curvature (λ_max, tr H, diag H at step 1 and
           then every 100+ steps, held to a tenth of the training time); the medium one has too
           many parameters for it.

Two ways of driving the session are timed, because they differ:

  step(n)  session.step(n) then n x session.tick(): what a "step n" command does (PAUSED with
           steps pending; everything is measured on the last of them). This is the target row.
  run      session.run() once, then session.tick() per step: how the worker trains when the
           interface (or --run) starts training; histograms only every `histogram_every` steps.

Why per-step ratios: the machine is a noisy, shared 2-core box, so absolute times mean little.
Only per-step times inside timed rounds are compared (model building and warm-up are outside
them, so start-up cancels out). First the script checks that the session trains exactly as the
bare loop does (two copies from one seed, three steps, the same weights: the 'agree' column).
Then both are timed on the session's own model, so that both touch the same arrays in memory:
two copies of one model can differ by a third in speed here, from where their arrays landed,
which would swamp the difference being measured. Rounds alternate bare/session (the order flips
every round so that neither always follows the other). The reported ratio is the
median over rounds of (session per-step time / bare per-step time in the same round pair); the
"min ratio" column (ratio of the quietest rounds) and the ratio spread (IQR) show how noisy it
was. BLAS threads are left as the environment sets them: on a busy 2-core box OpenBLAS's
2-thread calls (matmuls, and np.dot in the probes' norms) can stall for milliseconds waiting
for a descheduled thread, so compare with `OPENBLAS_NUM_THREADS=1 python benchmarks/...`.
The script never asserts a target: it prints PASS or MISS. On a MISS of the target it prints a
cProfile of session steps by own time (both ways of driving).

    python benchmarks/session_step.py            # full run, about 1-2 minutes
    python benchmarks/session_step.py --quick    # smoke run, a few seconds
    python benchmarks/session_step.py --profile       # only cProfile medium session steps, step(n)
    python benchmarks/session_step.py --profile run   # ... driven by run
    python benchmarks/session_step.py --breakdown     # the medium run case without some measurements
    python benchmarks/session_step.py --system-allocator   # without calcml-debug's malloc setting

The allocator: both sides run in this one process, with glibc told to keep 64 MiB of freed
memory at the top of its heap and to serve arrays up to 32 MiB from it, as calcml-debug's
processes are (calcml.debug.allocator). Left as
the system sets it, a session step page-faults several hundred times (glibc gives the heap's
top back to the system each step and takes it again), a bare loop almost never, because the
two free the step's arrays in a different order.
"""
from __future__ import annotations

import argparse
import os
from contextlib import nullcontext
import statistics
import sys
import time

import numpy as np

import calcml as cm
import calcml.nn.functional as F
from calcml.debug.loader import ModelSpec
from calcml.debug.allocator import keep_freed_memory
from calcml.debug.session import Session, session_config

SIZES = {  # name: (layer widths, batch size)
    "tiny": ((2, 16, 16, 2), 32),
    "medium": ((784, 256, 256, 10), 64),
}
LR = 0.01
SEED = 0
L2_LAMBDA = 1e-4
TARGET = 1.2

# (label, size, regulariser?, drive, is the target)
CASES = [
    ("medium step(n)", "medium", False, "step", True),
    ("medium run", "medium", False, "run", False),
    ("medium step(n) + L2", "medium", True, "step", False),
    ("medium run + L2", "medium", True, "run", False),
    ("tiny step(n)", "tiny", False, "step", False),
    ("tiny run", "tiny", False, "run", False),
]


def build(size: str, with_l2: bool):
    """(model, X, y, optimizer, regulariser or None), identical for the same arguments."""
    widths, batch = SIZES[size]
    cm.manual_seed(SEED)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        if i:
            layers.append(cm.nn.ReLU())
        layers.append(cm.nn.Linear(n_in, n_out))
    model = cm.nn.Sequential(*layers)
    rng = np.random.default_rng(SEED + 1)
    X = rng.standard_normal((batch, widths[0]))
    y = rng.integers(0, widths[-1], size=batch)
    optimizer = cm.optim.SGD(model.parameters(), lr=LR)
    reg = cm.reg.L2(L2_LAMBDA) if with_l2 else None
    return model, X, y, optimizer, reg


class Bare:
    name = "bare"

    def __init__(self, size: str, with_l2: bool, over=None):
        """`over`: a SessionSteps whose model (the same arrays in memory) this bare loop trains."""
        if over is None:
            self.model, self.X, self.y, self.optimizer, self.reg = build(size, with_l2)
        else:
            spec = over.session.spec
            self.model, (self.X, self.y), self.optimizer, self.reg = (spec.model, spec.data, spec.optimizer,
                                                                      spec.regularizer)
        self.count = 0

    def steps(self, n: int) -> None:
        self.count += n
        model, X, y, optimizer, reg = self.model, self.X, self.y, self.optimizer, self.reg
        for _ in range(n):
            loss = F.cross_entropy(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            if reg is not None:
                reg.add_to_grads(model)
            optimizer.step()

    def params(self):
        return [p.data for p in self.model.parameters()]


class SessionSteps:
    name = "session"

    def __init__(self, size: str, with_l2: bool, drive: str):
        model, X, y, optimizer, reg = build(size, with_l2)
        spec = ModelSpec(path="<benchmark>", name=f"bench_{size}", description="", model=model,
                         loss=F.cross_entropy, data=(X, y), optimizer=optimizer, regularizer=reg,
                         batch_size=None, val_data=None, seed=SEED, steps=None)
        self.session = Session(spec, session_config())   # as calcml-debug runs it
        self.drive = drive
        self.count = 0
        if drive == "run":
            self.session.run()

    def steps(self, n: int) -> None:
        s = self.session
        self.count += n
        if self.drive == "step":
            s.step(n)
        tick = s.tick
        for _ in range(n):
            tick()

    def check(self, expected_steps: int) -> None:
        s = self.session
        if s.done or s.step_count != expected_steps:
            raise SystemExit(f"the session did not train as expected: state {s.state}, "
                             f"{s.step_count} steps instead of {expected_steps}; stop: {s.stop_info}")

    def params(self):
        return [p.data for p in self.session.model.parameters()]


def timed(stepper, n: int) -> float:
    """Seconds per step over n consecutive steps."""
    start = time.perf_counter()
    stepper.steps(n)
    return (time.perf_counter() - start) / n


def steps_per_round(bare: Bare, round_seconds: float) -> int:
    n = 1
    while timed(bare, n) * n < 0.02 and n < 1 << 14:
        n *= 2
    per_step = min(timed(bare, n) for _ in range(3))
    return max(1, round(round_seconds / per_step))


def run_case(size, with_l2, drive, round_seconds, max_rounds, budget_seconds):
    # First the session must train exactly as the bare loop does: two copies, same steps, same weights.
    copy, sess = Bare(size, with_l2), SessionSteps(size, with_l2, drive)
    copy.steps(3)
    sess.steps(3)
    sess.check(sess.count)
    agree = all(np.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(copy.params(), sess.params()))
    del copy
    # Then time both on the session's own model: the same arrays in memory. (Two copies of one
    # model can differ by a third in speed on this machine, from where their arrays landed;
    # that would swamp the difference being measured.)
    bare = Bare(size, with_l2, over=sess)
    n = steps_per_round(bare, round_seconds)
    bare_times, sess_times, ratios = [], [], []
    start = time.perf_counter()
    for r in range(max_rounds):
        if r >= 5 and time.perf_counter() - start > budget_seconds:
            break
        if r % 2 == 0:
            tb = timed(bare, n)
            ts = timed(sess, n)
        else:
            ts = timed(sess, n)
            tb = timed(bare, n)
        bare_times.append(tb)
        sess_times.append(ts)
        ratios.append(ts / tb)
    sess.check(sess.count)
    return {"bare": bare_times, "session": sess_times, "ratios": ratios, "n": n, "agree": agree,
            "detail_every": detail_interval(sess.session)}


def detail_interval(session) -> float:
    """Steps per update-ratio measurement over the kept history (the detail budget can stretch it)."""
    name = f"{session._params[0][0]}.update_ratio"
    measured = np.isfinite(session.history.series(name)).sum()
    return len(session.history) / max(measured, 1)


def iqr(values):
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def profile_session(size: str, drive: str, seconds: float, top: int) -> None:
    import cProfile
    import pstats

    sess = SessionSteps(size, False, drive)
    sess.steps(3)
    t = timed(sess, 3)
    n = max(5, round(seconds / t))
    profiler = cProfile.Profile()
    profiler.enable()
    sess.steps(n)
    profiler.disable()
    print(f"\ncProfile of {n} session steps ({size}, driven by {drive}), by own time "
          f"(times include the profiler's overhead):")
    stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs().sort_stats("tottime")
    stats.print_stats(top)


def without(parts: str):
    """Replace some of the session's measurements by constants, for --breakdown (then undo it).
    'rare': the update-ratio/sparsity passes and the histograms; 'numpy': every numpy
    measurement (what is left is the Python around them: hooks, statistics, warnings, history)."""
    from contextlib import ExitStack
    from unittest import mock

    from calcml.debug import probes
    stack = ExitStack()
    patch = lambda target, name, value: stack.enter_context(mock.patch.object(target, name, value))
    patch(Session, "_measure_detail",
          lambda self, threshold: setattr(self, "_detail", {n: probes.UNMEASURED for n, _ in self._params}))
    patch(Session, "_histograms", lambda self, recorder=None: {})
    if parts == "numpy":
        patch(probes, "sq_norm", lambda a: 1.0)
        patch(probes, "norm", lambda a: 1.0 if a is not None else float("nan"))
        patch(probes, "activation_stats", lambda kind, module, out, level: (0.5, 0.0, None))
    return stack


def breakdown(rounds_seconds: float, max_rounds: int, budget: float) -> None:
    """Where the medium session step's overhead goes: the full session, then without the
    measurements taken only every few steps, then without any numpy measurement."""
    print("breakdown of the medium session step, driven by run (per-step ratio to bare, median over rounds)")
    for label, parts in (("full session", None), ("without update ratios, sparsity, histograms", "rare"),
                         ("without any numpy measurement (the Python around them)", "numpy")):
        with without(parts) if parts else nullcontext():
            res = run_case("medium", False, "run", rounds_seconds, max_rounds, budget)
        lo, hi = iqr(res["ratios"])
        print(f"  {label:<58}{statistics.median(res['ratios']):>6.2f}   IQR {lo:.2f}-{hi:.2f}   "
              f"bare {statistics.median(res['bare']) * 1e3:.2f} ms", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few short rounds: a smoke run")
    parser.add_argument("--profile", choices=("step", "run"), nargs="?", const="step",
                        help="instead of the benchmark, cProfile medium session steps driven by "
                             "step(n) (the default) or run")
    parser.add_argument("--breakdown", action="store_true",
                        help="instead of the benchmark, the medium run case with parts of the "
                             "measurement replaced by constants: where the overhead goes")
    parser.add_argument("--system-allocator", action="store_true",
                        help="leave glibc's malloc as it is (calcml-debug keeps 64 MiB of freed "
                             "memory at the top of the heap; see calcml.debug.allocator)")
    args = parser.parse_args(argv)
    tuned = False if args.system_allocator else keep_freed_memory()
    if args.profile:
        profile_session("medium", args.profile, 2.0 if args.quick else 8.0, 30)
        return 0
    round_s, max_rounds, budget = (0.05, 3, 2.0) if args.quick else (0.15, 60, 15.0)
    if args.breakdown:
        breakdown(round_s, max_rounds, budget)
        return 0

    print("calcml session step vs bare engine step (forward + cross-entropy + backward + SGD, float64)")
    print(f"  python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}, "
          f"mode {'quick' if args.quick else 'full'}: up to {max_rounds} round pairs, bare rounds of "
          f"~{round_s * 1000:.0f} ms, ~{budget:g} s per case, load average {os.getloadavg()[0]:.2f}")
    print(f"  allocator: {'glibc keeps 64 MiB of freed memory (M_TOP_PAD; M_MMAP_THRESHOLD 32 MiB), as calcml-debug runs' if tuned else 'as the system set it'}")
    print("  ratio = median over rounds of (session per-step time / bare per-step time in the same pair)")
    print()
    header = (f"{'case':<22}{'bare ms':>9}{'session ms':>12}{'ratio':>8}{'IQR':>13}{'min ratio':>11}"
              f"{'rounds':>8}{'N':>6}{'detail every':>14}  agree")
    print(header)
    results = {}
    for label, size, with_l2, drive, _ in CASES:
        res = run_case(size, with_l2, drive, round_s, max_rounds, budget)
        results[label] = res
        ratio = statistics.median(res["ratios"])
        lo, hi = iqr(res["ratios"])
        best = min(res["session"]) / min(res["bare"])
        print(f"{label:<22}{statistics.median(res['bare']) * 1e3:>9.3f}"
              f"{statistics.median(res['session']) * 1e3:>12.3f}{ratio:>8.2f}"
              f"{f'{lo:.2f}-{hi:.2f}':>13}{best:>11.2f}{len(res['ratios']):>8}{res['n']:>6}"
              f"{res['detail_every']:>14.1f}  "
              f"{'yes' if res['agree'] else 'NO (weights differ)'}", flush=True)
    print("(ms: median per-step time over rounds; the L2 rows use lambda = "
          f"{L2_LAMBDA:g}, the bare side adding reg.add_to_grads)")
    print("(update ratios and sparsity are measured every detail_every steps, less often if that "
          "would take over detail_budget of the training time; histograms every histogram_every "
          "steps; both whenever the run comes to rest)")

    print(f"\ntargets  (load average now {os.getloadavg()[0]:.2f})")
    missed = False
    for label, size, with_l2, drive, is_target in CASES:
        ratio = statistics.median(results[label]["ratios"])
        if is_target:
            ok = ratio <= TARGET
            missed |= not ok
            print(f"  {label}: session/bare <= {TARGET:g}   {'PASS' if ok else 'MISS'}  ({ratio:.2f})")
        else:
            mark = "pass" if ratio <= TARGET else "miss"
            print(f"  {label}: session/bare = {ratio:.2f}   (informative; would {mark} {TARGET:g})")
    if missed and not args.quick:
        print("\nthe target was missed: where a medium session step spends its time")
        profile_session("medium", "step", 4.0, 18)
        profile_session("medium", "run", 4.0, 18)
    return 0


if __name__ == "__main__":
    sys.exit(main())
