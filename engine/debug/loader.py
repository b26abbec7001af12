"""Load a user's model file and check it against the contract, with messages a person can act on.

The contract: top-level `model` (a cm.nn.Module), `loss` (loss(pred, target) -> scalar Tensor) and
`data` ((X, y) arrays, a DataLoader or other re-iterable of batches, an iterator, or a callable
returning one batch per call); optional `optimizer`, `regularizer`, `batch_size`, `val_data`,
`seed`, `steps`. The module docstring is the model's description.
"""
from __future__ import annotations

import ast
import os
import sys
import traceback
import types
from dataclasses import dataclass, field

import numpy as np

from .. import nn, optim
from .. import random as _random
from ..reg import Regularizer
from ..tensor import Tensor

REQUIRED = ("model", "loss", "data")
OPTIONAL = ("optimizer", "regularizer", "batch_size", "val_data", "seed", "steps")
DEFAULT_SEED = 0
DEFAULT_LR = 0.01


class ModelFileError(Exception):
    """A problem with the user's model file: the message says what, where and what to do."""


@dataclass
class ModelSpec:
    path: str
    name: str
    description: str
    model: nn.Module
    loss: object
    data: object
    optimizer: object
    regularizer: Regularizer | None
    batch_size: int | None
    val_data: tuple | None
    seed: int
    steps: int | None
    namespace: dict = field(repr=False, default_factory=dict)


def _literal_seed(source: str) -> int | None:
    """A top-level `seed = <int>` read before the file runs, so it also seeds the initialisation."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "seed" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return None
            return value if isinstance(value, int) and not isinstance(value, bool) else None
    return None


def _syntax_message(path: str, error: SyntaxError) -> str:
    """file:line:column, the message, the line itself and a caret under the column."""
    text = f"{path}:{error.lineno}:{error.offset or 0}: syntax error: {error.msg}"
    line = (error.text or "").rstrip("\n")
    if line:
        text += f"\n    {line}\n    {' ' * max((error.offset or 1) - 1, 0)}^"
    return text


def user_traceback(error: BaseException, path: str) -> str:
    """The traceback of an exception, keeping only frames outside calcml (the user's own code)."""
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if not os.path.abspath(f.filename).startswith(package_dir + os.sep)
              and f.filename != __file__]
    if not frames:
        return f"{type(error).__name__}: {error}"
    lines = ["Traceback (your code, most recent call last):"]
    for f in frames:
        lines.append(f'  File "{f.filename}", line {f.lineno}, in {f.name}')
        if f.line:
            lines.append(f"    {f.line}")
    lines.append(f"{type(error).__name__}: {error}")
    return "\n".join(lines)


def _type_name(value) -> str:
    return type(value).__name__


def load_model_file(path: str, seed: int | None = None, steps: int | None = None) -> ModelSpec:
    """Run the model file in its own namespace (its folder on sys.path) and validate what it defines.

    `seed` (from the command line) overrides the file's `seed`; the engine's generator is seeded
    before the file runs, so initialisation is repeatable.
    """
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such file. Give the path of a Python model file, "
                             "or run calcml-debug without one for the built-in demo.")
    if os.path.isdir(path):
        raise ModelFileError(f"{path}: is a folder, not a model file (a .py file defining model, loss and data)")
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path}: cannot be read: {error}") from None
    try:
        code = compile(source, path, "exec")
    except SyntaxError as error:
        raise ModelFileError(_syntax_message(path, error)) from None

    literal_seed = _literal_seed(source)
    if seed is not None:
        _check_seed(path, "--seed", seed)
    elif literal_seed is not None:
        _check_seed(path, "seed", literal_seed)
    chosen_seed = seed if seed is not None else literal_seed
    chosen_seed = DEFAULT_SEED if chosen_seed is None else chosen_seed
    _random.manual_seed(chosen_seed)
    np.random.seed(chosen_seed % 2**32)  # model files that use numpy's global generator

    name = os.path.splitext(os.path.basename(path))[0]
    module = types.ModuleType(f"calcml_model_{name}")
    module.__file__ = os.path.abspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    before = set(sys.modules)
    sys.path.insert(0, folder)
    sys.modules[module.__name__] = module  # dataclasses, pickle and typing look the module up
    try:
        exec(code, module.__dict__)
    except SystemExit as error:
        raise ModelFileError(f"{path}: the model file called exit({error.code}) while loading") from None
    except Exception as error:  # the user's code failed: show their frames, not ours
        raise ModelFileError(f"{path}: the model file raised an error while loading:\n"
                             + user_traceback(error, path)) from None
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:
            pass
        _forget_neighbours(before, folder)
    if seed is None and "seed" in module.__dict__ and module.__dict__["seed"] is not None:
        file_seed = module.__dict__["seed"]
        _check_seed(path, "seed", file_seed)
        chosen_seed = int(file_seed)  # a computed seed still seeds the batching
    return _validate(path, name, module.__dict__, chosen_seed, steps)


def _check_seed(path: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ModelFileError(f"{path}: {name} must be a whole number >= 0, got {value!r}")


def _forget_neighbours(before: set, folder: str) -> None:
    """Drop the modules this file imported from its own folder, so that another model folder
    with a helper of the same name gets its own, not this one's."""
    prefix = folder + os.sep
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if os.path.abspath(file).startswith(prefix):
            del sys.modules[name]


def _validate(path: str, name: str, ns: dict, seed: int, steps: int | None) -> ModelSpec:
    missing = [n for n in REQUIRED if n not in ns]
    if missing:
        found = [n for n in REQUIRED + OPTIONAL if n in ns]
        raise ModelFileError(
            f"{path}: missing {', '.join(missing)}. A model file must define model (a cm.nn.Module), "
            f"loss (loss(pred, target) -> scalar) and data ((X, y) arrays or batches); "
            f"found: {', '.join(found) if found else 'none of them'}.")
    model = ns["model"]
    if not isinstance(model, nn.Module):
        hint = " (did you forget to instantiate it, e.g. Net() instead of Net?)" if isinstance(model, type) else ""
        raise ModelFileError(f"{path}: model must be a cm.nn.Module, got {_type_name(model)}{hint}")
    loss = ns["loss"]
    if not callable(loss):
        raise ModelFileError(f"{path}: loss must be a function loss(pred, target) returning a scalar, "
                             f"got {_type_name(loss)}")
    data = _check_data(path, ns["data"])

    optimizer = ns.get("optimizer")
    if optimizer is None:
        optimizer = optim.SGD(model.parameters(), lr=DEFAULT_LR)
    elif not isinstance(optimizer, optim.Optimizer):
        raise ModelFileError(f"{path}: optimizer must be a cm.optim optimiser such as "
                             f"cm.optim.SGD(model.parameters(), lr=0.01), got {_type_name(optimizer)}")
    regularizer = ns.get("regularizer")
    if regularizer is not None and not isinstance(regularizer, Regularizer):
        raise ModelFileError(f"{path}: regularizer must be cm.reg.L1(λ), cm.reg.L2(λ) or None, "
                             f"got {_type_name(regularizer)}")
    batch_size = ns.get("batch_size")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ModelFileError(f"{path}: batch_size must be a positive integer or None, got {batch_size!r}")
    val_data = ns.get("val_data")
    if val_data is not None:
        val_data = _check_pair(path, "val_data", val_data)
    file_steps = ns.get("steps")
    if file_steps is not None and (isinstance(file_steps, bool) or not isinstance(file_steps, (int, np.integer))
                                   or file_steps < 1):
        raise ModelFileError(f"{path}: steps must be a positive integer, got {file_steps!r}")
    description = (ns.get("__doc__") or "").strip()
    return ModelSpec(path=path, name=name, description=description, model=model, loss=loss, data=data,
                     optimizer=optimizer, regularizer=regularizer,
                     batch_size=None if batch_size is None else int(batch_size), val_data=val_data,
                     seed=seed, steps=steps if steps is not None else file_steps, namespace=ns)


def _check_pair(path: str, name: str, value):
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise ModelFileError(f"{path}: {name} must be a pair (X, y) of arrays, got {_type_name(value)}")
    try:
        X, y = (v.data if isinstance(v, Tensor) else np.asarray(v) for v in value)
    except ValueError as error:  # ragged lists
        raise ModelFileError(f"{path}: {name}: X and y must be rectangular arrays ({error})") from None
    if X.ndim == 0 or y.ndim == 0:
        raise ModelFileError(f"{path}: {name} must be a pair (X, y) of arrays with one row per sample, "
                             f"got shapes {X.shape} and {y.shape}")
    if X.dtype.kind not in "fiub":
        raise ModelFileError(f"{path}: {name}: X must be numeric, got {X.dtype}")
    if len(X) != len(y):
        raise ModelFileError(f"{path}: {name}: X has {len(X)} samples but y has {len(y)}")
    if len(X) == 0:
        raise ModelFileError(f"{path}: {name} has no samples")
    return X, y


def _is_pair(value) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2


def _check_data(path: str, data):
    # (X, y) arrays; but [(X1, y1), (X2, y2)] is a list of two batches, not a pair.
    if _is_pair(data) and not callable(data[0]) and not _is_pair(data[0]):
        return _check_pair(path, "data", data)
    if callable(data) or hasattr(data, "__iter__"):
        return data
    raise ModelFileError(f"{path}: data must be (X, y) arrays, an iterable of (X, y) batches, or a function "
                         f"returning a batch, got {_type_name(data)}")
