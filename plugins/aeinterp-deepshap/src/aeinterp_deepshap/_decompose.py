"""Composite torch calls written out in operations that have exact DeepLIFT rules.

The recorder (:mod:`._tape`) calls :func:`decompose` for a call whose name is
in :data:`DECOMPOSED`; the returned function re-runs the call as plain torch
code *with the recorder active again*, so each primitive becomes its own node.
Every decomposition computes the same values as the fused call (the tests
check this), and attributions stay exactly additive because every primitive
has an additive rule:

``softmax`` / ``log_softmax``
    ``e = exp(h - C)``, ``s = sum(e, dim)``, ``e * reciprocal(s)``, and
    ``(h - C) - log(s)``. ``C`` is one number for the whole recorded batch (its
    largest value), so no ``exp`` overflows; every rule is invariant to it
    (it scales ``e`` and ``1/s`` by reciprocal constants), so it is a constant
    shift, not a per-sample one. The sum is affine, ``exp``/``log``/
    ``reciprocal`` take the rescale rule, the product the Shapley rule.
``group_norm`` / ``instance_norm``
    centring over the group (or each channel's positions), squaring (product),
    mean, ``rsqrt`` and a product, as ``layer_norm``; the per-channel weight and
    bias are affine. ``instance_norm`` with running statistics is affine.
``lp_pool1d`` / ``lp_pool2d``
    ``pow(x, p)`` (rescale), average pooling times the window size (affine),
    ``pow(., 1/p)`` (rescale), what torch computes.
``maximum`` / ``minimum`` (and ``max`` / ``min`` of two tensors)
    ``a + relu(b - a)`` and ``a - relu(a - b)``.
``lstm``, ``gru``, ``rnn_tanh``, ``rnn_relu`` and their cells
    :mod:`aeinterp.toolkit.recurrent`: linear maps, ``sigmoid``, ``tanh`` and products
    of gates, one step at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from aeinterp.toolkit.recurrent import KERNELS, UnsupportedRecurrence, unrolled_call

__all__ = ["DECOMPOSED", "decompose"]


def _dim(args: tuple, kwargs: dict, position: int = 1) -> Any:
    return kwargs.get("dim", args[position] if len(args) > position else None)


def _shift(h: torch.Tensor) -> float:
    """One constant for the whole batch: the largest finite value (0 for none)."""
    finite = h.detach()[torch.isfinite(h.detach())]
    return float(finite.max()) if finite.numel() else 0.0


def _softmax(args: tuple, kwargs: dict, log: bool) -> Callable[[], Any] | str:
    h, dim = args[0], _dim(args, kwargs)
    if dim is None:
        return "softmax without an explicit dim"
    dtype = kwargs.get("dtype", args[2] if len(args) > 2 and isinstance(args[2], torch.dtype) else None)
    c = _shift(h)

    def run() -> torch.Tensor:
        x = h if dtype is None else h.to(dtype)
        centred = x - c
        s = torch.exp(centred).sum(dim=dim, keepdim=True)
        if log:
            return centred - torch.log(s)
        return torch.exp(centred) * torch.reciprocal(s)

    return run


def _normalise(x: torch.Tensor, dims: tuple[int, ...], eps: float) -> torch.Tensor:
    centred = x - x.mean(dim=dims, keepdim=True)
    var = (centred * centred).mean(dim=dims, keepdim=True)
    return centred * torch.rsqrt(var + eps)


def _channel(t: torch.Tensor, ndim: int) -> torch.Tensor:
    return t.reshape(1, -1, *([1] * (ndim - 2)))


def _group_norm(args: tuple, kwargs: dict) -> Callable[[], Any]:
    names = ("input", "num_groups", "weight", "bias", "eps")
    a = {**dict(zip(names, args)), **kwargs}
    x, groups, weight, bias, eps = a["input"], a["num_groups"], a.get("weight"), a.get("bias"), a.get("eps", 1e-5)

    def run() -> torch.Tensor:
        y = _normalise(x.reshape(x.shape[0], groups, -1), (2,), eps).reshape(x.shape)
        if weight is not None:
            y = y * _channel(weight, x.dim())
        if bias is not None:
            y = y + _channel(bias, x.dim())
        return y

    return run


def _instance_norm(args: tuple, kwargs: dict) -> Callable[[], Any]:
    names = ("input", "running_mean", "running_var", "weight", "bias", "use_input_stats", "momentum", "eps")
    a = {**dict(zip(names, args)), **kwargs}
    x, weight, bias, eps = a["input"], a.get("weight"), a.get("bias"), a.get("eps", 1e-5)
    use_input_stats = a.get("use_input_stats", True)
    mean, var = a.get("running_mean"), a.get("running_var")

    def run() -> torch.Tensor:
        if use_input_stats or mean is None:
            y = _normalise(x, tuple(range(2, x.dim())), eps)
        else:  # running statistics: an affine map
            y = (x - _channel(mean, x.dim())) * _channel(torch.rsqrt(var + eps), x.dim())
        if weight is not None:
            y = y * _channel(weight, x.dim())
        if bias is not None:
            y = y + _channel(bias, x.dim())
        return y

    return run


def _lp_pool(args: tuple, kwargs: dict, dims: int) -> Callable[[], Any]:
    names = ("input", "norm_type", "kernel_size", "stride", "ceil_mode")
    a = {**dict(zip(names, args)), **kwargs}
    x, p, kernel, stride, ceil = a["input"], float(a["norm_type"]), a["kernel_size"], a.get("stride"), a.get("ceil_mode", False)
    size = kernel if isinstance(kernel, int) else int(torch.tensor(kernel).prod())
    if dims == 2 and isinstance(kernel, int):
        size = kernel * kernel
    pool = F.avg_pool1d if dims == 1 else F.avg_pool2d

    def run() -> torch.Tensor:
        out = pool(x.pow(p), kernel, stride, 0, ceil) if stride is not None else pool(x.pow(p), kernel, padding=0, ceil_mode=ceil)
        return (out * size).pow(1.0 / p)

    return run


def _extremum(args: tuple, kwargs: dict, largest: bool, dependent: Callable[[Any], bool]) -> Callable[[], Any] | None:
    other = kwargs.get("other", args[1] if len(args) > 1 else None)
    a = args[0]
    if not (isinstance(a, torch.Tensor) and isinstance(other, torch.Tensor) and dependent(a) and dependent(other)):
        return None  # one dependent tensor: an elementwise nonlinearity (classified by the recorder)

    def run() -> torch.Tensor:
        return a + torch.relu(other - a) if largest else a - torch.relu(a - other)

    return run


def _recurrent(name: str, args: tuple, kwargs: dict, dependent: Callable[[Any], bool]) -> Callable[[], Any]:
    def run() -> Any:
        return unrolled_call(name, args, kwargs, constant=lambda t: not dependent(t))

    return run


DECOMPOSED = frozenset(
    {"softmax", "log_softmax", "group_norm", "instance_norm", "lp_pool1d", "lp_pool2d", "maximum", "minimum", "max", "min", "fmax", "fmin"}
    | KERNELS
)


def decompose(name: str, args: tuple, kwargs: dict, dependent: Callable[[Any], bool]) -> Callable[[], Any] | str | None:
    """A function that re-runs ``name(*args, **kwargs)`` as primitives, a reason it cannot, or None (record as is)."""
    if name in ("softmax", "log_softmax"):
        return _softmax(args, kwargs, log=name == "log_softmax")
    if name == "group_norm":
        return _group_norm(args, kwargs)
    if name == "instance_norm":
        return _instance_norm(args, kwargs)
    if name in ("lp_pool1d", "lp_pool2d"):
        return _lp_pool(args, kwargs, int(name[-2]))
    if name in ("maximum", "minimum", "max", "min", "fmax", "fmin"):
        return _extremum(args, kwargs, largest=name in ("maximum", "max", "fmax"), dependent=dependent)
    if name in KERNELS:
        return _recurrent(name, args, kwargs, dependent)
    return None


def checked(run: Callable[[], Any]) -> Any:
    """Run a decomposition; a recurrent call it cannot write out becomes a reason string."""
    try:
        return run()
    except UnsupportedRecurrence as exc:
        return str(exc)
