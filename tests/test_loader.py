"""The model-file loader: the contract, readable errors for broken files, sys.path hygiene, seeding.

Every model file here is written into pytest's tmp_path by `write_model`, so each test shows the
exact file it loads.
"""
import os
import sys
import textwrap

import numpy as np
import pytest

import calcml as cm
from calcml import optim
from calcml.debug import ModelFileError, ModelSpec, load_model_file
from calcml.debug import loader as loader_module

# The calcml package directory (engine/): no path inside it may leak into a message for the user.
PACKAGE_DIR = os.path.dirname(os.path.abspath(cm.__file__))

# A minimal valid model file; tests append or replace lines.
HEADER = """\
import numpy as np
import calcml as cm
import calcml.nn.functional as F
"""
MODEL = "model = cm.nn.Sequential(cm.nn.Linear(2, 4), cm.nn.Tanh(), cm.nn.Linear(4, 1))\n"
LOSS = "def loss(pred, target):\n    return F.mse_loss(pred, target)\n"
DATA = "data = (np.zeros((8, 2)), np.zeros((8, 1)))\n"
GOOD = HEADER + MODEL + LOSS + DATA


def write_model(folder, text, name="model_file.py"):
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def load_error(path, **kwargs) -> str:
    """Load a file that must be refused; return the message (never a calcml traceback)."""
    with pytest.raises(ModelFileError) as info:
        load_model_file(path, **kwargs)
    message = str(info.value)
    assert PACKAGE_DIR + os.sep not in message, f"a calcml path leaked into the message:\n{message}"
    assert "Traceback (most recent call last)" not in message
    # `from None`: the loader's own exception context is not chained onto the user's error.
    assert info.value.__cause__ is None
    return message


def weights(spec: ModelSpec) -> list:
    return [p.data.copy() for p in spec.model.parameters()]


# -- a good file ---------------------------------------------------------------------------

def test_minimal_file_loads_with_defaults(tmp_path):
    path = write_model(tmp_path, GOOD)
    spec = load_model_file(path)
    assert isinstance(spec, ModelSpec)
    assert isinstance(spec.model, cm.nn.Module)
    assert callable(spec.loss)
    X, y = spec.data
    assert X.shape == (8, 2) and y.shape == (8, 1)
    assert spec.name == "model_file"
    assert spec.path == path
    # optional names and their defaults
    assert type(spec.optimizer) is optim.SGD
    assert spec.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    ids = {id(p) for group in spec.optimizer.param_groups for p in group["params"]}
    assert ids == {id(p) for p in spec.model.parameters()}, "the default SGD must optimise the model"
    assert spec.regularizer is None
    assert spec.batch_size is None
    assert spec.val_data is None
    assert spec.steps is None
    assert spec.seed == 0
    assert spec.description == ""


def test_all_optional_names_are_read(tmp_path):
    doc = '"""Two-line description.\n\nMore detail here.\n"""\n'
    path = write_model(tmp_path, doc + HEADER + MODEL + LOSS + DATA + (
        "optimizer = cm.optim.Adam(model.parameters(), lr=0.003)\n"
        "regularizer = cm.reg.L2(0.01)\n"
        "batch_size = 4\n"
        "val_data = (np.ones((3, 2)), np.ones((3, 1)))\n"
        "seed = 11\n"
        "steps = 42\n"))
    spec = load_model_file(path)
    assert type(spec.optimizer) is optim.Adam
    assert spec.optimizer.param_groups[0]["lr"] == pytest.approx(0.003)
    assert isinstance(spec.regularizer, cm.reg.L2) and spec.regularizer.lam == pytest.approx(0.01)
    assert spec.batch_size == 4 and type(spec.batch_size) is int
    Xv, yv = spec.val_data
    assert Xv.shape == (3, 2) and yv.shape == (3, 1)
    assert spec.seed == 11
    assert spec.steps == 42
    assert spec.description == "Two-line description.\n\nMore detail here."


def test_numpy_integer_batch_size_is_accepted_as_int(tmp_path):
    spec = load_model_file(write_model(tmp_path, GOOD + "batch_size = np.int64(4)\n"))
    assert spec.batch_size == 4 and type(spec.batch_size) is int


def test_steps_argument_overrides_the_file(tmp_path):
    path = write_model(tmp_path, GOOD + "steps = 42\n")
    assert load_model_file(path, steps=3).steps == 3
    assert load_model_file(path).steps == 42


@pytest.mark.parametrize("data", [
    "data = [(np.zeros((4, 2)), np.zeros((4, 1)))] * 3",          # a list of batches (not two)
    "data = cm.data.DataLoader((np.zeros((8, 2)), np.zeros((8, 1))), batch_size=4)",
    "data = lambda: (np.zeros((4, 2)), np.zeros((4, 1)))",         # a function giving a batch
    "data = ((np.zeros((4, 2)), np.zeros((4, 1))) for _ in range(3))",  # a generator
])
def test_other_data_forms_are_accepted(tmp_path, data):
    spec = load_model_file(write_model(tmp_path, HEADER + MODEL + LOSS + data + "\n"))
    assert spec.data is spec.namespace["data"]


def test_tensor_pairs_are_unwrapped_to_arrays(tmp_path):
    spec = load_model_file(write_model(tmp_path, HEADER + MODEL + LOSS
                                       + "data = (cm.tensor(np.zeros((5, 2))), cm.tensor(np.zeros((5, 1))))\n"))
    X, y = spec.data
    assert isinstance(X, np.ndarray) and isinstance(y, np.ndarray) and len(X) == 5


def test_file_runs_in_its_own_namespace(tmp_path):
    path = write_model(tmp_path, GOOD + "marker_for_namespace_test = 123\n__name__check = __name__\n")
    spec = load_model_file(path)
    assert spec.namespace["marker_for_namespace_test"] == 123
    assert spec.namespace["__file__"] == os.path.abspath(path)
    assert spec.namespace["__name__check"] != "__main__"
    assert "marker_for_namespace_test" not in globals()
    assert "marker_for_namespace_test" not in vars(loader_module)
    # two loads do not share a namespace
    other = load_model_file(path)
    assert other.namespace is not spec.namespace
    assert other.model is not spec.model


def test_neighbour_module_importable_and_sys_path_restored(tmp_path):
    folder = tmp_path / "project_a"
    folder.mkdir()
    (folder / "calcml_test_neighbour_a.py").write_text("WIDTH = 7\n")
    path = write_model(folder, HEADER + "import sys\nfrom calcml_test_neighbour_a import WIDTH\n"
                       "path_during_load = list(sys.path)\n"
                       "model = cm.nn.Linear(2, WIDTH)\n" + LOSS + DATA)
    before = list(sys.path)
    try:
        spec = load_model_file(path)
    finally:
        sys.modules.pop("calcml_test_neighbour_a", None)
    assert spec.namespace["WIDTH"] == 7
    assert spec.model.weight.shape == (7, 2)
    assert spec.namespace["path_during_load"][0] == str(folder)
    assert sys.path == before


def test_sys_path_restored_when_the_file_fails(tmp_path):
    before = list(sys.path)
    load_error(write_model(tmp_path, "raise RuntimeError('no')\n"))
    assert sys.path == before
    load_error(write_model(tmp_path, "model = (\n"))
    assert sys.path == before
    load_error(write_model(tmp_path, "import sys\nsys.exit(3)\n"))
    assert sys.path == before


def test_sys_path_restored_when_folder_was_already_on_it(tmp_path):
    sys.path.append(str(tmp_path))
    try:
        before = list(sys.path)
        load_model_file(write_model(tmp_path, GOOD))
        assert sys.path == before
    finally:
        sys.path.remove(str(tmp_path))


def test_same_named_neighbour_in_two_folders_is_not_stale(tmp_path):
    values = []
    try:
        for value in (1, 2):
            folder = tmp_path / f"p{value}"
            folder.mkdir()
            (folder / "calcml_test_helpers_same.py").write_text(f"VALUE = {value}\n")
            spec = load_model_file(write_model(folder, GOOD + "from calcml_test_helpers_same import VALUE\n"))
            values.append(spec.namespace["VALUE"])
    finally:
        sys.modules.pop("calcml_test_helpers_same", None)
    assert values == [1, 2]


# -- seeding -------------------------------------------------------------------------------

def test_literal_seed_in_file_seeds_initialisation(tmp_path):
    path = write_model(tmp_path, GOOD + "seed = 5\n")
    a, b = load_model_file(path), load_model_file(path)
    assert a.seed == b.seed == 5
    for wa, wb in zip(weights(a), weights(b)):
        np.testing.assert_array_equal(wa, wb)


def test_seed_is_applied_before_the_file_runs(tmp_path):
    # The file's seed line comes after the model is built: it still governs initialisation.
    path5 = write_model(tmp_path, HEADER + MODEL + LOSS + DATA + "seed = 5\n", name="five.py")
    path6 = write_model(tmp_path, HEADER + MODEL + LOSS + DATA + "seed = 6\n", name="six.py")
    cm.manual_seed(5)
    expected = cm.nn.Sequential(cm.nn.Linear(2, 4), cm.nn.Tanh(), cm.nn.Linear(4, 1))
    five = load_model_file(path5)
    for got, want in zip(weights(five), expected.parameters()):
        np.testing.assert_array_equal(got, want.data)
    six = load_model_file(path6)
    assert not np.array_equal(weights(five)[0], weights(six)[0])


def test_numpy_global_generator_is_seeded_too(tmp_path):
    path = write_model(tmp_path, HEADER + MODEL + LOSS
                       + "seed = 5\nX = np.random.randn(8, 2)\ndata = (X, np.zeros((8, 1)))\n")
    a, b = load_model_file(path), load_model_file(path)
    np.testing.assert_array_equal(a.data[0], b.data[0])
    c = load_model_file(path, seed=7)
    assert not np.array_equal(a.data[0], c.data[0])


def test_seed_argument_overrides_the_file(tmp_path):
    path = write_model(tmp_path, GOOD + "seed = 5\n")
    five = load_model_file(path)
    seven = load_model_file(path, seed=7)
    seven_again = load_model_file(path, seed=7)
    assert seven.seed == 7
    assert not np.array_equal(weights(five)[0], weights(seven)[0])
    for wa, wb in zip(weights(seven), weights(seven_again)):
        np.testing.assert_array_equal(wa, wb)


def test_no_seed_means_seed_zero_and_repeatable(tmp_path):
    path = write_model(tmp_path, GOOD)
    a, b = load_model_file(path), load_model_file(path)
    assert a.seed == 0
    np.testing.assert_array_equal(weights(a)[0], weights(b)[0])
    explicit = load_model_file(write_model(tmp_path, GOOD + "seed = 0\n", name="zero.py"))
    np.testing.assert_array_equal(weights(a)[0], weights(explicit)[0])


# -- broken files: readable messages -------------------------------------------------------

def test_syntax_error_shows_file_line_column_and_caret(tmp_path):
    path = write_model(tmp_path, "import calcml as cm\nmodel = cm.nn.Linear(2,\n    1))\n")
    message = load_error(path)
    first, quoted, caret = message.splitlines()[:3]
    assert first.startswith(f"{path}:3:")
    column = int(first[len(path) + 3:].split(":")[0])
    assert column >= 1
    assert "syntax error" in first and "')'" in first
    assert quoted == "        1))"           # the offending line, as written, indented by 4
    assert caret == "    " + " " * (column - 1) + "^"
    assert quoted[4 + column - 1] == ")"


def test_syntax_error_caret_points_at_the_column(tmp_path):
    path = write_model(tmp_path, "x = 1 +* 2\n")
    message = load_error(path)
    first, quoted, caret = message.splitlines()[:3]
    column = int(first.split(":")[-3])
    assert first.startswith(f"{path}:1:{column}: syntax error")
    assert quoted == "    x = 1 +* 2"
    assert caret == "    " + " " * (column - 1) + "^"
    assert quoted[4 + column - 1] == "*"


def test_indentation_error_is_a_syntax_error_message(tmp_path):
    message = load_error(write_model(tmp_path, "import calcml as cm\n  model = 1\n"))
    assert ":2:" in message and "syntax error" in message


@pytest.mark.parametrize("text, missing, found", [
    (HEADER + LOSS + DATA, ["model"], ["loss", "data"]),
    (HEADER + MODEL + DATA + "steps = 3\n", ["loss"], ["model", "data", "steps"]),
    (HEADER + MODEL + LOSS, ["data"], ["model", "loss"]),
    (HEADER, ["model", "loss", "data"], []),
])
def test_missing_names_say_what_is_required_and_found(tmp_path, text, missing, found):
    message = load_error(write_model(tmp_path, text))
    head, _, rest = message.partition("found:")
    assert f"missing {', '.join(missing)}." in head
    for name in ("model", "loss", "data"):
        assert name in head   # the contract is restated
    assert "cm.nn.Module" in head
    if found:
        assert [n.strip(" .") for n in rest.split(",")] == found
    else:
        assert "none of them" in rest


@pytest.mark.parametrize("line, expect", [
    ("model = 3", "model must be a cm.nn.Module, got int"),
    ("model = cm.nn.Linear", "did you forget to instantiate it"),
    ("model = [cm.nn.Linear(2, 1)]", "model must be a cm.nn.Module, got list"),
])
def test_wrong_model(tmp_path, line, expect):
    message = load_error(write_model(tmp_path, HEADER + line + "\n" + LOSS + DATA))
    assert expect in message


def test_model_class_hint_only_for_classes(tmp_path):
    message = load_error(write_model(tmp_path, HEADER + "model = 'net'\n" + LOSS + DATA))
    assert "got str" in message and "instantiate" not in message


def test_model_class_hint_for_a_user_class(tmp_path):
    message = load_error(write_model(tmp_path, HEADER + """\
class Net(cm.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = cm.nn.Linear(2, 1)

    def forward(self, x):
        return self.fc(x)

model = Net
""" + LOSS + DATA))
    assert "got type" in message
    assert "Net() instead of Net" in message


def test_loss_not_callable(tmp_path):
    message = load_error(write_model(tmp_path, HEADER + MODEL + "loss = 0.5\n" + DATA))
    assert "loss must be a function loss(pred, target)" in message and "got float" in message


@pytest.mark.parametrize("line, got", [
    ("optimizer = 'adam'", "got str"),
    ("optimizer = cm.optim.SGD", "got type"),
    ("optimizer = 0.01", "got float"),
])
def test_optimizer_wrong_type(tmp_path, line, got):
    message = load_error(write_model(tmp_path, GOOD + line + "\n"))
    assert "optimizer must be a cm.optim optimiser" in message and got in message
    assert "cm.optim.SGD(model.parameters(), lr=0.01)" in message


@pytest.mark.parametrize("line, got", [
    ("regularizer = 0.01", "got float"),
    ("regularizer = 'L2'", "got str"),
    ("regularizer = cm.reg.L2", "got type"),
])
def test_regularizer_wrong_type(tmp_path, line, got):
    message = load_error(write_model(tmp_path, GOOD + line + "\n"))
    assert "regularizer must be cm.reg.L1(λ), cm.reg.L2(λ) or None" in message and got in message


def test_regularizer_none_is_allowed(tmp_path):
    assert load_model_file(write_model(tmp_path, GOOD + "regularizer = None\n")).regularizer is None


@pytest.mark.parametrize("value", ["0", "-3", "2.5", "True", "'32'"])
def test_bad_batch_size(tmp_path, value):
    message = load_error(write_model(tmp_path, GOOD + f"batch_size = {value}\n"))
    assert f"batch_size must be a positive integer or None, got {value}" in message


@pytest.mark.parametrize("value", ["-1", "0", "1.5", "False"])
def test_bad_steps(tmp_path, value):
    message = load_error(write_model(tmp_path, GOOD + f"steps = {value}\n"))
    assert f"steps must be a positive integer, got {value}" in message


def test_val_data_mismatched_lengths(tmp_path):
    message = load_error(write_model(tmp_path, GOOD + "val_data = (np.zeros((5, 2)), np.zeros((4, 1)))\n"))
    assert "val_data: X has 5 samples but y has 4" in message


def test_data_mismatched_lengths(tmp_path):
    message = load_error(write_model(tmp_path, HEADER + MODEL + LOSS
                                     + "data = (np.zeros((6, 2)), np.zeros((7, 1)))\n"))
    assert "data: X has 6 samples but y has 7" in message


@pytest.mark.parametrize("line, expect", [
    ("val_data = np.zeros((4, 2))", "val_data must be a pair (X, y) of arrays, got ndarray"),
    ("val_data = (np.zeros((4, 2)),)", "val_data must be a pair (X, y) of arrays, got tuple"),
    ("val_data = (np.zeros((0, 2)), np.zeros((0, 1)))", "val_data has no samples"),
    ("val_data = (np.array([['a', 'b']]), np.zeros(1))", "val_data: X must be numeric"),
])
def test_bad_val_data(tmp_path, line, expect):
    assert expect in load_error(write_model(tmp_path, GOOD + line + "\n"))


def test_data_of_the_wrong_type(tmp_path):
    message = load_error(write_model(tmp_path, HEADER + MODEL + LOSS + "data = 5\n"))
    assert "data must be (X, y) arrays" in message and "got int" in message


def _user_code_raising(tmp_path):
    """A file whose error is raised inside calcml (a bad layer size), called from the user's helper."""
    return write_model(tmp_path, HEADER + """\
def build(width):
    return cm.nn.Linear(2, width)

model = build(-4)
""" + LOSS + DATA)


def test_exception_while_loading_shows_only_user_frames(tmp_path):
    path = write_model(tmp_path, HEADER + """\
def helper():
    raise RuntimeError("kaboom in the user's helper")

model = cm.nn.Linear(2, 1)
helper()
""")
    message = load_error(path)
    assert message.startswith(f"{path}: the model file raised an error while loading")
    assert "Traceback (your code, most recent call last):" in message
    assert f'File "{path}", line 8, in <module>' in message
    assert f'File "{path}", line 5, in helper' in message
    assert "    helper()" in message
    assert message.rstrip().endswith("RuntimeError: kaboom in the user's helper")
    assert "loader.py" not in message


def test_exception_inside_calcml_called_from_user_code_hides_calcml_frames(tmp_path):
    path = _user_code_raising(tmp_path)
    message = load_error(path)
    assert f'File "{path}", line 7, in <module>' in message
    assert "model = build(-4)" in message
    assert f'File "{path}", line 5, in build' in message
    assert "negative dimensions are not allowed" in message
    assert PACKAGE_DIR not in message


def test_exception_from_calcml_op_in_user_code(tmp_path):
    # a shape mismatch raised by the engine while the file itself runs a forward pass
    path = write_model(tmp_path, GOOD + "probe = model(np.zeros((3, 5)))\n")
    message = load_error(path)
    assert f'File "{path}", line 8, in <module>' in message
    assert "0 (Linear): matmul (3, 5) @ (2, 4)" in message
    assert "probe = model(np.zeros((3, 5)))" in message
    assert PACKAGE_DIR not in message


def test_exit_in_model_file_is_explained(tmp_path):
    path = write_model(tmp_path, "import sys\nsys.exit(3)\n")
    assert load_error(path) == f"{path}: the model file called exit(3) while loading"


def test_missing_file_is_explained(tmp_path):
    path = str(tmp_path / "does_not_exist.py")
    message = load_error(path)
    assert message.startswith(f"{path}: no such file")
    assert "without one for the built-in demo" in message


def test_directory_is_explained(tmp_path):
    message = load_error(str(tmp_path))
    assert message.startswith(f"{tmp_path}: is a folder, not a model file")


def test_undecodable_file_is_explained(tmp_path):
    path = tmp_path / "latin1.py"
    path.write_bytes(b"x = '\xe9\xff\xfe'\n")
    assert "cannot be read" in load_error(str(path))


# -- known gaps (each raises a calcml-internal exception instead of ModelFileError) --------

def test_scalar_pair_is_refused_readably(tmp_path):
    load_error(write_model(tmp_path, HEADER + MODEL + LOSS + "data = (1.0, 2.0)\n"))


def test_list_of_two_batches_is_accepted(tmp_path):
    spec = load_model_file(write_model(tmp_path, HEADER + MODEL + LOSS
                                       + "data = [(np.zeros((4, 2)), np.zeros((4, 1)))] * 2\n"))
    assert spec.data is spec.namespace["data"]


def test_negative_seed_is_refused_readably(tmp_path):
    load_error(write_model(tmp_path, GOOD + "seed = -1\n"))


def test_dataclass_with_postponed_annotations_loads(tmp_path):
    spec = load_model_file(write_model(tmp_path, "from __future__ import annotations\n"
                                       "from dataclasses import dataclass\n" + GOOD
                                       + "@dataclass\nclass Config:\n    width: int = 4\n"))
    assert spec.namespace["Config"]().width == 4


def test_unhashable_literal_seed_does_not_crash_the_loader(tmp_path):
    # ast.literal_eval raises TypeError on {[1]: 2}: not a literal seed; the file then fails readably
    path = write_model(tmp_path, "seed = {[1]: 2}\n" + GOOD)
    message = load_error(path)
    assert f'File "{path}", line 1, in <module>' in message
    assert "TypeError: unhashable type: 'list'" in message
