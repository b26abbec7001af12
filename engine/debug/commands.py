"""What a person can tell a running session, declared once.

Each command is a msgspec struct: its tag is its name on the wire ({"cmd": "step", "n": 3}), its
fields are its arguments with their types (checked when a frame is decoded), and `check()` says
what a value must be beyond its type (a learning rate above 0), with a message a person can act
on. The session queues these structs, the worker decodes them from the interface, and the
interface's backend builds them: the three speak the same vocabulary.
"""
from __future__ import annotations

import math
from typing import Annotated, Union

import msgspec
from msgspec import Meta, Struct

MAX_STEPS = 10**9          # the most steps one command may ask for
_INT64 = 2**63 - 1
Int = Annotated[int, Meta(ge=-_INT64 - 1, le=_INT64)]


class Command(Struct, tag_field="cmd"):
    def check(self) -> None:
        """Raise ValueError if an argument is out of range (its type is already right)."""


class Run(Command, tag="run"):
    pass


class Pause(Command, tag="pause"):
    pass


class Step(Command, tag="step"):
    n: Annotated[int, Meta(ge=1, le=MAX_STEPS)] = 1

    def check(self) -> None:
        if self.n < 1:
            raise ValueError(f"step(n) needs n >= 1, got {self.n}")
        if self.n > MAX_STEPS:
            raise ValueError(f"step(n) takes at most {MAX_STEPS:,} steps at a time, got {self.n}")


class TrainOn(Command, tag="train_on"):
    """A finished run trains `n` more steps (running): its end moves on, and nothing else changes."""
    n: Annotated[int, Meta(ge=1, le=MAX_STEPS)] = 100

    def check(self) -> None:
        if not 1 <= self.n <= MAX_STEPS:
            raise ValueError(f"train on needs 1 to {MAX_STEPS:,} more steps, got {self.n}")


class Restart(Command, tag="restart"):
    """Back to step 0: the model file loaded again with the run's seed, paused, with the lr,
    regulariser and breakpoints the person chose (a training script, whose loop is its own, is
    refused)."""


class StepInto(Command, tag="step_into"):
    """One training iteration recorded op by op (the trace is in the next snapshot)."""


class SetLr(Command, tag="lr"):
    value: float

    def check(self) -> None:
        if not (self.value > 0 and math.isfinite(self.value)):
            raise ValueError(f"the learning rate must be a positive number, got {self.value}")


class ScaleLr(Command, tag="lr_scale"):
    """Multiply the learning rate by `factor` when applied (two quick presses of a key halve it
    twice, whatever the last snapshot said)."""
    factor: float

    def check(self) -> None:
        if not (self.factor > 0 and math.isfinite(self.factor)):
            raise ValueError(f"the learning-rate factor must be a positive number, got {self.factor}")


class SetRegularizer(Command, tag="reg"):
    kind: str
    lam: Union[float, None] = None     # None: keep the current λ (1e-3 if there is none)

    def check(self) -> None:
        if self.kind_name() not in ("none", "L1", "L2"):
            raise ValueError(f"the regulariser must be none, L1 or L2, not {self.kind.upper()!r}")
        if self.lam is not None and not (self.lam >= 0 and math.isfinite(self.lam)):
            raise ValueError(f"λ must be a number >= 0, got {self.lam}")

    def kind_name(self) -> str:
        return "none" if self.kind.lower() == "none" else self.kind.upper()


class AddBreakpoint(Command, tag="break_add"):
    text: str


class RemoveBreakpoint(Command, tag="break_remove"):
    id: Int


class Stop(Command, tag="stop"):
    pass


class Quit(Command, tag="quit"):
    """End the run: the training side writes its report and leaves."""


Any = Union[Run, Pause, Step, TrainOn, Restart, StepInto, SetLr, ScaleLr, SetRegularizer, AddBreakpoint, RemoveBreakpoint,
            Stop, Quit]
NAMES = {t.__struct_config__.tag: t for t in Any.__args__}


def to_dict(command: Command) -> dict:
    """{"cmd": name, argument: value, ...}, every argument included (defaults too)."""
    out = {"cmd": type(command).__struct_config__.tag}
    for name in command.__struct_fields__:
        out[name] = getattr(command, name)
    return out


def from_dict(data: dict) -> Command:
    """The command a decoded frame names (TypeError/ValueError if it is not one)."""
    try:
        return msgspec.convert(data, Any)
    except msgspec.ValidationError as error:
        raise ValueError(str(error)) from None
