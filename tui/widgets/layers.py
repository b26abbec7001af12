"""LayerTable: the main screen's table, one row per layer, the numbers that say whether it is learning."""
from __future__ import annotations

from textual.widgets import DataTable

from ..text_layers import TREND_WIDTH, layer_cells, marks_by_layer

TREND_MIN = 4

COLUMNS = (("mark", " "), ("layer", "layer"), ("type", "type"), ("shape", "shape"), ("w", "‖W‖"),
           ("g", "‖∇W‖"), ("pen", "‖∇pen‖"), ("upd", "upd/W"), ("health", "activation"),
           ("trend", "trend"))


class LayerTable(DataTable):
    DEFAULT_CSS = """
    LayerTable { height: 1fr; }
    """

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._rows: list = []
        self._shown: dict = {}   # (row, column) -> the cell last drawn there
        self._last = None        # (snapshot, history) last shown
        self._keys: tuple = ()   # the columns shown, in COLUMNS order

    def on_mount(self) -> None:
        self._columns(penalised=False)

    def _columns(self, penalised: bool) -> None:
        """The columns, ‖∇pen‖ only while a regulariser is set (without one it is 0 on every row,
        and its place lets an 80-column table show the activations)."""
        keys = tuple(key for key, _ in COLUMNS if penalised or key != "pen")
        if keys == self._keys:
            return
        self.clear(columns=True)
        self._rows, self._shown, self._keys = [], {}, keys
        for key, label in COLUMNS:
            if key in keys:
                # the trend is as wide as the table's width leaves it (the numbers before it never shrink)
                self.add_column(label, key=key, width=TREND_WIDTH if key == "trend" else None)
        self._fit_trend()

    def on_resize(self, event) -> None:
        self._fit_trend()

    def _fit_trend(self) -> None:
        """The trend column takes the columns the others leave, TREND_MIN to TREND_WIDTH of them."""
        others = sum(column.get_render_width(self) for key, column in self.columns.items() if key != "trend")
        width = max(TREND_MIN, min(TREND_WIDTH, self.size.width - others - 2 * self.cell_padding - 1))
        column = self.columns.get("trend")
        if column is not None and self.size.width and column.width != width:
            column.width = width
            self._shown = {k: v for k, v in self._shown.items() if k[1] != "trend"}   # drawn again
            self._require_update_dimensions = True
            if self._last is not None:
                self.show(*self._last)
            self.refresh()

    @property
    def trend_width(self) -> int:
        column = self.columns.get("trend")
        return column.width if column is not None else TREND_WIDTH

    @property
    def selected_layer(self) -> str | None:
        if not self._rows or self.cursor_row is None or self.cursor_row >= len(self._rows):
            return None
        return self._rows[self.cursor_row]

    def show(self, snapshot, history: dict) -> None:
        if snapshot is None:
            return
        self._last = (snapshot, history)
        self._columns(penalised=snapshot.regularizer[0] != "none")
        keys = self._keys
        names = [layer.name for layer in snapshot.layers]
        if names != self._rows:
            self.clear()
            self._shown = {}
            self._rows = names
            for layer in snapshot.layers:
                cells = layer_cells(layer, {}, history, self.trend_width)
                self.add_row(*(cell for (key, _), cell in zip(COLUMNS, cells) if key in keys), key=layer.name)
        marks = marks_by_layer(snapshot.holding)
        for layer in snapshot.layers:
            for (key, _), cell in zip(COLUMNS, layer_cells(layer, marks, history, self.trend_width)):
                if key not in keys:
                    continue
                if self._shown.get((layer.name, key)) != cell:  # redraw only what changed
                    self._shown[(layer.name, key)] = cell
                    self.update_cell(layer.name, key, cell, update_width=True)
