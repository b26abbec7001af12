"""The data view: what the model makes of its inputs' plane or line, checked against the model's
own arithmetic done in numpy (and in torch), and the promise that measuring it changes nothing."""
import math
import textwrap

import numpy as np
import pytest

import calcml as cm
from calcml.debug import dataview
from calcml.debug.loader import load_model_file
from calcml.debug.session import Session, SessionConfig

from tui_helpers import SAMPLES


def _session(name: str, steps: int = 0, **config) -> Session:
    session = Session(load_model_file(str(SAMPLES / name), steps=steps or None), SessionConfig(**config))
    session.initial_snapshot()
    return session


def _cell_centres(view) -> np.ndarray:
    """The grid's cell centres as the record declares them: row by row from the top."""
    (x0, x1), (y0, y1) = view.x_range, view.y_range
    xs = x0 + (np.arange(view.columns) + 0.5) * (x1 - x0) / view.columns
    ys = y1 - (np.arange(view.rows) + 0.5) * (y1 - y0) / view.rows
    return np.array([(x, y) for y in ys for x in xs])


def _xor_forward(model, X):
    """xor_mlp's Linear → tanh → Linear in numpy, from its weights."""
    first, last = model[0], model[2]
    h = np.tanh(X @ first.weight.data.T + first.bias.data)
    return h @ last.weight.data.T + last.bias.data


def test_xor_surface_is_the_models_own_probability_at_every_cell_and_its_accuracy_on_the_points():
    session = _session("xor_mlp.py", steps=40)
    session.run_to_end()
    view = session.snapshot.data_view
    assert view.kind == "classes" and view.step == 40 and view.class_names == ("0", "1")
    z = _xor_forward(session.spec.model, _cell_centres(view))[:, 0]
    p = 1 / (1 + np.exp(-z))
    assert view.predicted == tuple((p > 0.5).astype(int).tolist())
    np.testing.assert_allclose(view.confidence, np.maximum(p, 1 - p), atol=6e-4)
    X, labels = session.spec.data[0], session.spec.data[1][:, 0]
    assert len(view.points) == len(X) == 200
    np.testing.assert_array_equal(np.array(view.points), X)
    z_points = _xor_forward(session.spec.model, X)[:, 0]
    assert view.accuracy == pytest.approx(np.mean((z_points > 0) == (labels == 1)))
    assert "σ(z)" in view.note and "z = 0" in view.note
    # the grid covers the points with a margin, in the data's proportions
    assert view.x_range[0] < X[:, 0].min() and view.x_range[1] > X[:, 0].max()
    assert view.y_range[0] < X[:, 1].min() and view.y_range[1] > X[:, 1].max()
    aspect = (view.y_range[1] - view.y_range[0]) / (view.x_range[1] - view.x_range[0])
    assert view.rows == round(view.columns * aspect)


def test_softmax_outputs_give_the_argmax_class_and_its_probability():
    out = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0], [0.1, 0.0, 0.2]])
    predicted, confidence, how = dataview.read_classes(out, np.arange(3), None)
    e = np.exp(out - out.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    assert predicted.tolist() == [0, 1, 2]
    np.testing.assert_allclose(confidence, p.max(axis=1))
    assert "softmax" in how
    # a model that ends in a softmax already gives probabilities
    probs = np.array([[0.7, 0.3], [0.2, 0.8]])
    predicted, confidence, how = dataview.read_classes(probs, np.arange(2), "softmax")
    assert predicted.tolist() == [0, 1] and confidence.tolist() == [0.7, 0.8] and "ends in a softmax" in how


def test_one_output_is_read_by_the_labels_and_the_last_activation():
    z = np.array([[-2.0], [0.5], [3.0]])
    predicted, confidence, how = dataview.read_classes(z, np.array([0.0, 1.0]), None)
    p = 1 / (1 + np.exp(-z[:, 0]))
    assert predicted.tolist() == [0, 1, 1]
    np.testing.assert_allclose(confidence, np.maximum(p, 1 - p))
    predicted, confidence, how = dataview.read_classes(np.array([[0.2], [0.9]]), np.array([0.0, 1.0]), "sigmoid")
    assert predicted.tolist() == [0, 1] and confidence.tolist() == pytest.approx([0.8, 0.9]) and "0.5" in how
    # labels -1 / 1 (a tanh output trained with MSE): class 1 past the midpoint 0
    predicted, confidence, how = dataview.read_classes(np.array([[-0.6], [0.2]]), np.array([-1.0, 1.0]), "tanh")
    assert predicted.tolist() == [0, 1] and confidence.tolist() == pytest.approx([0.8, 0.6]) and "passes 0" in how


def test_targets_are_classes_when_few_integers_or_one_hot_rows_and_numbers_otherwise():
    index, values = dataview.labels_of(np.array([3, 1, 3, 1]))
    assert index.tolist() == [1, 0, 1, 0] and values.tolist() == [1, 3]
    index, values = dataview.labels_of(np.array([[0, 1, 0], [1, 0, 0]]))
    assert index.tolist() == [1, 0] and values.tolist() == [0, 1, 2]
    assert dataview.labels_of(np.array([0.5, 1.25, 2.0])) is None
    assert dataview.labels_of(np.arange(50.0)) is None          # more than ten values: a numeric target
    assert dataview.labels_of(np.ones(4)) is None               # one value: nothing to tell apart




def test_one_feature_gives_the_fitted_curve_and_its_mean_squared_error():
    session = _session("sine_mlp.py", steps=30)
    session.run_to_end()
    view = session.snapshot.data_view
    assert view.kind == "curve" and view.step == 30
    model = session.spec.model
    first, last = model[0], model[2]

    def forward(x):
        return (np.tanh(x.reshape(-1, 1) @ first.weight.data.T + first.bias.data) @ last.weight.data.T
                + last.bias.data)[:, 0]

    xs = np.linspace(view.x_range[0], view.x_range[1], view.columns)
    np.testing.assert_allclose(view.values, forward(xs), atol=1e-6)
    X, y = session.spec.data
    assert view.fit == pytest.approx(np.mean((forward(X[:, 0]) - y[:, 0]) ** 2))
    np.testing.assert_array_equal(np.array(view.points), np.stack([X[:, 0], y[:, 0]], axis=1))


@pytest.mark.parametrize("name, words", [
    ("l1_vs_l2.py", "the inputs have 20 features"),
    ("lr_edge.py", "the inputs have 4 features"),
])
def test_other_inputs_say_why_there_is_no_picture_and_are_not_measured_again(name, words):
    session = _session(name, steps=30)
    first = session.snapshot.data_view
    assert first.kind == "none" and words in first.note and first.step == 0
    session.run_to_end()
    assert session.snapshot.data_view is None    # said once; the front end keeps it


def test_two_features_and_a_numeric_target_give_the_fitted_surface():
    session = _session("adam_vs_sgd.py", steps=20)
    session.run_to_end()
    view = session.snapshot.data_view
    assert view.kind == "surface" and len(view.values) == view.rows * view.columns
    model = session.spec.model
    X, y = session.spec.data
    with cm.no_grad():
        expected = model(cm.Tensor(_cell_centres(view))).data[:, 0]
        fitted = model(cm.Tensor(X)).data[:, 0]
    np.testing.assert_allclose(view.values, expected, rtol=1e-5, atol=1e-5)
    assert view.fit == pytest.approx(np.mean((fitted - y.reshape(len(y), -1)[:, 0]) ** 2))
    assert view.targets == tuple(y.reshape(len(y), -1)[:, 0].tolist())


def test_measured_at_step_0_at_rest_on_its_schedule_and_never_when_off():
    session = _session("xor_mlp.py", data_view_every=7, data_view_budget=None)
    assert session.snapshot.data_view.step == 0
    measured = []
    session.step(20)
    while session.tick() is not None:
        view = session.snapshot.data_view
        if view is not None:
            measured.append(view.step)
    assert measured == [7, 14, 20]     # every 7 steps, and the step the run came to rest after
    off = _session("xor_mlp.py", data_view_every=0)
    assert off.snapshot.data_view is None
    off.step(5)
    while off.tick() is not None:
        assert off.snapshot.data_view is None


def test_under_the_interface_it_is_drawn_at_most_every_interval_but_always_at_rest():
    session = _session("xor_mlp.py", data_view_every=1, data_view_budget=None, data_view_interval=3600.0)
    session.step(30)
    drawn = []
    while session.tick() is not None:
        if session.snapshot.data_view is not None:
            drawn.append(session.snapshot.data_view.step)
    assert drawn == [1, 30]     # the first, then none within the hour, then the step it rests after


def test_a_pause_while_running_draws_the_step_it_stopped_after():
    session = _session("xor_mlp.py", data_view_every=1000)
    session.may_pause = True
    session.run()
    for _ in range(13):
        session.tick()
    assert session.snapshot.data_view is None
    session.pause()
    session.tick()
    assert session.step_count == 13 and session.snapshot.data_view.step == 13


def _weights(session) -> dict:
    return {name: np.array(w, copy=True) for name, w in session.backend.weights().items()}


def test_measuring_it_changes_nothing_in_the_run():
    """The same run with the view drawn every step and without it ends with the same weights."""
    runs = []
    for every in (1, 0):
        session = _session("spirals_adam.py", steps=25, data_view_every=every, data_view_budget=None)
        session.run_to_end()
        runs.append((_weights(session), session.snapshot.loss))
    (with_view, loss_with), (without, loss_without) = runs
    assert loss_with == loss_without
    for name in with_view:
        np.testing.assert_array_equal(with_view[name], without[name])


torch = pytest.importorskip("torch")

TORCH_MODEL = textwrap.dedent("""
    import numpy as np
    import torch
    from torch import nn
    import calcml as cm
    torch.manual_seed(0)
    X, y = cm.data.moons(n=200, noise=0.1, seed=0)
    data = (X.astype(np.float32), y)
    model = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
    loss = nn.functional.cross_entropy
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch_size = 50
    steps = 24
""")


def test_torch_surface_is_the_models_eval_output_and_leaves_its_modes_buffers_and_rng_alone(tmp_path):
    path = tmp_path / "moons_torch.py"
    path.write_text(TORCH_MODEL)
    runs = []
    for every in (1, 0):
        session = Session(load_model_file(str(path)), SessionConfig(data_view_every=every, data_view_budget=None))
        session.initial_snapshot()
        session.run_to_end()
        model = session.spec.model
        assert model.training and all(m.training for m in model.modules())
        runs.append((session, {k: v.clone() for k, v in model.state_dict().items()}))
    (viewed, state), (plain, plain_state) = runs
    for key in state:   # weights and BatchNorm's running statistics alike
        torch.testing.assert_close(state[key], plain_state[key], rtol=0, atol=0)
    view = viewed.snapshot.data_view
    assert view.kind == "classes" and view.step == 24 and len(view.points) == 200   # four batches of 50
    model = viewed.spec.model
    model.eval()
    with torch.no_grad():
        p = torch.softmax(model(torch.tensor(_cell_centres(view), dtype=torch.float32)), dim=1).numpy()
    model.train()
    assert view.predicted == tuple(p.argmax(axis=1).tolist())
    np.testing.assert_allclose(view.confidence, p.max(axis=1), atol=6e-4)


def test_torch_and_calcml_draw_the_same_surface_for_the_same_weights(tmp_path):
    calcml_session = _session("xor_mlp.py", steps=30)
    calcml_session.run_to_end()
    mine = calcml_session.snapshot.data_view
    cm_model = calcml_session.spec.model
    path = tmp_path / "xor_torch.py"
    path.write_text(textwrap.dedent("""
        import numpy as np
        import torch
        from torch import nn
        import calcml as cm
        X, labels = cm.data.xor(n=200, noise=0.15, seed=0)
        data = (X, labels.reshape(-1, 1).astype(float))
        model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).double()
        loss = nn.functional.binary_cross_entropy_with_logits
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        steps = 1
    """))
    spec = load_model_file(str(path))
    with torch.no_grad():
        for index in (0, 2):
            spec.model[index].weight.copy_(torch.tensor(cm_model[index].weight.data))
            spec.model[index].bias.copy_(torch.tensor(cm_model[index].bias.data))
    session = Session(spec)
    theirs = session.initial_snapshot().data_view
    assert theirs.rows == mine.rows and theirs.x_range == pytest.approx(mine.x_range)
    assert theirs.predicted == mine.predicted
    np.testing.assert_allclose(theirs.confidence, mine.confidence, atol=1e-3)
    assert math.isclose(theirs.accuracy, mine.accuracy)
