"""The debugger core: model files, a steppable training session, diagnostics, breakpoints, reports.

Nothing here knows about screens: the headless CLI and the TUI are two front ends of `Session`.
"""
from .breakpoints import BreakpointError
from .diagnostics import KINDS, Thresholds
from .loader import ModelFileError, ModelSpec, load_model_file
from .session import Session, SessionConfig, Snapshot

__all__ = ["Session", "SessionConfig", "Snapshot", "Thresholds", "KINDS", "ModelFileError", "ModelSpec",
           "load_model_file", "BreakpointError"]
