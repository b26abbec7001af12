"""The Textual interface: `calcml-debug model.py`.

The app only renders the `DebugState` a backend keeps up to date, and sends commands. A timer
looks at the state four times a second and redraws what changed (tables); what a person is
waiting to see (a state change, a command taking effect, a warning) wakes it at once; plots
redraw at most twice a second. The timer is the one place that reads the backend: it draws the
main screen's widgets itself and tells the screen on top what changed with a `StateChanged`
message (messages.py), which that screen handles in `on_state_changed`; a screen that was
covered is told everything that changed meanwhile when it is on top again. Rendering the screen
is most of the interface's CPU, and that CPU is taken from training on a small machine. Training
runs elsewhere (a child process), so a key press is handled at once even while a step is running,
and q quits even if a step hangs.
"""
from __future__ import annotations

import asyncio
import gc
import signal
import sys
import time
from pathlib import Path
from weakref import WeakKeyDictionary

from platformdirs import user_downloads_path

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import RichLog, TabbedContent, TabPane

from .backend import Backend
# the views are imported with the app, not when first opened: importing one took 7-18 ms of
# the key press that opened it
from .screens.bayes import BayesScreen
from .screens.breakpoints import BreakpointsScreen
from .screens.curvature import CurvatureScreen
from .screens.data import DataScreen
from .screens.footer import MainFooter
from .screens.help import HelpScreen
from .screens.inspector import InspectorScreen
from .screens.regularisation import RegularisationScreen
from .screens.stepinto import StepIntoScreen
from .messages import StateChanged
from .terminal_driver import terminal_driver
from .text_layers import warning_line
from .widgets.gradient_flow_plot import GradientFlowPlot
from .widgets.layers import LayerTable
from .widgets.loss_plot import SCALES, LossPlot
from .widgets.status import StatusBar

TABLE_HZ = 4
PLOT_HZ = 2
NARROW = 110   # below this many columns, plots share the screen with the table (key g)
LR_FACTOR = 2.0
GC_HOLD_S = 0.3   # no garbage collection for this long after a screen is opened or closed
TRAIN_ON_AT_LEAST = 100


class DebuggerApp(App):
    TITLE = "calcml"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("space", "toggle_pause", "run/pause"),
        Binding("n", "next_step", "step"),
        Binding("p", "back", "back"),   # a recording (replay.py): the snapshot before
        Binding("s", "step_into", "into"),
        Binding("c", "continue", "continue", show=False),
        Binding("enter", "inspect", "inspect", show=False),
        Binding("b", "breakpoints", "breaks"),
        Binding("r", "regularisation", "reg"),
        Binding("h", "curvature", "curv"),
        Binding("v", "bayes", "post"),   # the posterior: 4 letters, so 80 columns hold every key
        Binding("d", "data_view", "data"),
        Binding("left_square_bracket", "lr_down", "lr÷2", key_display="[", show=False),
        Binding("right_square_bracket", "lr_up", "lr×2", key_display="]", show=False),
        Binding("g", "toggle_plots", "plots"),
        Binding("l", "loss_scale", "loss scale", show=False),
        Binding("t", "train_on", "train on"),   # in the footer once the run has finished
        Binding("ctrl+r", "restart", "restart", key_display="^r"),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("q", "quit", "quit"),
        Binding("ctrl+q", "quit", "quit", show=False, priority=True),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
    ]

    def __init__(self, backend: Backend, clock=time.monotonic, live: bool = False):
        """`live`: running for a person (calcml-debug): the main screen's plots are built in a
        thread, and what start-up made is left out of later garbage collections. Off (tests),
        each plot is built when painted, which keeps screenshots deterministic."""
        super().__init__(driver_class=terminal_driver() if live else None)
        self.backend = backend
        self._live = live
        self._seen: dict = {}
        self._told: WeakKeyDictionary = WeakKeyDictionary()   # screen -> the versions it was last told of
        self._seen_plot = -1
        self._last_plot = 0.0
        self._clock = clock
        self._state_name = None
        self._views = None   # (a posterior to show, inputs the data view can draw): the footer's views
        self.quitting = False
        self.signal: int | None = None     # the signal that ended the interface, if one did
        self.crash_path: str | None = None  # where an internal error of the interface was written
        if getattr(backend, "detaches", False):   # attached to a served run: q leaves it running
            self._bindings.key_to_bindings["q"] = [Binding("q", "quit", "detach")]

    # -- layout --------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield LayerTable(id="layers")
                with TabbedContent(id="panes"):
                    with TabPane("Warnings", id="warnings-tab"):
                        yield RichLog(id="warnings", wrap=True, markup=False, max_lines=2000)
                    with TabPane("Model output", id="log-tab"):
                        yield RichLog(id="log", wrap=True, markup=False, max_lines=2000)
            with Vertical(id="plots"):
                yield GradientFlowPlot(id="gradflow")
                yield LossPlot(id="loss")
        yield MainFooter(compact=True)

    class Wake(Message):
        """Sent from the backend's reader thread when something needs showing now."""

    def on_mount(self) -> None:
        self.backend.state.wake = lambda: self.post_message(self.Wake())
        self.screen_change_signal.subscribe(self, self._on_screen_change, immediate=True)
        if self._live:
            # SIGTERM, SIGHUP (the terminal closing) and SIGINT end the interface the way q does:
            # the terminal restored, the worker asked to write the report and end.
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                loop.add_signal_handler(signum, self._on_signal, signum)
        self.query_one(LossPlot).background = self._live   # the gradient flow is cheap text
        self.backend.start()
        self._apply_width(self.size.width)
        self.set_interval(1 / TABLE_HZ, self.poll)
        self.poll()
        if self._live:
            # A full garbage collection walks every object the interface has made, about 100 ms
            # here, during which no key is handled. Those made while starting (Textual, the
            # widgets) live as long as the app: leave them out of every later collection.
            gc.collect()
            gc.freeze()

    # -- opening and closing screens ---------------------------------------------------------
    # A full garbage collection takes 40-120 ms here while training runs (the worker's BLAS
    # shares the caches), and one lands about every second and a half. Textual holds collections
    # off while it scrolls; the interface does the same while a screen is composed and drawn, so
    # that the first frame of a view is not delayed by one; the collection runs just after.
    _gc_timer = None

    def _hold_gc(self) -> None:
        if not self._live:
            return
        if self._gc_timer is not None:
            self._gc_timer.stop()
        elif not gc.isenabled():   # held by someone else (Textual, while it scrolls): leave it
            return
        gc.disable()
        self._gc_timer = self.set_timer(GC_HOLD_S, self._release_gc)

    def _release_gc(self) -> None:
        self._gc_timer = None
        gc.enable()

    def push_screen(self, *args, **kwargs):
        self._hold_gc()
        return super().push_screen(*args, **kwargs)

    def pop_screen(self):
        self._hold_gc()
        return super().pop_screen()

    def on_debugger_app_wake(self, message) -> None:
        self.poll()

    def _on_signal(self, signum: int) -> None:
        if self.signal is None:
            self.signal = signum
        self._quit(128 + signum)

    def _handle_exception(self, error: Exception) -> None:
        """An internal error of the interface, for a person: a short note after the terminal is
        restored (run_app), the details in a crash file, not a traceback with local values on
        their screen. (Tests keep Textual's own handling, which re-raises in the test.)"""
        if not self._live:
            return super()._handle_exception(error)
        from calcml.debug.crash import write_crash_file
        if self.crash_path is None:
            self.crash_path = write_crash_file(error)
            self.crash_error = f"{type(error).__name__}: {error}"
        self._quit(1)

    def on_resize(self, event) -> None:
        self._apply_width(event.size.width)

    def _apply_width(self, width: int) -> None:
        narrow = width < NARROW
        if narrow != self.screen.has_class("-narrow"):
            self.refresh_bindings()   # the footer shows other keys (MainFooter)
        self.screen.set_class(narrow, "-narrow")

    # -- keeping up with the state ---------------------------------------------------------
    def poll(self) -> None:
        """Redraw what changed since the last look (never waits on training)."""
        if not self.is_running or self.quitting:  # shutting down: the widgets may be gone
            return
        self.backend.poll()
        state = self.backend.state
        if self._live and (state.error is not None or (state.model is None and state.stop is not None)):
            # the model file or the command line is wrong, or the training process ended before
            # the model loaded: nothing to show; run_app says why
            self._quit(2)
            return
        with state.lock:
            versions = dict(state.versions)
        changed = {k for k, v in versions.items() if self._seen.get(k) != v}
        previous, self._seen = self._seen, versions
        if changed & {"snapshot", "state", "model"}:
            self.query_one(StatusBar).show(state)
            self.query_one(LayerTable).show(state.snapshot, state.history)
        if "state" in changed and state.state != self._state_name:
            self._state_name = state.state
            self.refresh_bindings()
        drawable = (bool(state.model and (state.model.get("bayes_layers") or state.model.get("sampler"))),
                    state.data_view is None or state.data_view.kind != "none")
        if drawable != self._views:   # the footer shows the views this model has something for
            self._views = drawable
            self.refresh_bindings()
        if "run" in changed and previous:
            self.query_one("#warnings", RichLog).clear()   # a restart: the old run's warnings go
            self.refresh_bindings()
        if "refused" in changed and previous and state.refused:
            self.notify(state.refused, title="not done", severity="warning", timeout=6)
        if "warnings" in changed:
            self._show_new_warnings(state)
        if "logs" in changed:
            self._show_new_logs(state)
        now = self._clock()
        if versions["history"] != self._seen_plot and now - self._last_plot >= 1 / PLOT_HZ:
            if self._draw_plots(state):
                self._seen_plot = versions["history"]
                self._last_plot = now
        self._tell(self.screen, previous)

    def _tell(self, screen, since: dict) -> None:
        """Post `StateChanged` to `screen`, naming what changed since it was last told (since
        `since`, for a screen not told yet). The main screen is left out: its widgets are drawn
        by `poll` itself."""
        if screen is self.default_screen:
            return
        told = self._told.get(screen, since)
        self._told[screen] = self._seen
        changed = {k for k, v in self._seen.items() if told.get(k) != v}
        if changed:
            screen.post_message(StateChanged(self.backend.state, changed))

    def _on_screen_change(self, screen) -> None:
        """A screen is on top: a new one draws the state itself when mounted and is told from
        now on; one that was covered (a view opened from it is closed) catches up at once."""
        if self.quitting or screen is self.default_screen:
            return
        if screen in self._told:
            self._tell(screen, self._seen)
        else:
            self._told[screen] = self._seen

    def _draw_plots(self, state) -> bool:
        """Redraw the plots if they are on screen; False if they could not be drawn now."""
        plots = self.query_one("#plots")
        if not plots.display or plots.size.width == 0:
            return False
        layer_params = _layer_weight_params(state.model or {})
        self.query_one(GradientFlowPlot).show(state.history, layer_params)
        self.query_one(LossPlot).show(state.history)
        return True

    _warnings_shown = 0
    _logs_shown = 0

    def _show_new_warnings(self, state) -> None:
        items, self._warnings_shown = state.since("warnings", self._warnings_shown)
        log = self.query_one("#warnings", RichLog)
        for w in items:
            log.write(warning_line(w))

    def _show_new_logs(self, state) -> None:
        items, self._logs_shown = state.since("logs", self._logs_shown)
        log = self.query_one("#log", RichLog)
        for stream, text in items:
            log.write(Text(text.rstrip("\n"), style="red" if stream == "stderr" else ""))

    # -- which keys make sense now -----------------------------------------------------------
    def check_action(self, action: str, parameters) -> bool | None:
        if self.quitting:   # keys pressed after q: the screens they would open are going away
            return False
        state = self.backend.state.state
        done = state in ("finished", "stopped")
        replay = getattr(self.backend, "replay", False)
        if action == "back":
            return replay
        if action == "step_into":  # record one while paused; once stopped, look at the last one
            if replay:             # a recording: the latest one recorded
                return self.backend.state.trace is not None or None
            return state == "paused" or (done and self.backend.state.trace is not None) or None
        if action in ("next_step", "continue"):
            return state == "paused" or None   # shown greyed while running or done
        if action == "toggle_pause":
            return not done or None
        if action in ("lr_up", "lr_down"):
            return not done or None
        if action == "train_on":
            return state == "finished" and not replay
        if action == "restart":   # a model file; a training script's loop is its own
            if replay:
                return False
            model = self.backend.state.model
            return bool(model and model.get("restartable")) or None
        if action == "toggle_plots":
            return self.screen.has_class("-narrow") or False
        return True

    def get_system_commands(self, screen):
        """The command palette (ctrl+p): every debugger action by name, as well as Textual's own."""
        yield from super().get_system_commands(screen)
        commands = [
            ("Pause / resume training", "space", self.action_toggle_pause),
            ("One training step", "n, while paused", self.action_next_step),
            ("Step into one iteration", "s: op by op, forward then backward", self.action_step_into),
            ("Train on", "t: a finished run trains as many steps again", self.action_train_on),
            ("Restart", "ctrl+r: back to step 0 with the same seed, keeping your lr, regulariser and breakpoints",
             self.action_restart),
            ("Inspect the selected layer", "enter: the chain rule down to it", self.action_inspect),
            ("Regularisation view", "r: none / L1 / L2 and λ", self.action_regularisation),
            ("Curvature view", "h: λ_max and the lr edge, the Hessian diagonal, Newton's state",
             self.action_curvature),
            ("Data view", "d: the training points and the model's decision surface or fitted curve",
             self.action_data_view),
            ("Bayesian view", "v: the ELBO's two terms, posterior σ, gradient noise; HMC's acceptance",
             self.action_bayes),
            ("Breakpoints", "b: list, add, remove", self.action_breakpoints),
            ("Halve the learning rate", "[", self.action_lr_down),
            ("Double the learning rate", "]", self.action_lr_up),
            ("Switch L2 regularisation on", "λ = 1e-3, or the current λ", lambda: self._regulariser("L2")),
            ("Switch L1 regularisation on", "λ = 1e-3, or the current λ", lambda: self._regulariser("L1")),
            ("Switch regularisation off", "", lambda: self._regulariser("none")),
            ("Help", "?: keys and what the numbers mean", self.action_help),
        ]
        for title, help_text, callback in commands:
            yield SystemCommand(title, help_text, callback)

    def _regulariser(self, kind: str) -> None:
        snap = self.backend.state.snapshot
        lam = snap.regularizer[1] if snap is not None and snap.regularizer[0] != "none" else 1e-3
        self.backend.set_regularizer(kind, lam)
        self.notify(f"regulariser → {kind}" + (f" λ={lam:g}" if kind != "none" else ""), timeout=2)

    # -- actions ---------------------------------------------------------------------------
    def action_toggle_pause(self) -> None:
        if self.backend.state.state == "running":
            self.backend.pause()
        else:
            self.backend.run()

    def action_next_step(self) -> None:
        self.backend.step(1)

    def action_back(self) -> None:
        back = getattr(self.backend, "back", None)
        if back is not None:
            back(1)

    def action_step_into(self) -> None:
        state = self.backend.state
        since = state.versions["trace"]  # read before asking, so a quick answer is not missed
        if getattr(self.backend, "replay", False):   # a recording: show the one recorded
            self.push_screen(StepIntoScreen(since=since - 1))
            return
        if state.state == "paused":
            self.backend.step_into()
        self.push_screen(StepIntoScreen(since=since))

    def action_continue(self) -> None:
        self.backend.run()

    def action_train_on(self) -> None:
        """A finished run trains on for as many steps again as it ran (100 at least)."""
        if self.backend.state.state != "finished":
            return
        snap = self.backend.state.snapshot
        n = max(TRAIN_ON_AT_LEAST, snap.step if snap is not None else 0)
        self.backend.train_on(n)
        self.notify(f"training on: {n} more steps", timeout=2)

    def action_restart(self) -> None:
        """Back to step 0: the model file loaded again with the same seed, paused; the lr and
        regulariser set with keys, and the breakpoints, are kept."""
        model = self.backend.state.model
        if not (model and model.get("restartable")):
            self.notify("a training script runs its own loop: quit and run it again to restart", timeout=4)
            return
        self.backend.restart()
        self.notify("restarting from step 0", timeout=2)

    def action_lr_up(self) -> None:
        self._scale_lr(LR_FACTOR)

    def action_lr_down(self) -> None:
        self._scale_lr(1 / LR_FACTOR)

    def _scale_lr(self, factor: float) -> None:
        self.backend.scale_lr(factor)
        self.notify(f"learning rate {'×' if factor > 1 else '÷'}{max(factor, 1 / factor):g}", timeout=2)

    def action_toggle_plots(self) -> None:
        self.screen.toggle_class("-show-plots")
        self._seen_plot = -1

    def action_inspect(self) -> None:
        layer = self.query_one(LayerTable).selected_layer
        if layer is not None:
            self._open_view(InspectorScreen, layer)

    def on_data_table_row_selected(self, event) -> None:
        self.action_inspect()

    def action_breakpoints(self) -> None:
        self.push_screen(BreakpointsScreen())

    def action_regularisation(self) -> None:
        self._open_view(RegularisationScreen)

    def action_curvature(self) -> None:
        self._open_view(CurvatureScreen)

    def action_data_view(self) -> None:
        self._open_view(DataScreen)

    def action_bayes(self) -> None:
        self._open_view(BayesScreen)

    def _open_view(self, kind, *args) -> None:
        """A view is built once and kept (installed) when closed: opening it again only redraws
        what changed since, instead of composing and styling every widget again (the inspector
        is pointed at the layer asked for). One built before a restart is built again (it may
        keep what it saw of the old run)."""
        name = f"view-{kind.__name__}"
        run = self.backend.state.versions["run"]
        if self.is_screen_installed(name):
            screen = self.get_screen(name)
            if screen in self.screen_stack:   # open under the view on top: back to it
                while self.screen is not screen:
                    self.pop_screen()
                if args:
                    screen.show_layer(*args)
                return
            if getattr(screen, "built_in_run", run) != run:
                self.uninstall_screen(name)
        if not self.is_screen_installed(name):
            screen = kind(*args)
            screen.built_in_run = run
            self.install_screen(screen, name)
        elif args:
            self.get_screen(name).show_layer(*args)
        self.push_screen(name)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """A screenshot (command palette) goes to the Downloads folder where there is one, else
        to the working directory (Textual would fail without one); the note says where."""
        if path is None:
            downloads = user_downloads_path()
            path = str(downloads if downloads.is_dir() else Path.cwd())
        return super().deliver_screenshot(filename, path, time_format)

    def action_loss_scale(self) -> None:
        """The loss plot's y axis: auto (log when the loss spans 100x or more), log, linear."""
        plot = self.query_one(LossPlot)
        plot.scale = SCALES[(SCALES.index(plot.scale) + 1) % len(SCALES)]
        plot.show(self.backend.state.history)
        self.notify(f"loss axis: {plot.scale}" + (" (log when the loss spans 100× or more)" if plot.scale == "auto" else ""),
                    timeout=2)

    async def action_quit(self) -> None:
        self._quit(0)

    def _quit(self, code: int) -> None:
        """Leave the interface at once; the worker is asked to quit now and waited for after
        the terminal is restored (run_app), while it writes the report."""
        if self.quitting:
            return
        self.quitting = True
        if self._gc_timer is not None:   # leaving while collections are held off
            self._release_gc()
        self.backend.request_quit()
        self.exit(code)


def _layer_weight_params(model: dict) -> list:
    """(layer name, its weight's full name) for each layer with a weight, input side first."""
    params = [p["name"] for p in model.get("params", [])]
    out = []
    for layer in model.get("layers", []):
        prefix = "" if layer["name"] == "model" else layer["name"] + "."
        for candidate in (prefix + "weight",):
            if candidate in params:
                out.append((layer["name"], candidate))
    return out


def run_app(backend: Backend) -> int:
    """Run the interface; after it closes (the terminal restored), wait for the worker to end
    and say on stderr how the run ended. The exit status: 0, or 2 for a mistake in the model
    file or its training (and a report that could not be written), 1 for an internal error,
    128 + N after signal N."""
    app = DebuggerApp(backend, live=True)
    try:
        result = app.run()
    finally:
        json_path = getattr(backend, "json_path", None)
        if json_path and getattr(backend, "running", False):
            _tell(f"calcml-debug: writing the report to {json_path} ...")
        backend.close()
    return outcome(app, backend, result)


def _tell(line: str) -> None:
    """A line on stderr, if there is still a terminal to show it (a closed one fails the write)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


def outcome(app: DebuggerApp, backend: Backend, result) -> int:
    from calcml.debug.safetext import clean
    state = backend.state

    def say(text: str) -> None:
        _tell(f"calcml-debug: {clean(text)}")

    code = result if isinstance(result, int) else 0
    if app.crash_path is not None:
        say(f"internal error in the interface: {app.crash_error}\n"
            f"This is a bug in calcml, not in your model. The details are in {app.crash_path}.")
        code = 1
    if state.error is not None:
        say(state.error)
        return 2
    stop = state.stop or {}
    if state.internal_error is not None:
        say(state.internal_error)
        code = code or 1
    elif stop.get("reason") == "error":
        say(f"training stopped at step {stop['step']}:\n{stop['detail']}")
        code = code or 2
    elif stop.get("reason") == "exited":
        say(stop["detail"])
        code = code or 2
    json_path = getattr(backend, "json_path", None)
    if json_path:
        report = state.report
        if report is None:
            say(f"no report was written to {json_path}: the training process ended before it could write one")
        elif report["ok"]:
            _tell(f"report written to {report['path']}")
        else:
            say(f"the report could not be written to {report['path']}: {report['message']}")
            code = code or 2
    if app.signal is not None:
        code = 128 + app.signal
    return code
