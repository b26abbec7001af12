"""Does a long debugging session keep its memory flat, and how much does a deep model's cost?

Targets:
  1. memory after 200,000 steps of sample_models/xor_mlp.py is within 20 MB of memory after
     10,000 steps (the long run);
  2. the 64-layer net's session history (session.history.nbytes) is under 20 MB (the deep runs).

Why this matters: the debugger is meant to be left running. Everything a session keeps per step
(history, warnings, the steps/s window) is bounded by design (ring buffers of
`SessionConfig.history_capacity` = 10,000 steps, deques with a maxlen), so once those are full,
at step 10,000, memory should stop growing. Anything that grows per step (a list that is never
trimmed, a retained graph, a cache keyed by step) shows up as a difference between the two
measurements: 190,000 steps x a few hundred bytes is already tens of MB.

How: the model file is loaded with calcml.debug.load_model_file(path, steps=N) (the file sets
steps = 300, so the step count is passed explicitly) and driven in-process by a Session in run
mode (session.run(), then session.tick() per step, as the worker does; no front end). At step
10,000 and at the end, after gc.collect():

  RSS         the process's resident memory (/proc/self/statm; includes numpy buffers and
              whatever the allocator keeps): this is the number the target is about;
  gc objects  the number of objects the garbage collector tracks (Python-level growth);
  peak RSS    resource.getrusage's ru_maxrss, for orientation.

tracemalloc slows every Python allocation down several times, so it is not on for the whole run:
it traces the last `--trace-steps` steps (default 2,000) only, with a snapshot half-way through
and one at the end. Their difference, divided by the steps between them, is the Python-level
growth per step (about 0 for a flat session; what is merely the latest state, such as the
current Snapshot and its histograms, is in both and cancels out), and the lines that grew are
printed. tracemalloc is stopped (its own bookkeeping freed) before the final RSS is read.

A full run is 200,000 training steps: on a quiet machine about 2-4 minutes (xor_mlp trains at
roughly 1,000-2,000 steps/s in a session), longer on a busy shared box; progress is printed.

The deep runs: what a session costs in memory on a deep-narrow net, where the per-layer series
make the history wide. The net is 32 or 64 Linear layers of 64 units (64 inputs, the last layer
64 -> 10 classes, ReLU between them), one fixed batch of 32, cross-entropy, SGD lr 0.01, as in
session_step.py. Each case is a fresh child process, so that no case inherits another's heap:

  bare     300 steps of the plain training loop on the net;
  session  a 300-step headless run of the same net: Session(spec, session_config()) and
           session.run_to_end(), as `calcml-debug --headless` runs it.

Both keep freed memory as calcml-debug does (calcml.debug.allocator). The peak RSS of each is
the kernel's high-water mark for that one process (VmHWM in /proc/self/status, read when its
training is done; not ru_maxrss, which a child inherits from its parent's size at fork); the
session's extra memory is the difference between the two peaks, and the history's share of it
is session.history.nbytes (read only through that property).

The whole script runs with one BLAS thread (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and
MKL_NUM_THREADS set to 1; it starts itself again so if they are not): memory does not depend on
the thread count much, but OpenBLAS's per-thread buffers do add to RSS, and one setting keeps
runs comparable. The load average is printed with the results. The script never asserts: it
prints the numbers and PASS or MISS.

    python benchmarks/session_memory.py                  # 10,000 then 200,000 steps, then the deep runs: ~3-9 minutes
    python benchmarks/session_memory.py --quick          # 1,000 then 6,000 steps, then the deep runs: a smoke run
    python benchmarks/session_memory.py --steps 50000    # a shorter long run
    python benchmarks/session_memory.py --only deep      # only the deep runs (10-20 s)
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchutil sits beside this script
import benchutil as bu  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "sample_models", "xor_mlp.py")
TARGET_MB = 20.0
HISTORY_TARGET_MB = 20.0   # the 64-layer net's session.history.nbytes
DEEP_LAYERS = (32, 64)
DEEP_STEPS = 300
SEED = 0
MB = 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def own_peak_rss_bytes() -> int:
    """This process's peak RSS since it started its program: /proc/self/status's VmHWM. (Not
    ru_maxrss, which Linux carries over from the parent's memory at fork and exec: a child of a
    big process would report the parent's size.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return peak_rss_bytes()


def measure(label: str, session) -> dict:
    gc.collect()
    point = {"step": session.step_count, "rss": rss_bytes(), "peak": peak_rss_bytes(),
             "objects": len(gc.get_objects())}
    print(f"  {label}: step {point['step']:,}  RSS {point['rss'] / MB:.1f} MB  "
          f"peak {point['peak'] / MB:.1f} MB  gc objects {point['objects']:,}", flush=True)
    return point


def train_to(session, target: int, started: float, first_step: int, progress_every: int) -> None:
    """Tick until the session has trained `target` steps (or stopped), printing progress."""
    tick = session.tick
    next_report = (session.step_count // progress_every + 1) * progress_every
    while session.step_count < target and not session.done:
        tick()
        if session.step_count >= next_report:
            elapsed = time.perf_counter() - started
            rate = (session.step_count - first_step) / elapsed if elapsed > 0 else 0.0
            print(f"    step {session.step_count:>9,}  {rate:7.0f} steps/s  RSS {rss_bytes() / MB:7.1f} MB",
                  flush=True)
            next_report += progress_every


def long_run(early: int, total: int, trace_steps: int) -> dict:
    """The long xor_mlp run in this process: RSS at step `early` and at step `total`."""
    from calcml.debug import load_model_file
    from calcml.debug.session import Session

    print("\nthe long run: sample_models/xor_mlp.py in one in-process Session")
    print(f"  measure at step {early:,} and at step {total:,}; tracemalloc over the last {trace_steps:,} steps; "
          f"load average {bu.load_average()}")
    spec = load_model_file(MODEL, steps=total)
    session = Session(spec)
    print(f"  history capacity {session.config.history_capacity:,} steps, warnings kept "
          f"{session.config.warnings_capacity:,}")
    session.run()
    base_rss = rss_bytes()
    started = time.perf_counter()
    progress_every = max(1_000, total // 20)
    print(f"  before training: RSS {base_rss / MB:.1f} MB")

    train_to(session, early, started, 0, progress_every)
    first = measure("first measurement ", session)
    train_to(session, total - trace_steps, started, 0, progress_every)

    traced = None
    if trace_steps and not session.done:
        # Trace the last trace_steps steps; compare the second half against the first, so that
        # what is merely the latest state (the current Snapshot, its histograms) cancels out.
        tracemalloc.start(10)
        at = session.step_count
        half = at + (total - at) // 2
        train_to(session, half, started, 0, progress_every)
        gc.collect()
        middle = tracemalloc.take_snapshot()
        train_to(session, total, started, 0, progress_every)
        gc.collect()
        end = tracemalloc.take_snapshot()
        current, peak = tracemalloc.get_traced_memory()
        own = [tracemalloc.Filter(False, tracemalloc.__file__)]  # tracemalloc's own bookkeeping
        top = end.filter_traces(own).compare_to(middle.filter_traces(own), "lineno")
        growth = sum(stat.size_diff for stat in top)
        traced = {"from": at, "middle": half, "to": session.step_count, "current": current, "peak": peak,
                  "growth": growth, "top": top}
        tracemalloc.stop()
    else:
        train_to(session, total, started, 0, progress_every)
    elapsed = time.perf_counter() - started
    second = measure("second measurement", session)
    if session.state != "finished" or session.step_count != total:
        print(f"  note: the session ended as {session.state!r} at step {session.step_count:,} "
              f"({session.stop_info})")
    print(f"  {session.step_count:,} steps in {elapsed:.0f} s ({session.step_count / elapsed:.0f} steps/s, "
          f"the last {trace_steps:,} under tracemalloc)")

    print(f"\nresults of the long run  (load average now {bu.load_average()})")
    diff = second["rss"] - first["rss"]
    print(f"  RSS at step {first['step']:,}: {first['rss'] / MB:.1f} MB; at step {second['step']:,}: "
          f"{second['rss'] / MB:.1f} MB; difference {diff / MB:+.1f} MB")
    print(f"  gc-tracked objects: {first['objects']:,} -> {second['objects']:,} "
          f"({second['objects'] - first['objects']:+,})")
    print(f"  peak RSS {second['peak'] / MB:.1f} MB")
    if traced is not None:
        half_steps = max(traced["to"] - traced["middle"], 1)
        per_step = traced["growth"] / half_steps
        print(f"  tracemalloc, steps {traced['from']:,}-{traced['to']:,}: Python allocations still live at the end "
              f"{traced['current'] / 1024:.1f} kB (the latest Snapshot and such; traced peak "
              f"{traced['peak'] / 1024:.1f} kB)")
        print(f"  tracemalloc growth from step {traced['middle']:,} to {traced['to']:,}: "
              f"{traced['growth'] / 1024:+.1f} kB ({per_step:+.1f} bytes/step; "
              f"{per_step * (total - early) / MB:+.2f} MB if that held for all {total - early:,} steps)")
        grown = [stat for stat in traced["top"] if stat.size_diff != 0][:5]
        for stat in grown:
            frame = stat.traceback[0]
            where = os.path.relpath(frame.filename, ROOT) if frame.filename.startswith(ROOT) else frame.filename
            print(f"    {stat.size_diff / 1024:+8.1f} kB  {stat.count_diff:+6d} blocks  {where}:{frame.lineno}")

    return {"diff": diff, "first": first, "second": second,
            "note": "" if (early, total) == (10_000, 200_000) else "   (not the target's 10,000/200,000 steps)"}


def build_deep(layers: int):
    """(model, X, y, optimizer): `layers` Linear layers of 64 units, the last 64 -> 10, batch 32."""
    import numpy as np
    import calcml as cm

    cm.manual_seed(SEED)
    widths = (64,) * layers + (10,)
    modules = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        if i:
            modules.append(cm.nn.ReLU())
        modules.append(cm.nn.Linear(n_in, n_out))
    model = cm.nn.Sequential(*modules)
    rng = np.random.default_rng(SEED + 1)
    X = rng.standard_normal((32, 64))
    y = rng.integers(0, 10, size=32)
    return model, X, y, cm.optim.SGD(model.parameters(), lr=0.01)


def deep_child(layers: int, mode: str, steps: int) -> int:
    """One deep case in this fresh process: bare training or a headless session run; emit it."""
    import calcml.nn.functional as F
    from calcml.debug.allocator import keep_freed_memory
    from calcml.debug.loader import ModelSpec
    from calcml.debug.session import Session, session_config

    keep_freed_memory()   # as calcml-debug's processes do, on both sides
    start_rss = rss_bytes()
    model, X, y, optimizer = build_deep(layers)
    started = time.perf_counter()
    history, state = None, "finished"
    if mode == "bare":
        for _ in range(steps):
            loss = F.cross_entropy(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        trained = steps
    else:
        spec = ModelSpec(path="<benchmark>", name=f"deep_{layers}x64", description="", model=model,
                         loss=F.cross_entropy, data=(X, y), optimizer=optimizer, regularizer=None,
                         batch_size=None, val_data=None, seed=SEED, steps=steps)
        session = Session(spec, session_config())   # as calcml-debug --headless runs it
        session.run_to_end()
        trained, state, history = session.step_count, session.state, session.history.nbytes
    seconds = time.perf_counter() - started
    gc.collect()
    bu.emit({"start_rss": start_rss, "peak_rss": own_peak_rss_bytes(), "history": history, "steps": trained,
             "state": state, "seconds": seconds, "load": bu.load_now()})
    return 0


def deep_runs(steps: int) -> dict:
    """{layers: {"bare": result, "session": result}}, each from a fresh one-thread process."""
    print(f"\nthe deep runs: {steps}-step runs of deep-narrow nets (layers x 64 units, batch 32), "
          "one fresh process each, 1 BLAS thread")
    print(f"  {'net':<8}{'start MB':>10}{'bare peak MB':>14}{'session peak MB':>17}{'session extra':>15}"
          f"{'history MB':>12}{'steps':>7}{'seconds bare/session':>22}{'load':>7}")
    results = {}
    for layers in DEEP_LAYERS:
        runs = results[layers] = {}
        for mode in ("bare", "session"):
            runs[mode] = bu.run_child([__file__, "--child", mode, "--layers", layers, "--deep-steps", steps], bu.ONE)
        bare, sess = runs["bare"], runs["session"]
        extra = sess["peak_rss"] - bare["peak_rss"]
        seconds = f"{bare['seconds']:.1f}/{sess['seconds']:.1f}"
        print(f"  {f'{layers}x64':<8}{sess['start_rss'] / MB:>10.1f}{bare['peak_rss'] / MB:>14.1f}"
              f"{sess['peak_rss'] / MB:>17.1f}{extra / MB:>+15.1f}{sess['history'] / MB:>12.1f}"
              f"{sess['steps']:>7}{seconds:>22}"
              f"{sess['load']:>7.2f}", flush=True)
        if sess["state"] != "finished" or sess["steps"] != steps:
            print(f"    note: the session ended as {sess['state']!r} at step {sess['steps']}")
    print("  (start: RSS after imports, before the net is built; peak: the process's peak RSS (VmHWM);")
    print("   session extra: session peak - bare peak; history: session.history.nbytes)")
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 then 6,000 steps (and the deep runs): a smoke run")
    parser.add_argument("--steps", type=int, help="the long run's step count (default 200,000)")
    parser.add_argument("--early", type=int, help="the first measurement's step (default 10,000)")
    parser.add_argument("--trace-steps", type=int,
                        help="steps traced by tracemalloc at the end (default 2,000; 0: none)")
    parser.add_argument("--only", choices=("long", "deep"), help="only the long run, or only the deep runs")
    parser.add_argument("--deep-steps", type=int, default=DEEP_STEPS,
                        help=f"steps of each deep run (default {DEEP_STEPS})")
    parser.add_argument("--child", choices=("bare", "session"), help=argparse.SUPPRESS)
    parser.add_argument("--layers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return deep_child(args.layers, args.child, args.deep_steps)
    early = args.early or (1_000 if args.quick else 10_000)
    total = args.steps or (6_000 if args.quick else 200_000)
    trace_steps = args.trace_steps if args.trace_steps is not None else (500 if args.quick else 2_000)
    if total <= early:
        parser.error(f"--steps ({total}) must be more than the first measurement's step ({early})")
    trace_steps = max(0, min(trace_steps, total - early))
    bu.reexec_one_thread()

    print("calcml session memory: a long run that should stay flat, and deep nets' sessions")
    print(f"  python {sys.version.split()[0]}, {os.cpu_count()} CPUs, mode {'quick' if args.quick else 'full'}, "
          f"1 BLAS thread (OPENBLAS/OMP/MKL_NUM_THREADS=1), load average {bu.load_average()}")
    long = None if args.only == "deep" else long_run(early, total, trace_steps)
    deep = None if args.only == "long" else deep_runs(args.deep_steps)

    print(f"\ntargets  (load average now {bu.load_average()})")
    if long is not None:
        first, second, diff = long["first"], long["second"], long["diff"]
        label = f"RSS(step {second['step']:,}) - RSS(step {first['step']:,}) <= {TARGET_MB:g} MB"
        ok = diff <= TARGET_MB * MB
        print(f"  {label}   {'PASS' if ok else 'MISS'}  ({diff / MB:+.1f} MB){long['note']}")
    if deep is not None and 64 in deep:
        history = deep[64]["session"]["history"]
        ok = history < HISTORY_TARGET_MB * MB
        note = "" if args.deep_steps == DEEP_STEPS else f"   (after {args.deep_steps} steps, not {DEEP_STEPS})"
        print(f"  64x64 net's session history (session.history.nbytes) < {HISTORY_TARGET_MB:g} MB   "
              f"{'PASS' if ok else 'MISS'}  ({history / MB:.1f} MB){note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
