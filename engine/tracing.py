"""Opt-in recording of one forward and backward pass, op by op.

    with cm.trace() as t:
        loss = loss_fn(model(x), y)
        loss.backward()
    for event in t:          # forward ops in order, then backward ops in the order they ran
        print(event)

The trace keeps references to the arrays the engine made anyway, never copies. When no
trace is active the engine pays one attribute lookup per op.

Values are called t0, t1, ... (a parameter by its name): a letter, so that a value is never read
as an op's number (#4 is the fifth op; t4 the fifth value). A library function (a loss, a
composite such as log_softmax) can give the ops it runs names that show its formula with
`name(tensor, '(ŷ − y)²')`; the step-into view shows them beside the primitive's own name.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .scope import scope_name

active = None  # the Trace being recorded, if any


def _type_name(module):
    return type(module).__name__ if module is not None else None


@dataclass
class ForwardOp:
    """One op of the forward pass: `output = op(inputs)`."""
    index: int
    id: int                    # value id of the output
    op: str
    scope: str                 # dotted module name, e.g. 'layers.2' ('' at top level)
    module_type: str | None    # e.g. 'Linear'
    inputs: tuple              # value ids of the inputs
    output: object             # the output Tensor (a reference)
    formulas: tuple            # d(output)/d(input_i), as text

    kind = "forward"

    @property
    def value(self) -> np.ndarray:
        return self.output.data

    def __repr__(self) -> str:
        where = f" [{self.scope}]" if self.scope else ""
        args = ", ".join(f"t{i}" for i in self.inputs)
        return f"t{self.id} = {self.op}({args}){where} shape={self.value.shape}"


@dataclass
class BackwardOp:
    """The chain rule at one op: each input's gradient = upstream (dL/d output) times its local factor."""
    index: int
    id: int                    # value id of the op's output
    op: str
    scope: str
    module_type: str | None
    inputs: tuple              # value ids of the inputs
    upstream: np.ndarray       # dL/d(output)
    formulas: tuple
    factors: list = field(default_factory=list)   # per input: local derivative (array/number) or None
    grads: list = field(default_factory=list)     # per input: gradient passed on, or None (not needed)
    elementwise: bool = False

    kind = "backward"

    def add_input(self, i: int, factor, grad) -> None:
        # An elementwise partial of None means the factor is exactly 1 (add, sub's first input).
        self.factors[i] = 1.0 if (factor is None and self.elementwise) else _data(factor)
        self.grads[i] = _data(grad)

    def __repr__(self) -> str:
        where = f" [{self.scope}]" if self.scope else ""
        sent = ", ".join(f"t{i}" for i, g in zip(self.inputs, self.grads) if g is not None)
        return f"d/dt{self.id} {self.op}{where} -> {sent}"


class Trace:
    """The ops of one training iteration: `forward`, `backward`, and the values they touched."""

    def __init__(self):
        self.forward: list[ForwardOp] = []
        self.backward: list[BackwardOp] = []
        self.values: dict[int, object] = {}   # value id -> Tensor (keeps them alive)
        self.leaves: dict[int, object] = {}   # value ids of inputs no recorded op produced
        self.names: dict[int, str] = {}       # value id -> the name a library function gave its op
        self._ids: dict[int, int] = {}
        self._previous = None

    # -- recording (called by the engine) ------------------------------------------
    def value_id(self, tensor) -> int:
        key = id(tensor)
        vid = self._ids.get(key)
        if vid is None:
            vid = len(self.values)
            self._ids[key] = vid
            self.values[vid] = tensor
            if tensor._op is None:
                self.leaves[vid] = tensor
        return vid

    def record_forward(self, op, inputs, attrs, result, module) -> None:
        input_ids = tuple(self.value_id(t) for t in inputs)
        self.forward.append(ForwardOp(
            index=len(self.forward), id=self.value_id(result), op=op.name, scope=scope_name(module),
            module_type=_type_name(module), inputs=input_ids, output=result, formulas=op.formulas))

    def begin_backward(self, node, upstream) -> BackwardOp:
        inputs = node._inputs
        n = len(inputs)
        return BackwardOp(
            index=len(self.backward), id=self.value_id(node), op=node._op.name,
            scope=scope_name(node._module), module_type=_type_name(node._module),
            inputs=tuple(self.value_id(t) for t in inputs), upstream=_data(upstream),
            formulas=node._op.formulas, factors=[None] * n, grads=[None] * n,
            elementwise=node._op.elementwise)

    def end_backward(self, record: BackwardOp) -> None:
        self.backward.append(record)

    # -- reading ---------------------------------------------------------------------
    def __iter__(self):
        yield from self.forward
        yield from self.backward

    def __len__(self) -> int:
        return len(self.forward) + len(self.backward)

    def __getitem__(self, k):
        return list(self)[k]

    def value(self, vid: int) -> np.ndarray:
        return self.values[vid].data

    def label(self, vid: int) -> str:
        """A name for a value: the tensor's name if it has one (e.g. 'layers.0.weight'), else t<id>."""
        name = getattr(self.values[vid], "name", None)
        return name or f"t{vid}"

    def ops_in(self, scope: str) -> list:
        """Forward ops recorded inside a module (or its children)."""
        return [r for r in self.forward if r.scope == scope or r.scope.startswith(scope + ".")]

    # -- context manager ---------------------------------------------------------------
    def __enter__(self) -> "Trace":
        global active
        self._previous, active = active, self
        return self

    def __exit__(self, *exc) -> bool:
        global active
        active = self._previous
        return False


def name(tensor, text: str):
    """Name the op that made `tensor` (e.g. '(ŷ − y)²') in the trace being recorded, if one is;
    returns `tensor`. Costs one lookup when nothing is recorded."""
    if active is not None and hasattr(tensor, "_op"):
        active.names[active.value_id(tensor)] = text
    return tensor


def _data(x):
    return x.data if hasattr(x, "_op") else x


def trace() -> Trace:
    """Start recording: `with cm.trace() as t: ...`."""
    return Trace()
