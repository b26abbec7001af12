"""What the data view costs: a session's steps with the view measured on its schedule against the
same session with it off, and what drawing the picture costs the interface.

Target: <= 1.05x (the view is held to `data_view_budget`, 5% of the training time, and measured
at most every `data_view_every`, 10, steps, and under calcml-debug at most every
`data_view_interval`, 0.25 s: the interface redraws it four times a second).

For each model (xor_mlp: 200 points, an 8-unit MLP, whose steps are tiny, so the grid's forward
pass costs many steps; spirals_adam: 300 points, two 64-unit layers, batches of 64), one
session is built from the model file in calcml-debug's configuration and driven as the worker
drives a running session (run(), then tick() per step, `may_pause` set). Rounds alternate the
view on (every 10 steps, within the budget) and off, the order flipping every round; one
session for both, because two copies of a model can differ in speed by a third from where
their arrays landed. The ratio printed is the median over rounds of (per-step time with the
view / without it) in the same round pair, with the min/median/max of the per-round ratios and
how many views were drawn. Only ratios are compared: the machine is noisy.

The picture: the median time to build the 160x48 data view's text for each model (absolute
milliseconds, on the interface's thread, redrawn at most every 0.25 s while it is open).

    python benchmarks/data_view.py           # about 30 s
    python benchmarks/data_view.py --quick   # a smoke run
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchutil as bu  # noqa: E402

from calcml.debug.loader import load_model_file  # noqa: E402
from calcml.debug.session import Session, session_config  # noqa: E402

MODELS = ("xor_mlp.py", "spirals_adam.py")
TARGET = 1.05


def session(name: str) -> Session:
    s = Session(load_model_file(str(ROOT / "sample_models" / name), steps=10**9), session_config())
    s.may_pause = True
    s.initial_snapshot()
    s.run()
    return s


def per_step(s: Session, steps: int, every: int) -> tuple:
    """(seconds a step, views drawn) over `steps` steps with the view every `every` steps (0: off)."""
    s._data_view.schedule.every = every
    drawn = 0
    started = time.perf_counter()
    for _ in range(steps):
        drawn += s.tick().data_view is not None
    return (time.perf_counter() - started) / steps, drawn


def measure(name: str, rounds: int, steps: int) -> dict:
    s = session(name)
    per_step(s, steps, 10)   # warm up
    ratios, views = [], 0
    for r in range(rounds):
        if r % 2:
            (t_off, _), (t_on, drawn) = per_step(s, steps, 0), per_step(s, steps, 10)
        else:
            (t_on, drawn), (t_off, _) = per_step(s, steps, 10), per_step(s, steps, 0)
        ratios.append(t_on / t_off)
        views += drawn
    return {"ratio": statistics.median(ratios), "spread": bu.fmt_spread(ratios, ".3f"),
            "views": views, "steps": rounds * steps}


def picture_ms(name: str, repeats: int) -> float:
    from calcml.tui.text_dataview import picture
    s = session(name)
    per_step(s, 50, 10)
    s.pause()
    s.tick()
    view = s.snapshot.data_view
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        picture(view, 124, 40)   # 160x48 less the legend beside it, the title and the footer
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few short rounds: a smoke run")
    args = parser.parse_args(argv)
    bu.reexec_one_thread()
    rounds, steps, repeats = (4, 100, 5) if args.quick else (16, 400, 30)
    print(f"data view cost, {bu.threads_label(bu.current_threads())}; target <= {TARGET}x; load {bu.load_average()}")
    print(f"{'model':<18}{'ratio':>7}  {'per round':<20}{'views':>12}{'verdict':>8}{'picture 160x48':>17}")
    for name in MODELS:
        result = measure(name, rounds, steps)
        verdict = "PASS" if result["ratio"] <= TARGET else "MISS"
        views = f"{result['views']}/{result['steps'] // 2}"
        print(f"{name:<18}{result['ratio']:>7.3f}  {result['spread']:<20}{views:>12}{verdict:>8}"
              f"{picture_ms(name, repeats):>14.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
