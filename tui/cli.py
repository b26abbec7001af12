"""`calcml-debug [MODEL.py]`: the entry point. Exit 0 on success (a breakpoint stop included),
2 on a mistake in the model file, its training or the command line, 1 on an internal error,
128 + N when signal N ended the run (README: "How a run ends")."""
from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2

CONTRACT = """\
A model file is a Python file that defines, at top level:
  model      a cm.nn.Module                    (required)
  loss       loss(pred, target) -> scalar      (required)
  data       (X, y) numpy arrays, or an iterable / function giving (X, y) batches (required)
  optimizer  a cm.optim optimiser              (default: SGD, lr 0.01)
  regularizer  cm.reg.L1(λ) or cm.reg.L2(λ)    (default: none)
  batch_size, val_data, seed, steps            (optional)
Its docstring is shown as the model's description. Without a file, a built-in demo
(a deep sigmoid network whose gradients vanish) runs.

breakpoints (--break-on, comma separated): vanishing_gradient, exploding_gradient,
dead_relu, saturation, non_finite, loss_diverging, lr_too_large, 'step=N', 'every=N';
conditions with --break-if, e.g. --break-if 'grad_norm("0.weight") < 1e-6'.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calcml-debug", description="Watch a neural network train: gradients, warnings, the chain rule.",
        epilog=CONTRACT, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="the model file (default: the built-in demo)")
    parser.add_argument("--headless", action="store_true", help="no interface: print progress and a report")
    parser.add_argument("--steps", type=_positive, help="stop after N training steps")
    parser.add_argument("--json", metavar="FILE", help="write the run report (schema calcml.report/1) to FILE")
    parser.add_argument("--break-on", metavar="KINDS", default="",
                        help="pause (headless: stop) on these warning kinds or 'step=N' / 'every=N'")
    parser.add_argument("--break-if", metavar="COND", action="append", default=[],
                        help="pause when a condition over the statistics holds (repeatable)")
    parser.add_argument("--every", metavar="K", type=_positive, help="pause every K steps")
    parser.add_argument("--seed", type=int, help="seed for initialisation and batching (overrides the file's)")
    parser.add_argument("--curvature-every", metavar="K", type=_non_negative,
                        help="measure the Hessian's top eigenvalue, trace and the lr edge every K steps "
                             "(default 100, and always at step 1; 0: never; off above 5,000 parameters)")
    return parser


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return value


def demo_path() -> str:
    from importlib import resources
    return str(resources.files("calcml.samples") / "deep_sigmoid.py")


def breakpoint_specs(args) -> list:
    specs = [s.strip() for s in args.break_on.split(",") if s.strip()]
    if args.every:
        specs.append(f"every {args.every}")
    return specs + list(args.break_if)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as error:  # never a wall of calcml traceback: a short note and a file
        return _internal_error(error)


def _say(text: str) -> None:
    from calcml.debug.safetext import clean
    print(f"calcml-debug: {clean(text)}", file=sys.stderr)


def _run(args) -> int:
    """Everything that can be checked without running the model is checked here, before any
    training (and before the interface opens): the file, the report's target, the breakpoints'
    syntax. Paths are made absolute first, so a model that changes folder moves none of them."""
    from calcml.debug import BreakpointError, ModelFileError
    from calcml.debug.breakpoints import parse as parse_breakpoint
    from calcml.debug.loader import check_model_file
    from calcml.debug.report import ReportTargetError, check_target

    path = args.model or demo_path()
    try:
        check_model_file(path)
    except ModelFileError as error:
        _say(str(error))
        return EXIT_USAGE
    json_path = None
    if args.json:
        try:
            json_path = check_target(args.json)
        except ReportTargetError as error:
            _say(f"--json {error}")
            return EXIT_USAGE
    specs = breakpoint_specs(args)
    for text in specs:   # syntax now; the names they use are checked once the model has loaded
        try:
            parse_breakpoint(text)
        except BreakpointError as error:
            _say(f"breakpoint refused: {error}")
            return EXIT_USAGE
    if args.headless:
        return _run_headless(path, args, specs, json_path)
    # The interface opens at once; the training process loads the model file (a file that
    # takes long to load, or hangs, shows as loading, and q still quits).
    from .app import run_app
    from .backend import ProcessBackend
    return run_app(ProcessBackend(path, seed=args.seed, steps=args.steps, breakpoints=specs,
                                  json_path=json_path, curvature_every=args.curvature_every))


def _run_headless(path: str, args, specs: list, json_path: str | None) -> int:
    from calcml.debug import BreakpointError, ModelFileError, Session, load_model_file
    from calcml.debug.allocator import keep_freed_memory
    from calcml.debug.session import session_config
    from .headless import Guard, Interrupted, run_headless

    with Guard() as guard:
        try:
            spec = load_model_file(path, seed=args.seed, steps=args.steps)
        except ModelFileError as error:
            _say(str(error))
            return EXIT_USAGE
        except Interrupted as stop:   # a signal while the file was loading: nothing ran yet
            _say(f"stopped by {stop}, while loading {path}")
            return 128 + stop.signum
        session = Session(spec, session_config(args.curvature_every))
        try:
            for text in specs:
                session.add_breakpoint(text)
        except BreakpointError as error:
            _say(f"breakpoint refused: {error}")
            return EXIT_USAGE
        keep_freed_memory()
        guard.session = session
        return run_headless(session, json_path=json_path, guard=guard)


def _internal_error(error: BaseException) -> int:
    from calcml.debug.crash import write_crash_file
    path = write_crash_file(error)
    _say(f"internal error: {type(error).__name__}: {error}\n"
         f"This is a bug in calcml, not in your model. The details are in {path}.")
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
