"""Names PyTorch has and calcml lacks: `cm.cat` is an AttributeError that says so and what to do.

Each table maps a PyTorch name to advice; the packages' module-level `__getattr__` calls
`missing_name`, which is only reached for names the package does not define.
"""
from __future__ import annotations

_TYPED = "use cm.tensor(data, dtype=cm.{dtype}) or x.{method}()"
_METHOD = "use the tensor method, x.{name}()"
_GPU = ("calcml runs on the CPU; to debug PyTorch code that needs it, run that code under calcml-debug "
        "(README: \"Debugging a PyTorch model\")")

TORCH = {
    "LongTensor": _TYPED.format(dtype="long", method="long"), "IntTensor": _TYPED.format(dtype="int32", method="int"),
    "BoolTensor": _TYPED.format(dtype="bool", method="bool"),
    **{name: "calcml's float tensors are float64 or float32: use cm.float32 or cm.float64"
       for name in ("float16", "half", "bfloat16", "complex64", "complex128", "HalfTensor")},
    **{name: _METHOD.format(name=name) for name in ("log1p", "erf")},
    "bmm": "use a @ b (batched matmul broadcasts)",
    "Size": "shapes are plain tuples: x.shape",
    "FloatTensor": "use cm.tensor(data, dtype=cm.float32)", "DoubleTensor": "use cm.tensor(data)",
    "inference_mode": "use `with cm.no_grad():`",
    "autograd": "cm.grad(outputs, inputs) is torch.autograd.grad; y.backward() works as in PyTorch",
    "set_default_dtype": "the default dtype is float64; pass dtype=cm.float32 where you want float32",
    "compile": "calcml runs eagerly: there is nothing to compile; call the model directly",
    "jit": "calcml runs eagerly: there is no TorchScript; call the model directly",
    "distributions": "calcml has no distributions module: draw samples with cm.randn/cm.rand (see calcml.bayes "
                     "for Bayesian layers)",
    **{name: _GPU for name in ("distributed", "multiprocessing", "amp", "hub", "onnx", "fx", "export",
                               "mps", "xpu")},
}

NN = {
    **{name: "calcml.nn has Linear, Sequential, the activations, Dropout, LayerNorm, BatchNorm1d/2d, Embedding, "
             "Conv1d/Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d and the losses, but no transposed or 3-D "
             f"convolutions, recurrent layers or attention; a model with {name} can be debugged in PyTorch "
             "(README: \"Debugging a PyTorch model\")"
       for name in ("Conv3d", "ConvTranspose2d", "GroupNorm", "Dropout2d",
                    "LSTM", "GRU", "RNN", "MultiheadAttention", "Transformer", "TransformerEncoder",
                    "TransformerEncoderLayer", "ParameterList")},
    "DataParallel": _GPU, "parallel": _GPU,
}

FUNCTIONAL = {
    "interpolate": "calcml.nn.functional has no resizing; a model with interpolate can be debugged in PyTorch "
                   "(README: \"Debugging a PyTorch model\")",
    "smooth_l1_loss": "write it from x.abs() and cm.where, or use mse_loss",
    "kl_div": "write it from log_softmax: (p * (p.log() - log_q)).sum(axis=-1).mean()",
}


def missing_name(module: str, torch_module: str, name: str, table: dict) -> AttributeError:
    """The AttributeError for `module.name`: with PyTorch advice when `table` knows the name."""
    advice = table.get(name)
    if advice is None:
        return AttributeError(f"module {module!r} has no attribute {name!r}")
    return AttributeError(f"{module} has no {name!r} (PyTorch's {torch_module}.{name}); {advice}")
