"""Breakpoints: what parses, what is refused (with BreakpointError, never a crash or an eval),
and how hits pause a session and say why."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

import calcml as cm
import calcml.nn.functional as F
from calcml.debug import BreakpointError, ModelSpec, Session
from calcml.debug.breakpoints import Breakpoints, evaluate, parse


def make_spec(model, loss, data, *, lr=0.1, steps=None):
    return ModelSpec(path="<test>", name="test", description="", model=model, loss=loss, data=data,
                     optimizer=cm.optim.SGD(model.parameters(), lr=lr), regularizer=None, batch_size=None,
                     val_data=None, seed=0, steps=steps)


def session(steps=None, lr=0.1):
    cm.manual_seed(0)
    model = cm.nn.Sequential(cm.nn.Linear(2, 4), cm.nn.ReLU(), cm.nn.Linear(4, 1))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 2))
    return Session(make_spec(model, F.mse_loss, (X, X[:, :1] - X[:, 1:]), lr=lr, steps=steps))


class Env:
    def __init__(self, values, functions=None):
        self.values, self.functions = values, functions or {}

    def variable(self, name):
        v = self.values.get(name)
        return math.nan if v is None else v

    def function(self, name, arg):
        return self.functions.get((name, arg), math.nan)

    def explain(self, node):
        return ""


# -- parsing -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["vanishing_gradient", "exploding_gradient", "dead_relu", "saturation",
                                  "non_finite", "loss_diverging"])
def test_warning_kinds_parse(kind):
    bp = parse(f"  {kind} ")
    assert bp.kind == "warning" and bp.value == kind


@pytest.mark.parametrize("text, kind, n", [("step 5", "step", 5), ("step=7", "step", 7), ("at 3", "step", 3),
                                           ("every 10", "every", 10), ("every   4", "every", 4)])
def test_step_and_every_parse(text, kind, n):
    bp = parse(text)
    assert (bp.kind, bp.value, bp.text) == (kind, n, f"{kind} {n}")


@pytest.mark.parametrize("text, values, functions, expected", [
    ("loss > 2", {"loss": 2.5}, {}, True),
    ("loss > 2", {"loss": 1.5}, {}, False),
    ('grad_norm("0.weight") < 1e-6 and step > 3', {"step": 4}, {("grad_norm", "0.weight"): 1e-7}, True),
    ('grad_norm("0.weight") < 1e-6 and step > 3', {"step": 3}, {("grad_norm", "0.weight"): 1e-7}, False),
    ('grad_norm("0.weight") < 1e-6 and step > 3', {"step": 9}, {("grad_norm", "0.weight"): 1e-5}, False),
    ("not (loss < 1) or lr == 0.5", {"loss": 0.5, "lr": 0.5}, {}, True),
    ("abs(loss - 3) <= 0.1 * max(1, step)", {"loss": 3.05, "step": 1}, {}, True),
    ("0 < loss < 1", {"loss": 1.5}, {}, False),
    ('dead_fraction("1") >= 0.5', {}, {("dead_fraction", "1"): 0.5}, True),
    ("val_loss > 1", {"val_loss": None}, {}, False),        # missing: NaN, never true
    ("-loss < -2 and loss % 2 == 1", {"loss": 3}, {}, True),
])
def test_conditions_evaluate(text, values, functions, expected):
    bp = parse(text)
    assert bp.kind == "condition"
    assert bool(evaluate(bp.value, Env(values, functions))) is expected


@pytest.mark.parametrize("text", [
    "", "   ", "loss >", "loss > > 2", "step 0", "every 0",
    "foo > 1", "loss", "dead", "vanishing",                     # unknown names / not a kind
    "bar('x') > 1", "eval('1') > 0", "open('f') == 1",          # unknown functions
    "__import__('os')", "__import__('os').system('ls') == 0",
    "loss.real > 1", "().__class__", "grad_norm.__name__ == 'x'",   # attribute access
    "(lambda: 1)() > 0", "lambda: 1",
    "loss[0] > 1", "[1, 2][0] > 0", "{1: 2} == 1", "(1, 2) == 1",
    "[x for x in (1,)] == 1", "loss if loss else 1",
    "x := 1", "f'{loss}' == 'a'", "True", "None == loss", "loss > 2; import os",
    "grad_norm() > 1", "grad_norm(step) > 1", 'grad_norm("a", "b") > 1', "grad_norm(name='x') > 1",
    "grad_norm(\"0.weight\")(1) > 1",
])
def test_refused_with_breakpoint_error(text):
    with pytest.raises(BreakpointError):
        parse(text)


@pytest.mark.parametrize("text", ['grad_norm("9.weight") > 1', 'grad_norm("0") > 1',
                                  'dead_fraction("0.weight") > 0', 'grad_in_norm("7") > 0',
                                  'sparsity("1.weight") > 0'])
def test_unknown_parameter_or_layer_refused_by_the_session(text):
    s = session()
    with pytest.raises(BreakpointError) as info:
        s.add_breakpoint(text)
    assert "no parameter" in str(info.value) or "no layer" in str(info.value)
    assert len(s.breakpoints) == 0


def test_known_names_accepted_by_the_session():
    s = session()
    for text in ['grad_norm("0.weight") < 1e-6 and step > 3', 'dead_fraction("1") >= 0.5',
                 'update_ratio("2.bias") > 1', 'grad_ratio("2") > 10']:
        s.add_breakpoint(text)
    assert len(s.breakpoints) == 4 and [bp.id for bp in s.breakpoints] == [1, 2, 3, 4]


def test_huge_powers_do_not_hang_the_step():
    # 9 ** 9 ** 9 as exact integers takes minutes and gigabytes; a condition must stay cheap
    bp = parse("loss > 2 ** 100000")
    start = time.perf_counter()
    value = evaluate(bp.value.comparators[0], Env({}))
    assert time.perf_counter() - start < 0.1
    assert isinstance(value, float)
    assert evaluate(bp.value, Env({"loss": 1.0})) is False


# -- hits in a session -----------------------------------------------------------------------------------

def test_step_breakpoint_pauses_the_session_and_says_why():
    s = session(steps=20)
    bp = s.add_breakpoint("step 5")
    snap = s.run_to_end()
    assert s.state == "paused" and s.step_count == 5 and snap.step == 5
    assert snap.hit is not None and snap.hit.breakpoint.id == bp.id and snap.hit.step == 5
    assert "5" in snap.hit.why and snap.state == "paused"
    assert snap.hit.to_dict()["breakpoint"] == "step 5"
    final = s.run_to_end()                     # continues to the end: step 5 does not come again
    assert s.state == "finished" and final.step == 20 and final.hit is None


def test_condition_hit_reports_the_values():
    s = session(steps=30)
    bp = s.add_breakpoint('grad_norm("0.weight") > 0 and step > 3')
    snap = s.run_to_end()
    assert snap.step == 4 and snap.hit.breakpoint is bp
    g = snap.layers[0].params["weight"].grad_norm
    assert "step = 4" in snap.hit.why
    assert any(f"grad_norm({q}0.weight{q}) = {g:.4g}" in snap.hit.why for q in "'\"")
    assert snap.hit.why.startswith(bp.text)


def test_loss_condition_hits_at_the_first_step_that_satisfies_it():
    s = session(steps=40)
    losses = []
    threshold = None
    s2 = session(steps=40)                    # a twin run, to know the losses in advance
    s2.run_to_end(on_step=lambda snap: losses.append(snap.loss))
    threshold = (losses[10] + losses[11]) / 2 if losses[10] > losses[11] else None
    assert threshold is not None
    s.add_breakpoint(f"loss < {threshold!r}")
    snap = s.run_to_end()
    first = next(i for i, v in enumerate(losses) if v < threshold) + 1
    assert snap.step == first and snap.loss == losses[first - 1]
    assert f"loss = {snap.loss:.4g}" in snap.hit.why


def test_every_n_hits_at_multiples_and_removal_stops_it():
    s = session(steps=20)
    bp = s.add_breakpoint("every 3")
    hits = []
    for _ in range(4):
        snap = s.run_to_end()
        hits.append(snap.step)
        assert snap.hit.breakpoint.id == bp.id and s.state == "paused"
    assert hits == [3, 6, 9, 12]
    assert s.remove_breakpoint(bp.id) is True and s.remove_breakpoint(bp.id) is False
    final = s.run_to_end()
    assert s.state == "finished" and final.step == 20 and final.hit is None


def test_a_hit_cancels_pending_steps():
    s = session()
    s.add_breakpoint("step 2")
    s.step(5)
    snaps = [s.tick() for _ in range(4)]
    assert [x.step if x else None for x in snaps] == [1, 2, None, None]
    assert snaps[1].hit is not None and s.state == "paused"


def test_warning_breakpoint_hits_when_the_warning_starts():
    cm.manual_seed(0)
    model = cm.nn.Sequential(cm.nn.Linear(2, 8), cm.nn.ReLU(), cm.nn.Linear(8, 1))
    model[0].bias.data[...] = -50.0
    X = np.random.default_rng(0).normal(size=(8, 2))
    s = Session(make_spec(model, F.mse_loss, (X, X[:, :1]), steps=10))
    s.add_breakpoint("exploding_gradient")    # never starts here
    bp = s.add_breakpoint("dead_relu")
    snap = s.run_to_end()
    assert snap.step == 1 and snap.hit.breakpoint is bp and "dead_relu" in snap.hit.why
    final = s.run_to_end()                    # it only starts once
    assert final.step == 10 and final.hit is None


def test_breakpoints_collection_ids_and_check_order():
    bps = Breakpoints()
    a = bps.add("step 4")
    b = bps.add("every 2")
    assert (a.id, b.id) == (1, 2) and len(bps) == 2
    env = Env({"step": 4})
    assert bps.check(4, env, set()).breakpoint is a
    assert bps.check(6, env, set()).breakpoint is b
    assert bps.check(5, env, set()) is None
    with pytest.raises(BreakpointError):
        bps.add("nope(1)")
    assert len(bps) == 2 and bps.add("loss > 1").id == 3


def test_breakpoints_added_and_removed_from_another_thread_while_stepping():
    import sys
    import threading
    s = session()
    for k in range(400):
        s.add_breakpoint(f"loss > {1000 + k}")     # never true: every check walks all of them
    done = threading.Event()
    added = []

    def churn():
        while not done.is_set():
            bp = s.add_breakpoint("loss > 1e9")
            added.append(bp.id)
            s.remove_breakpoint(bp.id)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    thread = threading.Thread(target=churn)
    try:
        thread.start()
        s.step(120)
        while s.tick() is not None:
            pass
    finally:
        done.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert s.step_count == 120 and len(s.breakpoints) == 400 and added
    assert len(set(added)) == len(added)           # ids stay unique
