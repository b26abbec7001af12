"""LayerTable: the main screen's table, one row per layer, the numbers that say whether it is learning."""
from __future__ import annotations

from textual.widgets import DataTable

from ..text_layers import layer_cells, marks_by_layer

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

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    @property
    def selected_layer(self) -> str | None:
        if not self._rows or self.cursor_row is None or self.cursor_row >= len(self._rows):
            return None
        return self._rows[self.cursor_row]

    def show(self, snapshot, history: dict) -> None:
        if snapshot is None:
            return
        names = [layer.name for layer in snapshot.layers]
        if names != self._rows:
            self.clear()
            self._shown = {}
            self._rows = names
            for layer in snapshot.layers:
                self.add_row(*layer_cells(layer, {}, history), key=layer.name)
        marks = marks_by_layer(snapshot.holding)
        for layer in snapshot.layers:
            for (key, _), cell in zip(COLUMNS, layer_cells(layer, marks, history)):
                if self._shown.get((layer.name, key)) != cell:  # redraw only what changed
                    self._shown[(layer.name, key)] = cell
                    self.update_cell(layer.name, key, cell, update_width=True)
