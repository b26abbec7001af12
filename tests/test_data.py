"""cm.data: toy datasets (shapes, determinism, geometry) and the DataLoader."""
import numpy as np
import pytest

import calcml as cm
from calcml import data

CLASSIFIERS = {
    "xor": (data.xor, 200, 2, 2),
    "moons": (data.moons, 200, 2, 2),
    "circles": (data.circles, 200, 2, 2),
    "spirals": (data.spirals, 300, 2, 3),
}
ALL = {**{k: v[0] for k, v in CLASSIFIERS.items()}, "sparse_regression": data.sparse_regression,
       "sine": data.sine}


# -- shapes, dtypes, determinism ---------------------------------------------------------
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classification_shapes_dtypes_and_balance(name):
    fn, n, features, k = CLASSIFIERS[name]
    X, y = fn()
    assert X.shape == (n, features) and X.dtype == np.float64
    assert y.shape == (n,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [n // k] * k
    assert np.all(np.isfinite(X))


@pytest.mark.parametrize("name", ["xor", "moons", "circles"])
@pytest.mark.parametrize("n", [7, 101])
def test_binary_sets_are_balanced_for_odd_n(name, n):
    _, y = ALL[name](n=n)
    assert len(y) == n and abs(np.sum(y == 0) - np.sum(y == 1)) <= 1


def test_classification_labels_are_shuffled():
    # a train/test split by slicing must not get a single class
    for name in CLASSIFIERS:
        _, y = ALL[name]()
        assert len(np.unique(y[:40])) > 1, name


@pytest.mark.parametrize("name", ALL)
def test_same_seed_identical_different_seed_different(name):
    fn = ALL[name]
    X1, y1 = fn(seed=3)
    X2, y2 = fn(seed=3)
    X3, _ = fn(seed=4)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)


@pytest.mark.parametrize("name", ALL)
def test_no_global_numpy_state_used(name):
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    ALL[name]()
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_seed_none_draws_from_engine_generator():
    cm.manual_seed(11)
    a = data.moons(seed=None)
    cm.manual_seed(11)
    b = data.moons(seed=None)
    np.testing.assert_array_equal(a[0], b[0])


def test_noise_moves_the_same_points():
    X0, y0 = data.moons(noise=0.0, seed=5)
    X1, y1 = data.moons(noise=0.1, seed=5)
    np.testing.assert_array_equal(y0, y1)
    assert np.abs(X1 - X0).max() < 1.0


# -- geometry with noise=0 -----------------------------------------------------------------
def test_xor_labels_are_xor_of_signs():
    X, y = data.xor(n=203, noise=0.0)
    assert set(map(tuple, X)) == {(1.0, 1.0), (1.0, -1.0), (-1.0, -1.0), (-1.0, 1.0)}
    np.testing.assert_array_equal(y, (np.sign(X[:, 0]) != np.sign(X[:, 1])).astype(np.int64))
    # with noise the labels still come from the clean corners
    Xn, yn = data.xor(n=203, noise=0.1)
    np.testing.assert_array_equal(yn, y)
    assert np.mean((np.sign(Xn[:, 0]) != np.sign(Xn[:, 1])) == yn) > 0.99


def test_moons_geometry():
    X, y = data.moons(n=100, noise=0.0)
    upper, lower = X[y == 0], X[y == 1]
    np.testing.assert_allclose(np.hypot(*upper.T), 1.0)
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1.0)
    assert upper[:, 1].min() >= -1e-12 and lower[:, 1].max() <= 0.5 + 1e-12


@pytest.mark.parametrize("factor", [0.5, 0.3])
def test_circles_radii(factor):
    X, y = data.circles(n=100, noise=0.0, factor=factor)
    r = np.hypot(X[:, 0], X[:, 1])
    np.testing.assert_allclose(r[y == 0], 1.0)
    np.testing.assert_allclose(r[y == 1], factor)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_spirals_k_classes(k):
    X, y = data.spirals(k=k, n=100 * k)
    assert set(y.tolist()) == set(range(k))
    assert np.bincount(y).tolist() == [100] * k
    assert np.hypot(X[:, 0], X[:, 1]).max() <= 1.0 + 1e-12


def test_spirals_uneven_n_split_evenly():
    _, y = data.spirals(k=3, n=301)
    assert sorted(np.bincount(y).tolist()) == [100, 100, 101]


def test_sparse_regression_exact_without_noise():
    X, y, coef = data.sparse_regression(n=50, n_features=10, n_informative=4, noise=0.0,
                                        return_coef=True)
    assert X.shape == (50, 10) and y.shape == (50, 1) and coef.shape == (10,)
    assert X.dtype == y.dtype == coef.dtype == np.float64
    np.testing.assert_array_equal(y, (X @ coef)[:, None])
    assert np.all(coef[4:] == 0) and np.all(coef[:4] != 0)
    np.testing.assert_allclose(np.abs(coef[:4]), np.linspace(1, 3, 4))


def test_sparse_regression_defaults_and_noise():
    X, y = data.sparse_regression()
    assert X.shape == (200, 20) and y.shape == (200, 1)
    X, y, coef = data.sparse_regression(noise=0.5, return_coef=True)
    assert 0.4 < np.std(y - X @ coef[:, None]) < 0.6


def test_sine_without_noise_is_sin():
    X, y = data.sine(n=64, noise=0.0, x_range=(-2, 5))
    assert X.shape == y.shape == (64, 1) and X.dtype == y.dtype == np.float64
    np.testing.assert_array_equal(y, np.sin(X))
    assert X.min() >= -2 and X.max() < 5


@pytest.mark.parametrize("call, match", [
    (lambda: data.moons(n=0), "n must be"),
    (lambda: data.xor(noise=-1), "noise"),
    (lambda: data.circles(factor=1.0), "factor"),
    (lambda: data.spirals(k=0), "k"),
    (lambda: data.spirals(k=4, n=3), "n must be"),
    (lambda: data.sparse_regression(n_features=5, n_informative=6), "n_informative"),
    (lambda: data.sine(x_range=(1, 1)), "x_range"),
])
def test_dataset_argument_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- DataLoader --------------------------------------------------------------------------
def _dataset(n=10):
    return np.arange(2 * n, dtype=float).reshape(n, 2), np.arange(n)


def test_every_sample_once_per_epoch_and_pairs_kept():
    X, y = _dataset(10)
    loader = data.DataLoader((X, y), batch_size=3)
    for _ in range(3):
        batches = list(loader)
        assert [len(b[1]) for b in batches] == [3, 3, 3, 1]
        seen = np.concatenate([yb for _, yb in batches])
        assert sorted(seen.tolist()) == list(range(10))
        for xb, yb in batches:
            np.testing.assert_array_equal(xb, X[yb])  # rows stay paired with their labels


def test_len_and_drop_last():
    X, y = _dataset(10)
    assert len(data.DataLoader((X, y), batch_size=3)) == 4
    loader = data.DataLoader((X, y), batch_size=3, drop_last=True)
    assert len(loader) == 3
    assert [len(yb) for _, yb in loader] == [3, 3, 3]
    assert len(data.DataLoader((X, y), batch_size=5, drop_last=True)) == 2
    assert len(data.DataLoader((X, y), batch_size=20, drop_last=True)) == 0
    assert list(data.DataLoader((X, y), batch_size=20, drop_last=True)) == []


def test_full_batch_default():
    X, y = _dataset(10)
    loader = data.DataLoader((X, y), shuffle=False)
    assert len(loader) == 1
    (xb, yb), = list(loader)
    np.testing.assert_array_equal(xb, X)
    np.testing.assert_array_equal(yb, y)


def test_no_shuffle_keeps_order():
    X, y = _dataset(7)
    loader = data.DataLoader((X, y), batch_size=2, shuffle=False)
    assert [yb.tolist() for _, yb in loader] == [[0, 1], [2, 3], [4, 5], [6]]


def test_epochs_differ_but_runs_repeat_from_seed():
    X, y = _dataset(50)
    a = data.DataLoader((X, y), batch_size=50, seed=1)
    b = data.DataLoader((X, y), batch_size=50, seed=1)
    c = data.DataLoader((X, y), batch_size=50, seed=2)
    a1, a2 = next(iter(a))[1], next(iter(a))[1]
    assert not np.array_equal(a1, a2)
    np.testing.assert_array_equal(next(iter(b))[1], a1)
    np.testing.assert_array_equal(next(iter(b))[1], a2)
    assert not np.array_equal(next(iter(c))[1], a1)


def test_loader_accepts_tensors_and_yields_numpy():
    X, y = data.moons(n=20)
    xb, yb = next(iter(data.DataLoader((cm.tensor(X), y), batch_size=8)))
    assert isinstance(xb, np.ndarray) and xb.shape == (8, 2) and yb.shape == (8,)


@pytest.mark.parametrize("args, kwargs, match", [
    ((( np.zeros((5, 2)), np.zeros(4)),), {}, "5 samples but y has 4"),
    (((np.zeros((5, 2)), np.zeros(5)),), {"batch_size": 0}, "batch_size"),
    (((np.zeros((5, 2)), np.zeros(5)),), {"batch_size": -2}, "batch_size"),
    ((np.zeros((5, 2)),), {}, "tuple of arrays"),
    (((),), {}, "tuple of arrays"),
    (((np.zeros((0, 2)), np.zeros(0)),), {}, "no samples"),
    (((np.float64(1.0), np.zeros(1)),), {}, "scalar"),
])
def test_loader_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.DataLoader(*args, **kwargs)


def test_the_digits_are_the_uci_set_shipped_with_the_package():
    X, y = cm.data.digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64 and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0 and np.all((X * 16) == np.round(X * 16))   # pixels 0..16
    assert np.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    images, labels = cm.data.digits(images=True)
    assert images.shape == (1797, 1, 8, 8) and np.array_equal(images.reshape(1797, 64), X)
    assert np.array_equal(labels, y)
    # the first image is a 0: a ring of ink around an empty middle
    zero = images[0, 0]
    assert y[0] == 0 and zero[3:5, 3:5].sum() < zero[1:7, 1:7].sum() / 8
