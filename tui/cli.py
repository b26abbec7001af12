"""`calcml-debug [MODEL.py]`: the entry point. Exit 0 on success (a breakpoint stop included),
2 on a mistake in the model file, its training or the command line, 1 on an internal error,
128 + N when signal N ended the run (README: "How a run ends")."""
from __future__ import annotations

import argparse
import os
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
(a deep sigmoid network whose gradients vanish) runs. The model may be a torch.nn.Module
(with a torch.optim optimiser), and a PyTorch training script with its own loop runs
unchanged, its arguments after --:  calcml-debug train.py -- --epochs 2

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
    follow = parser.add_argument_group("following a run from elsewhere (README: Following a run from elsewhere)")
    follow.add_argument("--serve", action="store_true",
                        help="run headless and serve the run to viewers on a Unix socket of this user's")
    follow.add_argument("--serve-address", metavar="ADDR",
                        help="serve there instead (implies --serve): a socket path, or HOST:PORT (127.0.0.1 only, "
                             "unless --serve-public)")
    follow.add_argument("--serve-private", action="store_true",
                        help="turn away viewers without the run's token (by default they may watch, not control)")
    follow.add_argument("--serve-public", action="store_true",
                        help="allow a --serve-address that other machines can reach (anyone there can connect)")
    follow.add_argument("--record", metavar="FILE", help="also write the run to a recording FILE (open it with --open)")
    follow.add_argument("--attach", metavar="ADDR", help="open the interface on a served run (q detaches)")
    follow.add_argument("--token-file", metavar="FILE",
                        help="the served run's token, for control (default: where the run wrote it, if readable)")
    follow.add_argument("--rank", metavar="R", type=_non_negative,
                        help="with --attach under torch.distributed: the rank to attach to (default 0)")
    follow.add_argument("--open", metavar="FILE", help="browse a recording (no training)")
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


def split_script_args(argv: list, parser: argparse.ArgumentParser) -> tuple:
    """(calcml-debug's own arguments, the script's or None): a `--` after the file's path starts
    the arguments of a training script (`calcml-debug train.py -- --epochs 2`). A `--` before
    the path only lets the path start with '-'."""
    takes_value = {flag for action in parser._actions if action.nargs is None and action.option_strings
                   for flag in action.option_strings}
    i, seen_path = 0, False
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            if seen_path:
                return argv[:i], argv[i + 1:]
            if i + 1 < len(argv):     # the path comes next, and may start with '-'
                seen_path = True
                i += 2
                continue
        elif arg in takes_value:
            i += 1                    # its value is not the path
        elif not arg.startswith("-"):
            seen_path = True
        i += 1
    return argv, None


def main(argv=None) -> int:
    parser = build_parser()
    own, script_args = split_script_args(list(sys.argv[1:] if argv is None else argv), parser)
    args = parser.parse_args(own)
    args.script_args = script_args
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


def _follow(args) -> int | None:
    """--attach and --open (no model file, nothing trains here); None for other runs."""
    if not (args.attach or args.open):
        return None
    if args.attach and args.open:
        _say("--attach and --open: choose one")
        return EXIT_USAGE
    if args.model:
        _say(f"--{'attach' if args.attach else 'open'} takes no model file (got {args.model}): the run is elsewhere")
        return EXIT_USAGE
    if args.open:
        from .replay import run_replay
        return run_replay(args.open)
    from calcml.debug.serve import ServeError
    from .app import run_app
    from .remote import AttachError, attach, describe
    try:
        backend = attach(args.attach, token_file=args.token_file, rank=args.rank)
    except (AttachError, ServeError) as error:
        _say(str(error))
        return EXIT_USAGE
    from .ranks import start_peers
    start_peers(backend)          # under torchrun: the other ranks beside it, view-only
    code = run_app(backend)
    state = backend.state
    if not state.bye and code == 0:
        _tell(f"calcml-debug: {describe(backend).replace('attached to', 'detached from')}; the run goes on "
              f"(attach again with: calcml-debug --attach {args.attach})")
    return code


def _tell(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


def _run(args) -> int:
    """Everything that can be checked without running the model is checked here, before any
    training (and before the interface opens): the file, the report's target, the breakpoints'
    syntax. Paths are made absolute first, so a model that changes folder moves none of them."""
    from calcml.debug import BreakpointError, ModelFileError
    from calcml.debug.breakpoints import parse as parse_breakpoint
    from calcml.debug.loader import check_model_file
    from calcml.debug.report import ReportTargetError, check_target

    followed = _follow(args)
    if followed is not None:
        return followed
    if args.serve_address:
        args.serve = True
    if args.serve:
        args.headless = True
    path = args.model or demo_path()
    try:
        check_model_file(path)
    except ModelFileError as error:
        _say(str(error))
        return EXIT_USAGE
    targets = {}
    for flag in ("json", "record"):   # the files the run will write: checked before it starts
        try:
            targets[flag] = check_target(getattr(args, flag)) if getattr(args, flag) else None
        except ReportTargetError as error:
            _say(f"--{flag} {error}")
            return EXIT_USAGE
    json_path, args.record = targets["json"], targets["record"]
    specs = breakpoint_specs(args)
    for text in specs:   # syntax now; the names they use are checked once the model has loaded
        try:
            parse_breakpoint(text)
        except BreakpointError as error:
            _say(f"breakpoint refused: {error}")
            return EXIT_USAGE
    script = args.script_args is not None or _is_torch_script(path)
    world, rank = _launched_ranks()
    if world > 1 and not args.headless:   # torchrun: rank 0 opens the interface, the rest follow it
        if not script:
            if rank == 0:
                _say(f"{path} is a model file, which trains in one process: under torchrun, give a training "
                     "script that sets up torch.distributed itself (calcml-debug train.py -- ARGS)")
            return EXIT_USAGE
        if rank != 0:
            _quiet_follower(path, rank)
            args.serve = args.headless = True
    if args.headless:
        if script:
            return _run_headless_script(path, args, specs, json_path)
        return _run_headless(path, args, specs, json_path, published=bool(args.serve or args.record))
    # The interface opens at once; the training process loads the model file (a file that
    # takes long to load, or hangs, shows as loading, and q still quits).
    from .app import run_app
    from .backend import ProcessBackend
    backend = ProcessBackend(path, seed=args.seed, steps=args.steps, breakpoints=specs,
                             json_path=json_path, curvature_every=args.curvature_every, record=args.record,
                             script_args=(args.script_args or []) if script else None)
    if world > 1:
        from calcml.debug import serve
        from .ranks import start_peers
        start_peers(backend, serve.default_address(path), world)
        logs = _follower_log(path, 1).replace(".rank1.", ".rank*.") if world > 2 else _follower_log(path, 1)
        backend.state.log("calcml", f"calcml: rank 0 is shown here; the other ranks train headless, following "
                                    f"it, and write their output to {logs}\n")
        code = run_app(backend)
        _tell(f"calcml-debug: the other ranks' output is in {logs}")
        return code
    return run_app(backend)


def _launched_ranks() -> tuple:
    """(WORLD_SIZE, RANK) as torchrun sets them for each process it starts; (1, 0) otherwise."""
    try:
        return int(os.environ.get("WORLD_SIZE") or 1), int(os.environ.get("RANK") or 0)
    except ValueError:
        return 1, 0


def _follower_log(path: str, rank: int) -> str:
    """Where rank `rank` (not 0) writes its output while rank 0 shows the interface: beside the
    socket it serves at, in this user's private runtime folder."""
    from calcml.debug import serve
    root, _ = os.path.splitext(serve.for_rank(serve.default_address(path), rank).path)
    return root + ".log"


def _quiet_follower(path: str, rank: int) -> None:
    """Rank `rank` of a torchrun job whose rank 0 shows the interface in the same terminal: its
    output (its script's prints, torch's warnings, a traceback) goes to a file instead, at the
    descriptors, so that nothing is written over the interface."""
    log = os.open(_follower_log(path, rank), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def _is_torch_script(path: str) -> bool:
    """A training script of its own (not a model file) that uses PyTorch."""
    from calcml.debug.loader import ModelFileError, _imports_torch, _read_source, is_script
    try:
        return is_script(path) and _imports_torch(_read_source(path).tree)
    except ModelFileError:
        return False   # the model-file checks say what is wrong with it


def _run_headless_script(path: str, args, specs: list, json_path: str | None) -> int:
    """An unmodified training script, headless: warnings as they start, then the table, the
    warnings and the report, as for a model file. A stop (a breakpoint, a NaN, --steps) ends the
    script at its next optimiser step."""
    try:
        from calcml.debug.script import Attach, EndScript, ScriptEnded, docstring, run_script
    except ImportError:
        _say(f"{path}: this script uses PyTorch, which is not installed here. Install it with calcml's "
             'torch extra: pip install -e ".[torch]" (or pip install torch)')
        return EXIT_USAGE
    from calcml.debug import BreakpointError
    from calcml.debug.report import write_report
    from calcml.debug.session import session_config
    from .headless import print_summary

    out = sys.stdout
    if os.environ.get("RANK", "0") == "0":   # (under torchrun, rank 0 speaks for them all)
        print(f"calcml-debug: {path} (a training script{', arguments: ' + ' '.join(args.script_args) if args.script_args else ''})",
              file=out, flush=True)
    problems: list = []

    published: dict = {}

    def on_attach(watch) -> None:
        # under torch.distributed rank 0 alone decides: only its session has the breakpoints
        for text in specs if watch.rank == 0 else ():
            try:
                watch.session.add_breakpoint(text)
            except BreakpointError as error:
                problems.append(f"breakpoint refused: {error}")
                raise EndScript() from None
        if args.serve or args.record:   # served to viewers, recorded: published as a model file's run is
            from calcml.debug.publish import Publisher
            from calcml.debug.serve import ServeError
            options = _publishing(args, path, watch.world, watch.rank)
            if watch.rank != 0:
                options["record"] = None      # one recording, rank 0's
            try:
                publisher = Publisher(watch.session, **options, control=watch.rank == 0)
                publisher.start()
            except (ServeError, OSError) as error:
                problems.append(str(error))
                raise EndScript() from None
            published["publisher"] = publisher
            watch.publish_to(publisher)    # every step published (on every rank, each its own)
            if watch.rank == 0:
                print(publisher.attach_line(), file=out, flush=True)

    def on_step(snapshot) -> None:       # (rank 0's; the watch has published it already)
        publisher = published.get("publisher")
        for event in snapshot.warnings:
            if event.event == "start":
                print(f"  step {event.step:>6}  {event.kind:<19} {event.message}", file=out, flush=True)
        session = attach.watch.session
        if session.state == "paused" and snapshot.hit is not None:
            if publisher is not None and publisher.server is not None:   # a viewer can continue it
                print(f"  paused at step {snapshot.step} at breakpoint: {snapshot.hit.why}; a viewer with the "
                      "token continues it", file=out, flush=True)
            else:
                session.stop_at_breakpoint()

    def on_done() -> None:
        raise EndScript()

    def on_attach_with_skips(watch) -> None:
        watch.on_skip = lambda note: print(f"  {note}", file=out, flush=True)
        on_attach(watch)

    attach = Attach(on_attach_with_skips, steps=args.steps, config=session_config(args.curvature_every), on_step=on_step,
                    on_done=on_done, name=path, path=path, description=docstring(path))
    error = None
    try:
        run_script(path, args.script_args or [], attach)
    except ScriptEnded as ended:
        if not ended.trained:
            _say(ended.detail)
            return EXIT_USAGE
        error = ended.detail
    if problems:
        _say(problems[0])
        return EXIT_USAGE
    watch = attach.watch
    session = watch.session
    session.observed_run_ended(error)
    watch.on_step = None
    watch.detach()
    if "publisher" in published:
        published["publisher"].close()
    failed = session.stop_info is not None and session.stop_info.reason == "error"
    if watch.rank != 0:        # under torch.distributed rank 0 alone sums up and reports
        return EXIT_USAGE if failed else EXIT_OK
    print_summary(session, out)
    if json_path:
        write_report(session, json_path)
        print(f"report written to {json_path}", file=out)
    return EXIT_USAGE if failed else EXIT_OK


def _run_headless(path: str, args, specs: list, json_path: str | None, published: bool = False) -> int:
    """A model file headless; `published`: also served (--serve) and/or recorded (--record)."""
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
        if published:
            return _run_served(session, path, args, json_path, guard)
        return run_headless(session, json_path=json_path, guard=guard)


def _run_served(session, path: str, args, json_path: str | None, guard) -> int:
    from calcml.debug import Session, load_model_file
    from calcml.debug.publish import Publisher
    from calcml.debug.serve import ServeError
    from calcml.debug.session import session_config
    from .headless import run_served

    def rebuild(seed):   # (a viewer's restart)
        return Session(load_model_file(path, seed=seed, steps=args.steps), session_config(args.curvature_every))
    try:
        publisher = Publisher(session, rebuild=rebuild, **_publishing(args, path))
        publisher.start()
    except (ServeError, OSError) as error:
        _say(str(error))
        return EXIT_USAGE
    publisher.worker.on_restart = lambda new: setattr(guard, "session", new)
    return run_served(publisher, json_path=json_path, guard=guard)


def _publishing(args, path: str, world: int = 1, rank: int = 0) -> dict:
    """The Publisher's options from the command line (ServeError for an address it refuses)."""
    from calcml.debug import serve
    address = None
    if args.serve:
        address = serve.parse_address(args.serve_address) if args.serve_address else serve.default_address(path)
        address = serve.for_rank(address, rank)
    return {"address": address, "record": args.record, "private": args.serve_private,
            "public": args.serve_public, "rank": rank, "world": world}


def _internal_error(error: BaseException) -> int:
    from calcml.debug.crash import write_crash_file
    path = write_crash_file(error)
    _say(f"internal error: {type(error).__name__}: {error}\n"
         f"This is a bug in calcml, not in your model. The details are in {path}.")
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
