"""The run report (`--json`, schema calcml.report/1): shape, strict JSON, seeding, NaN runs.

In-process tests build the report from a Session directly (fast); the CLI tests check what
`calcml-debug --headless --json FILE` writes.
"""
import json
import math
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

from calcml.debug import Session, load_model_file
from calcml.debug.codec import for_json as _clean
from calcml.debug.report import SCHEMA, build_report, write_report

PARAM_KEYS = {"shape", "grad_norm", "penalty_grad_norm", "weight_norm", "update_ratio", "sparsity"}
LAYER_KEYS = {"name", "type", "params", "grad_in_norm", "grad_out_norm", "mean_local_derivative",
              "dead_fraction", "saturated_fraction"}
WARNING_KEYS = {"step", "kind", "layer", "op", "value", "threshold", "message"}
TOP_KEYS = {"schema", "model", "steps", "stopped", "loss", "val_loss", "layers", "history", "warnings"}

MODEL = """\
\"\"\"A small regression with validation data and an L2 penalty.\"\"\"
import numpy as np
import calcml as cm
import calcml.nn.functional as F

seed = 3
rng = np.random.default_rng(0)
X = rng.normal(size=(64, 3))
y = X @ np.array([[1.0], [-2.0], [0.5]])
data = (X, y)
val_data = (X[:16], y[:16])
batch_size = 16

model = cm.nn.Sequential(cm.nn.Linear(3, 8), cm.nn.ReLU(), cm.nn.Linear(8, 1))


def loss(pred, target):
    return F.mse_loss(pred, target)


optimizer = cm.optim.SGD(model.parameters(), lr=0.01)
regularizer = cm.reg.L2(0.01)
"""


def strict_json(text):
    """json.loads that refuses NaN, Infinity and -Infinity."""
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def nan_demo_path():
    return str(resources.files("calcml.samples") / "nan_demo.py")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("report_model") / "regression.py"
    path.write_text(MODEL)
    return str(path)


def run_session(path, steps, seed=None):
    session = Session(load_model_file(path, seed=seed, steps=steps))
    session.run_to_end()
    return session


@pytest.fixture(scope="module")
def report(model_path):
    """The report of 12 in-process steps, round-tripped through strict JSON."""
    return strict_json(json.dumps(build_report(run_session(model_path, 12))))


# -- the report's shape ----------------------------------------------------------------------

def test_top_level(report, model_path):
    assert TOP_KEYS <= set(report)
    assert report["schema"] == SCHEMA == "calcml.report/1"
    assert report["model"] == model_path
    assert report["description"] == "A small regression with validation data and an L2 penalty."
    assert report["steps"] == 12
    assert report["state"] == "finished"
    assert report["stopped"] is None
    assert report["seed"] == 3
    assert report["optimizer"] == "SGD" and report["lr"] == pytest.approx(0.01)
    assert report["regularizer"] == {"kind": "L2", "lambda": pytest.approx(0.01)}


def test_loss_one_float_per_step(report):
    assert len(report["loss"]) == 12
    assert all(isinstance(v, float) and math.isfinite(v) for v in report["loss"])
    assert report["loss"] == report["history"]["loss"]


def test_val_loss_lines_up_with_steps(report):
    val = report["val_loss"]
    assert isinstance(val, list) and len(val) == len(report["loss"])
    # validation runs every 10 steps (SessionConfig.val_every)
    assert isinstance(val[9], float) and math.isfinite(val[9])
    assert all(v is None for i, v in enumerate(val) if i != 9)


def test_val_loss_null_without_val_data(tmp_path):
    path = tmp_path / "noval.py"
    path.write_text(MODEL.replace("val_data = (X[:16], y[:16])\n", ""))
    data = build_report(run_session(str(path), 3))
    assert data["val_loss"] is None
    assert len(data["loss"]) == 3


def test_layers(report):
    layers = report["layers"]
    assert [(l["name"], l["type"]) for l in layers] == [("0", "Linear"), ("1", "ReLU"), ("2", "Linear")]
    for layer in layers:
        assert LAYER_KEYS <= set(layer)
    first, relu, last = layers
    assert set(first["params"]) == {"weight", "bias"}
    assert relu["params"] == {}
    w = first["params"]["weight"]
    assert PARAM_KEYS <= set(w)
    assert w["shape"] == [8, 3]
    assert last["params"]["weight"]["shape"] == [1, 8]
    assert first["params"]["bias"]["shape"] == [8]
    for name in ("grad_norm", "weight_norm", "update_ratio"):
        assert isinstance(w[name], float) and w[name] > 0
    assert 0.0 <= w["sparsity"] <= 1.0
    # L2 (gradient 2λθ, taken before the update) excludes biases by default
    assert w["penalty_grad_norm"] == pytest.approx(2 * 0.01 * w["weight_norm"], rel=2 * w["update_ratio"])
    assert first["params"]["bias"]["penalty_grad_norm"] == 0.0
    # activation statistics belong to the activation layer
    assert 0.0 <= relu["dead_fraction"] <= 1.0
    assert isinstance(relu["mean_local_derivative"], float)
    assert first["dead_fraction"] is None and first["mean_local_derivative"] is None
    assert isinstance(last["grad_out_norm"], float) and last["grad_out_norm"] > 0


def test_history(report):
    history = report["history"]
    assert history["step"] == list(range(1, 13))
    n = len(history["step"])
    for name, values in history.items():
        assert len(values) == n, name
    for layer in ("0", "2"):
        for param in ("weight", "bias"):
            for stat in ("grad_norm", "penalty_grad_norm", "weight_norm", "update_ratio", "sparsity"):
                assert f"{layer}.{param}.{stat}" in history
    assert history["0.weight.grad_norm"][-1] == pytest.approx(report["layers"][0]["params"]["weight"]["grad_norm"])
    assert "penalty" in history and "lr" in history


def test_report_matches_session_history(model_path):
    session = run_session(model_path, 4)
    data = build_report(session)
    np.testing.assert_allclose(data["loss"], session.history.series("loss"))
    assert data["steps"] == session.step_count == 4


def test_clean_replaces_non_finite_everywhere():
    value = {"a": math.nan, "b": [1.0, math.inf, (-math.inf, 2)], "c": {"d": math.nan, "e": "nan"}, "f": 3}
    assert _clean(value) == {"a": None, "b": [1.0, None, [None, 2]], "c": {"d": None, "e": "nan"}, "f": 3}
    strict_json(json.dumps(_clean(value), allow_nan=False))


# -- a run that hits NaN ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nan_report(tmp_path_factory):
    session = run_session(nan_demo_path(), 20)
    path = tmp_path_factory.mktemp("nan") / "report.json"
    write_report(session, str(path))
    return path.read_text()


def test_nan_run_report_is_strict_json(nan_report):
    data = strict_json(nan_report)   # raises on NaN / Infinity
    assert data["schema"] == SCHEMA
    assert nan_report.endswith("\n")


def test_nan_run_stops_with_non_finite_and_names_log(nan_report):
    data = strict_json(nan_report)
    assert data["state"] == "stopped"
    assert data["stopped"]["reason"] == "non_finite"
    assert data["stopped"]["step"] == data["steps"] == len(data["loss"])
    assert data["loss"][-1] is None          # the NaN loss, as null
    assert all(isinstance(v, float) for v in data["loss"][:-1])
    events = [w for w in data["warnings"] if w["kind"] == "non_finite"]
    assert len(events) == 1
    event = events[0]
    assert WARNING_KEYS <= set(event)
    assert event["op"] == "log"
    assert event["step"] == data["stopped"]["step"]
    assert "'log'" in event["message"] and "'log'" in data["stopped"]["detail"]
    for values in data["history"].values():
        assert len(values) == len(data["history"]["step"])


# -- through the CLI -------------------------------------------------------------------------------

def cli_report(tmp_path, *args, name="report.json"):
    path = tmp_path / name
    result = subprocess.run([sys.executable, "-m", "calcml.tui.cli", *args, "--headless", "--json", str(path)],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return result, path


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, model_path):
    tmp = tmp_path_factory.mktemp("cli_report")
    result, path = cli_report(tmp, model_path, "--steps", "7", "--seed", "1")
    assert result.returncode == 0, result.stderr
    return result, path


def test_cli_json_report(cli_run, model_path):
    result, path = cli_run
    assert f"report written to {path}" in result.stdout
    text = path.read_text()
    data = strict_json(text)
    assert TOP_KEYS <= set(data)
    assert data["schema"] == "calcml.report/1"
    assert data["model"] == model_path
    assert data["steps"] == 7 and len(data["loss"]) == 7
    assert data["seed"] == 1
    assert data["stopped"] is None and data["state"] == "finished"
    assert data["val_loss"] is None or len(data["val_loss"]) == 7
    assert [l["name"] for l in data["layers"]] == ["0", "1", "2"]
    for layer in data["layers"]:
        assert LAYER_KEYS <= set(layer)
        for stats in layer["params"].values():
            assert PARAM_KEYS <= set(stats)
    assert all(len(v) == 7 for v in data["history"].values())
    assert isinstance(data["warnings"], list)
    for w in data["warnings"]:
        assert WARNING_KEYS <= set(w)


def test_cli_steps_gives_that_many_losses(tmp_path, model_path):
    steps = 2
    result, path = cli_report(tmp_path, model_path, "--steps", str(steps))
    assert result.returncode == 0, result.stderr
    data = strict_json(path.read_text())
    assert len(data["loss"]) == steps and data["steps"] == steps
    assert data["history"]["step"] == list(range(1, steps + 1))


def test_cli_seed_makes_runs_repeatable(tmp_path, model_path, cli_run):
    _, first = cli_run                                      # --seed 1, 7 steps
    again, second = cli_report(tmp_path, model_path, "--steps", "7", "--seed", "1", name="again.json")
    other, third = cli_report(tmp_path, model_path, "--steps", "7", "--seed", "2", name="other.json")
    assert again.returncode == 0 and other.returncode == 0
    a, b, c = (strict_json(p.read_text()) for p in (first, second, third))
    assert a["loss"] == b["loss"]
    assert a["history"] == b["history"]
    assert a["loss"] != c["loss"]
    assert c["seed"] == 2


def test_cli_nan_demo(tmp_path):
    result, path = cli_report(tmp_path, nan_demo_path(), "--steps", "20")
    assert result.returncode == 0, result.stderr
    data = strict_json(path.read_text())
    assert data["stopped"]["reason"] == "non_finite"
    assert data["stopped"]["step"] < 20
    assert [w["op"] for w in data["warnings"] if w["kind"] == "non_finite"] == ["log"]
    assert "(non_finite)" in result.stdout
