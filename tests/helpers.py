"""What the engine-side tests share: a ModelSpec for a model, loss and data built in the test,
and a bounded wait for something another thread or process does."""
from __future__ import annotations

import time

import calcml as cm
from calcml.debug import ModelSpec


def make_spec(model, loss, data, *, optimizer=None, lr=0.1, regularizer=None, steps=None, batch_size=None,
              val_data=None, seed=0, path="<test>", name="test", description="") -> ModelSpec:
    """The spec a model file would give, without the file: plain SGD(lr) over the model's
    parameters unless `optimizer` is given, no regularizer, full batch, no validation data, seed 0,
    no step limit. A torch model gets the torch backend, as a model file's would."""
    from calcml.debug.loader import _is_torch_module
    framework = "torch" if _is_torch_module(model) else "calcml"
    if optimizer is None:
        optimizer = cm.optim.SGD(model.parameters(), lr=lr)
    return ModelSpec(path=path, name=name, description=description, model=model, loss=loss, data=data,
                     optimizer=optimizer, regularizer=regularizer, batch_size=batch_size,
                     val_data=val_data, seed=seed, steps=steps, framework=framework)


def snapshot_over_the_wire(snapshot):
    """`snapshot` as a front end receives it: encoded, decoded and checked by the wire's codec."""
    from calcml.debug import wire
    return wire.decode_message(wire.encode({"type": "snapshot", "snapshot": snapshot})).snapshot


def history_over_the_wire(history, **options):
    """A history's series as a front end receives them (thinned for the wire, then decoded)."""
    from calcml.debug import wire
    frame = wire.decode_message(wire.encode({"type": "history", "series": wire.history_to_wire(history, **options)}))
    return wire.history_arrays(frame.series)


def activation_layer_in_both(cm_activation, torch_activation, steps: int = 3) -> tuple:
    """(calcml's, torch's) LayerStats of one activation between two Linear layers, the same net
    in both frameworks (float64, torch's weights copied from calcml's), after `steps` steps of
    SGD on the same data."""
    import numpy as np
    import torch
    import calcml.nn.functional as F
    from calcml.debug import Session, SessionConfig
    cm.manual_seed(0)
    a = cm.nn.Sequential(cm.nn.Linear(3, 8), cm_activation, cm.nn.Linear(8, 1))
    b = torch.nn.Sequential(torch.nn.Linear(3, 8, dtype=torch.float64), torch_activation,
                            torch.nn.Linear(8, 1, dtype=torch.float64))
    with torch.no_grad():
        for p, q in zip(a.parameters(), b.parameters()):
            q.copy_(torch.from_numpy(p.data.copy()))
    X = np.random.default_rng(2).normal(size=(16, 3))
    y = X[:, :1] ** 2
    config = SessionConfig(curvature_every=0)
    sa = Session(make_spec(a, F.mse_loss, (X, y), steps=steps), config)
    sb = Session(make_spec(b, torch.nn.functional.mse_loss, (X, y),
                           optimizer=torch.optim.SGD(b.parameters(), lr=0.1), steps=steps), config)
    return sa.run_to_end().layers[1], sb.run_to_end().layers[1]


def wait_for(condition, timeout: float = 20.0, what: str = "the condition"):
    """Poll until `condition()` is true and return its value (a bound on a wait, never a
    measured time); AssertionError naming `what` if `timeout` seconds pass first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")
