"""`calcml-debug --headless`: train with a progress line, then print the per-layer table and warnings."""
from __future__ import annotations

import sys
import time

from calcml.debug.report import write_report

from .format import layer_rows, LAYER_HEADERS, num

EXIT_OK, EXIT_USAGE = 0, 2


class Progress:
    """One live line on a terminal (rewritten in place); a line a second elsewhere."""

    def __init__(self, stream, total):
        self.stream, self.total = stream, total
        self.tty = stream.isatty()
        self._last = 0.0

    def __call__(self, snapshot, force: bool = False) -> None:
        if snapshot.step == 0:  # nothing trained yet (the first step failed)
            return
        now = time.monotonic()
        if not force and now - self._last < (0.1 if self.tty else 1.0):
            return
        self._last = now
        total = f"/{self.total}" if self.total else ""
        val = f"  val {num(snapshot.val_loss)}" if snapshot.val_loss is not None else ""
        line = (f"step {snapshot.step}{total}  epoch {snapshot.epoch}  loss {num(snapshot.loss)}{val}  "
                f"{snapshot.steps_per_sec:.0f} steps/s")
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def run_headless(session, json_path: str | None = None, out=None) -> int:
    out = out or sys.stdout
    spec = session.spec
    print(f"calcml-debug: {spec.path}", file=out)
    if spec.description:
        print(spec.description.splitlines()[0], file=out)
    progress = Progress(out, session.max_steps)
    snapshot = session.run_to_end(on_step=progress)
    session.stop_at_breakpoint()
    if snapshot is not None and snapshot.layers:
        progress(snapshot, force=True)
    progress.done()
    print_summary(session, out)
    if json_path:
        write_report(session, json_path)
        print(f"report written to {json_path}", file=out)
    if session.stop_info is not None and session.stop_info.reason == "error":
        return EXIT_USAGE
    return EXIT_OK


def print_summary(session, out) -> None:
    snapshot = session.snapshot
    if snapshot is not None and snapshot.layers:
        rows = [LAYER_HEADERS] + layer_rows(snapshot.layers)
        widths = [max(len(r[i]) for r in rows) for i in range(len(LAYER_HEADERS))]
        print("", file=out)
        for r in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip(), file=out)
    events = list(session.warnings)
    print("", file=out)
    if events:
        print("warnings:", file=out)
        for w in events:
            tag = "cleared " if w.event == "clear" else ""
            print(f"  step {w.step:>6}  {tag}{w.kind:<19} {w.message}", file=out)
    else:
        print("no warnings", file=out)
    info = session.stop_info
    if info is not None:
        print(f"stopped at step {info.step} ({info.reason}):\n{info.detail}", file=out)
    else:
        state = "finished" if session.state == "finished" else f"paused at step {session.step_count}"
        print(f"{state} after {session.step_count} steps", file=out)
