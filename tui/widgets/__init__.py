"""Widgets of the calcml interface, one class per file, named after it (status.py holds StatusBar,
layers.py LayerTable); common.py holds what they, the screens and the text builders share."""
