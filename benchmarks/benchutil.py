"""What the benchmark scripts share: measured child processes with a chosen BLAS thread count,
the load average, and the spread of repeated ratios.

Why child processes: OpenBLAS, MKL and OpenMP read their thread count once, when the library is
loaded, so the one way to measure with one thread and then with the default (without adding a
dependency such as threadpoolctl) is a fresh process whose environment says how many. A fresh
process also keeps contestants from disturbing each other: multi-threaded OpenBLAS keeps its
threads spinning for a while after each call, and whatever is timed next in that process (or on
the same two cores) pays for the spinning.

Why one thread is the headline: with two BLAS threads on a 2-core machine, one other busy process
makes a step up to 3x slower (the threads wait for each other at every call), so two-thread ratios
swing from run to run. One-thread ratios hardly move. The default-thread figure is printed beside
it, because that is what a user gets out of the box.

A child prints its result as one JSON line marked with MARK (emit); run_child passes every other
line it prints through, so a child can show progress.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
ONE = "1"              # the headline: every BLAS and OpenMP pool one thread
DEFAULT = "default"    # the three variables removed: each library picks its own count
SETTINGS = (ONE, DEFAULT)
MARK = "@@calcml-benchmark-result "


def thread_env(threads: str, base: dict | None = None) -> dict:
    """A copy of the environment with the BLAS/OpenMP thread variables set to `threads`,
    or removed for DEFAULT."""
    env = dict(os.environ if base is None else base)
    for var in THREAD_VARS:
        if threads == DEFAULT:
            env.pop(var, None)
        else:
            env[var] = threads
    return env


def threads_label(threads: str) -> str:
    return "1 thread" if threads == ONE else "default threads"


def current_threads() -> str:
    """ONE if this process was started with every thread variable at 1, else DEFAULT."""
    return ONE if all(os.environ.get(var) == ONE for var in THREAD_VARS) else DEFAULT


def reexec_one_thread() -> None:
    """Start this script again, in place of this process, with one BLAS thread (for modes such as
    --profile that run in-process); returns only if the process already has one thread."""
    if current_threads() != ONE:
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, *sys.argv], thread_env(ONE))


def emit(result: dict) -> None:
    """A child's result, for run_child (one marked JSON line)."""
    print(MARK + json.dumps(result), flush=True)


def run_child(args: list, threads: str, echo: str | None = None) -> dict:
    """Run `python *args` with that thread setting and return the dict it emitted.

    Lines the child prints are passed through, each after `echo` (not at all for None); its
    stderr is this process's."""
    process = subprocess.Popen([sys.executable, *map(str, args)], env=thread_env(threads),
                               stdout=subprocess.PIPE, text=True)
    result = None
    try:
        for line in process.stdout:
            if line.startswith(MARK):
                result = json.loads(line[len(MARK):])
            elif echo is not None:
                print((echo + line) if line.strip() else line, end="", flush=True)
        process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise
    if process.returncode != 0 or result is None:
        raise SystemExit(f"benchmark child {' '.join(map(str, args))} ({threads_label(threads)}) failed: "
                         f"exit status {process.returncode}")
    return result


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, e.g. '0.52 0.61 0.80'."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def load_now() -> float:
    return os.getloadavg()[0]


def min_med_max(values) -> tuple:
    return min(values), statistics.median(values), max(values)


def fmt_spread(values, spec: str = ".2f") -> str:
    """'min/median/max' of repeated measurements, e.g. '1.02/1.05/1.21'."""
    return "/".join(format(v, spec) for v in min_med_max(values))


def iqr(values) -> tuple:
    """(first quartile, third quartile); (min, max) for fewer than 4 values."""
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]
