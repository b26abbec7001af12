"""Does a long debugging session keep its memory flat?

Target: memory after 200,000 steps of sample_models/xor_mlp.py is within 20 MB of memory after
10,000 steps.

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
The script never asserts: it prints the numbers and PASS or MISS.

    python benchmarks/session_memory.py                  # 10,000 then 200,000 steps: ~3-9 minutes
    python benchmarks/session_memory.py --quick          # 1,000 then 6,000 steps: a smoke run
    python benchmarks/session_memory.py --steps 50000    # a shorter long run
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "sample_models", "xor_mlp.py")
TARGET_MB = 20.0
MB = 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 then 6,000 steps: a smoke run")
    parser.add_argument("--steps", type=int, help="the long run's step count (default 200,000)")
    parser.add_argument("--early", type=int, help="the first measurement's step (default 10,000)")
    parser.add_argument("--trace-steps", type=int,
                        help="steps traced by tracemalloc at the end (default 2,000; 0: none)")
    args = parser.parse_args(argv)
    early = args.early or (1_000 if args.quick else 10_000)
    total = args.steps or (6_000 if args.quick else 200_000)
    trace_steps = args.trace_steps if args.trace_steps is not None else (500 if args.quick else 2_000)
    if total <= early:
        parser.error(f"--steps ({total}) must be more than the first measurement's step ({early})")
    trace_steps = max(0, min(trace_steps, total - early))

    from calcml.debug import load_model_file
    from calcml.debug.session import Session

    print("calcml session memory: a long run of sample_models/xor_mlp.py in one in-process Session")
    print(f"  python {sys.version.split()[0]}, {os.cpu_count()} CPUs, mode {'quick' if args.quick else 'full'}: "
          f"measure at step {early:,} and at step {total:,}; tracemalloc over the last {trace_steps:,} steps; "
          f"load average {os.getloadavg()[0]:.2f}")
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

    print("\nresults")
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

    print("\ntargets")
    label = f"RSS(step {second['step']:,}) - RSS(step {first['step']:,}) <= {TARGET_MB:g} MB"
    ok = diff <= TARGET_MB * MB
    note = "" if (early, total) == (10_000, 200_000) else "   (not the target's 10,000/200,000 steps)"
    print(f"  {label}   {'PASS' if ok else 'MISS'}  ({diff / MB:+.1f} MB){note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
