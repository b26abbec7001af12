"""calcml.utils.data: Dataset, TensorDataset, DataLoader and random_split, against torch.utils.data,
and a model file whose `data` is this DataLoader."""
import textwrap

import numpy as np
import pytest

import calcml as cm
from calcml.utils.data import DataLoader, Dataset, IterableDataset, Subset, TensorDataset, random_split


def _torch():
    return pytest.importorskip("torch")


def _values(batch):
    """A batch as nested plain lists, whichever library made it."""
    if isinstance(batch, (list, tuple)):
        return [_values(b) for b in batch]
    if isinstance(batch, dict):
        return {k: _values(v) for k, v in batch.items()}
    data = batch.data if isinstance(batch, cm.Tensor) else batch.numpy()
    return np.asarray(data, dtype=float).tolist()


X = np.arange(20.0).reshape(10, 2)
Y = np.arange(10)


def _pair(torch):
    return (TensorDataset(cm.tensor(X), cm.tensor(Y)),
            torch.utils.data.TensorDataset(torch.tensor(X), torch.tensor(Y)))


@pytest.mark.parametrize("kwargs", [{}, {"batch_size": 3}, {"batch_size": 3, "drop_last": True},
                                    {"batch_size": 10}, {"batch_size": 32}, {"batch_size": None}])
def test_unshuffled_batches_match_torch(kwargs):
    torch = _torch()
    ours, theirs = _pair(torch)
    a, b = DataLoader(ours, **kwargs), torch.utils.data.DataLoader(theirs, **kwargs)
    assert len(a) == len(b)
    got, expected = [_values(x) for x in a], [_values(x) for x in b]
    assert got == expected
    assert a.dataset is ours and a.batch_size == b.batch_size and a.drop_last == b.drop_last


def test_defaults_are_torchs():
    torch = _torch()
    ours, theirs = _pair(torch)
    a, b = DataLoader(ours), torch.utils.data.DataLoader(theirs)
    assert (a.batch_size, a.drop_last, a.num_workers) == (b.batch_size, b.drop_last, b.num_workers) == (1, False, 0)
    first = next(iter(a))
    assert isinstance(first, list) and all(isinstance(t, cm.Tensor) for t in first)
    assert first[0].shape == tuple(next(iter(b))[0].shape) == (1, 2)


def test_shuffle_covers_every_sample_once_and_follows_the_generator():
    ds = TensorDataset(cm.tensor(X), cm.tensor(Y))

    def epoch(loader):
        return [int(v) for _, yb in loader for v in yb.data]

    loader = DataLoader(ds, batch_size=4, shuffle=True, generator=cm.Generator().manual_seed(0))
    first, second = epoch(loader), epoch(loader)
    assert sorted(first) == sorted(second) == list(range(10)) and first != second  # a new order each epoch
    again = DataLoader(ds, batch_size=4, shuffle=True, generator=cm.Generator().manual_seed(0))
    assert epoch(again) == first
    cm.manual_seed(5)
    a = epoch(DataLoader(ds, batch_size=4, shuffle=True))
    cm.manual_seed(5)
    assert epoch(DataLoader(ds, batch_size=4, shuffle=True)) == a


class Squares(Dataset):
    def __len__(self):
        return 7

    def __getitem__(self, i):
        return {"x": np.array([i, i * i], dtype=float), "y": float(i % 2), "id": f"s{i}"}


def test_a_dataset_subclass_is_collated_as_torch_collates_it():
    torch = _torch()

    class TorchSquares(torch.utils.data.Dataset):
        __len__, __getitem__ = Squares.__len__, Squares.__getitem__

    a = list(DataLoader(Squares(), batch_size=3))
    b = list(torch.utils.data.DataLoader(TorchSquares(), batch_size=3))
    assert len(a) == len(b) == 3
    for ours, theirs in zip(a, b):
        assert set(ours) == set(theirs) and ours["id"] == theirs["id"]
        assert _values(ours["x"]) == _values(theirs["x"]) and _values(ours["y"]) == _values(theirs["y"])
        assert isinstance(ours["x"], cm.Tensor)
        assert str(ours["x"].dtype) == str(theirs["x"].dtype).removeprefix("torch.") == "float64"
        assert str(ours["y"].dtype) == str(theirs["y"].dtype).removeprefix("torch.") == "float64"


@pytest.mark.parametrize("sample", ["python", "numpy", "tensor"])
def test_collated_batches_keep_the_dtypes_torch_keeps(sample):
    """Integer labels stay int64 (and float32 inputs float32), as PyTorch's default collate keeps them."""
    torch = _torch()
    rng = np.random.default_rng(0)
    xs, ys, flags = rng.normal(size=(6, 2)).astype(np.float32), rng.integers(0, 3, size=6), rng.random(6) > 0.5
    make = {"python": lambda x, y, f: (x.tolist(), int(y), bool(f)),
            "numpy": lambda x, y, f: (x, np.int64(y), np.bool_(f)),
            "tensor": lambda x, y, f: (cm.as_tensor(x), cm.tensor(int(y)), cm.tensor(bool(f)))}[sample]
    theirs_make = {"python": make, "numpy": make,
                   "tensor": lambda x, y, f: (torch.as_tensor(x), torch.tensor(int(y)), torch.tensor(bool(f)))}[sample]
    ours = next(iter(DataLoader([make(*row) for row in zip(xs, ys, flags)], batch_size=6)))
    theirs = next(iter(torch.utils.data.DataLoader([theirs_make(*row) for row in zip(xs, ys, flags)], batch_size=6)))
    if sample == "python":   # a list of floats is collated position by position, as torch does
        ours[0], theirs[0] = cm.stack(ours[0], dim=1), torch.stack(theirs[0], dim=1)
    for a, b in zip(ours, theirs):
        assert str(a.dtype) == str(b.dtype).removeprefix("torch."), sample
        np.testing.assert_array_equal(a.data, b.numpy())
    fast = next(iter(DataLoader(TensorDataset(cm.as_tensor(xs), cm.tensor(ys)), batch_size=6)))   # whole rows at once
    assert fast[0].dtype == cm.float32 and fast[1].dtype == cm.int64


def test_tuple_samples_and_custom_collate():
    torch = _torch()
    samples = [(1, 2.0), (3, 4.0)]
    assert _values(next(iter(DataLoader(samples, batch_size=2)))) == \
        _values(next(iter(torch.utils.data.DataLoader(samples, batch_size=2))))
    loader = DataLoader(samples, batch_size=2, collate_fn=lambda batch: len(batch))
    assert list(loader) == [2]


def test_uneven_samples_are_a_clear_error():
    class Ragged(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.zeros(i + 1)

    with pytest.raises(RuntimeError, match="equal size"):
        next(iter(DataLoader(Ragged(), batch_size=2)))


def test_iterable_dataset_is_batched_in_its_order():
    class Count(IterableDataset):
        def __iter__(self):
            return iter(np.arange(5.0))

    assert [b.tolist() for b in DataLoader(Count(), batch_size=2)] == [[0.0, 1.0], [2.0, 3.0], [4.0]]
    with pytest.raises(ValueError, match="IterableDataset"):
        DataLoader(Count(), shuffle=True)


def test_sampler_and_batch_sampler():
    ds = TensorDataset(cm.tensor(X))
    assert [b[0].data[:, 0].tolist() for b in DataLoader(ds, batch_size=2, sampler=[4, 0, 2])] == \
        [[8.0, 0.0], [4.0]]
    assert [b[0].shape for b in DataLoader(ds, batch_sampler=[[0, 1, 2], [3]])] == [(3, 2), (1, 2)]
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, sampler=[0], shuffle=True)


def test_bad_arguments_are_refused_as_torch_refuses_them():
    torch = _torch()
    ours, theirs = _pair(torch)
    for kwargs in ({"batch_size": 0}, {"batch_size": -2}, {"num_workers": -1}):
        with pytest.raises(ValueError):
            torch.utils.data.DataLoader(theirs, **kwargs)
        with pytest.raises(ValueError):
            DataLoader(ours, **kwargs)
    with pytest.raises(AssertionError):
        torch.utils.data.TensorDataset(torch.zeros(3), torch.zeros(4))
    with pytest.raises(AssertionError, match="Size mismatch"):
        TensorDataset(cm.zeros(3), cm.zeros(4))
    with pytest.raises(TypeError, match="TensorDataset"):
        DataLoader((X, Y), batch_size=2)   # the old loader's (X, y) pair: says what to write


def test_random_split_lengths_and_fractions_as_torch():
    torch = _torch()
    for n, lengths in ((10, [3, 7]), (10, [0.33, 0.33, 0.34]), (11, [0.5, 0.5]), (5, [5, 0])):
        ours = random_split(range(n), lengths, generator=cm.Generator().manual_seed(0))
        theirs = torch.utils.data.random_split(range(n), lengths, generator=torch.Generator().manual_seed(0))
        assert [len(s) for s in ours] == [len(s) for s in theirs]
        assert sorted(i for s in ours for i in s.indices) == list(range(n))
        assert all(isinstance(s, Subset) for s in ours)
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(range(5), [2, 2])
    with pytest.raises(ValueError):
        torch.utils.data.random_split(range(5), [2, 2])


def test_a_loader_over_a_subset_gives_the_subset_rows():
    ds = TensorDataset(cm.tensor(X), cm.tensor(Y))
    train, _ = random_split(ds, [6, 4], generator=cm.Generator().manual_seed(1))
    (xb, yb), = list(DataLoader(train, batch_size=6))
    np.testing.assert_array_equal(yb.data, Y[train.indices])
    np.testing.assert_array_equal(xb.data, X[train.indices])


def test_the_old_loader_keeps_its_contract():
    xb, yb = next(iter(cm.data.DataLoader((X, Y), batch_size=4, shuffle=False)))
    assert isinstance(xb, np.ndarray) and yb.dtype == np.int64 and xb.shape == (4, 2)


# -- a model file whose data is this DataLoader ----------------------------------------------------

MODEL_FILE = """\
import calcml as cm
import calcml.nn.functional as F
from calcml.utils.data import DataLoader, TensorDataset

X, labels = cm.data.spirals(k=3, n=120, noise=0.1, seed=0)
model = cm.nn.Sequential(cm.nn.Linear(2, 32), cm.nn.Tanh(), cm.nn.Linear(32, 3))
loss = F.cross_entropy
optimizer = cm.optim.Adam(model.parameters(), lr=0.02)
data = DataLoader(TensorDataset(cm.tensor(X), cm.tensor(labels)), batch_size=40, shuffle=True,
                  generator=cm.Generator().manual_seed(0))
"""


def test_a_model_file_trains_on_a_utils_data_loader(tmp_path):
    from calcml.debug import Session, load_model_file
    path = tmp_path / "spiral_loader.py"
    path.write_text(textwrap.dedent(MODEL_FILE), encoding="utf-8")
    session = Session(load_model_file(str(path)), max_steps=60)
    session.run()
    losses = []
    while not session.done:
        snapshot = session.tick()
        if snapshot is not None:
            losses.append(snapshot.loss)
    assert len(losses) == 60 and all(np.isfinite(losses))
    assert np.mean(losses[-6:]) < 0.8 * np.mean(losses[:6])   # three batches an epoch: it learns
