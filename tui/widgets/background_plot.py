"""BackgroundPlot: a plotext plot whose figure can be built off the event loop.

A plotext render costs tens of milliseconds, so the app redraws the main screen's plots (gradient
flow, loss) a few times a second at most, only when their data changed, with the points thinned
to about the plot's width. While training runs, their figures are also built in a thread, so that
a key pressed during a redraw is handled at once instead of after it.
"""
from __future__ import annotations

from rich.text import Text
from textual_plotext.plot import Plot

from .guarded_plot import NUMERIC_ERRORS, GuardedPlot, cannot_draw


class BackgroundPlot(GuardedPlot):
    """A plotext plot described by a function `draw(plt)`, whose text can be built in a thread.

    With `background` off (the default) `show_figure` draws on the widget's own figure and
    refreshes, exactly as PlotextPlot does. With it on, the figure is built on a fresh plotext
    figure in a worker thread and swapped in when done: the event loop only thins the data and
    paints the finished text. A newer figure asked for while one is building waits for it (the
    latest wins). A paint the thread has not prepared (the first one, or after a resize) builds
    on the event loop as before.
    """

    background = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._built: tuple | None = None        # (Text, (width, height), draw)
        self._draw = None
        self._building = False
        self._waiting = False

    def show_figure(self, draw) -> None:
        self._draw = draw
        if not self.background:
            self._draw_on(self.plt, draw)
            self._built = None
            self.refresh()
        elif self._building:
            self._waiting = True
        else:
            self._start_build()

    @staticmethod
    def _draw_on(plt, draw) -> None:
        plt.clear_data()
        plt.clear_figure()
        draw(plt)

    def _start_build(self) -> None:
        self._building, self._waiting = True, False
        size = (self.size.width, self.size.height)
        theme = self._get_plotext_theme_name(self.app.theme)
        draw = self._draw
        self.run_worker(lambda: self._build(draw, size, theme), thread=True, exit_on_error=False,
                        group=f"plot-{id(self)}")

    def _build(self, draw, size, theme) -> None:
        """In a worker thread: a fresh figure, so nothing the event loop touches is shared."""
        plt = Plot()
        try:
            draw(plt)
            plt.plotsize(*size)
            plt._set_size(*size)
            plt.theme(theme)
            text = Text.from_ansi(plt.build())
        except NUMERIC_ERRORS as error:   # shown in its place; the next figure builds as usual
            text = cannot_draw(error)
        try:
            self.app.call_from_thread(self._take, text, size, draw)
        except RuntimeError:  # the app closed meanwhile
            pass

    def _take(self, text: Text, size: tuple, draw) -> None:
        self._building = False
        self._built = (text, size, draw)
        self._draw_on(self.plt, draw)   # the widget's own figure stays in step, for a resize
        self.refresh()
        if self._waiting:
            self._start_build()

    def render(self):
        built = self._built
        if built is not None and built[1] == (self.size.width, self.size.height) and built[2] is self._draw:
            return built[0]
        return super().render()


def draw_lines(plt, title: str, lines: list, ticks: tuple | None = None) -> None:
    """A figure of (x, y, label) lines with a title and, when given, (positions, labels) y ticks."""
    plt.title(title)
    if not lines:
        return
    for x, y, label in lines:
        plt.plot(x, y, label=label, marker="braille")
    if ticks is not None:
        plt.yticks(*ticks)
    plt.xlabel("step")
