"""``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` written out in plain torch operations.

The fused recurrent kernels (``torch._VF.lstm`` and friends) are opaque: a
rule-based attribution method cannot see inside them and ``torch.func`` has no
batched backward or forward-mode derivative for them on a CPU. The functions
here compute exactly what those kernels compute, one time step at a time,
from operations every torch transform understands: affine maps
(``F.linear``, ``chunk``, ``unbind``, ``stack``, ``cat``), ``sigmoid``,
``tanh`` / ``relu`` and elementwise products. The input projection of a layer
is one ``F.linear`` over all time steps; only the recurrence is a loop.

:class:`Unrolled` is a :class:`torch.overrides.TorchFunctionMode` that routes
every recurrent kernel call through these functions while it is active, so a
user's ``nn.LSTM`` becomes differentiable by ``vmap``/``jacrev`` without
touching the module. Explainers use it; the core imports no explainer.

Conventions: the hidden state passed between steps is ``None`` while it is
the all-zero initial state (the default of ``nn.LSTM``), so the first step
has no recurrent term at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["KERNELS", "Unrolled", "UnsupportedRecurrence", "plain_constant", "unrolled_call"]


class UnsupportedRecurrence(ValueError):
    """A recurrent call this module cannot write out (packed sequences, dropout in training)."""


def plain_constant(t: torch.Tensor) -> bool:
    """Whether ``t`` is an ordinary tensor outside autograd and ``torch.func`` transforms."""
    wrapped = torch._C._functorch.is_functorch_wrapped_tensor(t)
    return not wrapped and not t.requires_grad and t.grad_fn is None


Constant = Callable[[torch.Tensor], bool]


def _zero_or(t: torch.Tensor | None, constant: Constant) -> torch.Tensor | None:
    """``None`` for an all-zero constant state (so no recurrent term is built for it)."""
    if t is None:
        return None
    if constant(t) and not bool(t.any()):
        return None
    return t


def _lstm_step(
    gi: torch.Tensor,
    h: torch.Tensor | None,
    c: torch.Tensor | None,
    w_hh: torch.Tensor,
    b_hh: torch.Tensor | None,
    w_hr: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    gates = gi + F.linear(h, w_hh, b_hh) if h is not None else (gi if b_hh is None else gi + b_hh)
    i, f, g, o = gates.chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c_new = i * g if c is None else f * c + i * g
    h_new = o * torch.tanh(c_new)
    if w_hr is not None:
        h_new = F.linear(h_new, w_hr)
    return h_new, c_new


def _gru_step(gi: torch.Tensor, h: torch.Tensor | None, w_hh: torch.Tensor, b_hh: torch.Tensor | None) -> torch.Tensor:
    r_i, z_i, n_i = gi.chunk(3, dim=-1)
    if h is not None:
        r_h, z_h, n_h = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
        r, z = torch.sigmoid(r_i + r_h), torch.sigmoid(z_i + z_h)
        n = torch.tanh(n_i + r * n_h)
        return n + z * (h - n)
    z_pre, n_pre = z_i, n_i
    if b_hh is not None:  # the recurrent term of a zero state is its bias
        r_h, z_h, n_h = b_hh.chunk(3)
        z_pre, n_pre = z_i + z_h, n_i + torch.sigmoid(r_i + r_h) * n_h
    z, n = torch.sigmoid(z_pre), torch.tanh(n_pre)
    return n - z * n


def _rnn_step(
    gi: torch.Tensor, h: torch.Tensor | None, w_hh: torch.Tensor, b_hh: torch.Tensor | None, act: Callable[..., Any]
) -> torch.Tensor:
    pre = gi + F.linear(h, w_hh, b_hh) if h is not None else (gi if b_hh is None else gi + b_hh)
    return act(pre)


def _layer(
    kind: str,
    x: torch.Tensor,
    h0: torch.Tensor | None,
    c0: torch.Tensor | None,
    weights: Sequence[torch.Tensor],
    has_biases: bool,
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One direction of one layer over ``x`` ``(N, T, F)``: outputs ``(N, T, H)``, final ``h`` and ``c``."""
    w_ih, w_hh = weights[0], weights[1]
    b_ih, b_hh = (weights[2], weights[3]) if has_biases else (None, None)
    w_hr = weights[4 if has_biases else 2] if kind == "lstm" and len(weights) > (4 if has_biases else 2) else None
    steps = F.linear(x, w_ih, b_ih).unbind(1)  # the input projection of every step at once
    order = range(len(steps) - 1, -1, -1) if reverse else range(len(steps))
    h, c = h0, c0
    outs: list[torch.Tensor | None] = [None] * len(steps)
    for t in order:
        if kind == "lstm":
            h, c = _lstm_step(steps[t], h, c, w_hh, b_hh, w_hr)
        elif kind == "gru":
            h = _gru_step(steps[t], h, w_hh, b_hh)
        else:
            h = _rnn_step(steps[t], h, w_hh, b_hh, torch.tanh if kind == "rnn_tanh" else torch.relu)
        outs[t] = h
    return torch.stack(outs, dim=1), h, c  # type: ignore[arg-type, return-value]


def unrolled_rnn(
    kind: str,
    x: torch.Tensor,
    hx: Any,
    params: Sequence[torch.Tensor],
    has_biases: bool,
    num_layers: int,
    dropout: float,
    train: bool,
    bidirectional: bool,
    batch_first: bool,
    *,
    constant: Constant = plain_constant,
) -> tuple[torch.Tensor, ...]:
    """What ``torch._VF.<kind>`` returns (``lstm``: output, h_n, c_n; ``gru``/``rnn_*``: output, h_n)."""
    if train and dropout > 0 and num_layers > 1:
        raise UnsupportedRecurrence(f"{kind} with dropout between layers in training mode")
    dirs = 2 if bidirectional else 1
    stride = len(params) // (num_layers * dirs)
    h0, c0 = (hx[0], hx[1]) if kind == "lstm" else (hx, None)
    unbatched = x.dim() == 2
    if unbatched:  # nn.LSTM passes (T, F) as (T, 1, F) to the kernel already; kept for direct calls
        x = x.unsqueeze(1 if not batch_first else 0)
    layer_in = x if batch_first else x.transpose(0, 1)  # (N, T, F) from here on
    h_last, c_last = [], []
    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            idx = layer * dirs + d
            weights = params[idx * stride : (idx + 1) * stride]
            h_init = _zero_or(h0[idx] if h0 is not None else None, constant)
            c_init = _zero_or(c0[idx] if c0 is not None else None, constant)
            out, h, c = _layer(kind, layer_in, h_init, c_init, weights, has_biases, reverse=d == 1)
            outs.append(out)
            h_last.append(h)
            c_last.append(c)
        layer_in = outs[0] if dirs == 1 else torch.cat(outs, dim=2)
    output = layer_in if batch_first else layer_in.transpose(0, 1)
    h_n = torch.stack(h_last, dim=0)
    if kind != "lstm":
        return output, h_n
    c_n = torch.stack(c_last, dim=0)  # type: ignore[arg-type]
    return output, h_n, c_n


def unrolled_cell(
    kind: str,
    x: torch.Tensor,
    hx: Any,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor | None = None,
    b_hh: torch.Tensor | None = None,
    *,
    constant: Constant = plain_constant,
) -> Any:
    """What ``torch._VF.<kind>_cell`` returns (``lstm_cell``: ``(h, c)``; the others: ``h``)."""
    gi = F.linear(x, w_ih, b_ih)
    if kind == "lstm_cell":
        h, c = _zero_or(hx[0], constant), _zero_or(hx[1], constant)
        return _lstm_step(gi, h, c, w_hh, b_hh, None)
    h = _zero_or(hx, constant)
    if kind == "gru_cell":
        return _gru_step(gi, h, w_hh, b_hh)
    return _rnn_step(gi, h, w_hh, b_hh, torch.tanh if kind == "rnn_tanh_cell" else torch.relu)


KERNELS = frozenset({"lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell"})


def unrolled_call(name: str, args: tuple, kwargs: dict, constant: Constant = plain_constant) -> Any:
    """Evaluate the recurrent kernel ``name`` with ``args`` as written-out operations.

    ``constant(t)`` says whether a state tensor is a constant (not a function
    of the input being differentiated or recorded); all-zero constant states
    are dropped from the recurrence.
    """
    if name.endswith("_cell"):
        return unrolled_cell(name, *args, **kwargs, constant=constant)
    if len(args) > 1 and isinstance(args[1], torch.Tensor) and (name == "lstm" or args[1].dtype == torch.int64):
        raise UnsupportedRecurrence(f"{name} over a packed sequence (PackedSequence); pass padded tensors instead")
    return unrolled_rnn(name, *args, **kwargs, constant=constant)


class Unrolled(TorchFunctionMode):
    """While active, every ``nn.LSTM``/``GRU``/``RNN`` (and cell) call runs as plain torch operations."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch protocol
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in KERNELS:
            return unrolled_call(name, args, kwargs)
        return func(*args, **kwargs)
