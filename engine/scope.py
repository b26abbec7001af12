"""Which module is running: ops record it so errors and traces can say `layers.2 (Linear)`."""
from __future__ import annotations

_stack: list = []
# When set: `args = recorder.enter(module, args)` before each module call (it may hand the module
# a branch of its input, tensor.branch) and `recorder(module, args, output)` after it.
recorder = None


def current_module():
    return _stack[-1] if _stack else None


def outermost_module():
    return _stack[0] if _stack else None


def push(module) -> None:
    _stack.append(module)


def pop() -> None:
    _stack.pop()


def scope_name(module) -> str:
    """Dotted name of a module inside its model ('' for the model itself or for no module)."""
    return getattr(module, "_scope", None) or "" if module is not None else ""


def describe_module(module) -> str:
    """'layers.2 (Linear)', or 'Linear' for an unnamed module, or '' outside any module."""
    if module is None:
        return ""
    kind = type(module).__name__
    name = scope_name(module)
    return f"{name} ({kind})" if name else kind
