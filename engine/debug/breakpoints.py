"""Breakpoints: pause when a warning starts, at a step, every N steps, or when a condition holds.

Conditions are small expressions over the step's statistics, parsed with `ast` and evaluated
by walking the tree (never `eval`), e.g.

    loss > 2
    grad_norm("layers.0.weight") < 1e-6 and step > 100
    dead_fraction("layers.1") >= 0.5
"""
from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass

from .diagnostics import KINDS


class BreakpointError(ValueError):
    """A breakpoint that cannot be understood: the message says why and what is accepted."""


VARIABLES = ("loss", "val_loss", "step", "epoch", "lr", "lambda_max", "lr_edge")
PARAM_FUNCTIONS = ("grad_norm", "penalty_grad_norm", "total_grad_norm", "weight_norm", "update_norm",
                   "update_ratio", "sparsity", "effective_lr", "hessian_diag")
LAYER_FUNCTIONS = ("grad_in_norm", "grad_out_norm", "grad_ratio", "mean_local_derivative",
                   "dead_fraction", "saturated_fraction")
HELP = (f"a warning kind ({', '.join(KINDS)}), 'step N', 'every N', or a condition such as "
        f"'loss > 2' or 'grad_norm(\"layers.0.weight\") < 1e-6' using {', '.join(VARIABLES)} and "
        f"{', '.join(PARAM_FUNCTIONS + LAYER_FUNCTIONS)}(name), abs, min, max")

_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Eq: operator.eq, ast.NotEq: operator.ne}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow, ast.Mod: operator.mod}
_HELPERS = {"abs": abs, "min": min, "max": max}


@dataclass(frozen=True)
class Breakpoint:
    id: int
    kind: str          # 'warning', 'step', 'every', 'condition'
    text: str          # what the user typed, normalised
    value: object = None   # warning kind, step number, period, or the parsed expression

    def describe(self) -> str:
        return {"warning": f"on {self.value}", "step": f"at step {self.value}",
                "every": f"every {self.value} steps"}.get(self.kind, f"when {self.text}")


@dataclass(frozen=True)
class Hit:
    breakpoint: Breakpoint
    step: int
    why: str

    def to_dict(self) -> dict:
        return {"id": self.breakpoint.id, "breakpoint": self.breakpoint.text, "step": self.step, "why": self.why}


def parse(text: str, id: int = 0, params=(), layers=()) -> Breakpoint:
    """Read a breakpoint; `params` and `layers` (names), when given, are checked against the model."""
    text = " ".join(str(text).split())
    if not text:
        raise BreakpointError(f"empty breakpoint; give {HELP}")
    if text in KINDS:
        return Breakpoint(id, "warning", text, text)
    match = re.fullmatch(r"(step|at|every)\s*[= ]\s*(\d+)", text)
    if match:
        n = int(match.group(2))
        if n < 1:
            raise BreakpointError(f"{text!r}: the step count must be at least 1")
        kind = "every" if match.group(1) == "every" else "step"
        return Breakpoint(id, kind, f"{kind} {n}", n)
    if re.fullmatch(r"[a-z_]+", text):
        raise BreakpointError(f"{text!r} is not a warning kind; give {HELP}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        where = (f"at column {error.offset}" if error.offset and error.offset <= len(text)
                 else "it is incomplete")
        raise BreakpointError(f"{text!r} does not parse ({where}): give {HELP}") from None
    _check(tree.body, text, set(params), set(layers))
    return Breakpoint(id, "condition", text, tree.body)


def _check(node, text: str, params: set, layers: set) -> None:
    """Allow only comparisons, arithmetic, and/or/not, numbers, known names and functions."""
    names = {id(c.args[0]) for c in ast.walk(node) if isinstance(c, ast.Call) and c.args}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            name = sub.func.id if isinstance(sub.func, ast.Name) else None
            if name in _HELPERS:
                continue
            if name not in PARAM_FUNCTIONS + LAYER_FUNCTIONS:
                raise BreakpointError(f"{text!r}: unknown function {ast.unparse(sub.func)!r}; give {HELP}")
            if len(sub.args) != 1 or sub.keywords or not (
                    isinstance(sub.args[0], ast.Constant) and isinstance(sub.args[0].value, str)):
                raise BreakpointError(f"{text!r}: {name}() takes one quoted name, e.g. {name}(\"layers.0\")")
            arg = sub.args[0].value
            known = params if name in PARAM_FUNCTIONS else layers
            if known and arg not in known:
                what = "parameter" if name in PARAM_FUNCTIONS else "layer"
                raise BreakpointError(f"{text!r}: no {what} named {arg!r}; "
                                      f"{what}s are: {', '.join(sorted(known))}")
        elif isinstance(sub, ast.Name):
            if sub.id not in VARIABLES and sub.id not in PARAM_FUNCTIONS + LAYER_FUNCTIONS + tuple(_HELPERS):
                raise BreakpointError(f"{text!r}: unknown name {sub.id!r}; give {HELP}")
        elif isinstance(sub, ast.Constant):
            quoted_name = isinstance(sub.value, str) and id(sub) in names
            if not (quoted_name or isinstance(sub.value, (int, float))) or isinstance(sub.value, bool):
                raise BreakpointError(f"{text!r}: only numbers, and quoted names inside a function, "
                                      f"are allowed")
        elif not isinstance(sub, (ast.Compare, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
                                  ast.UAdd, ast.BinOp, ast.Load, *_COMPARE, *_BINARY)):
            raise BreakpointError(f"{text!r}: {type(sub).__name__} is not allowed in a condition; give {HELP}")


def evaluate(node, env) -> object:
    """Evaluate a checked condition; `env` answers variables and functions (missing -> NaN)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env.variable(node.id)
    if isinstance(node, ast.Call):
        args = [evaluate(a, env) for a in node.args]
        if node.func.id in _HELPERS:
            return _HELPERS[node.func.id](*args)
        return env.function(node.func.id, args[0])
    if isinstance(node, ast.UnaryOp):
        value = evaluate(node.operand, env)
        return (not value) if isinstance(node.op, ast.Not) else (-value if isinstance(node.op, ast.USub) else value)
    if isinstance(node, ast.BoolOp):
        values = (evaluate(v, env) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.BinOp):
        try:
            left, right = evaluate(node.left, env), evaluate(node.right, env)
            if isinstance(node.op, ast.Pow):  # in floats, 9**9**9 overflows at once instead of running for minutes
                left, right = float(left), float(right)
            return _BINARY[type(node.op)](left, right)
        except (ZeroDivisionError, OverflowError):
            return math.nan
    if isinstance(node, ast.Compare):
        left = evaluate(node.left, env)
        for op, right_node in zip(node.ops, node.comparators):
            right = evaluate(right_node, env)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    raise BreakpointError(f"cannot evaluate {ast.unparse(node)!r}")


class Breakpoints:
    """The breakpoints of a session, checked after every step."""

    def __init__(self):
        self._items: dict[int, Breakpoint] = {}
        self._next_id = 1

    def add(self, text: str, params=(), layers=()) -> Breakpoint:
        bp = parse(text, self._next_id, params, layers)
        self._items[bp.id] = bp
        self._next_id += 1
        return bp

    def remove(self, bp_id: int) -> bool:
        return self._items.pop(bp_id, None) is not None

    def __iter__(self):
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)

    def check(self, step: int, env, started_kinds: set) -> Hit | None:
        """The first breakpoint that fires at this step, with why."""
        for bp in list(self._items.values()):  # a copy: add/remove may come from another thread
            if bp.kind == "warning" and bp.value in started_kinds:
                return Hit(bp, step, f"warning {bp.value} started")
            if bp.kind == "step" and step == bp.value:
                return Hit(bp, step, f"reached step {step}")
            if bp.kind == "every" and step % bp.value == 0:
                return Hit(bp, step, f"step {step} is a multiple of {bp.value}")
            if bp.kind == "condition":
                try:
                    holds = bool(evaluate(bp.value, env))
                except (TypeError, ValueError):
                    holds = False
                if holds:
                    return Hit(bp, step, f"{bp.text} holds ({env.explain(bp.value)})")
        return None
