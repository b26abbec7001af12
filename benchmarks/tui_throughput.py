"""Does the interface slow training down, and does it answer keys while training runs flat out?

Targets:
  1. training throughput with the interface open is >= 85% of headless on the same model;
  2. a key press shows its effect within 100 ms even while training runs flat out;
  3. opening a view (h, r, v, d, enter) and going back (escape) take under 150 ms at the 95th
     percentile while training runs flat out: from the key until the compositor has made the new
     screen's first whole frame at the terminal's size, the frame a terminal would be sent
     (stamped on App._display; opening a view waits for nothing the worker sends). How long
     Pilot's press() takes to return, once every widget has gone idle, is printed beside it.

The model (default): a 784-256-256-10 ReLU MLP, float64, cross-entropy, SGD lr 0.01, on 4,096
random samples in shuffled batches of 64, written to a temporary model file, so that a step is
not trivially small (`--model PATH` uses another model file, e.g. sample_models/spirals_adam.py).

Throughput, both ways the interface trains, i.e. in the training worker (calcml.debug.worker)
that a ProcessBackend starts and speaks to over its protocol pipes:

  headless   a ProcessBackend on the model with no app: the worker is started by the same code
             the interface uses, and the backend's reader thread receives its messages into a
             DebugState until the 'state' message says finished;
  interface  the real DebuggerApp over a ProcessBackend on the same model, run with Textual's
             App.run_test(size=(140, 40), notifications=True): the headless driver, which does
             everything a terminal session does (status bar, layer table, warnings, plotext
             plots, compositor updates) except encode and write the final escape sequences.

In both, throughput = steps / (time the 'finished' state arrived - time the first snapshot
arrived), stamped where the messages are received (on DebugState.apply, in the backend's
reader thread). N is chosen from a short calibration run so that a headless run
lasts about --seconds. The modes alternate (headless, interface, headless, ...) and the
result is the median over pairs of interface/headless. A run that the busy machine slows to
more than 3x --seconds is cut short there, its rate taken to the last snapshot received.
Both processes share the machine's cores (2 on the reference box, with BLAS threads in the
worker too), so CPU the interface uses is CPU training cannot: the printed CPU columns say
how much each side used.

Key latency, in one more interface run (with steps enough to keep training flat out):
  space  time from the Pilot's key press until DebugState.state is 'paused' AND the status bar
         says PAUSED (then space again resumes, and the script waits until training runs);
  ]      time from the key press until the DebugState's snapshot has the doubled learning rate
         (target), and until the status bar shows it (informative); [ then halves it back
         (also timed, informative).

The times are taken where things happen, not when a poll notices them: DebugState.apply (the
app's reader thread) and StatusBar.show are wrapped to record when the state, the snapshot's lr
and the status bar's text changed, so the Pilot's own waiting for the screen to settle after a
press does not count (a person's key press is not slowed by it).

To tell a busy event loop apart from a slow worker, the script also prints how long
pilot.press() itself took to return (Textual handling the key and settling the screen), the
time from the press until the app wrote the command to the worker's command pipe (the app's
event loop), and from that write until the DebugState showed the effect (the worker finishing its
step, publishing, the pipe and the backend's reader thread). Finally the same pause and lr
commands are sent to a worker through a ProcessBackend with no app (its messages read by the
backend's thread in this otherwise idle process): the worker's own share of the latency.
Each key is measured --presses times (default 10) after a random 0.2-0.5 s of training; the
report gives the median and the maximum against 100 ms.

Why ratios and medians: the machine is a noisy, shared 2-core box, so absolute steps/s mean
little; the ratio of two runs made alternately on the same box does. Each run starts PAUSE_S
after the last one's processes have gone. The script prints the min/median/max over pairs and
the load average with the result, and never asserts: it prints PASS or MISS for each target.

One thread is the headline: the measurement that the targets are judged on runs in a child
process started with OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS set to 1, which
the interface and every worker it or the headless runs start inherit. With two BLAS threads on
2 cores, the worker's OpenBLAS threads spin and wait for each other while the interface takes a
core, so one busy process makes a step up to 3x slower and two-thread ratios swing from run to
run. The same throughput measurement with the three variables removed (each library's own thread
count; --default-pairs pairs) is printed beside it: that is calcml-debug as it runs out of the
box (ProcessBackend then picks the worker's thread count itself, one fewer than the cores). The
key latency is measured once, with one thread.

    python benchmarks/tui_throughput.py                # full: ~5 minutes (more on a busy box)
    python benchmarks/tui_throughput.py --quick        # smoke run: one short pair per setting, 3 presses
    python benchmarks/tui_throughput.py --threads 1    # only the one-thread measurement
    python benchmarks/tui_throughput.py --model sample_models/spirals_adam.py
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import threading
import time

from textual._compositor import LayoutUpdate   # a whole frame, as App._display is given it

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchutil sits beside this script
import benchutil as bu  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THROUGHPUT_TARGET = 0.85
LATENCY_TARGET_MS = 100.0
VIEW_TARGET_MS = 150.0          # 95th percentile of opening a view (and of going back) while training
VIEW_KEYS = ("h", "r", "v", "d", "enter")   # curvature, regularisation, Bayesian, data, the inspector
SIZE = (140, 40)
POLL_S = 0.002
TIMEOUT_S = 10.0
CUT_AFTER = 3.0    # a throughput run is cut short after this many times --seconds
PAUSE_S = 1.0      # between two throughput runs

MODEL_SOURCE = '''"""A 784-256-256-10 ReLU MLP on random data: the interface-throughput benchmark's model."""
import numpy as np

import calcml as cm
import calcml.nn.functional as F

seed = 0
rng = np.random.default_rng(1)
data = (rng.standard_normal((4096, 784)), rng.integers(0, 10, size=4096))
batch_size = 64
model = cm.nn.Sequential(
    cm.nn.Linear(784, 256), cm.nn.ReLU(),
    cm.nn.Linear(256, 256), cm.nn.ReLU(),
    cm.nn.Linear(256, 10),
)


def loss(logits, labels):
    return F.cross_entropy(logits, labels)


optimizer = cm.optim.SGD(model.parameters(), lr=0.01)
'''


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process, from /proc (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class Timing:
    """Arrival times of the worker's messages: the first snapshot and the 'finished' state."""

    def __init__(self):
        self.first = self.finished = None
        self.first_step = self.last_step = 0
        self.last_time = None
        self.snapshots = []   # (arrival time, step)
        self.messages = {}
        self.worker_cpu = None
        self.done = threading.Event()

    def see(self, message, pid: int | None = None) -> None:
        """`message`: a typed frame, as the backend's decode gives DebugState.apply."""
        now = time.perf_counter()
        kind = type(message).__struct_config__.tag
        self.messages[kind] = self.messages.get(kind, 0) + 1
        if kind == "snapshot":
            step = message.snapshot.step
            if self.first is None:
                self.first, self.first_step = now, step
            self.last_step, self.last_time = step, now
            self.snapshots.append((now, step))
        elif kind == "state" and message.state in ("finished", "stopped") and self.finished is None:
            self.finished = now
            if pid is not None:
                self.worker_cpu = cpu_seconds(pid)
            self.done.set()
        elif kind == "error":
            self.finished = now
            self.done.set()

    def result(self, steps: int, label: str, cut: bool = False) -> dict:
        """Steps/s from the first snapshot to the finish; for a run cut short, to the last snapshot."""
        if cut and self.first is not None and self.last_time is not None and self.last_time > self.first:
            wall = self.last_time - self.first
            return {"rate": (self.last_step - self.first_step) / wall, "wall": wall, "cut": True,
                    "snapshots": self.snapshots,
                    "messages": dict(self.messages), "worker_cpu": self.worker_cpu}
        if self.first is None or self.finished is None:
            raise SystemExit(f"{label}: the worker never finished (messages seen: {self.messages})")
        wall = self.finished - self.first
        return {"rate": (steps - self.first_step) / wall, "wall": wall, "cut": False,
                "snapshots": self.snapshots,
                "messages": dict(self.messages), "worker_cpu": self.worker_cpu}


def run_headless(model: str, steps: int, stop_after: float | None = None) -> dict:
    """The worker with no interface: a ProcessBackend (started as the app starts it) whose reader
    thread receives the messages, until the run finishes (or, with stop_after, until that many
    seconds after the first snapshot: a calibration)."""
    from tui.backend import ProcessBackend

    backend = ProcessBackend(model, steps=steps, run=True)
    timing = Timing()
    instrument(backend, timing)
    cpu0 = time.process_time()
    backend.start()
    cut = False
    try:
        while not timing.done.wait(0.05):
            if stop_after is not None and timing.first is not None and \
                    time.perf_counter() - timing.first >= stop_after and timing.last_step > 0:
                timing.worker_cpu = cpu_seconds(backend.process.pid)
                cut = True
                break
            if not backend.running and not timing.done.is_set():
                break   # the worker ended without finishing: reported by timing.result
    finally:
        reader_cpu = time.process_time() - cpu0
        backend.close()
    result = timing.result(steps, "headless", cut)
    result["front_cpu"] = reader_cpu
    result["steps"] = steps
    return result


def instrument(backend, timing: Timing):
    """Stamp every message the app's DebugState receives (in the backend's reader thread)."""
    state = backend.state
    apply = state.apply

    def stamped(message):
        apply(message)
        timing.see(message, backend.process.pid if backend.process else None)

    state.apply = stamped


def status_text(app) -> str:
    from tui.widgets.status import StatusBar
    return str(app.query_one(StatusBar).content)


async def run_interface(model: str, steps: int, stop_after: float) -> dict:
    from tui.app import DebuggerApp
    from tui.backend import ProcessBackend

    backend = ProcessBackend(model, steps=steps, run=True)
    timing = Timing()
    instrument(backend, timing)
    app = DebuggerApp(backend, live=True)   # as calcml-debug runs it
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        cpu0 = time.process_time()
        cut = False
        while not timing.done.is_set():
            await asyncio.sleep(0.05)
            if timing.first is not None and time.perf_counter() - timing.first > stop_after:
                timing.worker_cpu = cpu_seconds(backend.process.pid)
                cut = True
                break
        app_cpu = time.process_time() - cpu0
        await pilot.pause(0.2)  # let the last state reach the screen
        shown = status_text(app)
        backend.close()
    result = timing.result(steps, "interface", cut)
    result["front_cpu"] = app_cpu
    result["steps"] = steps
    result["shown_finished"] = cut or "FINISHED" in shown
    return result


async def wait_until(condition, timeout: float = TIMEOUT_S) -> float | None:
    """perf_counter time when condition() first held (polled every POLL_S), None on timeout."""
    end = time.perf_counter() + timeout
    while True:
        if condition():
            return time.perf_counter()
        if time.perf_counter() > end:
            return None
        await asyncio.sleep(POLL_S)


def first_after(t0: float, records: list, predicate) -> float | None:
    """The time of the first (time, value) record at or after t0 whose value satisfies predicate."""
    for t, value in records:
        if t >= t0 and predicate(value):
            return t
    return None


async def measure_keys(model: str, presses: int, seed: int = 0) -> dict:
    """Key latencies, from timestamps taken where things happen (not when a poll notices):
    the press, the command written to the worker (backend.send), the DebugState receiving the
    effect (DebugState.apply, in the reader thread) and the status bar updated (StatusBar.show)."""
    from tui.app import DebuggerApp
    from tui.backend import ProcessBackend
    from tui.format import num
    from tui.widgets.status import StatusBar

    rng = random.Random(seed)
    backend = ProcessBackend(model, steps=10_000_000, run=True)
    app = DebuggerApp(backend, live=True)   # as calcml-debug runs it
    state = backend.state
    out = {"pause_state": [], "pause_shown": [], "pause": [], "lr_state": [], "lr_shown": [],
           "lr_down_state": [], "press": [], "sent": [], "after_send": [], "view_open": [], "view_back": [], "view_settled": [],
           "timeouts": 0}
    sent = {}          # command name -> when the app wrote it to the worker's stdin
    applied = []       # (time, (state, lr)) after each message the DebugState applied
    shown = []         # (time, status bar text) after each StatusBar.show
    frames = []        # (time, screen) of each whole frame the compositor made (App._display)

    send = backend.send

    def stamped_send(command):
        sent[command.get("cmd")] = time.perf_counter()
        send(command)

    backend.send = stamped_send
    apply = state.apply

    def stamped_apply(message):
        apply(message)
        snapshot = state.snapshot
        applied.append((time.perf_counter(), (state.state, snapshot.lr if snapshot is not None else None)))

    state.apply = stamped_apply

    def ms(t0, t):
        if t is None:
            out["timeouts"] += 1
            return float("inf")
        return (t - t0) * 1000

    def step():
        return state.snapshot.step if state.snapshot is not None else 0

    async def running_flat_out():
        """Running, shown as RUNNING, and at least two new snapshots have arrived since."""
        await wait_until(lambda: state.state == "running" and "RUNNING" in status_text(app), 10)
        s0 = step()
        await wait_until(lambda: step() > s0, 10)
        s1 = step()
        await wait_until(lambda: step() > s1, 10)
        await asyncio.sleep(rng.uniform(0.2, 0.5))

    def same(a, b):
        return a is not None and abs(a - b) <= 1e-9 * abs(b)

    async with app.run_test(size=SIZE, notifications=True) as pilot:
        bar = app.query_one(StatusBar)
        show = bar.show

        def stamped_show(st):
            show(st)
            shown.append((time.perf_counter(), str(bar.content)))

        bar.show = stamped_show
        display = app._display

        def stamped_display(screen, update):
            if isinstance(update, LayoutUpdate) and update.region.size == app.size:
                frames.append((time.perf_counter(), screen))   # a whole frame of this screen
            display(screen, update)

        app._display = stamped_display
        await wait_until(lambda: state.state == "running", 30)
        await asyncio.sleep(1.0)  # past start-up: plots and tables are being drawn
        for _ in range(presses):
            if state.state in ("finished", "stopped"):
                break
            # space: pause
            await running_flat_out()
            sent.clear()
            t0 = time.perf_counter()
            await pilot.press("space")
            out["press"].append((time.perf_counter() - t0) * 1000)
            await wait_until(lambda: state.state == "paused" and "PAUSED" in status_text(app))
            t_state = first_after(t0, applied, lambda v: v[0] == "paused")
            t_shown = first_after(t0, shown, lambda text: "PAUSED" in text)
            if "pause" in sent and t_state is not None:
                out["sent"].append((sent["pause"] - t0) * 1000)
                out["after_send"].append((t_state - sent["pause"]) * 1000)
            out["pause_state"].append(ms(t0, t_state))
            out["pause_shown"].append(ms(t0, t_shown))
            out["pause"].append(max(out["pause_state"][-1], out["pause_shown"][-1]))
            await pilot.press("space")  # run again
            # ]: double the learning rate
            await running_flat_out()
            lr0 = state.snapshot.lr
            doubled = 2 * lr0
            sent.clear()
            t0 = time.perf_counter()
            await pilot.press("right_square_bracket")
            out["press"].append((time.perf_counter() - t0) * 1000)
            await wait_until(lambda: same(state.snapshot.lr, doubled) and f"lr {num(doubled)}" in status_text(app))
            t_state = first_after(t0, applied, lambda v: same(v[1], doubled))
            t_shown = first_after(t0, shown, lambda text: f"lr {num(doubled)}" in text)
            if "lr_scale" in sent and t_state is not None:
                out["sent"].append((sent["lr_scale"] - t0) * 1000)
                out["after_send"].append((t_state - sent["lr_scale"]) * 1000)
            out["lr_state"].append(ms(t0, t_state))
            out["lr_shown"].append(ms(t0, t_shown))
            # [: halve it back
            await asyncio.sleep(rng.uniform(0.2, 0.5))
            t0 = time.perf_counter()
            await pilot.press("left_square_bracket")
            await wait_until(lambda: same(state.snapshot.lr, lr0))
            out["lr_down_state"].append(ms(t0, first_after(t0, applied, lambda v: same(v[1], lr0))))
            # views: from the key until the compositor has made the view's first whole frame at
            # the terminal's size (what a terminal would be sent); escape: until the main screen's
            # first frame after it. pilot.press() returns later, once every widget is idle.
            main = app.screen
            for key in VIEW_KEYS:
                await asyncio.sleep(rng.uniform(0.2, 0.5))
                t0 = time.perf_counter()
                await pilot.press(key)
                out["view_settled"].append((time.perf_counter() - t0) * 1000)
                await wait_until(lambda: app.screen is not main)
                view = app.screen
                await wait_until(lambda: first_after(t0, frames, lambda s: s is view))
                out["view_open"].append(ms(t0, first_after(t0, frames, lambda s: s is view)))
                t0 = time.perf_counter()
                await pilot.press("escape")
                await wait_until(lambda: first_after(t0, frames, lambda s: s is main))
                out["view_back"].append(ms(t0, first_after(t0, frames, lambda s: s is main)))
        out["steps"] = step()
        backend.close()
    return out


class HeadlessWorker:
    """A ProcessBackend with no app: its DebugState read by this otherwise idle process (as the
    app reads it, but with nothing else here competing for the GIL)."""

    def __init__(self, model: str, steps: int):
        from tui.backend import ProcessBackend

        self.backend = ProcessBackend(model, steps=steps, run=True)
        self.state = self.backend.state
        self.backend.start()

    @property
    def step(self) -> int:
        snapshot = self.state.snapshot
        return snapshot.step if snapshot is not None else 0

    @property
    def lr(self) -> float | None:
        snapshot = self.state.snapshot
        return snapshot.lr if snapshot is not None else None

    def send(self, command: dict) -> None:
        self.backend.send(command)

    def wait_until(self, condition, timeout: float = TIMEOUT_S) -> float | None:
        end = time.perf_counter() + timeout
        while not condition():
            if time.perf_counter() > end:
                return None
            time.sleep(POLL_S)
        return time.perf_counter()

    def close(self) -> None:
        self.backend.close()


def measure_headless_commands(model: str, presses: int, seed: int = 1) -> dict:
    """Command latency of the worker alone: pause, and lr x2, written straight to its stdin."""
    rng = random.Random(seed)
    worker = HeadlessWorker(model, 10_000_000)
    out = {"pause": [], "lr": [], "timeouts": 0}

    def ms(t0, t):
        if t is None:
            out["timeouts"] += 1
            return float("inf")
        return (t - t0) * 1000

    try:
        worker.wait_until(lambda: worker.state.state == "running" and worker.step > 2, 60)
        for _ in range(presses):
            time.sleep(rng.uniform(0.2, 0.5))
            t0 = time.perf_counter()
            worker.send({"cmd": "pause"})
            out["pause"].append(ms(t0, worker.wait_until(lambda: worker.state.state == "paused")))
            worker.send({"cmd": "run"})
            s0 = worker.step
            worker.wait_until(lambda: worker.state.state == "running" and worker.step > s0 + 1)
            time.sleep(rng.uniform(0.2, 0.5))
            lr0 = worker.lr
            t0 = time.perf_counter()
            worker.send({"cmd": "lr_scale", "factor": 2.0})
            out["lr"].append(ms(t0, worker.wait_until(lambda: abs(worker.lr - 2 * lr0) <= 2e-9 * lr0)))
            worker.send({"cmd": "lr_scale", "factor": 0.5})
            worker.wait_until(lambda: abs(worker.lr - lr0) <= 1e-9 * lr0)
    finally:
        worker.close()
    return out


def calibrate(model: str, seconds: float, probe_seconds: float) -> tuple:
    """(steps for a headless run of about `seconds`, the calibration's steps/s), the rate taken
    after the first second of training (the first steps are slower)."""
    result = run_headless(model, 10_000_000, stop_after=probe_seconds + 1.0)
    snaps = result["snapshots"]
    later = [(t, step) for t, step in snaps if t >= snaps[0][0] + 1.0]
    rate = result["rate"]
    if len(later) >= 2 and later[-1][0] > later[0][0]:
        rate = (later[-1][1] - later[0][1]) / (later[-1][0] - later[0][0])
    return max(20, round(rate * seconds)), rate


def p95(values) -> float:
    """The 95th percentile (nearest rank; inf for no samples)."""
    if not values:
        return float("inf")
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, -(-95 * len(ranked) // 100) - 1))]


def fmt_latency(values) -> str:
    finite = [v for v in values if v != float("inf")]
    if not values:
        return "no samples"
    text = f"median {statistics.median(values):6.1f} ms  max {max(values):6.1f} ms  (n={len(values)}"
    if len(finite) < len(values):
        text += f", {len(values) - len(finite)} timed out after {TIMEOUT_S:g} s"
    return text + ")"


def measure(model: str, seconds: float, probe_seconds: float, pairs: int, presses: int, keys: bool) -> dict:
    """Calibration, the alternating throughput runs and (with keys) the key latencies, in this
    process: the child that run_child started with the thread setting being measured."""
    steps, probe_rate = calibrate(model, seconds, probe_seconds)
    print(f"calibration: {probe_rate:.0f} steps/s headless -> {steps:,} steps per run "
          f"(~{seconds:g} s), {pairs} pair(s), alternating, {PAUSE_S:g} s apart")
    print()
    print(f"{'run':<12}{'steps/s':>9}{'wall s':>8}{'worker CPU':>12}{'front CPU':>11}"
          f"{'snapshots':>11}{'histories':>11}{'load':>7}")
    runs = {"headless": [], "interface": []}
    for i in range(pairs):
        order = ("headless", "interface") if i % 2 == 0 else ("interface", "headless")
        for mode in order:
            time.sleep(PAUSE_S)  # the last run's processes are gone; let the machine settle
            limit = CUT_AFTER * seconds  # a run the busy machine slows down this much is cut short
            if mode == "headless":
                r = run_headless(model, steps, stop_after=limit)
            else:
                r = asyncio.run(run_interface(model, steps, stop_after=limit))
            runs[mode].append(r)
            worker_cpu = f"{r['worker_cpu'] / r['wall']:.0%}" if r["worker_cpu"] else "-"
            print(f"{mode + ' ' + str(i + 1):<12}{r['rate']:>9.1f}{r['wall']:>8.1f}"
                  f"{worker_cpu:>12}{r['front_cpu'] / r['wall']:>11.0%}"
                  f"{r['messages'].get('snapshot', 0):>11}{r['messages'].get('history', 0):>11}"
                  f"{bu.load_now():>7.2f}"
                  f"{'  cut short: rate to the last snapshot' if r['cut'] else ''}", flush=True)
    print("(CPU: share of one core over the run's wall time; the worker's includes its start-up; "
          "front = this script's reader (headless) or the whole app process (interface))")
    counts = ", ".join(f"{kind} x {n}" for kind, n in sorted(runs["headless"][0]["messages"].items()))
    print(f"worker messages (headless 1): {counts}")
    ratios = [b["rate"] / a["rate"] for a, b in zip(runs["headless"], runs["interface"])]
    print(f"interface/headless: {statistics.median(ratios):.1%} (pairs min/median/max "
          f"{bu.fmt_spread(ratios, '.1%')}; load average {bu.load_average()})")
    if not all(r.get("shown_finished", True) for r in runs["interface"]):
        print("note: an interface run's status bar did not show FINISHED at the end")
    result = {"ratios": ratios, "load": bu.load_now()}
    if not keys:
        return result

    print(f"\nkey latency while training runs flat out ({presses} presses of each key)")
    timings = asyncio.run(measure_keys(model, presses))
    print(f"space -> state paused         {fmt_latency(timings['pause_state'])}")
    print(f"space -> status bar PAUSED    {fmt_latency(timings['pause_shown'])}")
    print(f"space -> both (target)        {fmt_latency(timings['pause'])}")
    print(f"]     -> snapshot lr x2       {fmt_latency(timings['lr_state'])}")
    print(f"]     -> status bar shows lr  {fmt_latency(timings['lr_shown'])}   (informative)")
    print(f"[     -> snapshot lr /2       {fmt_latency(timings['lr_down_state'])}   (informative)")
    print(f"view keys {'/'.join(VIEW_KEYS)} -> view shown  {fmt_latency(timings['view_open'])}  p95 {p95(timings['view_open']):.1f} ms")
    print(f"escape -> main screen back    {fmt_latency(timings['view_back'])}  p95 {p95(timings['view_back']):.1f} ms")
    print(f"view keys -> every widget idle {fmt_latency(timings['view_settled'])}   (pilot.press() returned; informative)")
    print(f"pilot.press() itself returned {fmt_latency(timings['press'])}   (space and ], informative)")
    print(f"key -> command written        {fmt_latency(timings['sent'])}   (space and ]: the app's event loop)")
    print(f"command -> DebugState         {fmt_latency(timings['after_send'])}   (space and ]: worker, pipe, reader)")
    print(f"(training reached step {timings['steps']:,} during the latency run; load average {bu.load_average()})")
    alone = measure_headless_commands(model, presses)
    print("the same commands sent to a worker with no interface (a ProcessBackend alone):")
    print(f"pause -> 'paused' received    {fmt_latency(alone['pause'])}")
    print(f"lr x2 -> snapshot lr x2       {fmt_latency(alone['lr'])}")
    result.update(pause=timings["pause"], lr=timings["lr_state"], views=timings["view_open"] + timings["view_back"],
                  load=bu.load_now())
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short pair and 3 key presses: a smoke run")
    parser.add_argument("--model", help="a model file (default: a 784-256-256-10 MLP written to a temp dir)")
    parser.add_argument("--seconds", type=float, help="length of a headless run (default 15; quick 3)")
    parser.add_argument("--pairs", type=int, help="headless/interface pairs with one thread (default 3; quick 1)")
    parser.add_argument("--default-pairs", type=int,
                        help="headless/interface pairs with the default threads (default 2; quick 1)")
    parser.add_argument("--presses", type=int, help="presses of each key (default 10; quick 3)")
    parser.add_argument("--threads", choices=("both", bu.ONE, bu.DEFAULT), default="both",
                        help="measure with one BLAS thread (the targets), the default threads, or both (default)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keys", action="store_true", help=argparse.SUPPRESS)  # child: also the key latency
    args = parser.parse_args(argv)
    seconds = args.seconds or (3.0 if args.quick else 15.0)
    pairs = args.pairs or (1 if args.quick else 3)
    default_pairs = args.default_pairs or (1 if args.quick else 2)
    presses = args.presses or (3 if args.quick else 10)
    sys.path.insert(0, ROOT)  # `tui` is importable from the repository root
    if args.child:
        bu.emit(measure(args.model, seconds, 1.5 if args.quick else 4.0, pairs, presses, args.keys))
        return 0
    settings = bu.SETTINGS if args.threads == "both" else (args.threads,)

    with tempfile.TemporaryDirectory(prefix="calcml-bench-") as tmp:
        if args.model:
            model, model_label = os.path.abspath(args.model), os.path.relpath(args.model)
        else:
            model = os.path.join(tmp, "mlp_784_256_256_10.py")
            with open(model, "w", encoding="utf-8") as f:
                f.write(MODEL_SOURCE)
            model_label = "784-256-256-10 MLP, batch 64, SGD (temp model file)"
        print("calcml interface throughput and key latency")
        print(f"  python {sys.version.split()[0]}, {os.cpu_count()} CPUs shared by the worker and the interface; "
              f"mode {'quick' if args.quick else 'full'}")
        print(f"  model: {model_label}; load average at start {bu.load_average()}")
        print("  each thread setting in its own process (the interface, and the workers it and the headless "
              "runs start, inherit it); targets judged on 1 thread")
        results = {}
        for threads in settings:
            n = pairs if threads == bu.ONE else default_pairs
            what = ("OPENBLAS/OMP/MKL_NUM_THREADS=1: the targets" if threads == bu.ONE
                    else "those variables removed: each library's own count")
            print(f"\n{bu.threads_label(threads)} ({what})")
            command = [__file__, "--child", "--model", model, "--seconds", seconds, "--pairs", n,
                       "--presses", presses]
            if args.quick:
                command.append("--quick")
            if threads == settings[0]:
                command.append("--keys")   # the key latency once, with the first (the judged) setting
            results[threads] = bu.run_child(command, threads, echo="  ")

    first = settings[0]
    if first != bu.ONE:
        print("\ntargets: not judged (they are judged on the one-thread measurement: run without --threads default)")
        return 0
    one = results[bu.ONE]
    ratio = statistics.median(one["ratios"])
    beside = (f"; default threads {statistics.median(results[bu.DEFAULT]['ratios']):.1%}"
              if bu.DEFAULT in results else "")
    print(f"\ntargets  (1 thread; the worker and the interface share the {os.cpu_count()} cores; "
          f"load average now {bu.load_average()})")
    print(f"  throughput interface/headless >= {THROUGHPUT_TARGET:.0%}   "
          f"{'PASS' if ratio >= THROUGHPUT_TARGET else 'MISS'}  ({ratio:.1%}; pairs min/median/max "
          f"{bu.fmt_spread(one['ratios'], '.1%')}{beside})")
    for label, values in (("space -> paused and shown", one["pause"]), ("]     -> snapshot lr x2  ", one["lr"])):
        worst = max(values) if values else float("inf")
        print(f"  {label} <= {LATENCY_TARGET_MS:g} ms   {'PASS' if worst <= LATENCY_TARGET_MS else 'MISS'}  "
              f"(max {worst:.1f} ms, median {statistics.median(values) if values else float('inf'):.1f} ms)")
    if "views" in one:
        views = p95(one["views"])
        print(f"  a view opens / closes, 95th percentile <= {VIEW_TARGET_MS:g} ms   "
              f"{'PASS' if views <= VIEW_TARGET_MS else 'MISS'}  ({views:.1f} ms; n={len(one['views'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
