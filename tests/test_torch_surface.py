"""PyTorch's names in calcml: creation, dtypes, devices, missing-name advice, save/load, and a
tutorial ported by changing the import. Where PyTorch is installed, each is compared with it."""
import io
import json
import pickle
import zipfile

import numpy as np
import pytest

import calcml as cm
from calcml import nn
from calcml.utils.data import DataLoader, TensorDataset


def _torch():
    return pytest.importorskip("torch")


def _np(t):
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t.data)


# -- creation: shapes, values, dtypes, against torch ------------------------------------------

# (call, args, kwargs): deterministic creation calls that mean the same in both
DETERMINISTIC = [
    ("zeros", (2, 3), {}), ("zeros", ((2, 3),), {}), ("zeros", ([4],), {}), ("zeros", ((),), {}),
    ("ones", (3,), {}), ("ones", (2, 1, 2), {}), ("full", ((2, 2), 1.5), {}), ("full", ((3,), -2.0), {}),
    ("eye", (3,), {}), ("eye", (2, 4), {}), ("arange", (5.0,), {}), ("arange", (1.0, 4.0), {}),
    ("arange", (0, 1, 0.3), {}), ("arange", (5.0, 0.0, -1.5), {}), ("linspace", (0, 1, 5), {}),
    ("linspace", (-2, 2, 1), {}), ("zeros", (2,), {"dtype": "float64"}), ("ones", (2,), {"dtype": "float32"}),
    ("eye", (2,), {"dtype": "float64"}),
]


@pytest.mark.parametrize("name, args, kwargs", DETERMINISTIC)
def test_deterministic_creation_matches_torch(name, args, kwargs):
    torch = _torch()
    t_kwargs = {k: getattr(torch, v) for k, v in kwargs.items()}
    c_kwargs = {k: getattr(cm, v) for k, v in kwargs.items()}
    expected = getattr(torch, name)(*args, **t_kwargs)
    got = getattr(cm, name)(*args, **c_kwargs)
    assert isinstance(got, cm.Tensor)
    assert got.shape == tuple(expected.shape)
    np.testing.assert_allclose(got.data, expected.numpy(), rtol=1e-6, atol=1e-7)
    if kwargs:  # an explicit dtype is honoured as in torch
        assert str(got.dtype) == str(expected.dtype).removeprefix("torch.")


def test_size_given_by_keyword_and_the_errors_torch_gives():
    torch = _torch()
    assert cm.zeros(size=(2, 3)).shape == tuple(torch.zeros(size=(2, 3)).shape) == (2, 3)
    for call in (lambda m: m.zeros(-1), lambda m: m.eye(-1), lambda m: m.arange(0, 1, 0)):
        with pytest.raises(RuntimeError):
            call(torch)
        with pytest.raises(RuntimeError):
            call(cm)
    for call in (lambda m: m.zeros(2.5), lambda m: m.zeros(), lambda m: m.linspace(0, 1),
                 lambda m: m.randint(5), lambda m: m.normal(0.0, 1.0), lambda m: m.from_numpy([1.0])):
        with pytest.raises(TypeError):
            call(torch)
        with pytest.raises(TypeError):
            call(cm)


def test_like_functions_keep_shape_and_dtype():
    torch = _torch()
    for dtype in ("float32", "float64"):
        base_t = torch.zeros(2, 3, dtype=getattr(torch, dtype))
        base_c = cm.zeros(2, 3, dtype=getattr(cm, dtype))
        for name, extra in (("zeros_like", ()), ("ones_like", ()), ("full_like", (7.0,)), ("empty_like", ())):
            t = getattr(torch, name)(base_t, *extra)
            c = getattr(cm, name)(base_c, *extra)
            assert c.shape == tuple(t.shape) and str(c.dtype) == dtype
            if name != "empty_like":
                np.testing.assert_array_equal(c.data, t.numpy())
    assert cm.ones_like(np.zeros((2, 2), dtype=np.int64)).dtype == cm.float64   # floats only (see module)
    assert cm.zeros_like(base_c, dtype=cm.float64).dtype == cm.float64


def test_empty_has_the_shape_and_no_stray_values():
    assert cm.empty(3, 2).shape == (3, 2) and np.all(np.isfinite(cm.empty(3, 2).data))


def test_dtype_names_are_torchs_and_compare_with_tensor_dtypes():
    torch = _torch()
    assert cm.float is cm.float32 and cm.double is cm.float64
    assert torch.float is torch.float32 and torch.double is torch.float64
    assert cm.tensor([1.0], dtype=cm.float32).dtype == cm.float32
    assert cm.zeros(2, dtype=cm.double).dtype == cm.float64 == np.float64
    assert cm.get_default_dtype() == cm.float64      # calcml's default; torch's is float32
    assert "float" not in cm.__all__                 # `from calcml import *` keeps the builtin float
    assert cm.zeros(2, dtype=cm.long).dtype == np.int64 and cm.long is cm.int64
    with pytest.raises(TypeError, match="float64 .* or bool, not .*float16"):
        cm.zeros(2, dtype=np.float16)


def test_requires_grad_makes_leaves_that_backpropagate():
    for make in (lambda: cm.zeros(3, requires_grad=True), lambda: cm.randn(3, requires_grad=True),
                 lambda: cm.full((3,), 2.0, requires_grad=True), lambda: cm.linspace(0, 1, 3, requires_grad=True)):
        x = make()
        assert x.requires_grad and x.is_leaf
        (x * x).sum().backward()
        np.testing.assert_allclose(x.grad, 2 * x.data)
    assert not cm.ones(2).requires_grad


def test_tensor_as_tensor_from_numpy_share_or_copy_as_torch():
    torch = _torch()
    a = np.arange(4.0)
    for m in (torch, cm):
        shared, copied, as_t = m.from_numpy(a), m.tensor(a), m.as_tensor(a)
        a[0] = 10.0
        assert _np(shared)[0] == 10.0 and _np(as_t)[0] == 10.0 and _np(copied)[0] == 0.0
        a[0] = 0.0
    t = cm.tensor([1.0, 2.0], device="cpu", requires_grad=True)
    assert t.requires_grad and cm.as_tensor(t) is t
    # integer data keeps int64, as torch
    assert torch.tensor([1, 2]).dtype == torch.int64
    assert cm.tensor([1, 2]).dtype == cm.int64 and cm.tensor([1, 2]).tolist() == [1, 2]


# -- random ------------------------------------------------------------------------------------

def test_random_shapes_ranges_and_statistics_match_torch():
    torch = _torch()
    torch.manual_seed(0)
    cm.manual_seed(0)
    for name, args in (("randn", (2, 3)), ("rand", ((4,),)), ("randn", ((),))):
        assert getattr(cm, name)(*args).shape == tuple(getattr(torch, name)(*args).shape)
    n = 20000
    for name in ("randn", "rand"):
        t, c = getattr(torch, name)(n).double().numpy(), getattr(cm, name)(n).data
        assert abs(t.mean() - c.mean()) < 0.03 and abs(t.std() - c.std()) < 0.03
    r = cm.rand(n).data
    assert r.min() >= 0 and r.max() < 1
    ri = cm.randint(3, 10, (n,)).data
    ti = torch.randint(3, 10, (n,)).numpy()
    assert set(np.unique(ri)) == set(np.unique(ti)) == set(range(3, 10))
    assert cm.randint(10, (2, 2)).shape == tuple(torch.randint(10, (2, 2)).shape)
    assert cm.randint(10, size=(3,)).shape == (3,)
    with pytest.raises(RuntimeError):
        torch.randint(5, 5, (2,))
    with pytest.raises(RuntimeError):
        cm.randint(5, 5, (2,))


def test_normal_overloads_match_torch_shapes_and_moments():
    torch = _torch()
    assert cm.normal(cm.zeros(2, 3), 1.0).shape == tuple(torch.normal(torch.zeros(2, 3), 1.0).shape)
    assert cm.normal(0.0, cm.ones(3)).shape == tuple(torch.normal(0.0, torch.ones(3)).shape)
    assert cm.normal(0.0, 1.0, (4,)).shape == tuple(torch.normal(0.0, 1.0, (4,)).shape)
    x = cm.normal(5.0, 2.0, size=(20000,)).data
    assert abs(x.mean() - 5.0) < 0.1 and abs(x.std() - 2.0) < 0.1
    with pytest.raises(RuntimeError):
        torch.normal(0.0, -1.0, (2,))
    with pytest.raises(RuntimeError):
        cm.normal(0.0, -1.0, (2,))


def test_generator_and_manual_seed_repeat_calcml_numbers():
    torch = _torch()
    assert cm.Generator().initial_seed() == torch.Generator().initial_seed()
    g = cm.Generator()
    assert g.manual_seed(3) is g and g.initial_seed() == 3
    a = cm.randn(5, generator=cm.Generator().manual_seed(1)).data
    b = cm.randn(5, generator=cm.Generator().manual_seed(1)).data
    c = cm.randn(5, generator=cm.Generator().manual_seed(2)).data
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    cm.manual_seed(4)
    first = cm.rand(3).data
    cm.manual_seed(4)
    assert np.array_equal(first, cm.rand(3).data)
    # a generator's stream is its own: drawing from it leaves the global one where it was
    cm.manual_seed(4)
    cm.rand(3, generator=g)
    assert np.array_equal(first, cm.rand(3).data)
    with pytest.raises(TypeError, match="cm.Generator"):
        cm.rand(2, generator=5)


# -- devices -----------------------------------------------------------------------------------

def test_cpu_device_behaves_like_torchs():
    torch = _torch()
    for spec in ("cpu", "cpu:0"):
        assert str(cm.device(spec)) == str(torch.device(spec))
        assert repr(cm.device(spec)) == repr(torch.device(spec))
        assert cm.device(spec).type == torch.device(spec).type and cm.device(spec).index == torch.device(spec).index
    assert cm.device("cpu") == cm.device(cm.device("cpu")) and hash(cm.device("cpu")) == hash(cm.device("cpu"))
    assert cm.cuda.is_available() is False and cm.cuda.device_count() == 0
    assert cm.backends.mps.is_available() is False
    cm.cuda.manual_seed_all(0)                 # tutorials call it; a no-op, as without CUDA
    cm.backends.cudnn.deterministic = True     # likewise settable
    with pytest.raises(RuntimeError):
        torch.device("nonsense")
    with pytest.raises(RuntimeError, match="one device, 'cpu'"):
        cm.device("nonsense")


@pytest.mark.parametrize("ask", [lambda: cm.device("cuda"), lambda: cm.device("cuda:0"), lambda: cm.device("mps"),
                                 lambda: cm.zeros(2, device="cuda"), lambda: cm.tensor([1.0], device="cuda"),
                                 lambda: nn.Linear(2, 1).to("cuda"), lambda: nn.Linear(2, 1).cuda(),
                                 lambda: cm.cuda.current_device()])
def test_asking_for_a_gpu_says_calcml_runs_on_the_cpu_and_where_to_go(ask):
    with pytest.raises(RuntimeError) as error:
        ask()
    assert "calcml runs on the CPU" in str(error.value) and "Debugging a PyTorch model" in str(error.value)


def test_the_tutorial_device_line_runs_unchanged():
    device = cm.device("cuda" if cm.cuda.is_available() else "mps" if cm.backends.mps.is_available() else "cpu")
    model = nn.Linear(3, 2).to(device)
    x = cm.randn(4, 3, device=device)
    assert model(x).shape == (4, 2) and model.cpu() is model


def test_module_to_converts_dtype_as_torch():
    torch = _torch()
    t_model, c_model = torch.nn.Linear(2, 2), nn.Linear(2, 2)
    assert t_model.to(torch.float64) is t_model and c_model.to(cm.float32) is c_model
    assert all(p.dtype == torch.float64 for p in t_model.parameters())
    assert all(p.dtype == cm.float32 for p in c_model.parameters())
    c_model.double()
    assert all(p.dtype == cm.float64 for p in c_model.parameters())
    c_model.to(cm.zeros(1, dtype=cm.float32), non_blocking=True)
    assert c_model.weight.dtype == cm.float32 and c_model(cm.zeros(1, 2, dtype=cm.float32)).dtype == cm.float32
    c_model.to(device="cpu", dtype=cm.float64)
    assert c_model.bias.dtype == cm.float64
    (c_model(cm.ones(3, 2)) ** 2).sum().backward()
    c_model.float()                                   # gradients are converted with the weights
    assert np.asarray(c_model.weight.grad).dtype == cm.float32
    with pytest.raises(TypeError, match="float dtype"):
        c_model.to(np.int64)


# -- names PyTorch has and calcml lacks ----------------------------------------------------------

@pytest.mark.parametrize("module, name, torch_path", [
    (cm, "bmm", "torch.bmm"), (cm, "float16", "torch.float16"),
    (nn, "ConvTranspose2d", "torch.nn.ConvTranspose2d"), (nn, "LSTM", "torch.nn.LSTM"),
    (nn.functional, "interpolate", "torch.nn.functional.interpolate"),
])
def test_a_pytorch_name_calcml_lacks_says_so_and_what_to_use(module, name, torch_path):
    torch = _torch()
    obj = torch
    for part in torch_path.split(".")[1:]:
        obj = getattr(obj, part)          # the name really is PyTorch's
    with pytest.raises(AttributeError) as error:
        getattr(module, name)
    message = str(error.value)
    assert f"has no '{name}' (PyTorch's {torch_path});" in message and len(message) > len(torch_path) + 40
    assert not hasattr(module, name)


def test_unknown_names_get_the_normal_message_and_imports_still_work():
    with pytest.raises(AttributeError, match="^module 'calcml' has no attribute 'no_such_thing'$"):
        cm.no_such_thing
    with pytest.raises(AttributeError, match="^module 'calcml.nn' has no attribute 'Nope'$"):
        nn.Nope
    from calcml import debug  # noqa: F401  (a submodule is still imported by `from calcml import`)
    assert callable(cm.tensor) and cm.tensor([1.0]).shape == (1,)


def test_integer_tensor_types_are_refused_by_name_with_advice():
    with pytest.raises(AttributeError, match=r"cm.tensor\(data, dtype=cm.long\)"):
        cm.LongTensor


# -- save / load ---------------------------------------------------------------------------------

def test_state_dict_round_trips_through_save_and_load(tmp_path):
    cm.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    path = tmp_path / "model.pt"
    cm.save(model.state_dict(), path)
    assert path.exists() and not (tmp_path / "model.pt.npz").exists()   # the path as given, as torch.save
    other = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    state = cm.load(path)
    assert list(state) == list(model.state_dict())
    other.load_state_dict(state)
    x = cm.randn(5, 3)
    np.testing.assert_array_equal(model(x).data, other(x).data)
    # tensors in a state dict (as torch gives) load too
    other.load_state_dict({k: cm.tensor(v) for k, v in model.state_dict().items()})


def test_save_load_keeps_types_and_nesting(tmp_path):
    t = cm.tensor([[1.0, 2.0]], dtype=cm.float32, requires_grad=True)
    obj = {"model": {"w": t, "b": np.arange(3)}, "epoch": 3, "lr": 0.1, "name": "run", "none": None,
           "hist": [1.5, (2, "x")], 7: np.float64(2.5)}
    buffer = io.BytesIO()
    cm.save(obj, buffer)
    buffer.seek(0)
    back = cm.load(buffer)
    assert back["epoch"] == 3 and back["lr"] == 0.1 and back["name"] == "run" and back["none"] is None
    assert back["hist"] == [1.5, (2, "x")] and back[7] == 2.5 and isinstance(back[7], np.float64)
    w = back["model"]["w"]
    assert isinstance(w, cm.Tensor) and w.dtype == cm.float32 and w.requires_grad and w.tolist() == [[1.0, 2.0]]
    assert back["model"]["b"].dtype == np.int64 and back["model"]["b"].tolist() == [0, 1, 2]
    single = tmp_path / "x.npz"
    cm.save(cm.arange(4.0), single)
    assert isinstance(cm.load(single), cm.Tensor) and cm.load(single).tolist() == [0.0, 1.0, 2.0, 3.0]
    with np.load(single, allow_pickle=False) as npz:      # a plain npz, readable without calcml
        assert "tensor" in npz.files


def test_save_refuses_objects_it_would_have_to_pickle(tmp_path):
    with pytest.raises(TypeError, match="state_dict"):
        cm.save(nn.Linear(2, 1), tmp_path / "m.pt")
    with pytest.raises(TypeError, match=r"\['opt'\]"):
        cm.save({"opt": object()}, tmp_path / "m.pt")


def test_load_refuses_a_pytorch_checkpoint_and_says_how_to_convert(tmp_path):
    torch = _torch()
    path = tmp_path / "torch.pt"
    torch.save(torch.nn.Linear(2, 1).state_dict(), path)
    assert "data.pkl" in " ".join(zipfile.ZipFile(path).namelist())
    with pytest.raises(ValueError, match="PyTorch checkpoint") as error:
        cm.load(path)
    assert "np.savez" in str(error.value) and "does not unpickle" in str(error.value)


def test_load_refuses_a_pickle(tmp_path):
    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps({"w": [1.0]}))
    with pytest.raises(ValueError, match="Python pickle"):
        cm.load(path)


def test_load_reads_the_conversion_the_message_suggests(tmp_path):
    torch = _torch()
    t_model = torch.nn.Linear(3, 2)
    path = tmp_path / "model.npz"
    np.savez(path, **{k: v.detach().cpu().numpy() for k, v in t_model.state_dict().items()})
    c_model = nn.Linear(3, 2)
    c_model.load_state_dict(cm.load(path))
    x = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_allclose(c_model(cm.tensor(x)).data, t_model(torch.tensor(x, dtype=torch.float32)).detach(),
                               rtol=1e-5, atol=1e-6)


def test_load_reads_safetensors(tmp_path):
    # written by hand in the safetensors layout (the package is not a dependency)
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array([1, 2], dtype=np.int64)}
    header, offset, body = {}, 0, b""
    for name, a in arrays.items():
        header[name] = {"dtype": {"float32": "F32", "int64": "I64"}[str(a.dtype)], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        body += a.tobytes()
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path = tmp_path / "m.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + body)
    state = cm.load(path)
    assert isinstance(state["w"], cm.Tensor) and state["w"].dtype == cm.float32
    np.testing.assert_array_equal(state["w"].data, arrays["w"])
    np.testing.assert_array_equal(state["n"], arrays["n"])


# -- a tutorial, ported by changing the import -----------------------------------------------------

TUTORIAL = """
import {lib} as torch
from {lib} import nn
from {lib}.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
X = torch.randn(256, 4)
true_w = torch.randn(4, 1)
y = (X @ true_w).tanh()
loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True)
model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1)).to(device)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
losses = []
for epoch in range(15):
    total = 0.0
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(xb)
    losses.append(total / len(loader.dataset))
"""


def _run_tutorial(lib: str) -> list:
    namespace = {}
    exec(compile(TUTORIAL.format(lib=lib), f"<tutorial {lib}>", "exec"), namespace)
    return namespace["losses"]


def test_tutorial_trains_with_only_the_import_changed():
    losses = _run_tutorial("calcml")
    assert len(losses) == 15 and all(np.isfinite(losses))
    assert losses[-1] < 0.25 * losses[0]


def test_the_same_tutorial_trains_in_torch():
    _torch()
    losses = _run_tutorial("torch")
    assert losses[-1] < 0.25 * losses[0]
