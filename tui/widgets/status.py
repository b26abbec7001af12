"""The two-line header: which model, and where training stands."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ..format import num

STATE_STYLE = {"running": "bold green", "paused": "bold yellow", "finished": "bold cyan",
               "stopped": "bold red", "starting": "bold"}


def status_text(state) -> Text:
    """Line 1: model name and description; line 2: state, step, epoch, loss, lr, regulariser, speed."""
    model = state.model or {}
    snap = state.snapshot
    title = Text()
    title.append("calcml ", style="bold magenta")
    title.append(model.get("name", "…"), style="bold")
    description = (model.get("description") or "").split("\n")[0]
    if description:
        title.append(" — " + description, style="dim")

    line = Text()
    label = state.state.upper()
    stop = state.stop
    if stop and state.state == "stopped":
        label += f" ({stop['reason']})"
    if snap is not None and snap.hit is not None and state.state == "paused":
        label += " at breakpoint"
    line.append(f" {label} ", style=STATE_STYLE.get(state.state, "bold") + " reverse")
    if snap is not None:
        line.append(f"  step {snap.step}")
        line.append(f"  epoch {snap.epoch}")
        line.append("  loss ")
        line.append(num(snap.loss, 4), style="bold")
        if snap.val_loss is not None:
            line.append(f"  val {num(snap.val_loss, 4)}")
        line.append(f"  lr {num(snap.lr)}")
        kind, lam = snap.regularizer
        if kind != "none":
            line.append(f"  {kind} λ={num(lam)}")
        if state.state == "running":
            line.append(f"  {snap.steps_per_sec:.0f} steps/s", style="dim")
    return Text("\n").join([title, line])


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: 2; background: $panel; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def show(self, state) -> None:
        self.update(status_text(state))
