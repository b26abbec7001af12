"""An unmodified PyTorch training script under calcml-debug (`calcml-debug train.py -- ARGS`):
its own argparse, DataLoader and loop, watched from its first optimiser step, headless and in
the interface; what it prints is its own; its mistakes are reported as its own."""
from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

from calcml.tui.cli import build_parser, split_script_args   # noqa: E402
from terminal import Terminal, command                        # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "sample_models" / "torch_train_script.py"


def headless(*args, timeout=120):
    return subprocess.run([command(), "--headless", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_the_script_runs_with_its_own_arguments_and_is_watched(tmp_path):
    report = tmp_path / "R.json"
    done = headless(SCRIPT, "--json", report, "--", "--epochs", "2", "--lr", "0.5")
    assert done.returncode == 0, done.stderr
    assert "epoch 1: loss" in done.stdout and "epoch 2: loss" in done.stdout      # the script's own prints
    assert "epoch 3" not in done.stdout                                            # its --epochs was honoured
    data = json.loads(report.read_text())
    # 2 epochs x 16 batches; the first optimiser step finds the model and trains unobserved
    assert data["steps"] == 31 and data["state"] == "finished" and len(data["loss"]) == 31
    kinds = {w["kind"] for w in data["warnings"]}
    assert kinds == {"vanishing_gradient"}
    layers = data["layers"]
    assert [layer["type"] for layer in layers][:2] == ["Linear", "Sigmoid"] and len(layers) == 17
    assert layers[1]["mean_local_derivative"] <= 0.25


def test_steps_end_the_script_at_its_next_optimiser_step(tmp_path):
    report = tmp_path / "R.json"
    done = headless(SCRIPT, "--steps", 5, "--json", report, "--", "--epochs", "50")
    assert done.returncode == 0, done.stderr
    assert json.loads(report.read_text())["steps"] == 5
    assert "epoch 1: loss" not in done.stdout     # ended inside its first epoch


def write(tmp_path, body: str, name="train.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_a_script_that_fails_is_reported_with_its_own_frames(tmp_path):
    path = write(tmp_path, '''\
        import torch
        model = torch.nn.Linear(2, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(10):
            loss = model(torch.randn(4, 2)).pow(2).mean()
            opt.zero_grad(); loss.backward(); opt.step()
            if step == 6:
                raise RuntimeError("the data ran out")
        ''')
    done = headless(path)
    assert done.returncode == 2
    assert "RuntimeError: the data ran out" in done.stdout and f"{path}\", line 8" in done.stdout
    assert "calcml/debug" not in done.stdout and "engine/debug" not in done.stdout
    assert "stopped at step 6 (error)" in done.stdout


def test_a_script_that_trains_nothing_says_so(tmp_path):
    path = write(tmp_path, '''\
        import torch
        print("hello", torch.ones(1).item())
        ''')
    done = headless(path)
    assert done.returncode == 2
    assert "without an optimizer.step()" in done.stderr


def test_script_arguments_come_after_the_path_and_a_double_dash():
    parser = build_parser()
    assert split_script_args(["train.py", "--", "--epochs", "2"], parser) == (["train.py"], ["--epochs", "2"])
    assert split_script_args(["--json", "r.json", "train.py", "--", "-x"], parser) == \
        (["--json", "r.json", "train.py"], ["-x"])
    assert split_script_args(["--", "-model.py"], parser) == (["--", "-model.py"], None)   # the escape
    assert split_script_args(["--", "-train.py", "--", "--lr", "1"], parser) == (["--", "-train.py"], ["--lr", "1"])
    assert split_script_args(["model.py", "--steps", "5"], parser) == (["model.py", "--steps", "5"], None)


def test_in_the_interface_a_pause_holds_the_script_and_n_steps_it(tmp_path):
    report = tmp_path / "R.json"
    term = Terminal([SCRIPT, "--json", report, "--", "--epochs", "500"], size=(140, 40))
    try:
        term.wait_for(r"RUNNING", 60)
        term.child.send(" ")
        found = term.wait_for(r"PAUSED\s+step (\d+)\b", 30)
        held = int(found.group(1))
        term.pump(0.5)
        assert re.search(rf"PAUSED\s+step {held}\b", term.text())     # held at its optimiser step
        term.child.send("n")                                             # one more step, and held again
        term.wait_for(rf"PAUSED\s+step {held + 1}\b", 30)
        term.child.send("q")
        assert term.finish() == 0
    finally:
        term.close()
    data = json.loads(report.read_text())
    assert data["steps"] == held + 1 and data["stopped"]["reason"] == "user"
    assert "Traceback" not in term.output()


def test_the_lr_keys_halve_the_scripts_learning_rate_at_its_optimiser_step(tmp_path):
    """The docstring's "press [ a few times to halve the learning rate": the script's own
    optimiser trains at the halved rate (its param_groups), as the report says."""
    report = tmp_path / "R.json"
    term = Terminal([SCRIPT, "--json", report, "--", "--epochs", "500", "--lr", "0.5"], size=(140, 40))
    try:
        term.wait_for(r"RUNNING", 60)
        term.child.send("[")
        term.child.send("[")
        term.wait_for(r"lr 0\.125\b", 30)
        term.child.send("q")
        assert term.finish() == 0
    finally:
        term.close()
    assert json.loads(report.read_text())["lr"] == 0.125


def test_a_scripts_functional_activations_and_fused_attention_are_layers_in_forward_order(tmp_path):
    """The first optimiser step is let through unobserved (it finds the model); the first pass
    captured after it still finds the activations applied as functions, the softmax inside
    F.scaled_dot_product_attention, and the order the layers run in."""
    script = write(tmp_path, """\
        import torch
        F = torch.nn.functional

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.head = torch.nn.Linear(4, 1)     # defined first, runs last
                self.qkv = torch.nn.Linear(4, 12)
                self.mid = torch.nn.Linear(4, 4)

            def forward(self, x):
                q, k, v = self.qkv(x).chunk(3, -1)
                y = F.scaled_dot_product_attention(q, k, v, scale=30.0)
                return self.head(F.relu(self.mid(x + y)).mean(1))

        torch.manual_seed(0)
        model = Net()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        X = torch.randn(16, 5, 4)
        for _ in range(12):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(X), X[:, 0, :1]).backward()
            optimizer.step()
        """)
    report = tmp_path / "R.json"
    done = headless(script, "--json", report)
    assert done.returncode == 0, done.stderr
    layers = {layer["name"]: layer for layer in json.loads(report.read_text())["layers"]}
    assert list(layers) == ["qkv", "softmax()", "mid", "relu()", "head"]
    assert layers["softmax()"]["type"] == "attention" and layers["softmax()"]["saturated_fraction"] > 0.5
    assert layers["relu()"]["type"] == "F.relu" and 0 < layers["relu()"]["mean_local_derivative"] < 1
    assert "saturation" in done.stdout
