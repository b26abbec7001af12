"""Load a user's model file and check it against the contract, with messages a person can act on.

The contract: top-level `model` (a cm.nn.Module, or a torch.nn.Module), `loss` (loss(pred, target) -> scalar Tensor) and
`data` ((X, y) arrays, a DataLoader or other re-iterable of batches, an iterator, or a callable
returning one batch per call); optional `optimizer`, `scheduler`, `regularizer`, `batch_size`,
`val_data`, `seed`, `steps`. The module docstring is the model's description.

`check_model_file` makes every check that needs no running of the file (it exists, is a regular
readable file, decodes the way Python decodes source, compiles); `load_model_file` makes the same
checks, runs the file and validates what it defines. Both raise ModelFileError.
"""
from __future__ import annotations

import ast
import codecs
import os
import re
import stat
import sys
import traceback
import types
from dataclasses import dataclass, field

import numpy as np

from .. import nn, optim
from .. import random as _random
from ..reg import Regularizer
from ..tensor import Tensor

REQUIRED = ("model", "loss", "data")
OPTIONAL = ("optimizer", "scheduler", "regularizer", "batch_size", "val_data", "seed", "steps")
DEFAULT_SEED = 0
DEFAULT_LR = 0.01
# Hand-written Python source is rarely over 1 MB. A bigger "model file" is data pasted into the
# source or the wrong file (a dataset, a checkpoint); compiling 10 MB of source already takes
# Python some seconds and much memory, so past this the file is refused before it is read.
MAX_MODEL_FILE_BYTES = 10 * 1024 * 1024


class ModelFileError(Exception):
    """A problem with the user's model file: the message says what, where and what to do."""


@dataclass
class ModelSpec:
    path: str
    name: str
    description: str
    model: nn.Module
    loss: object
    data: object
    optimizer: object
    regularizer: Regularizer | None
    batch_size: int | None
    val_data: tuple | None
    seed: int
    steps: int | None
    namespace: dict = field(repr=False, default_factory=dict)
    # `path` is the file as the user named it (shown in messages and the report); `abspath` is
    # resolve_model_path(path): absolute, symbolic links resolved, the same wherever the process
    # changes directory. None when the spec was not loaded from a file.
    abspath: str | None = None
    framework: str = "calcml"   # whose objects the file defines: 'calcml' or 'torch'
    scheduler: object = None    # a learning-rate scheduler of `optimizer`, stepped after each of its steps


def _literal_seed(source) -> int | None:
    """A top-level `seed = <int>` read before the file runs, so it also seeds the initialisation.

    `source`: the parsed module (ast.Module), or its text (str, or bytes decoded as Python would)."""
    if isinstance(source, ast.Module):
        tree = source
    else:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "seed" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return None
            return value if isinstance(value, int) and not isinstance(value, bool) else None
    return None


def _syntax_message(path: str, error: SyntaxError, lines: list | None = None) -> str:
    """file:line:column, the message, the line itself and a caret under the column.

    The line and the column are left out where Python does not know them (a SyntaxError's lineno
    and offset may be None or 0); `lines`, the source's lines, supply the quoted line when the
    error carries none."""
    lineno = error.lineno if isinstance(error.lineno, int) and error.lineno > 0 else None
    offset = error.offset if lineno and isinstance(error.offset, int) and error.offset > 0 else None
    where = path + (f":{lineno}" if lineno else "") + (f":{offset}" if offset else "")
    text = f"{where}: syntax error: {error.msg or 'invalid syntax'}"
    line = error.text if isinstance(error.text, str) else None
    if line is None and lineno and lines and lineno <= len(lines):
        line = lines[lineno - 1]
    line = (line or "").split("\n")[0].rstrip("\r\n") if lineno else ""
    if line.strip():
        text += f"\n    {line}"
        if offset:
            # tabs stay tabs, so that the caret lines up under the quoted line
            pad = "".join("\t" if c == "\t" else " " for c in line[:offset - 1])
            text += f"\n    {pad}{' ' * max(offset - 1 - len(line), 0)}^"
    return text


def _text_of(error: BaseException) -> str:
    """str(error), even for an exception whose __str__ itself fails."""
    try:
        return str(error)
    except Exception:  # the user's __str__ is the user's code
        return f"<{type(error).__name__}: its message could not be shown>"


def user_traceback(error: BaseException, path: str) -> str:
    """The traceback of an exception, keeping only frames outside calcml (the user's own code)."""
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if not os.path.abspath(f.filename).startswith(package_dir + os.sep)
              and f.filename != __file__]
    if not frames:
        return f"{type(error).__name__}: {_text_of(error)}"
    lines = ["Traceback (your code, most recent call last):"]
    for f in frames:
        lines.append(f'  File "{f.filename}", line {f.lineno}, in {f.name}')
        if f.line:
            lines.append(f"    {f.line}")
    lines.append(f"{type(error).__name__}: {_text_of(error)}")
    return "\n".join(lines)


def _type_name(value) -> str:
    return type(value).__name__


# -- the file itself: everything that can be checked without running it ------------------

def resolve_model_path(path) -> str:
    """The model file's absolute path with symbolic links resolved: safe to hand to another
    process (it does not depend on the working directory and never starts with '-').

    It names the same file as `path` but need not exist; ModelFileError for what cannot be a path
    (an empty one, one with a null byte)."""
    text = _path_text(path)
    try:
        return os.path.realpath(text)
    except (OSError, ValueError) as error:
        raise ModelFileError(f"{text!r}: not a usable file path ({error})") from None


def _path_text(path) -> str:
    try:
        text = os.fsdecode(path)
    except TypeError:
        raise ModelFileError(f"the model file's path must be a string, got {_type_name(path)}") from None
    if not text:
        raise ModelFileError("no model file given: the path is empty. Give the path of a Python model file, "
                             "or run calcml-debug without one for the built-in demo.")
    if "\0" in text:
        raise ModelFileError(f"{text!r}: not a usable file path (it contains a null byte)")
    return text


_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _not_regular(path: str, mode: int) -> ModelFileError:
    if stat.S_ISDIR(mode):
        return ModelFileError(f"{path}: is a folder, not a model file (a .py file defining model, loss and data)")
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return ModelFileError(f"{path}: is {kind}, not a model file: give the path of a Python file "
                          "(a regular file, which is read before it runs)")


def _too_large(path: str, size: int) -> ModelFileError:
    return ModelFileError(
        f"{path}: is {size:,} bytes, too large for a model file (at most {MAX_MODEL_FILE_BYTES:,} bytes, "
        f"{MAX_MODEL_FILE_BYTES // (1024 * 1024)} MiB, of Python source): is it the right file? "
        "Keep large data in its own file and load it from the model file (e.g. with np.load).")


def _read_bytes(path: str) -> bytes:
    """The file's bytes, refusing before it is opened whatever is not a readable regular file:
    a FIFO, a socket or a device would block the read or never end."""
    try:
        info = os.stat(path)  # follows symbolic links: a link to a regular file is fine
    except FileNotFoundError:
        if os.path.islink(path):
            raise ModelFileError(f"{path}: is a broken symbolic link (to {os.readlink(path)})") from None
        raise ModelFileError(f"{path}: no such file. Give the path of a Python model file, "
                             "or run calcml-debug without one for the built-in demo.") from None
    except NotADirectoryError:
        raise ModelFileError(f"{path}: no such file (a part of the path is a file, not a folder)") from None
    except OSError as error:
        raise ModelFileError(f"{path}: cannot be read: {(error.strerror or str(error)).lower()}") from None
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(path, info.st_mode)
    if info.st_size > MAX_MODEL_FILE_BYTES:
        raise _too_large(path, info.st_size)
    try:
        # O_NONBLOCK: should the path be swapped for a FIFO after the check, the open cannot hang
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise ModelFileError(f"{path}: cannot be read: {(error.strerror or str(error)).lower()}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(path, info.st_mode)
        try:
            raw = f.read(MAX_MODEL_FILE_BYTES + 1)
        except OSError as error:
            raise ModelFileError(f"{path}: cannot be read: {(error.strerror or str(error)).lower()}") from None
    if len(raw) > MAX_MODEL_FILE_BYTES:  # it grew, or its size was not known (e.g. under /proc)
        raise _too_large(path, len(raw))
    return raw


# PEP 263, as Python's tokenizer reads it: a comment on line 1, or on line 2 below a blank or
# comment line, matching `coding[:=]\s*([-\w.]+)`.
_COOKIE = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")
_BLANK = re.compile(r"^[ \t\f]*(?:[#\r\n]|$)")
_UTF8_BOM = codecs.BOM_UTF8
_OTHER_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
               (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))
# The coding line itself must read the same in the encoding it declares (Python needs an
# ASCII-compatible one: UTF-16, UTF-32 and EBCDIC are refused).
_ASCII_PROBE = "# -*- coding: abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.=\n"


def _normal_encoding_name(name: str) -> str:
    """The spellings Python's tokenizer folds together (tokenize._get_normal_name)."""
    enc = name[:12].lower().replace("_", "-")
    if enc == "utf-8" or enc.startswith("utf-8-"):
        return "utf-8"
    if enc in ("latin-1", "iso-8859-1", "iso-latin-1") or enc.startswith(("latin-1-", "iso-8859-1-", "iso-latin-1-")):
        return "iso-8859-1"
    return name


def _declared_encoding(raw: bytes) -> tuple[str | None, int]:
    """The encoding a coding line declares and its line number, or (None, 0)."""
    lines = raw.split(b"\n", 2)[:2]
    for number, line in enumerate(lines, start=1):
        text = line.decode("latin-1")  # bytes one for one: only the ASCII cookie matters here
        match = _COOKIE.match(text)
        if match:
            return match.group(1), number
        if not _BLANK.match(text):
            break
    return None, 0


def _decode(path: str, raw: bytes) -> str:
    """The source text, decoded as Python decodes a source file: a UTF-8 byte-order mark, else
    the encoding of a PEP 263 coding line, else UTF-8; the whole file, strictly."""
    for bom, name in _OTHER_BOMS:
        if raw.startswith(bom):
            raise ModelFileError(f"{path}: the file is saved as {name} (it starts with a {name} byte-order "
                                 "mark); Python reads source as UTF-8: save it as UTF-8.")
    has_bom = raw.startswith(_UTF8_BOM)
    if has_bom:
        raw = raw[len(_UTF8_BOM):]
    declared, cookie_line = _declared_encoding(raw)
    encoding = "utf-8"
    if declared is not None:
        try:
            encoding = codecs.lookup(_normal_encoding_name(declared)).name
        except LookupError:
            raise ModelFileError(f"{path}:{cookie_line}: unknown encoding {declared!r} in the coding line: "
                                 "name one Python knows (utf-8, latin-1, cp1252, ...) or remove the line") from None
        try:
            readable = _ASCII_PROBE.encode("ascii").decode(encoding) == _ASCII_PROBE
        except (UnicodeError, LookupError):
            readable = False
        if not readable:
            raise ModelFileError(f"{path}:{cookie_line}: the coding line declares {declared}, which Python "
                                 "cannot read source in (it needs an ASCII-compatible encoding): "
                                 "save the file as UTF-8 and remove the line")
        if has_bom and encoding != "utf-8":
            raise ModelFileError(f"{path}:{cookie_line}: the file starts with a UTF-8 byte-order mark but its "
                                 f"coding line declares {declared}: remove one of the two")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        start = error.start
        line_start = raw.rfind(b"\n", 0, start) + 1
        line = raw.count(b"\n", 0, start) + 1
        column = len(raw[line_start:start].decode(encoding, "replace")) + 1
        bad = raw[start:max(error.end, start + 1)][:4]
        found = ("byte " if len(bad) == 1 else "bytes ") + " ".join(f"0x{b:02x}" for b in bad)
        if declared is None:
            hint = ("Python reads source as UTF-8: save the file as UTF-8, or declare its encoding "
                    "on the first line, e.g. # -*- coding: latin-1 -*-")
            what = "UTF-8"
        else:
            hint = f"the coding line (line {cookie_line}) declares {declared}: declare the file's real encoding"
            what = declared
        raise ModelFileError(f"{path}:{line}:{column}: cannot be read as {what}: {found} "
                             f"({error.reason}); {hint}") from None
    except (UnicodeError, LookupError) as error:  # a codec that is not a text encoding
        raise ModelFileError(f"{path}:{cookie_line or 1}: cannot be read as {declared or 'UTF-8'}: {error}") from None
    return text


def _position(text: str, index: int) -> tuple[int, int]:
    """(line, column), both from 1, of the character at `index`."""
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


@dataclass
class _Source:
    text: str
    tree: ast.Module
    code: types.CodeType


def _read_source(path: str) -> _Source:
    """Read, decode and compile the model file, as Python would before running it."""
    text = _decode(path, _read_bytes(path))
    nul = text.find("\0")
    if nul >= 0:
        line, column = _position(text, nul)
        raise ModelFileError(f"{path}:{line}:{column}: syntax error: source code cannot contain null bytes "
                             "(is this a binary file, or one saved as UTF-16, rather than Python source?)")
    try:
        # dont_inherit: the file gets its own __future__ imports, not this module's
        tree = compile(text, path, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
        code = compile(tree, path, "exec", dont_inherit=True)
    except SyntaxError as error:
        raise ModelFileError(_syntax_message(path, error, text.splitlines())) from None
    except ValueError as error:  # e.g. null bytes, on Pythons that report them so
        raise ModelFileError(f"{path}: syntax error: {error}") from None
    except (RecursionError, MemoryError):
        raise ModelFileError(f"{path}: cannot be compiled: an expression is nested too deeply or is too long "
                             "for Python's compiler; split it up") from None
    return _Source(text, tree, code)


def check_model_file(path) -> None:
    """Every check on a model file that does not run it; ModelFileError saying what and where.

    It must exist, be a regular file (a link to one is fine) and readable, not be over
    MAX_MODEL_FILE_BYTES, decode as Python decodes source (a UTF-8 byte-order mark, a PEP 263
    coding line, else UTF-8) and compile (file:line:column and the line for a syntax error).
    load_model_file makes the same checks first."""
    _read_source(_path_text(path))


# -- running it ----------------------------------------------------------------------------

def _exit_text(code) -> str:
    return "exit()" if code is None else f"exit({code!r})"


def load_model_file(path: str, seed: int | None = None, steps: int | None = None) -> ModelSpec:
    """Run the model file in its own namespace (its folder on sys.path) and validate what it defines.

    `seed` (from the command line) overrides the file's `seed`; the engine's generator is seeded
    before the file runs, so initialisation is repeatable. The working directory is the same
    after the file runs as before, whatever the file does.
    """
    path = _path_text(path)
    source = _read_source(path)
    abspath = resolve_model_path(path)

    literal_seed = _literal_seed(source.tree)
    if seed is not None:
        _check_seed(path, "--seed", seed)
    elif literal_seed is not None:
        _check_seed(path, "seed", literal_seed)
    chosen_seed = seed if seed is not None else literal_seed
    chosen_seed = DEFAULT_SEED if chosen_seed is None else chosen_seed
    _random.manual_seed(chosen_seed)
    np.random.seed(chosen_seed % 2**32)  # model files that use numpy's global generator
    if _imports_torch(source.tree):      # and PyTorch's, for a file that uses it
        _seed_torch(chosen_seed)

    name = os.path.splitext(os.path.basename(path))[0]
    module = types.ModuleType(f"calcml_model_{name}")
    module.__file__ = os.path.abspath(path)
    folder = os.path.dirname(abspath)  # as Python does for a script: the folder of the resolved file
    before = set(sys.modules)
    try:
        cwd = os.getcwd()
    except OSError:  # the caller's folder is gone: nothing to go back to
        cwd = None
    loading_pid = os.getpid()
    sys.path.insert(0, folder)
    sys.modules[module.__name__] = module  # dataclasses, pickle and typing look the module up
    try:
        exec(source.code, module.__dict__)
    except KeyboardInterrupt:  # the user pressed ctrl+c while the file ran: theirs to stop
        raise
    except SystemExit as error:
        raise ModelFileError(f"{path}: the model file called {_exit_text(error.code)} while loading") from None
    except ModuleNotFoundError as error:
        if error.name == "torch":
            raise ModelFileError(f"{path}: this model uses PyTorch, which is not installed here. Install it "
                                 "with calcml's torch extra: pip install -e \".[torch]\" (or pip install torch)") from None
        raise ModelFileError(f"{path}: the model file raised an error while loading:\n"
                             + user_traceback(error, path)) from None
    except BaseException as error:  # the user's code failed: show their frames, not ours
        raise ModelFileError(f"{path}: the model file raised an error while loading:\n"
                             + user_traceback(error, path)) from None
    finally:
        if os.getpid() != loading_pid:
            # The file called os.fork() and this is the child, returning from the file as if it
            # were the caller: it must not go on to train, print or write reports twice.
            os._exit(0)
        if cwd is not None:
            try:
                os.chdir(cwd)  # should the file have changed folder: relative paths keep their meaning
            except OSError:
                pass
        try:
            sys.path.remove(folder)
        except ValueError:
            pass
        _forget_neighbours(before, folder)
    if seed is None and "seed" in module.__dict__ and module.__dict__["seed"] is not None:
        file_seed = module.__dict__["seed"]
        _check_seed(path, "seed", file_seed)
        chosen_seed = int(file_seed)  # a computed seed still seeds the batching
    spec = _validate(path, name, module.__dict__, chosen_seed, steps, tree=source.tree)
    spec.abspath = abspath
    return spec


def is_script(path: str) -> bool:
    """Whether a file is a training script rather than a model file: it does not define all of
    model, loss and data at top level."""
    try:
        tree = _read_source(path).tree
    except ModelFileError:
        return False          # the model-file loader says what is wrong with it
    names = set()
    for node in tree.body if tree is not None else ():
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name):
                    names.add(sub.id)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return not all(name in names for name in REQUIRED)


def docstring(path: str) -> str:
    try:
        tree = _read_source(path).tree
    except ModelFileError:
        return ""
    return (ast.get_docstring(tree) or "").strip() if tree is not None else ""


def _imports_torch(tree) -> bool:
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch" and not node.level:
            return True
    return False


def _seed_torch(seed: int) -> None:
    try:
        import torch
    except ImportError:   # the file's own import says so, with how to install it
        return
    torch.manual_seed(seed)


def _check_seed(path: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ModelFileError(f"{path}: {name} must be a whole number >= 0, got {value!r}")


def _forget_neighbours(before: set, folder: str) -> None:
    """Drop the modules this file imported from its own folder, so that another model folder
    with a helper of the same name gets its own, not this one's."""
    prefix = folder + os.sep
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if os.path.abspath(file).startswith(prefix):
            del sys.modules[name]


def _assigned_at(tree: ast.Module | None, name: str) -> str:
    """':N', the line of the file's last top-level assignment to `name`, or '' if there is none."""
    line = None
    for node in tree.body if tree is not None else ():
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            line = node.lineno
    return f":{line}" if line else ""


def _describe_modules(model: nn.Module) -> str:
    children = [type(m).__name__ for m in model.children()]
    if not children:
        return f"a {type(model).__name__} with no layers"
    shown = ", ".join(children[:6]) + (", ..." if len(children) > 6 else "")
    return f"a {type(model).__name__} of {shown}, none of them with weights"


def _check_has_parameters(path: str, model: nn.Module, tree) -> None:
    """A model without parameters has nothing to train, with or without an optimiser: the
    debugger follows the model's own parameters."""
    try:
        count = sum(1 for _ in model.parameters())
    except Exception as error:  # a user's Module subclass may override parameters()
        raise ModelFileError(f"{path}: model.parameters() raised an error:\n"
                             + user_traceback(error, path)) from None
    if count == 0:
        raise ModelFileError(
            f"{path}{_assigned_at(tree, 'model')}: model has no parameters to train: it is "
            f"{_describe_modules(model)}. Give it at least one layer with weights, e.g. cm.nn.Linear(2, 1) "
            "(activations such as cm.nn.ReLU() have none).")


def _description(path: str, ns: dict, tree) -> str:
    doc = ns.get("__doc__")
    if doc is None:
        return ""
    if not isinstance(doc, str):
        raise ModelFileError(f"{path}{_assigned_at(tree, '__doc__')}: __doc__ must be a string "
                             f"(it is shown as the model's description), got {_type_name(doc)}")
    return doc.strip()


def _validate(path: str, name: str, ns: dict, seed: int, steps: int | None, tree=None) -> ModelSpec:
    missing = [n for n in REQUIRED if n not in ns]
    if missing:
        found = [n for n in REQUIRED + OPTIONAL if n in ns]
        raise ModelFileError(
            f"{path}: missing {', '.join(missing)}. A model file must define model (a cm.nn.Module), "
            f"loss (loss(pred, target) -> scalar) and data ((X, y) arrays or batches); "
            f"found: {', '.join(found) if found else 'none of them'}.")
    model = ns["model"]
    framework = "torch" if _is_torch_module(model) else "calcml"
    if framework == "calcml" and not isinstance(model, nn.Module):
        hint = " (did you forget to instantiate it, e.g. Net() instead of Net?)" if isinstance(model, type) else ""
        raise ModelFileError(f"{path}: model must be a cm.nn.Module, got {_type_name(model)}{hint}")
    _check_has_parameters(path, model, tree)
    loss = ns["loss"]
    if not callable(loss):
        raise ModelFileError(f"{path}: loss must be a function loss(pred, target) returning a scalar, "
                             f"got {_type_name(loss)}")
    data = _check_data(path, ns["data"])

    optimizer = ns.get("optimizer")
    if framework == "torch":
        optimizer = _torch_optimizer(path, model, optimizer)
    elif optimizer is None:
        optimizer = optim.SGD(model.parameters(), lr=DEFAULT_LR)
    elif not isinstance(optimizer, optim.Optimizer):
        raise ModelFileError(f"{path}: optimizer must be a cm.optim optimiser such as "
                             f"cm.optim.SGD(model.parameters(), lr=0.01), got {_type_name(optimizer)}")
    scheduler = _check_scheduler(path, ns.get("scheduler"), optimizer, "optimizer" in ns)
    regularizer = ns.get("regularizer")
    if regularizer is not None and not isinstance(regularizer, Regularizer):
        raise ModelFileError(f"{path}: regularizer must be cm.reg.L1(λ), cm.reg.L2(λ) or None, "
                             f"got {_type_name(regularizer)}")
    batch_size = ns.get("batch_size")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ModelFileError(f"{path}: batch_size must be a positive integer or None, got {batch_size!r}")
    val_data = ns.get("val_data")
    if val_data is not None:
        val_data = _check_pair(path, "val_data", val_data)
    file_steps = ns.get("steps")
    if file_steps is not None and (isinstance(file_steps, bool) or not isinstance(file_steps, (int, np.integer))
                                   or file_steps < 1):
        raise ModelFileError(f"{path}: steps must be a positive integer, got {file_steps!r}")
    description = _description(path, ns, tree)
    return ModelSpec(path=path, name=name, description=description, model=model, loss=loss, data=data,
                     optimizer=optimizer, scheduler=scheduler, regularizer=regularizer,
                     batch_size=None if batch_size is None else int(batch_size), val_data=val_data,
                     seed=seed, steps=steps if steps is not None else file_steps, namespace=ns,
                     framework=framework)


def _check_scheduler(path: str, scheduler, optimizer, defined_optimizer: bool):
    """A scheduler must schedule the optimiser the session steps (not another one, nor the default)."""
    if scheduler is None:
        return None
    if not callable(getattr(scheduler, "step", None)) or not hasattr(scheduler, "optimizer"):
        raise ModelFileError(f"{path}: scheduler must be a learning-rate scheduler such as "
                             f"cm.optim.lr_scheduler.StepLR(optimizer, step_size=100), got {_type_name(scheduler)}")
    if scheduler.optimizer is not optimizer:
        what = ("the file's optimizer" if defined_optimizer else
                "the default optimiser (the file defines no optimizer: define the one the scheduler was given)")
        raise ModelFileError(f"{path}: scheduler schedules another optimiser than {what}; "
                             "build it from the same object: scheduler = StepLR(optimizer, ...)")
    return scheduler


def _is_torch_module(model) -> bool:
    """Whether `model` is PyTorch's (torch is looked at only if the file imported it)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _torch_optimizer(path: str, model, optimizer):
    import torch
    from .torch_backend import OFF_CPU, off_cpu
    device = off_cpu(model)
    if device is not None:
        raise ModelFileError(f"{path}: " + OFF_CPU.format(device))
    if optimizer is None:
        return torch.optim.SGD(model.parameters(), lr=DEFAULT_LR)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ModelFileError(f"{path}: model is a torch.nn.Module, so optimizer must be a torch.optim optimiser "
                             f"such as torch.optim.SGD(model.parameters(), lr=0.01), got {_type_name(optimizer)}")
    return optimizer


def _array(value) -> np.ndarray:
    """An array from a calcml Tensor, a torch tensor (copied to the host) or anything numpy reads."""
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "detach") and hasattr(value, "cpu"):   # a torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _check_pair(path: str, name: str, value):
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise ModelFileError(f"{path}: {name} must be a pair (X, y) of arrays, got {_type_name(value)}")
    try:
        X, y = (_array(v) for v in value)
    except ValueError as error:  # ragged lists
        raise ModelFileError(f"{path}: {name}: X and y must be rectangular arrays ({error})") from None
    if X.ndim == 0 or y.ndim == 0:
        raise ModelFileError(f"{path}: {name} must be a pair (X, y) of arrays with one row per sample, "
                             f"got shapes {X.shape} and {y.shape}")
    if X.dtype.kind not in "fiub":
        raise ModelFileError(f"{path}: {name}: X must be numeric, got {X.dtype}")
    if len(X) != len(y):
        raise ModelFileError(f"{path}: {name}: X has {len(X)} samples but y has {len(y)}")
    if len(X) == 0:
        raise ModelFileError(f"{path}: {name} has no samples")
    return X, y


def _is_pair(value) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2


def _check_data(path: str, data):
    # (X, y) arrays; but [(X1, y1), (X2, y2)] is a list of two batches, not a pair.
    if _is_pair(data) and not callable(data[0]) and not _is_pair(data[0]):
        return _check_pair(path, "data", data)
    if callable(data) or hasattr(data, "__iter__"):
        return data
    raise ModelFileError(f"{path}: data must be (X, y) arrays, an iterable of (X, y) batches, or a function "
                         f"returning a batch, got {_type_name(data)}")
