"""`calcml-debug --headless` end to end, in a subprocess: exit codes, messages, progress and summary.

Runs go through `python -m calcml.tui.cli` and through the installed `calcml-debug` script.
Standard output is a pipe here, so the progress is the non-TTY form: whole lines, no escapes.
The report written by --json is covered in depth by test_report.py.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from importlib import resources

import pytest

import calcml as cm

PACKAGE_DIR = os.path.dirname(os.path.abspath(cm.__file__))
XOR = str(resources.files("calcml.samples") / "xor_mlp.py")
CALCML_TRACEBACK = "Traceback (most recent call last)"
SCRIPT = shutil.which("calcml-debug")


def cli(*args, script=False, cwd=None, timeout=60, **env_overrides):
    """Run the CLI; the result has .returncode, .stdout and .stderr (text)."""
    if script:
        if SCRIPT is None:
            pytest.skip("the calcml-debug console script is not on PATH (pip install -e .)")
        command = [SCRIPT, *args]
    else:
        command = [sys.executable, "-m", "calcml.tui.cli", *args]
    env = dict(os.environ, PYTHONWARNINGS="ignore", COLUMNS="100", **env_overrides)
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


def strict_json(text):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def no_calcml_traceback(result):
    both = result.stdout + result.stderr
    assert CALCML_TRACEBACK not in both, both
    assert PACKAGE_DIR + os.sep not in both, both


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Small model files written once for this module: {name: path}."""
    folder = tmp_path_factory.mktemp("cli_models")
    files = {
        "syntax": "import calcml as cm\nmodel = cm.nn.Linear(2,\n    1))\n",
        "raises": textwrap.dedent("""\
            import calcml as cm

            def build():
                raise RuntimeError("my own bug")

            model = build()
            """),
        "missing_loss": "import numpy as np\nimport calcml as cm\nmodel = cm.nn.Linear(2, 1)\n"
                        "data = (np.zeros((4, 2)), np.zeros((4, 1)))\n",
        "shape": textwrap.dedent("""\
            import numpy as np
            import calcml as cm
            import calcml.nn.functional as F

            data = (np.zeros((32, 3)), np.zeros((32, 4)))
            model = cm.nn.Sequential(cm.nn.Linear(2, 4))

            def loss(pred, target):
                return F.mse_loss(pred, target)
            """),
    }
    paths = {}
    for name, text in files.items():
        path = folder / f"{name}.py"
        path.write_text(text)
        paths[name] = str(path)
    paths["folder"] = str(folder)
    return paths


# -- success ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_run():
    """The built-in demo (no model file) through the installed script."""
    return cli("--headless", "--steps", "20", script=True)


def test_builtin_demo_runs_and_exits_0(demo_run):
    assert demo_run.returncode == 0, demo_run.stderr
    out = demo_run.stdout
    first = out.splitlines()[0]
    assert first.startswith("calcml-debug: ") and first.endswith("deep_sigmoid.py")
    assert out.splitlines()[1].startswith("Vanishing gradients")    # first docstring line
    assert "finished after 20 steps" in out
    assert demo_run.stderr == ""


def test_non_tty_progress_lines(demo_run):
    lines = demo_run.stdout.splitlines()
    progress = [line for line in lines if line.startswith("step ")]
    assert progress, demo_run.stdout
    for line in progress:
        assert "loss " in line and "epoch " in line and "steps/s" in line
    assert progress[-1].startswith("step 20/20 ")
    # not a terminal: whole lines, no carriage returns or escape codes
    assert "\r" not in demo_run.stdout and "\x1b" not in demo_run.stdout


def test_layer_table_and_warnings_are_printed(demo_run):
    lines = demo_run.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("layer "))
    for column in ("type", "shape", "‖W‖", "‖∇W‖ data", "dead", "sat", "in/out"):
        assert column in lines[header]
    rows = lines[header + 1:header + 20]
    assert rows[0].split()[:3] == ["0", "Linear", "16x2"]
    assert rows[1].split()[:2] == ["1", "Sigmoid"]
    assert rows[18].split()[:3] == ["18", "Linear", "2x16"]
    warnings = lines.index("warnings:")
    assert warnings > header + 19
    assert any("vanishing_gradient" in line and "0 (Linear)" in line for line in lines[warnings + 1:])


def test_model_file_via_module_exits_0(tmp_path):
    result = cli(XOR, "--headless", "--steps", "4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"calcml-debug: {XOR}"
    assert "step 4/4" in result.stdout
    assert "no warnings" in result.stdout
    assert result.stdout.rstrip().endswith("finished after 4 steps")
    assert result.stderr == ""


def test_help_explains_the_model_file_contract():
    result = cli("--help")
    assert result.returncode == 0
    text = result.stdout
    assert "calcml-debug" in text
    for word in ("model", "loss", "data", "cm.nn.Module", "optimizer", "--headless", "--json", "--break-on"):
        assert word in text
    assert "loss(pred, target)" in text
    assert "default: SGD, lr 0.01" in text


# -- breakpoints in headless mode ---------------------------------------------------------
#
# Headless, no one can continue a run a breakpoint paused: the run ends there with exit 0, the
# summary says which breakpoint and why, and the report's 'stopped' records it.

def _check_breakpoint_report(report, step):
    assert report["steps"] == step
    assert len(report["loss"]) == step
    assert report["history"]["step"][-1] == step
    assert report["state"] == "stopped"
    stopped = report["stopped"]
    assert stopped["reason"] == "breakpoint" and stopped["step"] == step


def test_break_on_step_stops_there_exit_0(tmp_path):
    report = tmp_path / "r.json"
    result = cli(XOR, "--headless", "--break-on", "step=5", "--json", str(report))
    assert result.returncode == 0, result.stderr
    assert "stopped at step 5 (breakpoint):\nbreakpoint at step 5: reached step 5" in result.stdout
    assert "finished" not in result.stdout
    data = strict_json(report.read_text())
    _check_breakpoint_report(data, 5)
    assert data["breakpoints"] == [{"id": 1, "breakpoint": "step 5"}]


def test_every_stops_at_the_first_multiple_via_script(tmp_path):
    report = tmp_path / "r.json"
    result = cli(XOR, "--headless", "--every", "3", "--json", str(report), script=True)
    assert result.returncode == 0, result.stderr
    assert "stopped at step 3 (breakpoint):\nbreakpoint every 3 steps: step 3 is a multiple of 3" in result.stdout
    _check_breakpoint_report(strict_json(report.read_text()), 3)


def test_break_if_condition_stops_when_it_holds():
    result = cli(XOR, "--headless", "--steps", "50", "--break-if", "step >= 2 and loss > 0")
    assert result.returncode == 0, result.stderr
    assert ("stopped at step 2 (breakpoint):\nbreakpoint when step >= 2 and loss > 0: "
            "step >= 2 and loss > 0 holds (step = 2, loss = ") in result.stdout


# -- bad model files: exit 2, a message, no calcml traceback --------------------------------

def test_syntax_error_exit_2(models):
    result = cli(models["syntax"], "--headless")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"calcml-debug: {models['syntax']}:3:")
    assert "syntax error" in result.stderr
    assert "1))" in result.stderr and "^" in result.stderr
    no_calcml_traceback(result)


def test_syntax_error_exit_2_via_script(models):
    result = cli(models["syntax"], "--headless", script=True)
    assert result.returncode == 2
    assert f"{models['syntax']}:3:" in result.stderr and "syntax error" in result.stderr
    no_calcml_traceback(result)


def test_model_file_that_raises_shows_user_frames_only(models):
    result = cli(models["raises"], "--headless")
    assert result.returncode == 2
    path = models["raises"]
    assert f"{path}: the model file raised an error while loading" in result.stderr
    assert f'File "{path}", line 6, in <module>' in result.stderr
    assert f'File "{path}", line 4, in build' in result.stderr
    assert "RuntimeError: my own bug" in result.stderr
    no_calcml_traceback(result)


def test_missing_names_exit_2(models):
    result = cli(models["missing_loss"], "--headless")
    assert result.returncode == 2
    assert "missing loss." in result.stderr and "found: model, data" in result.stderr
    no_calcml_traceback(result)


def test_missing_file_exit_2(tmp_path):
    path = str(tmp_path / "nowhere.py")
    result = cli(path, "--headless")
    assert result.returncode == 2
    assert f"calcml-debug: {path}: no such file" in result.stderr
    no_calcml_traceback(result)


def test_directory_exit_2(models):
    result = cli(models["folder"], "--headless")
    assert result.returncode == 2
    assert "is a folder, not a model file" in result.stderr
    no_calcml_traceback(result)


# -- usage errors: exit 2 --------------------------------------------------------------------

@pytest.mark.parametrize("args, expect", [
    (["--steps", "0"], "expected a positive whole number, got 0"),
    (["--steps", "abc"], "expected a positive whole number, got 'abc'"),
    (["--every", "0"], "expected a positive whole number, got 0"),
    (["--seed", "x"], "argument --seed"),
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["one.py", "two.py"], "unrecognized arguments: two.py"),
])
def test_usage_errors_exit_2(args, expect):
    result = cli(*args, "--headless")
    assert result.returncode == 2
    assert "usage: calcml-debug" in result.stderr
    assert expect in result.stderr
    assert result.stdout == ""
    no_calcml_traceback(result)


@pytest.mark.parametrize("flag, text, expect", [
    ("--break-if", "loss >", "'loss >' does not parse"),
    ("--break-if", 'grad_norm("nope") < 1', "no parameter named 'nope'; parameters are: 0.weight, 0.bias"),
    ("--break-if", "__import__('os').system('true')", "unknown function"),
    ("--break-on", "bogus", "'bogus' is not a warning kind"),
])
def test_bad_breakpoints_are_refused_exit_2(flag, text, expect):
    result = cli(XOR, "--headless", "--steps", "1", flag, text)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("calcml-debug: breakpoint refused: ")
    assert expect in result.stderr
    no_calcml_traceback(result)


def test_negative_seed_is_a_usage_error(tmp_path):
    # TMPDIR: an internal error writes a crash file; keep it out of the real /tmp
    result = cli(XOR, "--headless", "--steps", "1", "--seed", "-1", TMPDIR=str(tmp_path))
    assert result.returncode == 2


# -- the model fails during training: exit 2 ----------------------------------------------

def test_shape_mismatch_during_training_exit_2(models, tmp_path):
    report = tmp_path / "r.json"
    result = cli(models["shape"], "--headless", "--steps", "3", "--json", str(report))
    assert result.returncode == 2
    assert "0 (Linear): matmul (32, 3) @ (2, 4)" in result.stdout
    assert "(error)" in result.stdout
    no_calcml_traceback(result)
    data = strict_json(report.read_text())
    assert data["stopped"]["reason"] == "error"
    assert "(Linear): matmul (32, 3) @ (2, 4)" in data["stopped"]["detail"]
    assert data["steps"] == 0 and data["loss"] == []
