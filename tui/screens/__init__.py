"""Screens and dialogs of the calcml interface."""
