"""An unmodified PyTorch training script, run as `python train.py ARGS` would run it, and
watched from its first optimiser step (`calcml-debug train.py -- ARGS`).

PyTorch's global hooks say what the script trains without any change to it: while the script
runs, a module hook notes which modules are called at the top level (a model's own forward,
not its layers), and an optimiser hook fires at the first `optimizer.step()` of any optimiser:
the model is the top-level module holding most of that optimiser's parameters. From there a
`Watch` observes it (watch.py); that first step itself trains unobserved, since its forward
pass ran before the model's hooks were there. A script that calls `calcml.watch` itself is
left to it. Once attached, the global hooks are removed.
"""
from __future__ import annotations

import os
import runpy
import sys
import weakref

import torch
import torch.optim.optimizer as _optimizer_hooks   # the global optimiser hooks live here

from .loader import docstring, is_script, user_traceback  # noqa: F401  (the two kinds of file, told apart)
from .watch import Watch, _watching

class Attach:
    """The global hooks that find the model at the script's first optimiser step; `on_attach`
    gets the Watch made there (on the script's thread)."""

    def __init__(self, on_attach, **watch_options):
        self.on_attach = on_attach
        self.options = watch_options
        self.watch: Watch | None = None
        self._roots: list = []        # weak references to the modules called at the top level, newest last
        self._depth = 0
        self._handles = [
            torch.nn.modules.module.register_module_forward_pre_hook(self._enter),
            torch.nn.modules.module.register_module_forward_hook(self._leave, always_call=True),
            _optimizer_hooks.register_optimizer_step_pre_hook(self._first_step),
        ]

    def _enter(self, module, args) -> None:
        if self._depth == 0 and not any(r() is module for r in self._roots):
            self._roots.append(weakref.ref(module))
            del self._roots[:-16]
        self._depth += 1

    def _leave(self, module, args, output) -> None:   # returns None: the output is left alone
        self._depth = max(0, self._depth - 1)

    def _first_step(self, optimizer, args, kwargs) -> None:
        if self.watch is not None or any(w.backend.optimizer is optimizer for w in _watching):
            return   # attached already, or the script watches this optimiser itself
        model = self._model_of(optimizer)
        if model is None:
            return
        self.remove()
        self.watch = Watch(model, optimizer, mid_step=True, **self.options)
        self.on_attach(self.watch)

    def _model_of(self, optimizer):
        training = {id(p) for group in optimizer.param_groups for p in group["params"]}
        best, best_count = None, 0
        for ref in self._roots:
            module = ref()
            if module is None:
                continue
            count = sum(1 for p in module.parameters() if id(p) in training)
            if count > best_count:
                best, best_count = module, count
        return best

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class EndScript(BaseException):
    """Raised inside the script, at an optimiser step, to end it once the run is over (a
    BaseException, so the script's own `except Exception` does not catch it)."""


class ScriptEnded(Exception):
    """The script failed (`detail` says how, with its own frames) or trained nothing."""

    def __init__(self, detail: str, trained: bool):
        super().__init__(detail)
        self.detail, self.trained = detail, trained


def run_script(path: str, args: list, attach: Attach) -> None:
    """Run the script as `python path args` would (its folder first on sys.path, `__name__ ==
    "__main__"`, sys.argv set), in this thread. Returns when it ends normally (a sys.exit(0)
    included); raises ScriptEnded when it fails, with what the person needs to read."""
    folder = os.path.dirname(os.path.abspath(path))
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [path, *args]
    sys.path.insert(0, folder)
    try:
        runpy.run_path(path, run_name="__main__")
    except EndScript:
        pass
    except SystemExit as error:
        if error.code not in (None, 0):
            raise ScriptEnded(f"the script exited with status {error.code!r}", attach.watch is not None) from None
    except KeyboardInterrupt:
        raise
    except BaseException as error:   # the script's own failure: its frames, not ours
        raise ScriptEnded(user_traceback(error, path), attach.watch is not None) from None
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        attach.remove()
    if attach.watch is None:
        raise ScriptEnded(f"{path} ran to its end without an optimizer.step() of a torch.optim optimiser on a "
                          "model it called: there was no training to watch. (For a model file, define "
                          "model, loss and data at top level.)", False)
