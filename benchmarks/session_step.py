"""What the debugger's diagnostics cost: a Session step against a bare engine training step.

Targets (a session step with every diagnostic on, driven by step(n), against a bare step):

  <= 1.2x   on the 784-256-256-10, batch-64 MLP (the medium case);
  <= 1.1x   on wide nets, 1-3 hidden layers of 256-1024 units: the medium case, 784-1024-10 and
            784-512-512-512-10, batch 64;
  <= 1.25x  on the deep-narrow 32x64 net: 32 Linear layers of 64 units (the last one 64-10,
            ReLU between them), 64 input features, batch 32. Deep-narrow nets are where the
            per-layer measurements cost most against a step that is mostly Python; the 8x64 and
            64x64 nets are printed beside it.

The models: cm.nn.Sequential of Linear layers with ReLU between them, float64, random inputs,
10 classes, one fixed batch, cross_entropy, cm.optim.SGD lr 0.01.

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
           then every 100+ steps, held to a tenth of the training time); the others have too
           many parameters for it.

Two ways of driving the session are timed, because they differ:

  step(n)  session.step(n) then n x session.tick(): what a "step n" command does (PAUSED with
           steps pending; everything is measured on the last of them). The target rows.
  run      session.run() once, then session.tick() per step: how the worker trains when the
           interface (or --run) starts training; histograms only every `histogram_every` steps.
           As under the interface, the session keeps a copy of the weights before every step
           (`may_pause`), so that a pause pressed after any step measures that step's update.

Why per-step ratios: the machine is a noisy, shared 2-core box, so absolute times mean little.
Only per-step times inside timed rounds are compared (model building and warm-up are outside
them, so start-up cancels out). First the script checks that the session trains exactly as the
bare loop does (two copies from one seed, three steps, the same weights: the 'agree' column).
Then both are timed on the session's own model, so that both touch the same arrays in memory:
two copies of one model can differ by a third in speed here, from where their arrays landed,
which would swamp the difference being measured. Rounds alternate bare/session (the order flips
every round so that neither always follows the other). The reported ratio is the median over
rounds of (session per-step time / bare per-step time in the same round pair); the IQR and the
min-max of those per-round ratios and the 'min r' column (ratio of the quietest rounds)
show how noisy it was, and 'load' the 1-minute load average as the case finished.

One thread is the headline: each case is measured in a fresh child process started with
OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS set to 1, and the targets are judged
on that. With two BLAS threads on a busy 2-core box, OpenBLAS's calls (matmuls, and np.dot in
the probes' norms) stall waiting for a descheduled thread, and one competing process makes a
step up to 3x slower, so two-thread ratios swing between runs. The 'default' column is the same
case in another child with the three variables removed (each library's own thread count), as a
user gets it. A fresh process per case also keeps one case's heap from shaping the next's.
The script never asserts a target: it prints PASS or MISS. On a full run that misses a target
it prints a cProfile (one thread) of the missing cases' session steps, by own time.

    python benchmarks/session_step.py            # full run, about 3 minutes
    python benchmarks/session_step.py --quick    # smoke run, about 30 seconds
    python benchmarks/session_step.py --cases deep,wide   # cases whose label contains a word
    python benchmarks/session_step.py --threads 1         # only the one-thread measurement
    python benchmarks/session_step.py --profile       # only cProfile medium session steps, step(n)
    python benchmarks/session_step.py --profile run --profile-size deep32   # ... another net, by run
    python benchmarks/session_step.py --breakdown     # the medium run case without some measurements
    python benchmarks/session_step.py --system-allocator   # without calcml-debug's malloc setting

(--profile and --breakdown run with one BLAS thread: the script starts itself again so.)

The allocator: both sides run in one process, with glibc told to keep 64 MiB of freed
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchutil sits beside this script
import benchutil as bu  # noqa: E402


def deep(layers: int):
    """`layers` Linear layers of 64 units (64 inputs; the last layer 64 -> 10 classes), batch 32."""
    return (64,) * layers + (10,), 32


SIZES = {  # name: (layer widths, batch size)
    "tiny": ((2, 16, 16, 2), 32),
    "medium": ((784, 256, 256, 10), 64),
    "wide1024": ((784, 1024, 10), 64),
    "wide3x512": ((784, 512, 512, 512, 10), 64),
    "deep8": deep(8),
    "deep32": deep(32),
    "deep64": deep(64),
}
LR = 0.01
SEED = 0
L2_LAMBDA = 1e-4
BOUNDS = {"medium": 1.2, "wide": 1.1, "deep": 1.25}   # session/bare, per family of nets

# (label, size, regulariser?, drive, family: the bound an informative row is compared with)
CASES = [
    ("medium step(n)", "medium", False, "step", "medium"),
    ("medium run", "medium", False, "run", "medium"),
    ("medium step(n) + L2", "medium", True, "step", "medium"),
    ("medium run + L2", "medium", True, "run", "medium"),
    ("tiny step(n)", "tiny", False, "step", "medium"),
    ("tiny run", "tiny", False, "run", "medium"),
    ("wide 1x1024 step(n)", "wide1024", False, "step", "wide"),
    ("wide 3x512 step(n)", "wide3x512", False, "step", "wide"),
    ("deep 8x64 step(n)", "deep8", False, "step", "deep"),
    ("deep 32x64 step(n)", "deep32", False, "step", "deep"),
    ("deep 64x64 step(n)", "deep64", False, "step", "deep"),
    ("deep 32x64 run", "deep32", False, "run", "deep"),
]
# (what, bound, the cases judged); cases in none of them are informative
TARGETS = [
    ("the 784-256-256-10 net", BOUNDS["medium"], ["medium step(n)"]),
    ("wide nets (1-3 layers of 256-1024 units)", BOUNDS["wide"],
     ["medium step(n)", "wide 1x1024 step(n)", "wide 3x512 step(n)"]),
    ("the deep-narrow 32x64 net", BOUNDS["deep"], ["deep 32x64 step(n)"]),
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
            self.session.may_pause = True   # as under the interface: a pause may come after any step
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


def detail_interval(session) -> float | None:
    """Steps per update-ratio measurement over the kept history (the detail budget can stretch
    it), read from the first parameter's update-ratio series; None if the history has none."""
    try:
        name = next((n for n in session.history.names() if n.endswith(".update_ratio")), None)
        if name is None:
            return None
        measured = np.isfinite(session.history.series(name)).sum()
        return len(session.history) / max(measured, 1)
    except (AttributeError, KeyError, TypeError):   # a history that no longer offers these
        return None


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
    print(f"\ncProfile of {n} session steps ({size}, driven by {drive}, "
          f"{bu.threads_label(bu.current_threads())}), by own time (times include the profiler's overhead):")
    stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs().sort_stats("tottime")
    stats.print_stats(top)


def without(parts: str):
    """Replace some of the session's measurements by constants, for --breakdown (then undo it).
    'rare': the update-ratio/sparsity passes and the histograms; 'numpy': every numpy
    measurement (what is left is the Python around them: hooks, statistics, warnings, history)."""
    from contextlib import ExitStack
    from unittest import mock

    from calcml.debug import probes
    from calcml.debug.quantities import Histograms, UpdateRatio
    from calcml.debug.snapshot import UNMEASURED
    stack = ExitStack()
    patch = lambda target, name, value: stack.enter_context(mock.patch.object(target, name, value))

    def unmeasured(self, ctx):
        self.latest = {name: UNMEASURED for name, _, _ in self._plan}
    patch(UpdateRatio, "_measure", unmeasured)
    patch(Histograms, "take", lambda self, ctx=None, resting=True: {})
    if parts == "numpy":
        patch(probes, "sq_norm", lambda a: 1.0)
        patch(probes, "norm", lambda a: 1.0 if a is not None else float("nan"))
        patch(probes, "activation_stats", lambda kind, module, out, level, x=None: (0.5, 0.0, None))
    return stack


def breakdown(rounds_seconds: float, max_rounds: int, budget: float) -> None:
    """Where the medium session step's overhead goes: the full session, then without the
    measurements taken only every few steps, then without any numpy measurement."""
    print("breakdown of the medium session step, driven by run (per-step ratio to bare, median over rounds; "
          f"{bu.threads_label(bu.current_threads())}, load average {bu.load_average()})")
    for label, parts in (("full session", None), ("without update ratios, sparsity, histograms", "rare"),
                         ("without any numpy measurement (the Python around them)", "numpy")):
        with without(parts) if parts else nullcontext():
            res = run_case("medium", False, "run", rounds_seconds, max_rounds, budget)
        lo, hi = bu.iqr(res["ratios"])
        print(f"  {label:<58}{statistics.median(res['ratios']):>6.2f}   IQR {lo:.2f}-{hi:.2f}   "
              f"bare {statistics.median(res['bare']) * 1e3:.2f} ms", flush=True)


def child(args) -> int:
    """Measure one case (in a fresh process with the thread setting its parent chose); emit it."""
    label, size, with_l2, drive, _ = next(case for case in CASES if case[0] == args.child)
    round_s, max_rounds, budget = (float(v) for v in args.plan.split(","))
    res = run_case(size, with_l2, drive, round_s, int(max_rounds), budget)
    res["load"] = bu.load_now()
    bu.emit(res)
    return 0


def measure(case, threads: str, plan, system_allocator: bool) -> dict:
    command = [__file__, "--child", case[0], "--plan", ",".join(map(str, plan))]
    if system_allocator:
        command.append("--system-allocator")
    return bu.run_child(command, threads)


def profile_in_child(size: str, drive: str, system_allocator: bool) -> None:
    """cProfile session steps in a one-thread child (the one-thread measurement is the one judged)."""
    import subprocess
    command = [sys.executable, __file__, "--profile", drive, "--profile-size", size,
               "--profile-seconds", "4", "--profile-top", "18"]
    if system_allocator:
        command.append("--system-allocator")
    sys.stdout.flush()
    subprocess.run(command, env=bu.thread_env(bu.ONE), check=False)


def print_row(label: str, one: dict, default: dict | None) -> None:
    ratios = one["ratios"]
    lo, hi = bu.iqr(ratios)
    best = min(one["session"]) / min(one["bare"])
    every = "-" if one["detail_every"] is None else f"{one['detail_every']:.1f}"
    if default is not None:
        dlo, dhi = bu.iqr(default["ratios"])
        beside = f"{statistics.median(default['ratios']):.2f} ({dlo:.2f}-{dhi:.2f})"
        load = f"{one['load']:.2f}/{default['load']:.2f}"
    else:
        beside, load = "-", f"{one['load']:.2f}"
    print(f"{label:<22}{statistics.median(one['bare']) * 1e3:>9.3f}"
          f"{statistics.median(one['session']) * 1e3:>12.3f}{statistics.median(ratios):>7.2f}"
          f"{f'{lo:.2f}-{hi:.2f}':>11}{f'{min(ratios):.2f}-{max(ratios):.2f}':>11}"
          f"{best:>7.2f}{len(ratios):>7}{one['n']:>6}{every:>7}"
          f"{beside:>19}{load:>11}  {'yes' if one['agree'] else 'NO (weights differ)'}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few short rounds: a smoke run")
    parser.add_argument("--cases", help="comma-separated words: only the cases whose label contains one "
                                        "(e.g. deep,wide or 'medium step(n)')")
    parser.add_argument("--threads", choices=("both", bu.ONE, bu.DEFAULT), default="both",
                        help="measure with one BLAS thread (the targets), the default threads, or both (default)")
    parser.add_argument("--profile", choices=("step", "run"), nargs="?", const="step",
                        help="instead of the benchmark, cProfile session steps (one thread) driven by "
                             "step(n) (the default) or run")
    parser.add_argument("--profile-size", choices=list(SIZES), default="medium",
                        help="the net --profile profiles (default medium)")
    parser.add_argument("--profile-seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--profile-top", type=int, default=30, help=argparse.SUPPRESS)
    parser.add_argument("--breakdown", action="store_true",
                        help="instead of the benchmark, the medium run case with parts of the "
                             "measurement replaced by constants: where the overhead goes (one thread)")
    parser.add_argument("--system-allocator", action="store_true",
                        help="leave glibc's malloc as it is (calcml-debug keeps 64 MiB of freed "
                             "memory at the top of the heap; see calcml.debug.allocator)")
    parser.add_argument("--child", help=argparse.SUPPRESS)   # a case's label: measure it here
    parser.add_argument("--plan", help=argparse.SUPPRESS)    # round_s,max_rounds,budget_s
    args = parser.parse_args(argv)
    if args.profile or args.breakdown:
        bu.reexec_one_thread()
    tuned = False if args.system_allocator else keep_freed_memory()
    if args.child:
        return child(args)
    if args.profile:
        seconds = args.profile_seconds or (2.0 if args.quick else 8.0)
        profile_session(args.profile_size, args.profile, seconds, args.profile_top)
        return 0
    plans = ({bu.ONE: (0.05, 3, 2.0), bu.DEFAULT: (0.05, 3, 2.0)} if args.quick
             else {bu.ONE: (0.15, 40, 8.0), bu.DEFAULT: (0.15, 12, 4.0)})
    if args.breakdown:
        try:
            breakdown(*plans[bu.ONE])
        except AttributeError as error:   # without() replaces Session internals by name
            print(f"--breakdown needs Session internals this version does not have: {error}")
            return 2
        return 0
    cases = CASES
    if args.cases:
        words = [w.strip() for w in args.cases.split(",") if w.strip()]
        cases = [case for case in CASES if any(w in case[0] for w in words)]
        if not cases:
            parser.error(f"no case label contains any of {words}; the cases: {[c[0] for c in CASES]}")
    settings = bu.SETTINGS if args.threads == "both" else (args.threads,)

    print("calcml session step vs bare engine step (forward + cross-entropy + backward + SGD, float64)")
    print(f"  python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"load average {bu.load_average()}, mode {'quick' if args.quick else 'full'}")
    for threads in settings:
        round_s, max_rounds, budget = plans[threads]
        print(f"  {bu.threads_label(threads)}: up to {max_rounds} round pairs, bare rounds of ~{round_s * 1000:.0f} ms, "
              f"~{budget:g} s per case, each case in a fresh process"
              + (" (OPENBLAS/OMP/MKL_NUM_THREADS=1; the targets)" if threads == bu.ONE
                 else " (those variables removed)"))
    print(f"  allocator: {'glibc keeps 64 MiB of freed memory (M_TOP_PAD; M_MMAP_THRESHOLD 32 MiB), as calcml-debug runs' if tuned else 'as the system set it'}")
    print("  ratio = median over rounds of (session per-step time / bare per-step time in the same pair)")
    print()
    first = settings[0]
    print(f"{'case':<22}{'bare ms':>9}{'session ms':>12}{'ratio':>7}{'IQR':>11}{'min-max':>11}{'min r':>7}"
          f"{'rounds':>7}{'N':>6}{'detail':>7}{'default (IQR)':>19}{'load':>11}  agree")
    results, beside = {}, {}
    for case in cases:
        results[case[0]] = measure(case, first, plans[first], args.system_allocator)
        if len(settings) > 1:
            beside[case[0]] = measure(case, settings[1], plans[settings[1]], args.system_allocator)
        print_row(case[0], results[case[0]], beside.get(case[0]))
    print(f"(columns from the {bu.threads_label(first)} measurement: ms: median per-step time over rounds; IQR and "
          "min-max: of the per-round ratios; min r: ratio of the quietest rounds; N: steps per round;")
    print(" detail: steps per update-ratio/sparsity measurement; default (IQR): the median ratio with each "
          "library's default threads; load: 1-minute load average as each case ended (1 thread/default))")
    print(f"(the L2 rows use lambda = {L2_LAMBDA:g}, the bare side adding reg.add_to_grads; update ratios and "
          "sparsity are measured every detail_every steps, less often if that would take over detail_budget")
    print(" of the training time; histograms every histogram_every steps; both whenever the run comes to rest)")

    if first != bu.ONE:
        print("\ntargets: not judged (they are judged on the one-thread measurement: run without --threads default)")
        return 0
    print(f"\ntargets  (judged on 1 thread; load average now {bu.load_average()})")
    missed, judged = [], set()
    for what, bound, labels in TARGETS:
        labels = [label for label in labels if label in results]
        if not labels:
            continue
        print(f"  {what}: session/bare <= {bound:g}")
        for label in labels:
            judged.add(label)
            ratio = statistics.median(results[label]["ratios"])
            ok = ratio <= bound
            if not ok:
                missed.append(label)
            default = f"; default threads {statistics.median(beside[label]['ratios']):.2f}" if label in beside else ""
            lo, hi = bu.iqr(results[label]["ratios"])
            print(f"    {label:<22}{'PASS' if ok else 'MISS'}  ({ratio:.2f}; IQR {lo:.2f}-{hi:.2f}{default})")
    informative = [case for case in cases if case[0] not in judged]
    if informative:
        print("  informative:")
    for label, _, _, _, family in informative:
        ratio = statistics.median(results[label]["ratios"])
        mark = "pass" if ratio <= BOUNDS[family] else "miss"
        print(f"    {label:<22}{ratio:.2f}   (would {mark} {BOUNDS[family]:g})")
    if missed and not args.quick:
        print("\ntargets were missed: where those session steps spend their time (one thread)")
        done = set()
        for label in missed:
            _, size, _, drive, _ = next(case for case in CASES if case[0] == label)
            if (size, drive) not in done:
                done.add((size, drive))
                profile_in_child(size, drive, args.system_allocator)
    return 0


if __name__ == "__main__":
    sys.exit(main())
