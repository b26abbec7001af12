"""The data view: the training points, and what the model makes of the plane or line they lie in.

Two features and class labels (xor, moons, circles, spirals): the model is evaluated on a grid
over the points' range, and each cell gets the class it predicts there and that class's
probability, so the decision boundary is where the predicted class changes. Two features and a
numeric target: the same grid gets the model's output (its fitted surface). One feature and a
numeric target (a sine): the model is evaluated along the line, which gives the fitted curve.
Anything else has no picture here, and the view says why.

How an output is read as class probabilities depends on what the model ends with, and the view
says which reading it took:
  one output, labels 0/1     a logit z: p(class 1) = σ(z), the boundary where z = 0; or, if the
                             model ends in a sigmoid, p(class 1) itself (boundary at 0.5)
  one output, labels a < b   the output on the labels' scale: class b where it passes (a+b)/2
  k outputs                  k logits: p = softmax(z), the class argmax z; or, if the model ends
                             in a softmax, the probabilities themselves
The model is evaluated in eval mode, without gradients and without recording anything, so
training is not disturbed (Bayesian layers use their posterior means there).
"""
from __future__ import annotations

import numpy as np

from .snapshot import DataView

GRID_COLUMNS, GRID_ROWS = 64, (16, 128)   # the 2-D surface's cells across, and its rows at least, at most
CURVE_POINTS = 160
MAX_POINTS = 400                   # training points kept to show
MAX_CLASSES = 10                   # more distinct integer targets than this: a numeric target
MARGIN = 0.1                       # the grid reaches this fraction of the points' range past them


class Points:
    """The first MAX_POINTS training points seen (inputs and targets, as host arrays)."""

    def __init__(self):
        self.X: np.ndarray | None = None   # [n, features]: each input flattened
        self.y: np.ndarray | None = None
        self.shape: tuple = ()              # one input's own shape (an image's 1×8×8)
        self.complete = False               # every point there is to show is here
        self._last = None

    @property
    def full(self) -> bool:
        return self.complete or (self.X is not None and len(self.X) >= MAX_POINTS)

    def add(self, X, y, source=None) -> None:
        """Keep points from one batch (`source`: the batch object; the same one again, a
        full-batch run's every step, adds nothing)."""
        if self.full or (source is not None and source is self._last):
            return
        self._last = source
        X = np.asarray(X, dtype=float)
        y = np.asarray(y)
        if X.ndim == 1:
            X = X.reshape(-1, 1)
        self.shape = X.shape[1:]
        n = min(len(X), len(y))
        if len(X) > MAX_POINTS and self.X is None:
            keep = np.linspace(0, n - 1, MAX_POINTS).astype(int)   # evenly through the set
            X, y = X[keep], y[keep]
        else:
            room = MAX_POINTS - (0 if self.X is None else len(self.X))
            X, y = X[:min(n, room)], y[:min(n, room)]
        flat_X = X.reshape(len(X), -1)
        self.X = flat_X if self.X is None else np.concatenate([self.X, flat_X])
        self.y = y if self.y is None else np.concatenate([self.y, y])


def labels_of(y: np.ndarray):
    """The targets as class indices with their label values ([n] ints, values), or None when the
    targets are numbers rather than classes (one-hot rows count as classes)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        if np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1):
            return y.argmax(axis=1), np.arange(y.shape[1])
        return None
    flat = y.reshape(len(y), -1)[:, 0] if y.ndim > 1 else y
    if flat.dtype.kind == "f" and not np.all(np.isfinite(flat) & (flat == np.round(flat))):
        return None
    values, index = np.unique(flat, return_inverse=True)
    if len(values) < 2 or len(values) > MAX_CLASSES:
        return None
    return index.astype(int), values


def read_classes(out: np.ndarray, values: np.ndarray, ends_in: str | None):
    """(predicted class index, its probability, how the output was read) for outputs `out`
    ([n, k]), given the label values and the model's last activation ('sigmoid', 'softmax'...)."""
    out = np.asarray(out, dtype=float).reshape(len(out), -1)
    k = out.shape[1]
    if k == 1:
        z = out[:, 0]
        a, b = float(values[0]), float(values[-1])
        if len(values) == 2 and (a, b) == (0.0, 1.0):
            if ends_in == "sigmoid":
                p, how = np.clip(z, 0, 1), "the model ends in a sigmoid: its output is p(class 1); boundary at 0.5"
            else:
                with np.errstate(over="ignore"):
                    p = 1.0 / (1.0 + np.exp(-z))
                how = "the output is a logit z: p(class 1) = σ(z); boundary where z = 0"
        elif len(values) == 2:
            p = np.clip((z - a) / (b - a), 0, 1)
            how = f"the output on the labels' scale: class {b:g} where it passes {(a + b) / 2:g}"
        else:
            return None, None, (f"one output for {len(values)} classes: the view needs one output per class, "
                                "or one for two classes")
        predicted = (p > 0.5).astype(int)
        return predicted, np.where(predicted == 1, p, 1 - p), how
    if ends_in == "softmax":
        p, how = np.clip(out, 0, 1), "the model ends in a softmax: its outputs are the class probabilities"
    else:
        shifted = out - out.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        p = e / e.sum(axis=1, keepdims=True)
        how = f"the {k} outputs are logits: p = softmax(z), the class with the largest z"
    predicted = p.argmax(axis=1)
    return predicted, p[np.arange(len(p)), predicted], how


def _span(values: np.ndarray) -> tuple:
    lo, hi = float(values.min()), float(values.max())
    pad = MARGIN * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


def plane(X: np.ndarray, columns: int = GRID_COLUMNS):
    """The grid's cell centres as [rows·columns, 2] inputs, row by row from the top (the largest
    second feature first), its rows (square cells: as many as the ranges' proportions give), and
    the two ranges."""
    x_range, y_range = _span(X[:, 0]), _span(X[:, 1])
    ratio = (y_range[1] - y_range[0]) / (x_range[1] - x_range[0])
    rows = int(min(max(round(columns * ratio), GRID_ROWS[0]), GRID_ROWS[1]))
    xs = x_range[0] + (np.arange(columns) + 0.5) * (x_range[1] - x_range[0]) / columns
    ys = y_range[1] - (np.arange(rows) + 0.5) * (y_range[1] - y_range[0]) / rows
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1), rows, x_range, y_range


def none(step: int, why: str) -> DataView:
    return DataView(step=step, kind="none", note=why)


def measure(step: int, points: Points, predict, ends_in: str | None) -> DataView:
    """The data view at `step`: `predict(X)` gives the model's outputs for host inputs X."""
    if points.X is None:
        return none(step, "no training points seen yet: they are taken from the batches as the run trains")
    X, y = points.X, points.y
    d = X.shape[1]
    if d not in (1, 2) or len(points.shape) != 1:
        shape = "×".join(map(str, points.shape))
        what = f"{d:,} features" if len(points.shape) == 1 else f"shape {shape} ({d:,} numbers each)"
        return none(step, f"the inputs have {what}: the data view draws inputs with one feature "
                          "(a fitted curve) or two (the classes over the plane)")
    classes = labels_of(y)
    if d == 2:
        grid, rows, x_range, y_range = plane(X)
        if classes is None:
            return _surface(step, X, y, grid, rows, x_range, y_range, predict)
        index, values = classes
        outputs = predict(np.concatenate([grid, X]))
        predicted, confidence, how = read_classes(outputs, values, ends_in)
        if predicted is None:
            return none(step, how)
        cells = len(grid)
        return DataView(step=step, kind="classes", note=how, x_range=x_range, y_range=y_range,
                        columns=GRID_COLUMNS, rows=rows, classes=max(len(values), 2),
                        class_names=tuple(f"{v:g}" for v in values),
                        predicted=tuple(predicted[:cells].tolist()),
                        confidence=tuple(np.round(confidence[:cells], 3).tolist()),
                        points=tuple(map(tuple, X.tolist())), labels=tuple(index.tolist()),
                        accuracy=float(np.mean(predicted[cells:] == index)))
    target = np.asarray(y, dtype=float).reshape(len(y), -1)
    if target.shape[1] != 1 or classes is not None:
        what = "class labels" if classes is not None else f"{target.shape[1]} numbers"
        return none(step, f"the input has one feature but the targets are {what}: the view draws a 1-D "
                          "input's fitted curve for one numeric target")
    x_range = _span(X[:, 0])
    xs = np.linspace(x_range[0], x_range[1], CURVE_POINTS)
    outputs = np.asarray(predict(np.concatenate([xs, X[:, 0]]).reshape(-1, 1)), dtype=float)
    outputs = outputs.reshape(len(outputs), -1)
    if outputs.shape[1] != 1:
        return none(step, f"the model has {outputs.shape[1]} outputs for one target: no single curve to draw")
    curve, fitted = outputs[:CURVE_POINTS, 0], outputs[CURVE_POINTS:, 0]
    shown = np.concatenate([target[:, 0], curve[np.isfinite(curve)]])
    return DataView(step=step, kind="curve", note="the model's output along the input's range",
                    x_range=x_range, y_range=_span(shown), columns=CURVE_POINTS,
                    values=tuple(np.round(curve, 6).tolist()),
                    points=tuple(zip(X[:, 0].tolist(), target[:, 0].tolist())),
                    fit=float(np.mean((fitted - target[:, 0]) ** 2)))


def _surface(step, X, y, grid, rows, x_range, y_range, predict) -> DataView:
    """Two features and a numeric target: the model's output over the plane (its fitted surface)."""
    target = np.asarray(y, dtype=float).reshape(len(y), -1)
    if target.shape[1] != 1:
        return none(step, f"the inputs have two features and the targets {target.shape[1]} numbers each: "
                          "the view draws classes, or one numeric target")
    outputs = np.asarray(predict(np.concatenate([grid, X])), dtype=float).reshape(len(grid) + len(X), -1)
    if outputs.shape[1] != 1:
        return none(step, f"the model has {outputs.shape[1]} outputs for one target: no single surface to draw")
    cells, fitted = outputs[:len(grid), 0], outputs[len(grid):, 0]
    return DataView(step=step, kind="surface", note="the model's output over the inputs' plane (colour: its value)",
                    x_range=x_range, y_range=y_range, columns=GRID_COLUMNS, rows=rows,
                    values=tuple(np.round(cells, 6).tolist()), points=tuple(map(tuple, X.tolist())),
                    targets=tuple(target[:, 0].tolist()), fit=float(np.mean((fitted - target[:, 0]) ** 2)))
