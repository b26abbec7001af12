"""`cm.save(obj, path)` and `cm.load(path)`, as torch.save/torch.load, in a format that runs no code.

What is saved: tensors, numpy arrays, numbers, strings, None, and dicts, lists and tuples of
them, such as `model.state_dict()` or `{"model": model.state_dict(), "epoch": 3}`. The file is a
numpy `.npz` (a zip of `.npy` arrays, read with `allow_pickle=False`) plus a JSON description of
the structure, so `cm.load` gives back the same types. `cm.load` also reads a plain `.npz` or
`.npy` written by numpy and a `.safetensors` file (both: float arrays become tensors).

A PyTorch checkpoint (`torch.save`: a zip holding `data.pkl`, or a bare pickle) is refused with
how to convert it: unpickling a file can run any code, and calcml does not do it.
"""
from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np

from .device import check_device
from .tensor import Tensor

__all__ = ["save", "load"]

_META = "__calcml__"
_FORMAT = "calcml.save/1"
_CONVERT = (
    "To use its weights, export them from PyTorch as arrays, e.g.\n"
    "    import numpy as np, torch\n"
    "    state = torch.load('model.pt')\n"
    "    np.savez('model.npz', **{k: v.detach().cpu().numpy() for k, v in state.items()})\n"
    "(or safetensors.torch.save_file(state, 'model.safetensors')), then cm.load('model.npz').")
_SAVABLE = ("calcml.save saves tensors, numpy arrays, numbers, strings, None and dicts, lists or tuples "
            "of them (e.g. model.state_dict()); it does not pickle other objects")


def save(obj, f) -> None:
    """Write `obj` to the path or binary file `f` (the path is used as given: no suffix added)."""
    arrays: dict = {}
    structure = _encode(obj, arrays, ())
    arrays[_META] = np.array(json.dumps({"format": _FORMAT, "structure": structure}))
    if isinstance(f, (str, os.PathLike)):
        with open(f, "wb") as handle:
            np.savez(handle, **arrays)
    else:
        np.savez(f, **arrays)


def _encode(obj, arrays: dict, path: tuple):
    if isinstance(obj, Tensor):
        return {"tensor": _store(obj.data, arrays, path), "requires_grad": obj.requires_grad}
    if isinstance(obj, (np.ndarray, np.generic)):
        return {"array": _store(np.asarray(obj), arrays, path), "scalar": isinstance(obj, np.generic)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"value": obj}
    if isinstance(obj, dict):
        items = []
        for key, value in obj.items():
            if not (key is None or isinstance(key, (bool, int, float, str))):
                raise TypeError(f"cannot save a dict key of type {type(key).__name__} at {_where(path)}: "
                                "keys must be strings or numbers")
            items.append([key, _encode(value, arrays, path + (key,))])
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {kind: [_encode(value, arrays, path + (i,)) for i, value in enumerate(obj)]}
    hint = "; save model.state_dict() instead" if hasattr(obj, "state_dict") else ""
    raise TypeError(f"cannot save a {type(obj).__name__} at {_where(path)}: {_SAVABLE}{hint}")


def _store(array: np.ndarray, arrays: dict, path: tuple) -> str:
    if array.dtype.hasobject:
        raise TypeError(f"cannot save an array of Python objects at {_where(path)}: {_SAVABLE}")
    name = "/".join(str(p) for p in path) or "tensor"  # readable names in np.load(file).files
    if name in arrays or name == _META:
        name = f"{name}#{len(arrays)}"
    arrays[name] = array
    return name


def _where(path: tuple) -> str:
    return "the top level" if not path else "".join(f"[{p!r}]" for p in path)


def load(f, map_location=None, weights_only=None, **_ignored):
    """Read what `cm.save` wrote (or a numpy `.npz`/`.npy`, or a `.safetensors` file)."""
    check_device(map_location if not callable(map_location) and not isinstance(map_location, dict) else None)
    name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else getattr(f, "name", "the file")
    data = _read(f)
    if data[:4] == b"PK\x03\x04":
        return _load_zip(data, name)
    if data[:6] == b"\x93NUMPY":
        return _tensor_or_array(np.load(io.BytesIO(data), allow_pickle=False))
    if _is_safetensors(data):  # before the pickle test: a header length may start with 0x80
        return _load_safetensors(data, name)
    if data[:1] == b"\x80" or data[:1] in (b"(", b"]", b"}"):
        raise ValueError(f"{name} is a Python pickle (the format of older torch.save files and pickle.dump). "
                         "calcml does not unpickle files, since unpickling can run any code. " + _CONVERT)
    raise ValueError(f"{name} is not a file calcml can read: cm.load reads files written by cm.save, "
                     "numpy's .npz and .npy, and .safetensors")


def _read(f) -> bytes:
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as handle:
            return handle.read()
    return f.read()


def _load_zip(data: bytes, name: str):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.namelist()
    if any(m == "data.pkl" or m.endswith("/data.pkl") for m in members):
        raise ValueError(f"{name} is a PyTorch checkpoint (torch.save's zip holding data.pkl, a pickle). "
                         "calcml does not unpickle files, since unpickling can run any code. " + _CONVERT)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    meta = arrays.pop(_META, None)
    if meta is None:  # a plain np.savez file: its arrays by name
        return {key: _tensor_or_array(value) for key, value in arrays.items()}
    header = json.loads(meta.item())
    if header.get("format") != _FORMAT:
        raise ValueError(f"{name} was written in format {header.get('format')!r}; this calcml reads {_FORMAT}")
    return _decode(header["structure"], arrays)


def _decode(node, arrays: dict):
    if "tensor" in node:
        return Tensor(arrays[node["tensor"]], requires_grad=node["requires_grad"])
    if "array" in node:
        array = arrays[node["array"]]
        return array[()] if node["scalar"] else array
    if "value" in node:
        return node["value"]
    if "dict" in node:
        return {key: _decode(value, arrays) for key, value in node["dict"]}
    if "list" in node:
        return [_decode(value, arrays) for value in node["list"]]
    return tuple(_decode(value, arrays) for value in node["tuple"])


def _tensor_or_array(array: np.ndarray):
    """Float arrays become tensors, as PyTorch gives; others (integer labels) stay numpy arrays,
    since calcml tensors hold floats only."""
    return Tensor(array) if array.dtype in (np.float32, np.float64) else array


_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                       "I8": "i1", "U8": "u1", "BOOL": "?"}


def _is_safetensors(data: bytes) -> bool:
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else 0
    return 2 <= size <= len(data) - 8 and data[8:9] == b"{" and data[8:8 + size].rstrip().endswith(b"}")


def _load_safetensors(data: bytes, name: str) -> dict:
    """The safetensors layout: an 8-byte little-endian header length, a JSON header giving each
    tensor's dtype, shape and byte range, then the raw bytes."""
    size = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8:8 + size])
    except ValueError:
        raise ValueError(f"{name} is not a file calcml can read (not a valid safetensors header)") from None
    body = memoryview(data)[8 + size:]
    result = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{name}: tensor {key!r} is {info['dtype']}, which numpy cannot hold; "
                             "convert it in PyTorch first (e.g. .float())")
        begin, end = info["data_offsets"]
        array = np.frombuffer(body[begin:end], dtype=dtype).reshape(info["shape"]).copy()
        if array.dtype == np.float16:
            array = array.astype(np.float32)
        result[key] = _tensor_or_array(array.astype(array.dtype.newbyteorder("=")))
    return result
