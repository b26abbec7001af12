"""Datasets and a DataLoader with PyTorch's `torch.utils.data` names, signatures and defaults.

    from calcml.utils.data import DataLoader, TensorDataset, random_split
    train, val = random_split(TensorDataset(X, y), [0.8, 0.2], generator=cm.Generator().manual_seed(0))
    for xb, yb in DataLoader(train, batch_size=32, shuffle=True):
        ...

A batch is built as PyTorch's default collate builds it: the samples `dataset[i]` stacked into
calcml Tensors (a pair of tensors per sample gives a list `[X_batch, y_batch]`; dicts and lists
are collated field by field). calcml tensors hold floats only, so integer labels arrive as a
float tensor of whole numbers, which `nn.functional.cross_entropy` takes as class labels.
Everything is loaded in this process (`num_workers` is accepted and changes nothing).

`calcml.data.DataLoader` is the older loader over `(X, y)` arrays, with the debugger's defaults
(full batch, shuffled, seeded); this one has PyTorch's (`batch_size=1`, `shuffle=False`).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from ..creation import Generator, _rng, as_tensor
from ..tensor import Tensor

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "Subset", "DataLoader", "random_split",
           "default_collate"]


class Dataset:
    """A map-style dataset: subclasses define `__getitem__(i)` (one sample) and `__len__`."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(self, index) returning one sample")


class IterableDataset(Dataset):
    """A dataset that is a stream: subclasses define `__iter__`, yielding samples."""

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__(self) yielding samples")


class TensorDataset(Dataset):
    """Samples are the i-th rows of tensors (or arrays) that share their first dimension."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor, e.g. TensorDataset(X, y)")
        for i, t in enumerate(tensors):
            if not isinstance(t, (Tensor, np.ndarray)):
                raise TypeError(f"TensorDataset takes tensors or numpy arrays; argument {i} is a {type(t).__name__}")
            if t.ndim == 0:
                raise ValueError(f"TensorDataset: argument {i} is a scalar; each tensor needs one row per sample")
        lengths = [len(t) for t in tensors]
        if len(set(lengths)) > 1:
            raise AssertionError(f"Size mismatch between tensors: first dimensions {lengths}; "
                                 "every tensor needs one row per sample")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(_row(t, index) for t in self.tensors)

    def __len__(self) -> int:
        return len(self.tensors[0])


def _row(t, index):
    if isinstance(t, Tensor) and not t.requires_grad:
        return Tensor(t.data[index])  # data needs no graph: index the array, record no op
    return t[index]


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = list(indices)

    def __getitem__(self, index):
        if isinstance(index, list):
            return [self.dataset[self.indices[i]] for i in index]
        return self.dataset[self.indices[index]]

    def __len__(self) -> int:
        return len(self.indices)


def random_split(dataset, lengths, generator=None) -> list:
    """Split into non-overlapping random Subsets of the given lengths, or fractions summing to 1."""
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral) for x in lengths) \
            and math.isclose(sum(lengths), 1.0) and sum(lengths) <= 1:
        for frac in lengths:
            if not 0 <= frac <= 1:
                raise ValueError(f"fraction at index {lengths.index(frac)} is not between 0 and 1")
        sizes = [int(math.floor(n * frac)) for frac in lengths]
        for i in range(n - sum(sizes)):  # the remainder, one each, round robin (as PyTorch)
            sizes[i % len(sizes)] += 1
        lengths = sizes
    if sum(lengths) != n:
        raise ValueError(f"Sum of input lengths does not equal the length of the input dataset! "
                         f"({sum(lengths)} != {n})")
    order = _rng(generator).permutation(n).tolist()
    subsets, start = [], 0
    for length in lengths:
        subsets.append(Subset(dataset, order[start:start + length]))
        start += length
    return subsets


# -- collation -----------------------------------------------------------------------------------

def _as_tensor(values) -> Tensor:
    """As torch.as_tensor: the array's dtype kept (int64 labels stay int64, float32 stays float32)."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"default_collate: cannot make a tensor of {array.dtype} data")
    return as_tensor(array)


def _stack(arrays: list) -> np.ndarray:
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        first = arrays[0].shape
        other = next(i for i, a in enumerate(arrays) if a.shape != first)
        raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(first)} at entry 0 "
                           f"and {list(arrays[other].shape)} at entry {other}")
    return np.stack(arrays)


def default_collate(batch: list):
    """Stack a list of samples into a batch, as PyTorch's: tensors and arrays into a tensor of
    their dtype, Python floats float64, ints int64 and bools bool; strings into a list; dicts by
    key; tuples and lists position by position."""
    elem = batch[0]
    if isinstance(elem, Tensor):
        return _as_tensor(_stack([b.data for b in batch]))
    if isinstance(elem, (np.ndarray, np.generic)):
        return _as_tensor(_stack([np.asarray(b) for b in batch]))
    if isinstance(elem, bool):
        return _as_tensor(np.asarray(batch, dtype=bool))
    if isinstance(elem, numbers.Integral):
        return _as_tensor(np.asarray(batch, dtype=np.int64))
    if isinstance(elem, numbers.Number):
        return _as_tensor(np.asarray(batch, dtype=np.float64))
    if isinstance(elem, str):
        return list(batch)
    if isinstance(elem, Mapping):
        return {key: default_collate([b[key] for b in batch]) for key in elem}
    if isinstance(elem, Sequence):
        if any(len(b) != len(elem) for b in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        columns = [default_collate(list(samples)) for samples in zip(*batch)]
        if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # a namedtuple keeps its type
            return type(elem)(*columns)
        return columns
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
                    f"found {type(elem).__name__}")


def _convert(sample):
    """One sample without batching (batch_size=None): arrays and numbers become tensors."""
    if isinstance(sample, Tensor):
        return sample
    if isinstance(sample, (np.ndarray, np.generic)) and sample.dtype.kind in "biuf":
        return Tensor(sample)
    if isinstance(sample, Mapping):
        return {key: _convert(value) for key, value in sample.items()}
    if isinstance(sample, tuple) and hasattr(sample, "_fields"):
        return type(sample)(*(_convert(v) for v in sample))
    if isinstance(sample, Sequence) and not isinstance(sample, str):
        return [_convert(v) for v in sample]
    return sample


def _rows_taker(dataset):
    """For a TensorDataset (or Subsets of one) with the default __getitem__: a function giving a
    whole batch by one numpy index, equal to collating the samples one by one but far faster."""
    if type(dataset).__getitem__ is TensorDataset.__getitem__:
        if any(isinstance(t, Tensor) and t.requires_grad for t in dataset.tensors):
            return None
        arrays = [t.data if isinstance(t, Tensor) else t for t in dataset.tensors]
        return lambda idx: [_as_tensor(a[idx]) for a in arrays]
    if type(dataset).__getitem__ is Subset.__getitem__:
        inner = _rows_taker(dataset.dataset)
        if inner is not None:
            mapping = np.asarray(dataset.indices, dtype=np.intp)
            return lambda idx: inner(mapping[idx])
    return None


class DataLoader:
    """Batches from a dataset, as torch.utils.data.DataLoader (same arguments and defaults).

    Each `iter(loader)` is one epoch. With `shuffle=True` each epoch draws a new order from
    `generator` (a `cm.Generator`), or from calcml's generator (`cm.manual_seed`) when None.
    """

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool | None = None, sampler=None,
                 batch_sampler=None, num_workers: int = 0, collate_fn=None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0, worker_init_fn=None, multiprocessing_context=None,
                 generator=None, *, prefetch_factor=None, persistent_workers: bool = False,
                 pin_memory_device: str = "", in_order: bool = True):
        # PyTorch would take the pair's two arrays as two samples: almost surely not what was meant
        if isinstance(dataset, tuple) and len(dataset) == 2 and all(isinstance(a, (np.ndarray, Tensor)) for a in dataset):
            raise TypeError("DataLoader takes a dataset, not an (X, y) pair: use DataLoader(TensorDataset(X, y), "
                            "batch_size=...) (or calcml.data.DataLoader((X, y)), which takes the pair)")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
                                       or batch_size < 1):
            raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, numbers.Integral) or num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable multiprocessing.")
        if generator is not None and not isinstance(generator, (Generator, np.random.Generator)):
            raise TypeError(f"generator must be a cm.Generator, got {type(generator).__name__}")
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable and (shuffle or sampler is not None or batch_sampler is not None):
            raise ValueError("a DataLoader over an IterableDataset takes no shuffle, sampler or batch_sampler: "
                             "the dataset decides the order")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None and (batch_size != 1 or shuffle or sampler is not None or drop_last):
            raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                             "and drop_last")
        if batch_sampler is not None:
            batch_size = None
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")
        if not self._iterable and not hasattr(dataset, "__getitem__"):
            raise TypeError(f"DataLoader needs a dataset with __getitem__ and __len__ (or an IterableDataset), "
                            f"got {type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = bool(drop_last)
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        self.collate_fn = default_collate if collate_fn is None else collate_fn
        self.generator = generator
        self.shuffle = bool(shuffle)
        self.pin_memory = pin_memory
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn

    # -- order -----------------------------------------------------------------------------
    def _order(self):
        if self.sampler is not None:
            return iter(self.sampler)
        n = len(self.dataset)
        return iter(_rng(self.generator).permutation(n).tolist() if self.shuffle else range(n))

    def _index_batches(self):
        if self.batch_sampler is not None:
            yield from self.batch_sampler
            return
        batch = []
        for i in self._order():
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __iter__(self):
        if self._iterable:
            yield from self._iter_stream()
            return
        if self.batch_size is None and self.batch_sampler is None:
            for i in self._order():
                yield self.collate_fn(self.dataset[i]) if self.collate_fn is not default_collate \
                    else _convert(self.dataset[i])
            return
        take = _rows_taker(self.dataset) if self.collate_fn is default_collate else None
        for indices in self._index_batches():
            if take is not None:
                yield take(np.asarray(indices, dtype=np.intp))
            else:
                yield self.collate_fn([self.dataset[i] for i in indices])

    def _iter_stream(self):
        if self.batch_size is None:
            yield from (_convert(s) if self.collate_fn is default_collate else self.collate_fn(s)
                        for s in self.dataset)
            return
        batch = []
        for sample in self.dataset:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield self.collate_fn(batch)
                batch = []
        if batch and not self.drop_last:
            yield self.collate_fn(batch)

    def __len__(self) -> int:
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __repr__(self) -> str:
        size = "" if self._iterable else f" of {len(self.dataset)}"
        return (f"DataLoader(dataset={type(self.dataset).__name__}{size}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, drop_last={self.drop_last})")
