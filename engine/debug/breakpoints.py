"""Breakpoints: pause when a warning starts, at a step, every N steps, or when a condition holds.

Conditions are small expressions over the step's statistics, parsed with `ast` and evaluated
by walking the tree (never `eval`), e.g.

    loss > 2
    grad_norm("0.weight") < 1e-6 and step > 100
    dead_fraction("1") >= 0.5

A condition is refused when it is written (BreakpointError, saying why) rather than failing while
training runs: it must be at most MAX_CHARS characters, MAX_NODES parts and MAX_DEPTH levels of
nesting, and each function must be given the arguments it takes. Once accepted, checking it never
raises: a value that cannot be worked out means the condition does not hold.
"""
from __future__ import annotations

import ast
import math
import operator
import re
import warnings
from dataclasses import dataclass

from .diagnostics import KINDS


class BreakpointError(ValueError):
    """A breakpoint that cannot be understood: the message says why and what is accepted."""


VARIABLES = ("loss", "val_loss", "step", "epoch", "lr", "lambda_max", "lr_edge")
PARAM_FUNCTIONS = ("grad_norm", "penalty_grad_norm", "total_grad_norm", "weight_norm", "update_norm",
                   "update_ratio", "sparsity", "effective_lr", "hessian_diag")
DETAIL_FUNCTIONS = ("weight_norm", "update_norm", "update_ratio", "sparsity", "effective_lr")  # passes over every weight
LAYER_FUNCTIONS = ("grad_in_norm", "grad_out_norm", "grad_ratio", "mean_local_derivative",
                   "dead_fraction", "saturated_fraction")
HELP = (f"a warning kind ({', '.join(KINDS)}), 'step N', 'every N', or a condition such as "
        f"'loss > 2' or 'grad_norm(\"0.weight\") < 1e-6' using {', '.join(VARIABLES)} and "
        f"{', '.join(PARAM_FUNCTIONS + LAYER_FUNCTIONS)}(name), abs, min, max")

_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Eq: operator.eq, ast.NotEq: operator.ne}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow, ast.Mod: operator.mod}
_HELPERS = {"abs": abs, "min": min, "max": max}

# Limits on a condition, checked when it is written. A real condition is a few comparisons joined by
# and/or: `grad_norm("encoder.layers.11.attention.q_proj.weight") < 1e-6 and step > 100` is 76
# characters, 9 parts and 4 levels deep. The character limit also keeps Python's own parser safe:
# the deepest nesting 500 characters can spell is 499 unary minuses, and ast.parse builds about
# 3,000 levels (fewer, three for each frame already on the caller's stack: 499 still fit with 800
# frames there). Each level of nesting is a level of recursion when the condition is checked; a
# chain such as a + b + c nests one level per term.
MAX_CHARS = 500
MAX_NODES = 200
MAX_DEPTH = 30
_WHAT = {"Lambda": "lambda", "Attribute": "attribute access (.)", "Subscript": "indexing ([])",
         "JoinedStr": "an f-string", "FormattedValue": "an f-string", "NamedExpr": "assignment (:=)",
         "ListComp": "a comprehension", "SetComp": "a comprehension", "DictComp": "a comprehension",
         "GeneratorExp": "a comprehension", "IfExp": "if/else", "List": "a list", "Tuple": "a tuple",
         "Set": "a set", "Dict": "a dict", "Starred": "'*'", "keyword": "a keyword argument",
         "FloorDiv": "'//'", "MatMult": "'@'", "LShift": "'<<'", "RShift": "'>>'", "BitAnd": "'&'",
         "BitOr": "'|'", "BitXor": "'^'", "Invert": "'~'", "Is": "'is'", "IsNot": "'is not'", "In": "'in'",
         "NotIn": "'not in'", "Await": "'await'", "Yield": "'yield'", "YieldFrom": "'yield'"}
_LEAVES = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)
_BIG = 1 << 10_000  # arithmetic on integers bigger than this (3,000 digits) gives NaN, not a slow exact result


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


def parse(text: str, id: int = 0, params=(), layers=()) -> Breakpoint:
    """Read a breakpoint; `params` and `layers` (names), when given, are checked against the model."""
    text = " ".join(str(text).split())
    if not text:
        raise BreakpointError(f"empty breakpoint; give {HELP}")
    if len(text) > MAX_CHARS:
        raise BreakpointError(f"{text[:40]!r}... is {len(text):,} characters long; a breakpoint may be "
                              f"at most {MAX_CHARS}")
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
        with warnings.catch_warnings():   # "1and", "\d": no warning on stderr, which shows as the model's output
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        if "null bytes" in str(error.msg):
            where = "it contains a null byte"
        elif "too many nested parentheses" in str(error.msg):
            where = "too many nested parentheses"
        else:
            where = (f"at column {error.offset}" if error.offset and error.offset <= len(text)
                     else "it is incomplete")
        raise BreakpointError(f"{text!r} does not parse ({where}): give {HELP}") from None
    except (ValueError, RecursionError, MemoryError):   # null bytes (older Pythons), nesting beyond the parser
        raise BreakpointError(f"{text!r} does not parse (it is nested too deeply or contains a null "
                              f"byte): give {HELP}") from None
    _check_size(tree.body, text)
    _check(tree.body, text, dict.fromkeys(params), dict.fromkeys(layers))   # (ordered: refusals list them as the model has them)
    return Breakpoint(id, "condition", text, tree.body)


def _check_size(node, text: str) -> None:
    """Refuse a condition with more than MAX_NODES parts or nested more than MAX_DEPTH deep
    (counted with a stack of its own, not recursion)."""
    count, stack = 0, [(node, 1)]
    while stack:
        sub, depth = stack.pop()
        if isinstance(sub, ast.expr):   # what is not an expression (a keyword, a lambda's arguments) is walked too
            count += 1
            if count > MAX_NODES:
                raise BreakpointError(f"{text!r} is too long: a condition may have at most {MAX_NODES} parts "
                                      f"(names, numbers, operations, calls)")
            if depth > MAX_DEPTH:
                raise BreakpointError(f"{text!r} is nested too deeply: at most {MAX_DEPTH} levels (each not, "
                                      f"-, call, and each term of a chain such as a + b + c is one level)")
        stack.extend((child, depth + isinstance(child, ast.expr)) for child in ast.iter_child_nodes(sub)
                     if not isinstance(child, _LEAVES))


def _check(node, text: str, params: dict, layers: dict) -> None:
    """Allow only comparisons, arithmetic, and/or/not, numbers, known names and functions, each
    function with the arguments it takes."""
    calls = [c for c in ast.walk(node) if isinstance(c, ast.Call)]
    names = {id(c.args[0]) for c in calls if c.args and isinstance(c.func, ast.Name)
             and c.func.id in PARAM_FUNCTIONS + LAYER_FUNCTIONS}
    called = {id(c.func) for c in calls}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            name = sub.func.id if isinstance(sub.func, ast.Name) else None
            if name in _HELPERS:
                if sub.keywords or any(isinstance(a, ast.Starred) for a in sub.args):
                    raise BreakpointError(f"{text!r}: {name}() takes plain arguments, without keywords or *")
                if name == "abs" and len(sub.args) != 1:
                    raise BreakpointError(f"{text!r}: abs() takes exactly one argument, e.g. abs(loss - 1)")
                if name != "abs" and len(sub.args) < 2:
                    raise BreakpointError(f"{text!r}: {name}() takes at least two arguments, "
                                          f"e.g. {name}(loss, val_loss)")
                continue
            if name not in PARAM_FUNCTIONS + LAYER_FUNCTIONS:
                raise BreakpointError(f"{text!r}: unknown function {ast.unparse(sub.func)!r}; give {HELP}")
            if len(sub.args) != 1 or sub.keywords or not (
                    isinstance(sub.args[0], ast.Constant) and isinstance(sub.args[0].value, str)):
                raise BreakpointError(f"{text!r}: {name}() takes one quoted name, e.g. {name}(\"0\")")
            arg = sub.args[0].value
            known = params if name in PARAM_FUNCTIONS else layers
            if known and arg not in known:
                what = "parameter" if name in PARAM_FUNCTIONS else "layer"
                raise BreakpointError(f"{text!r}: no {what} named {arg!r}; "
                                      f"{what}s are: {', '.join(known)}")   # (in the model's order)
        elif isinstance(sub, ast.Name):
            if sub.id in PARAM_FUNCTIONS + LAYER_FUNCTIONS + tuple(_HELPERS):
                if id(sub) not in called:
                    example = "abs(loss - 1)" if sub.id in _HELPERS else f'{sub.id}("0")'
                    raise BreakpointError(f"{text!r}: {sub.id} is a function; call it, e.g. {example}")
            elif sub.id not in VARIABLES:
                raise BreakpointError(f"{text!r}: unknown name {sub.id!r}; give {HELP}")
        elif isinstance(sub, ast.Constant):
            if isinstance(sub.value, str) and id(sub) not in names:
                raise BreakpointError(f"{text!r}: a quoted name is only for the per-parameter and per-layer "
                                      f"functions, e.g. grad_norm(\"0.weight\")")
            if not isinstance(sub.value, (int, float, str)) or isinstance(sub.value, bool):
                raise BreakpointError(f"{text!r}: only numbers, and quoted names inside a function, "
                                      f"are allowed")
        elif not isinstance(sub, (ast.Compare, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
                                  ast.UAdd, ast.BinOp, ast.Load, *_COMPARE, *_BINARY)):
            what = _WHAT.get(type(sub).__name__, type(sub).__name__)
            raise BreakpointError(f"{text!r}: {what} is not allowed in a condition; give {HELP}")


def evaluate(node, env) -> object:
    """The value of a checked condition, or of a part of one; `env` answers variables and functions
    (missing -> NaN). Never raises: a value that cannot be worked out (an error in the arithmetic,
    or something the env answered that is not a number) is NaN."""
    try:
        return _evaluate(node, env)
    except Exception:
        return math.nan


def holds(node, env) -> bool:
    """Whether a checked condition holds. Never raises: it does not hold when its value cannot be
    worked out, or is NaN."""
    try:
        value = _evaluate(node, env)
        return bool(value) and bool(value == value)
    except Exception:
        return False


def _number(x):
    """An integer bigger than _BIG as a float (OverflowError, so NaN), so that arithmetic stays cheap
    whatever the env answers: no literal a condition can hold is that big."""
    if isinstance(x, int) and not -_BIG < x < _BIG:
        return float(x)
    return x


def _evaluate(node, env) -> object:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env.variable(node.id)
    if isinstance(node, ast.Call):
        args = [_evaluate(a, env) for a in node.args]
        if node.func.id in _HELPERS:
            return _HELPERS[node.func.id](*args)
        return env.function(node.func.id, args[0])
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, env)
        return (not value) if isinstance(node.op, ast.Not) else (-value if isinstance(node.op, ast.USub) else +value)
    if isinstance(node, ast.BoolOp):
        values = (_evaluate(v, env) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, env), _evaluate(node.right, env)
        try:
            left, right = _number(left), _number(right)
            if isinstance(node.op, ast.Pow):  # in floats, 9**9**9 overflows at once instead of running for minutes
                left, right = float(left), float(right)
            value = _BINARY[type(node.op)](left, right)
        except (ZeroDivisionError, OverflowError):
            return math.nan
        return math.nan if isinstance(value, complex) else value   # (-8) ** 0.5
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, env)
        for op, right_node in zip(node.ops, node.comparators):
            right = _evaluate(right_node, env)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    raise BreakpointError(f"cannot evaluate {type(node).__name__}")


class Breakpoints:
    """The breakpoints of a session, checked after every step."""

    def __init__(self):
        self._items: dict[int, Breakpoint] = {}
        self._next_id = 1
        # A condition reads a weight's norm, update or sparsity: the session measures those every
        # step (they are otherwise measured every few), so that the condition sees every step's.
        self.reads_detail = False

    def add(self, text: str, params=(), layers=()) -> Breakpoint:
        bp = parse(text, self._next_id, params, layers)
        self._items[bp.id] = bp
        self._next_id += 1
        self._reread()
        return bp

    def adopt(self, old: "Breakpoints", params=(), layers=()) -> list:
        """Take `old`'s breakpoints, ids and all, checked against this model's names (a model
        file edited before a restart may have lost some); the texts of those refused."""
        refused = []
        for bp in old:
            try:
                self._items[bp.id] = parse(bp.text, bp.id, params, layers)
            except BreakpointError:
                refused.append(bp.text)
        self._next_id = max(self._next_id, old._next_id)
        self._reread()
        return refused

    def remove(self, bp_id: int) -> bool:
        removed = self._items.pop(bp_id, None) is not None
        self._reread()
        return removed

    def _reread(self) -> None:
        self.reads_detail = any(
            isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in DETAIL_FUNCTIONS
            for bp in list(self._items.values()) if bp.kind == "condition" for node in ast.walk(bp.value))

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
            if bp.kind == "condition" and holds(bp.value, env):
                try:
                    values = f" ({env.explain(bp.value)})"
                except Exception:   # the values could not be shown; the hit still stands
                    values = ""
                return Hit(bp, step, f"{bp.text} holds{values}")
        return None
