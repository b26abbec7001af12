"""Widgets of the calcml interface."""
