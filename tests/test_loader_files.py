"""The model file as a file: encodings, odd paths, what the file does to the process while it loads.

`check_model_file` (every check that does not run the file) and `load_model_file` refuse with a
ModelFileError that says what and where; `resolve_model_path` gives a path safe to hand on.
Loads that would hang or exhaust memory were a check missing run in a subprocess with a time and
memory limit.
"""
import errno
import os
import socket
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import calcml as cm
from calcml.debug import ModelFileError, load_model_file
from calcml.debug import loader as loader_module

from test_loader import DATA, GOOD, HEADER, LOSS, load_error, weights, write_model


def write_bytes(folder, data: bytes, name="model_file.py") -> str:
    path = folder / name
    path.write_bytes(data)
    return str(path)


def check_error(path) -> str:
    """check_model_file must refuse `path`; its message (no calcml path, nothing chained)."""
    with pytest.raises(ModelFileError) as info:
        loader_module.check_model_file(path)
    message = str(info.value)
    assert os.path.dirname(os.path.abspath(cm.__file__)) + os.sep not in message
    assert info.value.__cause__ is None
    return message


# A model file in the subprocess: REFUSED <message>, or LOADED <pid>.
DRIVER = textwrap.dedent("""\
    import os, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))   # an endless read fails, not the machine
    from calcml.debug import ModelFileError, load_model_file
    try:
        spec = load_model_file(sys.argv[1])
    except ModelFileError as error:
        print("REFUSED", error, flush=True)
    else:
        print("LOADED", os.getpid(), flush=True)
        child = spec.namespace.get("child")
        if child:
            os.waitpid(child, 0)
    """)


def load_in_subprocess(path, cwd, stdin=subprocess.DEVNULL, timeout=30):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    result = subprocess.run([sys.executable, "-c", DRIVER, path], cwd=cwd, stdin=stdin, env=env,
                            capture_output=True, text=True, timeout=timeout)
    return result


# -- 1. files Python accepts: a byte-order mark, a coding line ------------------------------

SEEDED = GOOD + "seed = 5\n"


def _accepted_files():
    body = SEEDED + "word = '{word}'\n"
    doc = '"""{doc}"""\n'
    return {
        # Windows Notepad's "UTF-8": a byte-order mark and CRLF line ends
        "utf8_bom_crlf": (b"\xef\xbb\xbf" + (doc.format(doc="Caf\u00e9 model.") + body.format(word="\u00e9t\u00e9"))
                          .replace("\n", "\r\n").encode("utf-8"), "Caf\u00e9 model.", "\u00e9t\u00e9"),
        "latin1_emacs": (("# -*- coding: latin-1 -*-\n" + doc.format(doc="Caf\u00e9 model.")
                          + body.format(word="na\u00efve")).encode("latin-1"), "Caf\u00e9 model.", "na\u00efve"),
        "cp1252_vim": (("# vim: set fileencoding=cp1252 :\n" + doc.format(doc="Costs 5 \u20ac.")
                        + body.format(word="\u2018quoted\u2019")).encode("cp1252"), "Costs 5 \u20ac.",
                       "\u2018quoted\u2019"),
        "cookie_on_line_2": (("#!/usr/bin/env python\n# coding=iso-8859-15\n" + doc.format(doc="\u20ac model")
                              + body.format(word="\u00e5")).encode("iso-8859-15"), "\u20ac model", "\u00e5"),
        # 表 is 0x95 0x5c in Shift JIS: its second byte is a backslash, which must not escape the quote
        "shift_jis": (("# coding: shift_jis\n" + doc.format(doc="\u8868 model")
                       + body.format(word="\u8868")).encode("shift_jis"), "\u8868 model", "\u8868"),
    }


@pytest.mark.parametrize("case", sorted(_accepted_files()))
def test_files_python_accepts_load_with_docstring_and_literal_seed(tmp_path, case):
    data, description, word = _accepted_files()[case]
    path = write_bytes(tmp_path, data)
    assert loader_module.check_model_file(path) is None
    spec = load_model_file(path)
    assert spec.description == description
    assert spec.namespace["word"] == word
    assert spec.seed == 5
    # the literal seed was read before the file ran: the same weights as the UTF-8 file
    reference = load_model_file(write_model(tmp_path, SEEDED, name="reference.py"))
    for got, want in zip(weights(spec), weights(reference)):
        np.testing.assert_array_equal(got, want)


def test_annotations_are_evaluated_as_python_evaluates_them(tmp_path):
    # the file gets its own __future__ imports, not the loader's (postponed annotations)
    spec = load_model_file(write_model(tmp_path, GOOD + "width: int = 3\n"))
    assert spec.namespace["__annotations__"]["width"] is int
    message = load_error(write_model(tmp_path, GOOD + "def f(x: NotDefinedAnywhere):\n    pass\n",
                                     name="annotated.py"))
    assert "NameError" in message


def _refused_encodings():
    latin1_body = "x = 1\n# fine\ny = 'caf\u00e9'\n".encode("latin-1")
    return {
        # (bytes, expected start after the path, words the message must contain)
        "latin1_without_coding_line": (latin1_body, ":3:9: cannot be read as UTF-8: byte 0xe9",
                                       ["# -*- coding: latin-1 -*-"]),
        "invalid_utf8_in_a_comment": (b"x = 1\n# caf\xe9 \xff\n", ":2:6: cannot be read as UTF-8", ["UTF-8"]),
        "declared_ascii_but_not": (b"# coding: ascii\nx = 1\ny = '\xe9'\n", ":3:6: cannot be read as ascii",
                                   ["line 1", "declares ascii"]),
        "declared_utf8_but_latin1": (b"# -*- coding: utf-8 -*-\n\ny = '\xe9'\n", ":3:6: cannot be read as utf-8",
                                     ["line 1"]),
        "unknown_encoding": (b"# coding: nosuch\n" + GOOD.encode(), ":1: unknown encoding 'nosuch'", ["utf-8"]),
        "utf16_coding_line": (b"# coding: utf-16\n" + GOOD.encode(), ":1: the coding line declares utf-16",
                              ["ASCII-compatible", "UTF-8"]),
        "ebcdic_coding_line": (b"# coding: cp037\n" + GOOD.encode(), ":1: the coding line declares cp037",
                               ["ASCII-compatible"]),
        "utf16_file_with_bom": ('"""doc"""\n'.encode("utf-16"), ": the file is saved as UTF-16",
                                ["save it as UTF-8"]),
        "bom_and_latin1_coding_line": (b"\xef\xbb\xbf# coding: latin-1\n" + GOOD.encode(),
                                       ":1: the file starts with a UTF-8 byte-order mark", ["latin-1"]),
    }


@pytest.mark.parametrize("case", sorted(_refused_encodings()))
def test_files_python_refuses_to_decode_are_refused_with_a_location(tmp_path, case):
    data, start, words = _refused_encodings()[case]
    path = write_bytes(tmp_path, data)
    message = load_error(path)
    assert message.startswith(path + start), message
    for word in words:
        assert word in message
    assert "None" not in message
    assert check_error(path) == message


# -- 2. a real location or none: never "None" -----------------------------------------------

@pytest.mark.parametrize("data, line, column", [
    (b"\x00x = 1\n", 1, 1),
    (b"x = 1\ny = 2\x00\n", 2, 6),
    (b"x = 1\ns = 'a\x00b'\n", 2, 7),
    (b"x = 1\n\n# last line, no newline\x00", 3, 24),
    ("x = 1\n".encode("utf-16-le"), 1, 2),                        # UTF-16 without a byte-order mark
])
def test_null_byte_is_located(tmp_path, data, line, column):
    path = write_bytes(tmp_path, data)
    message = load_error(path)
    assert message.startswith(f"{path}:{line}:{column}: syntax error: source code cannot contain null bytes")
    assert "None" not in message and "\x00" not in message
    assert check_error(path) == message


@pytest.mark.parametrize("error, start, quoted", [
    (SyntaxError("bad"), "f.py: syntax error: bad", None),
    (SyntaxError("bad", ("f.py", None, None, None)), "f.py: syntax error: bad", None),
    (SyntaxError("bad", ("f.py", 0, -1, None)), "f.py: syntax error: bad", None),
    (SyntaxError("bad", ("f.py", 3, None, "x = (\n")), "f.py:3: syntax error: bad", "    x = ("),
    (SyntaxError("bad", ("f.py", 2, 0, "y = )\n")), "f.py:2: syntax error: bad", "    y = )"),
])
def test_syntax_message_never_prints_none(error, start, quoted):
    message = loader_module._syntax_message("f.py", error)
    assert message.splitlines()[0] == start
    assert "None" not in message and ":0:" not in message and ":-1" not in message
    if quoted is None:
        assert len(message.splitlines()) == 1
    else:
        assert message.splitlines()[1:] == [quoted]        # a line, but no caret without a column


@pytest.mark.parametrize("text", [
    "x = 1" + " + 1" * 100_000 + "\n",          # deeper than the compiler recurses
    "x = " + "-" * 100_000 + "1\n",             # deeper than the parser's stack
], ids=["long_sum", "deep_unary_minus"])
def test_compiler_limits_are_refused_readably(tmp_path, text):
    path = write_model(tmp_path, text)
    message = load_error(path)
    assert message.startswith(path + ":") and "None" not in message
    assert check_error(path) == message


# -- 3. paths that are not regular files, unreadable or too large ---------------------------

def _make(kind, tmp_path):
    """A path of the given kind, and what to clean up."""
    if kind == "fifo":
        path = str(tmp_path / "fifo.py")
        os.mkfifo(path)
        return path, None
    if kind == "socket":
        path = str(tmp_path / "s.py")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(path)
        except OSError as error:  # e.g. a temporary folder too deep for a socket's path
            server.close()
            pytest.skip(f"cannot make a socket here: {error}")
        server.listen(1)
        return path, server
    if kind == "link_to_fifo":
        os.mkfifo(tmp_path / "target_fifo")
        os.symlink(tmp_path / "target_fifo", tmp_path / "link.py")
        return str(tmp_path / "link.py"), None
    return kind, None                         # a device path


@pytest.mark.parametrize("kind, what", [
    ("fifo", "is a named pipe (FIFO)"),
    ("link_to_fifo", "is a named pipe (FIFO)"),
    ("socket", "is a socket"),
    ("/dev/zero", "is a character device"),
    ("/dev/null", "is a character device"),
    ("/dev/stdin", "is a named pipe (FIFO)"),  # stdin a pipe that nobody writes to
])
def test_non_regular_paths_are_refused_before_opening(tmp_path, kind, what):
    if kind.startswith("/dev/") and not os.path.exists(kind):
        pytest.skip(f"no {kind} here")
    path, keep = _make(kind, tmp_path)
    read_end, write_end = os.pipe()
    try:
        if kind != "/dev/stdin":  # this process's own stdin may be anything
            assert check_error(path) == f"{path}: {what}, not a model file: give the path of a Python file " \
                                        "(a regular file, which is read before it runs)"
        try:
            result = load_in_subprocess(path, cwd=tmp_path, stdin=read_end)
        except subprocess.TimeoutExpired:
            pytest.fail(f"loading {kind} hung")
        assert result.stdout.startswith(f"REFUSED {path}: {what}, not a model file"), result.stdout + result.stderr
    finally:
        os.close(read_end)
        os.close(write_end)
        if keep is not None:
            keep.close()


def test_link_to_a_regular_file_loads_from_the_files_folder(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    target = write_model(tmp_path / "real", GOOD + "import sys\nfirst_on_path = sys.path[0]\n")
    link = tmp_path / "links" / "model.py"
    os.symlink(target, link)
    assert loader_module.check_model_file(str(link)) is None
    spec = load_model_file(str(link))
    assert spec.path == str(link)
    assert spec.abspath == target == loader_module.resolve_model_path(str(link))
    assert spec.namespace["first_on_path"] == str(tmp_path / "real")   # Python's rule for a script


def _unreadable(tmp_path):
    """A regular file this process cannot open; as root, chmod 000 does not stop it."""
    path = tmp_path / "locked.py"
    path.write_text(GOOD)
    path.chmod(0)
    candidates = [str(path), "/proc/sys/vm/drop_caches", "/proc/sys/vm/compact_memory"]  # write-only
    for candidate in candidates:
        try:
            if not stat.S_ISREG(os.stat(candidate).st_mode):
                continue
            os.close(os.open(candidate, os.O_RDONLY | os.O_NONBLOCK))
        except PermissionError:
            return candidate
        except OSError:
            continue
    pytest.skip("no file here that this process cannot open")


def test_unreadable_file_is_explained(tmp_path):
    path = _unreadable(tmp_path)
    assert load_error(path) == f"{path}: cannot be read: permission denied"
    assert check_error(path) == f"{path}: cannot be read: permission denied"


def test_read_error_is_explained():
    path = "/proc/self/mem"  # a regular file whose first page is not mapped: reading it fails
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.read(fd, 1)
        finally:
            os.close(fd)
    except OSError as error:
        if error.errno != errno.EIO:
            pytest.skip(f"{path} fails here otherwise: {error}")
    else:
        pytest.skip(f"{path} can be read here")
    assert load_error(path) == f"{path}: cannot be read: input/output error"


def test_file_over_the_size_limit_is_refused_unread(tmp_path):
    limit = loader_module.MAX_MODEL_FILE_BYTES
    big = tmp_path / "big.py"
    with open(big, "wb") as f:
        f.truncate(limit + 1)  # sparse: nothing is written
    message = load_error(str(big))
    assert message.startswith(f"{big}: is {limit + 1:,} bytes, too large for a model file "
                              f"(at most {limit:,} bytes, 10 MiB, of Python source)")
    assert "np.load" in message
    assert check_error(str(big)) == message
    at_limit = write_bytes(tmp_path, b"#" * (limit - 1) + b"\n", name="at_limit.py")
    assert loader_module.check_model_file(at_limit) is None


def test_empty_file_checks_and_then_lacks_the_names(tmp_path):
    path = write_bytes(tmp_path, b"")
    assert loader_module.check_model_file(path) is None
    assert "missing model, loss, data" in load_error(path)


@pytest.mark.parametrize("make, expect", [
    (lambda t: str(t / "nope.py"), ": no such file"),
    (lambda t: str(t), ": is a folder, not a model file"),
    (lambda t: (os.symlink(t / "gone.py", t / "dangling.py"), str(t / "dangling.py"))[1],
     f": is a broken symbolic link (to "),
    (lambda t: write_model(t, GOOD) + "/inner.py", ": no such file (a part of the path is a file"),
    (lambda t: (os.symlink(t / "loop.py", t / "loop.py"), str(t / "loop.py"))[1],
     ": cannot be read: too many levels of symbolic links"),
], ids=["missing", "folder", "broken_link", "file_as_folder", "link_loop"])
def test_check_refuses_missing_paths_like_load(tmp_path, make, expect):
    path = make(tmp_path)
    message = check_error(path)
    assert message.startswith(path + expect)
    assert load_error(path) == message


@pytest.mark.parametrize("path, expect", [
    ("", "no model file given: the path is empty"),
    ("model\x00.py", "'model\\x00.py': not a usable file path (it contains a null byte)"),
])
def test_paths_that_cannot_name_a_file(path, expect):
    assert check_error(path).startswith(expect)
    assert load_error(path).startswith(expect)


# -- 4. a path that looks like an option; resolve_model_path --------------------------------

@pytest.mark.parametrize("name", ["-model.py", "--seed=3.py", "-"])
def test_path_starting_with_a_dash(tmp_path, monkeypatch, name):
    write_model(tmp_path, GOOD, name=name)
    monkeypatch.chdir(tmp_path)
    resolved = loader_module.resolve_model_path(name)
    assert resolved == str(tmp_path / name) and os.path.isabs(resolved)
    assert loader_module.resolve_model_path(tmp_path / "sub" / ".." / name) == resolved  # a Path works
    loader_module.check_model_file(name)
    spec = load_model_file(name)
    assert spec.path == name            # as the user typed it, for messages and the report
    assert spec.abspath == resolved


# -- 5. check_model_file: nothing runs ------------------------------------------------------

def test_check_model_file_does_not_run_the_file(tmp_path):
    marker = tmp_path / "ran"
    path = write_model(tmp_path, GOOD + f"open({str(marker)!r}, 'w').close()\n")
    assert loader_module.check_model_file(path) is None
    assert not marker.exists()
    syntax = write_model(tmp_path, "x = 1 +* 2\n", name="syntax.py")
    message = check_error(syntax)
    assert message.startswith(f"{syntax}:1:") and message.splitlines()[1] == "    x = 1 +* 2"
    assert load_error(syntax) == message


# -- 6. models that cannot train; a __doc__ that is not text --------------------------------

@pytest.mark.parametrize("lines, line, what", [
    ("model = cm.nn.Sequential()\n", 4, "a Sequential with no layers"),
    ("model = cm.nn.Sequential(cm.nn.ReLU(), cm.nn.Tanh())\n", 4,
     "a Sequential of ReLU, Tanh, none of them with weights"),
    ("model = cm.nn.ReLU()\n", 4, "a ReLU with no layers"),
    ("class Net(cm.nn.Module):\n    def forward(self, x):\n        return x * 2\n\nmodel = Net()\n", 8,
     "a Net with no layers"),
    ("model = cm.nn.Sequential()\nw = cm.nn.Parameter(np.zeros((2, 1)))\n"
     "optimizer = cm.optim.SGD([w], lr=0.1)\n", 4, "a Sequential with no layers"),   # the optimiser has some
], ids=["empty_sequential", "activations_only", "one_activation", "own_module", "with_an_optimizer"])
def test_model_without_parameters_is_refused(tmp_path, lines, line, what):
    path = write_model(tmp_path, HEADER + lines + LOSS + DATA)
    message = load_error(path)
    assert message.startswith(f"{path}:{line}: model has no parameters to train: it is {what}. ")
    assert "cm.nn.Linear" in message


def test_model_whose_parameters_raise_is_refused(tmp_path):
    path = write_model(tmp_path, HEADER + """\
class Net(cm.nn.Module):
    def parameters(self, recurse=True):
        raise RuntimeError("parameters are broken")

model = Net()
""" + LOSS + DATA)
    message = load_error(path)
    assert message.startswith(f"{path}: model.parameters() raised an error:")
    assert f'File "{path}", line 6, in parameters' in message
    assert message.endswith("RuntimeError: parameters are broken")


@pytest.mark.parametrize("value, got", [("5", "int"), ("b'bytes'", "bytes"), ("['x']", "list")])
def test_doc_that_is_not_a_string(tmp_path, value, got):
    path = write_model(tmp_path, GOOD + f"__doc__ = {value}\n")
    assert load_error(path) == (f"{path}:8: __doc__ must be a string (it is shown as the model's "
                                f"description), got {got}")


# -- 7. exits, BaseExceptions and fork while loading ----------------------------------------

@pytest.mark.parametrize("line, called", [
    ("sys.exit()", "exit()"),
    ("sys.exit('bye')", "exit('bye')"),
    ("raise SystemExit(None)", "exit()"),
])
def test_exit_codes_are_shown_as_written(tmp_path, line, called):
    path = write_model(tmp_path, f"import sys\n{line}\n")
    assert load_error(path) == f"{path}: the model file called {called} while loading"


@pytest.mark.parametrize("text, last", [
    ("raise GeneratorExit('closing')\n", "GeneratorExit: closing"),
    ("class Stop(BaseException):\n    pass\n\nraise Stop('mine')\n", "Stop: mine"),
    ("def gen():\n    yield 1\n\ng = gen()\nnext(g)\ng.throw(GeneratorExit)\n", "GeneratorExit: "),
    ("raise BaseExceptionGroup('several', [GeneratorExit()])\n", "BaseExceptionGroup: several (1 sub-exception)"),
], ids=["GeneratorExit", "own_BaseException", "thrown_into_generator", "BaseExceptionGroup"])
def test_base_exceptions_while_loading_are_model_errors(tmp_path, text, last):
    if "BaseExceptionGroup" in text and sys.version_info < (3, 11):
        pytest.skip("BaseExceptionGroup is Python 3.11+")
    path = write_model(tmp_path, text)
    message = load_error(path)
    assert message.startswith(f"{path}: the model file raised an error while loading:\n"
                              "Traceback (your code, most recent call last):\n")
    assert f'File "{path}", line ' in message
    assert message.splitlines()[-1] == last.rstrip() or message.endswith(last)


def test_exception_whose_message_fails_is_still_reported(tmp_path):
    path = write_model(tmp_path, "class Odd(Exception):\n    def __str__(self):\n"
                                 "        raise RuntimeError('no text')\n\nraise Odd()\n")
    message = load_error(path)
    assert f'File "{path}", line 5, in <module>' in message
    assert message.endswith("Odd: <Odd: its message could not be shown>")


def test_keyboard_interrupt_propagates_and_state_is_restored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    path = write_model(tmp_path, "import os\nos.chdir('elsewhere')\nraise KeyboardInterrupt\n")
    before = list(sys.path)
    with pytest.raises(KeyboardInterrupt):
        load_model_file(path)
    assert os.getcwd() == str(tmp_path)
    assert sys.path == before


@pytest.mark.parametrize("tail, expect", [
    ("import os\nchild = os.fork()\n", "LOADED"),
    ("import os\n\ndef start():\n    return os.fork()\n\nchild = start()\n", "LOADED"),
    ("import os\nchild = os.fork()\nraise RuntimeError('after the fork')\n", "REFUSED"),
], ids=["at_top_level", "in_a_function", "then_an_error"])
def test_a_fork_while_loading_leaves_one_process_going_on(tmp_path, tail, expect):
    if not hasattr(os, "fork"):
        pytest.skip("no os.fork here")
    path = write_model(tmp_path, GOOD + tail)
    result = load_in_subprocess(path, cwd=tmp_path)
    # two processes going on would both report (their lines may interleave)
    assert result.stdout.count("LOADED") + result.stdout.count("REFUSED") == 1, result.stdout
    assert result.stdout.startswith(expect), result.stdout + result.stderr
    assert result.returncode == 0, result.stderr


# -- 8. the working directory ---------------------------------------------------------------

@pytest.mark.parametrize("tail, refused", [
    ("", False),
    ("raise RuntimeError('no')\n", True),
    ("import sys\nsys.exit(1)\n", True),
    ("raise GeneratorExit\n", True),
])
def test_working_directory_is_restored(tmp_path, monkeypatch, tail, refused):
    (tmp_path / "models").mkdir()
    (tmp_path / "elsewhere").mkdir()
    write_model(tmp_path / "models", GOOD + f"import os\nos.chdir({str(tmp_path / 'elsewhere')!r})\n" + tail,
                name="m.py")
    monkeypatch.chdir(tmp_path)
    relative = os.path.join("models", "m.py")
    if refused:
        load_error(relative)
    else:
        spec = load_model_file(relative)
        assert spec.path == relative
        assert spec.abspath == str(tmp_path / "models" / "m.py")
    assert os.getcwd() == str(tmp_path)
    assert os.path.exists(relative)      # the path the user gave still means the same file
