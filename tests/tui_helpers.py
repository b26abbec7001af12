"""What the interface tests share: a recorded session to drive, waiting for the app, the screen as text."""
import asyncio
import html
import inspect
import io
import re
import time
from pathlib import Path

from rich.console import Console

from calcml.debug import Session, load_model_file
from calcml.debug.session import SessionConfig
from calcml.tui.backend import LocalBackend

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def local(name: str = "xor_mlp.py", steps: int = 0, **kwargs) -> LocalBackend:
    """An in-process session over a sample model, after `steps` training steps (deterministic)."""
    path = str(SAMPLES / name)
    backend = LocalBackend(Session(load_model_file(path, **kwargs)),
                           rebuild=lambda seed: Session(load_model_file(path, **{**kwargs, "seed": seed})))
    if steps:
        backend.step(steps)
        backend.pump(steps)
    return backend


def backend_with(name: str, steps: int = 0, **config) -> LocalBackend:
    """Like `local`, with a SessionConfig from `config` (e.g. curvature_every=0)."""
    path = str(SAMPLES / name)
    backend = LocalBackend(Session(load_model_file(path), SessionConfig(**config)),
                           rebuild=lambda seed: Session(load_model_file(path, seed=seed), SessionConfig(**config)))
    if steps:
        backend.step(steps)
        backend.pump(steps)
    return backend


def run(coro):
    return asyncio.run(coro)


async def settle(pilot, condition, seconds: float = 10.0, what: str = "") -> None:
    """Let the app take in what it has, then run until condition() holds: the one way tests wait.

    One pause first (the app handles its messages and redraws), then pauses of 0.05 s until
    `condition()` is true. If `seconds` pass first (a busy machine gets that long, no longer) it
    fails with AssertionError naming what it waited for: `what`, or the condition's source.
    """
    deadline = time.monotonic() + seconds
    await pilot.pause()
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"still not true after {seconds:g} s: {what or _source(condition)}")
        await pilot.pause(0.05)


def _source(condition) -> str:
    try:
        return " ".join(inspect.getsource(condition).split())
    except (OSError, TypeError):
        return repr(condition)


def screen_text(app) -> str:
    """What the screen shows, as plain text (from the SVG screenshot)."""
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


def plain(widget, width: int = 200) -> str:
    """A Static's content as plain text, laid out `width` columns wide."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(widget.content)
    return console.export_text()
