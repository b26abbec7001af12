"""What breakpoint conditions can ask about a step: its variables, and functions of a
parameter or a layer (`grad_norm('0.weight')`)."""
from __future__ import annotations

import ast
import math

from .breakpoints import evaluate


class Env:
    def __init__(self, snapshot_values: dict, params: dict, layers: dict):
        self.values, self.params, self.layers = snapshot_values, params, layers

    def variable(self, name):
        value = self.values.get(name)
        return math.nan if value is None else value

    def function(self, name, arg):
        if arg in self.params:
            value = getattr(self.params[arg], name, None)
        else:
            layer = self.layers.get(arg)
            value = getattr(layer, name, None) if layer is not None else None
        return math.nan if value is None else value

    def explain(self, node) -> str:
        parts = []
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in self.values:
                parts.append(f"{sub.id} = {_short(self.variable(sub.id))}")
            elif isinstance(sub, ast.Call) and sub.args and isinstance(sub.args[0], ast.Constant):
                parts.append(f"{ast.unparse(sub)} = {_short(evaluate(sub, self))}")
        return ", ".join(parts)


def _short(x) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)
