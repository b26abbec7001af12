"""A model file's optional `scheduler`: the session steps it after each optimiser step (PyTorch's
order), each snapshot shows the rate its step used, and training equals the plain loop's."""
import textwrap

import numpy as np
import pytest

from calcml.debug import ModelFileError, Session, load_model_file

FILE = """\
import numpy as np
import calcml as cm
import calcml.nn.functional as F
rng = np.random.default_rng(0)
model = cm.nn.Sequential(cm.nn.Linear(3, 4), cm.nn.Tanh(), cm.nn.Linear(4, 1))
def loss(pred, target):
    return F.mse_loss(pred, target)
X = rng.normal(size=(16, 3))
data = (X, np.sin(X[:, :1]))
optimizer = cm.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
steps = 7
"""


def write(tmp_path, extra, text=FILE):
    path = tmp_path / "model_file.py"
    path.write_text(text + textwrap.dedent(extra), encoding="utf-8")
    return str(path)


def run(path):
    spec = load_model_file(path)
    seen = []
    Session(spec).run_to_end(on_step=seen.append)
    return spec, seen


def test_the_session_steps_the_scheduler_after_each_update(tmp_path):
    path = write(tmp_path, "scheduler = cm.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)\n")
    spec, seen = run(path)
    assert [s.lr for s in seen] == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125]
    # the same file trained by PyTorch's loop: optimizer.step(), then scheduler.step()
    plain = load_model_file(path)
    X, y = plain.data
    import calcml as cm
    for _ in range(7):
        plain.optimizer.zero_grad()
        plain.loss(plain.model(cm.tensor(X)), cm.tensor(y)).backward()
        plain.optimizer.step()
        plain.scheduler.step()
    for a, b in zip(spec.model.parameters(), plain.model.parameters()):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-14)


def test_reduce_on_plateau_gets_each_steps_loss(tmp_path):
    path = write(tmp_path, """\
        class Recording(cm.optim.lr_scheduler.ReduceLROnPlateau):
            seen = []
            def step(self, metrics, epoch=None):
                self.seen.append(metrics)
                super().step(metrics)
        scheduler = Recording(optimizer, mode="max", patience=0, factor=0.5)
        """)
    spec, seen = run(path)
    assert spec.scheduler.seen == [s.loss for s in seen[:-1]]
    assert seen[-1].lr < seen[0].lr      # the loss falls, which mode='max' counts as getting worse


def test_a_torch_model_files_torch_scheduler(tmp_path):
    pytest.importorskip("torch")
    text = """\
import torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
loss = torch.nn.functional.mse_loss
X = torch.randn(16, 3, dtype=torch.float64)
data = (X, torch.sin(X[:, :1]))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5)
steps = 4
"""
    _, seen = run(write(tmp_path, "", text))
    assert [s.lr for s in seen] == [0.1, 0.05, 0.025, 0.0125]


def test_a_failing_scheduler_stops_the_run_with_its_message(tmp_path):
    path = write(tmp_path, "scheduler = cm.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, total_steps=3)\n")
    spec = load_model_file(path)
    session = Session(spec)
    session.run_to_end()
    assert session.stop_info.reason == "error"
    assert "OneCycleLR.step" in session.stop_info.detail and "Tried to step 4 times" in session.stop_info.detail
    assert session.step_count == 4   # as PyTorch: the 4th optimiser step runs, the 4th scheduler step raises


@pytest.mark.parametrize("extra, match", [
    ("scheduler = 3\n", "scheduler must be a learning-rate scheduler"),
    ("other = cm.optim.SGD(model.parameters(), lr=0.1)\n"
     "scheduler = cm.optim.lr_scheduler.StepLR(other, step_size=2)\n", "another optimiser than the file's optimizer"),
])
def test_the_loader_refuses_a_scheduler_it_cannot_use(tmp_path, extra, match):
    with pytest.raises(ModelFileError, match=match):
        load_model_file(write(tmp_path, extra))


def test_a_scheduler_without_the_files_optimizer(tmp_path):
    text = FILE.replace("optimizer = cm.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)\n", "")
    extra = "scheduler = cm.optim.lr_scheduler.StepLR(cm.optim.SGD(model.parameters()), step_size=2)\n"
    with pytest.raises(ModelFileError, match="the file defines no optimizer"):
        load_model_file(write(tmp_path, extra, text))
