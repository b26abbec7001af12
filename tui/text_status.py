"""The main screen's two-line header, in words: which model, and where training stands."""
from __future__ import annotations

import math
import os
import re

from rich.text import Text

from .format import as_float, num

STATE_STYLE = {"running": "bold green", "paused": "bold yellow", "finished": "bold cyan",
               "stopped": "bold red", "starting": "bold"}


def status_text(state) -> Text:
    """Line 1: model name and description; line 2: state, step, epoch, loss, lr, regulariser, speed."""
    model = state.model or {}
    snap = state.snapshot
    title = Text()
    title.append("calcml ", style="bold magenta")
    replay = getattr(state, "replay_position", None)   # a recording browsed (replay.py)
    if replay:
        title.append(f"{replay} ", style="bold yellow")
    loading = getattr(state, "loading", None)
    if loading and not model:
        title.append(f"loading {os.path.basename(loading)} …", style="bold")
    title.append(model.get("name", "" if loading else "…"), style="bold")
    remote = getattr(state, "remote", None)
    if remote:   # a served run: where, and whether this viewer's keys act on it
        ranks = f" rank {remote.get('rank', 0)}/{remote.get('world')}" if (remote.get("world") or 1) > 1 else ""
        how = "" if remote.get("control") else " · watching only"
        title.append(f"  ⇄ {remote.get('address', '')}{ranks}{how}", style="bold blue")
    description = (model.get("description") or "").split("\n")[0]
    if description:
        title.append(" — " + description, style="dim")

    line = Text()
    label = state.state.upper()
    stop = state.stop
    if stop and state.state == "stopped":
        label += f" ({stop['reason']})"
    why = stop_summary(stop) if stop and state.state == "stopped" else ""
    hit = snap.hit if snap is not None and state.state == "paused" else None
    if hit is not None:
        label += f" at breakpoint {hit.id}"
    line.append(f" {label} ", style=STATE_STYLE.get(state.state, "bold") + " reverse")
    if why:   # what stopped it comes first: it is what a person needs to read
        line.append(f"  {why}", style="bold red")
    if hit is not None:   # which condition, and the values that made it true (as headless says it)
        line.append(f"  {hit.why}", style="bold yellow")
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
            line.append(f"  {rate_text(snap.steps_per_sec)} steps/s", style="dim")
    if getattr(state, "ranks", None):   # attached to one rank of several: the others beside it
        from .ranks import state_spread
        spread = state_spread(state)
        if spread is not None:
            line.append_text(ranks_status(spread))
    bad = getattr(state, "bad_frames", 0)
    if bad:   # the details are in Model output and a crash file
        line.append(f"  ⚠ {bad} malformed message{'s' if bad > 1 else ''} ignored", style="yellow")
    return Text("\n").join([title, line])


def ranks_status(spread) -> Text:
    """'  ranks 2: loss 0.31 … 0.35': the range over the ranks of what each measured on its
    own part of the batch; their steps too when they differ (they should not: they are held
    together), and how many have been heard from when not all."""
    out = Text(f"  ranks {spread.world}: ", style="blue")
    losses = [r.loss for r in spread.ranks]
    lo, hi = min(losses, key=as_float), max(losses, key=as_float)
    out.append(f"loss {num(lo, 4)} … {num(hi, 4)}" if len(losses) > 1 else f"loss {num(lo, 4)}", style="blue")
    if not spread.in_step:
        steps = [r.step for r in spread.ranks]
        out.append(f"  steps {min(steps)} … {max(steps)}", style="yellow")
    if len(spread.ranks) < spread.world:
        out.append(f"  ({len(spread.ranks)} of {spread.world} heard from)", style="dim")
    return out


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def stop_summary(stop: dict) -> str:
    """One line for what stopped the run: for an error, the exception and the innermost of the
    user's frames (file:line, in function); otherwise the detail's first line."""
    detail = (stop.get("detail") or "").strip()
    if not detail:
        return ""
    lines = detail.splitlines()
    if stop.get("reason") in ("error", "internal error"):
        frames = _FRAME.findall(detail)
        where = f" ({os.path.basename(frames[-1][0])}:{frames[-1][1]}, in {frames[-1][2]})" if frames else ""
        return lines[-1].strip() + where
    return lines[0] if stop.get("reason") in ("exited", "disconnected") else ""


def rate_text(rate) -> str:
    """Steps per second as a whole number; through `num` when that would not be short (or is not
    a number: nan, inf)."""
    if rate is None:
        return "-"
    rate = as_float(rate)
    return f"{rate:.0f}" if math.isfinite(rate) and abs(rate) < 1e6 else num(rate)
