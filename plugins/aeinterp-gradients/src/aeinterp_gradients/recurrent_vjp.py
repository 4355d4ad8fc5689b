"""One backward pass through ``nn.LSTM``/``nn.GRU`` for all targets at once, with the k cotangents as a plain batch.

Why
---
With few targets, integrated gradients on an LSTM encoder are dominated by
the backward passes through the fused recurrent kernel, one per target
(``loop`` in :mod:`aeinterp_gradients.autodiff`). ``torch.func``/
``is_grads_batched`` cannot batch that kernel's backward, and a written-out
LSTM under autograd walks thousands of small nodes per pass. Here the whole
recurrent call is one :class:`torch.autograd.Function`:

* its forward is the recurrence written out (the equations of
  :mod:`aeinterp.recurrent`, the same values up to rounding), run without
  autograd, saving each step's local slopes (computed once for all targets);
* its backward is a hand-written backward through time for the inputs and
  initial states only (the weights are constants here: no weight gradients,
  which the fused kernel computes anyway), over ``k x rows`` rows at once:
  per step a few elementwise products on ``(k, rows, 4H)`` and one matrix
  product with ``[W_hh | W_ih]``, so the input gradient of every step comes
  out of the same product as the recurrent one.

The k cotangents are pushed through the rest of the graph (the head after
the LSTM, the path weights, ...) by autograd in one pass with batched
gradients (legacy ``vmap``, what ``torch.autograd.grad(is_grads_batched=True)``
uses, see :func:`batched_grad`); when that pass reaches the LSTM node, its
backward takes the batch dimension out of the gradients
(``torch._remove_batch_dim``), runs the explicit batched recurrence above and
puts the dimension back on its results, so the recurrence never runs under
``vmap`` dispatch. Outside :func:`batched_grad` the same Function works as an
ordinary autograd node (one cotangent, a batch of one).

:class:`RoutedRecurrent` is the :class:`torch.overrides.TorchFunctionMode`
that sends ``torch._VF.lstm``/``gru`` (what every ``nn.LSTM``/``nn.GRU`` calls) to
:func:`routed_call` while active, so a user's LSTM anywhere in an arbitrary
module is handled without touching it (the GRU's backward has the same
shape: :func:`_gru_forward_direction`, :class:`_GRUBackward`). What it cannot do raises
:class:`aeinterp.recurrent.UnsupportedRecurrence`, and the caller falls
back to the per-target ``loop``: packed sequences, ``proj_size``, dropout
between layers in training mode, unbatched direct kernel calls, and every
other recurrent kernel (``RNN``, cells; TorchScript is never seen by the
mode at all and is excluded by :func:`batched_support`).

The private torch calls (``_vmapmode_increment_nesting``,
``_add_batch_dim``/``_remove_batch_dim``) are the ones
``torch.autograd.grad(is_grads_batched=True)`` itself makes; the tests
compare every supported shape with the per-target loop in float64.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from aeinterp.recurrent import KERNELS, UnsupportedRecurrence

__all__ = ["RoutedRecurrent", "batched_grad", "batched_support", "routed_call", "SUPPORTED_KERNELS"]

SUPPORTED_KERNELS = frozenset({"lstm", "gru"})

#: (vmap level, batch size) of the batched backward pass in progress, if any
_BATCH: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("aeinterp_recurrent_vjp_batch", default=None)


def _unbatch(g: torch.Tensor | None) -> torch.Tensor | None:
    """A gradient reaching the LSTM node as a plain tensor with the cotangents first: ``(k, *shape)``."""
    if g is None:
        return None
    batch = _BATCH.get()
    if batch is None:
        return g.unsqueeze(0)
    level, k = batch
    return torch._remove_batch_dim(g, level, k, 0)  # type: ignore[attr-defined]


def _rebatch(g: torch.Tensor | None) -> torch.Tensor | None:
    """The inverse of :func:`_unbatch` for a result of the node's backward."""
    if g is None:
        return None
    batch = _BATCH.get()
    if batch is None:
        return g.squeeze(0)
    return torch._add_batch_dim(g, 0, batch[0])  # type: ignore[attr-defined]


def batched_grad(output: torch.Tensor, inputs: torch.Tensor, grad_outputs: torch.Tensor) -> torch.Tensor:
    """``(k, *inputs.shape)``: the vector-Jacobian products of ``output`` for the k cotangents ``grad_outputs[j]``.

    What ``torch.autograd.grad(..., is_grads_batched=True)`` does (one backward
    pass under legacy ``vmap``), except that the vmap level is known to the
    LSTM node's backward, which then works on plain ``(k, ...)`` tensors.
    """
    k = grad_outputs.shape[0]
    level = torch._C._vmapmode_increment_nesting()
    token = _BATCH.set((level, k))
    try:
        g = torch._add_batch_dim(grad_outputs, 0, level)  # type: ignore[attr-defined]
        (res,) = torch.autograd.grad(output, inputs, g, allow_unused=True)
        if res is None:
            return torch.zeros((k, *inputs.shape), dtype=inputs.dtype, device=inputs.device)
        return torch._remove_batch_dim(res, level, k, 0)  # type: ignore[attr-defined]
    finally:
        _BATCH.reset(token)
        torch._C._vmapmode_decrement_nesting()


# --- one direction of one layer, in columns ------------------------------------------------------------
#
# Every per-step tensor below is (features, rows): a layer's input x_t (F, N), its states h, c (H, N), its gates
# (4H, N), and in the backward the cotangents (H, k, N) and gate gradients (4H, k N). Why, see the module docstring.


def _columns(rows: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, R, F)`` to ``(B, F, R)`` (into ``out``, whose matrices are contiguous, or a new tensor): one 2-D transposed copy per leading index.

    One N-D permuted copy of the same tensor measured ~8x slower (torch's
    copy iterates it element by element); the per-matrix copies of a
    contiguous source are blocked.
    """
    rows = rows.contiguous()
    if out is None:
        out = torch.empty((rows.shape[0], rows.shape[2], rows.shape[1]), dtype=rows.dtype, device=rows.device)
    for o, r in zip(out, rows):
        o.copy_(r.t())
    return out


def _with_ones(steps: int, features: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """``(T, F + 1, N)`` whose last row is ones: a layer's input columns with the bias folded into the input weight.

    The bias then comes out of the input product, instead of being broadcast
    into the gates first (``addmm`` with a bias column: measured ~1.5 ms of
    ~17 per layer on the bench shape).
    """
    x = torch.empty((steps, features + 1, n), dtype=like.dtype, device=like.device)
    x[:, features] = 1.0
    return x


def _forward_direction(x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
                       b_ih: torch.Tensor | None, b_hh: torch.Tensor | None, reverse: bool, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """``x`` ``(T, F + 1, N)`` (the layer's input columns, last row ones: :func:`_with_ones`), ``h0``, ``c0``
    ``(H, N)``: writes the outputs into ``out`` ``(T, H, N)`` (this direction's block of the layer's output); returns
    the final ``h``, ``c``, and the local slopes the backward needs.

    The slopes are computed here, step by step while the step's tensors are
    in cache, once for all targets: ``mult`` ``(T, 4H, N)`` holds
    ``d gates / d c`` for the i, f, g gates and ``d gates / d h`` for the o
    gate (``g i (1 - i)``, ``c_prev f (1 - f)``, ``i (1 - g^2) / 4``,
    ``tanh(c) o (1 - o)``; the g rows of the backward's weight carry the 4),
    ``through_c`` ``(T, H, N)`` is ``d h / d c = o (1 - tanh(c)^2)`` and
    ``forget`` the f gate.

    The g rows of the weights are doubled (exact in floating point) so that
    one sigmoid over all four gates gives ``s = sigmoid(2 g)``,
    ``tanh(g) = 2 s - 1`` and ``1 - tanh(g)^2 = 4 s (1 - s)``. The rounding
    differs from ``torch.tanh`` by about one unit of 1.0 (float32: ~1e-7;
    the fused kernel differs by as much). ``tanh(c)`` is ``torch.tanh`` (on
    torch 2.13 it is faster than a sigmoid, unlike the 5x slower ``tanh`` of
    earlier releases).
    """
    steps, n = x.shape[0], x.shape[2]
    hid = w_hh.shape[1]
    opts = {"dtype": x.dtype, "device": x.device}
    i_, f_, g_, o_ = slice(0, hid), slice(hid, 2 * hid), slice(2 * hid, 3 * hid), slice(3 * hid, 4 * hid)
    double = torch.ones(4 * hid, 1, **opts)
    double[g_] = 2.0
    bias = torch.zeros((4 * hid, 1), **opts) if b_ih is None or b_hh is None else (b_ih + b_hh).unsqueeze(1)
    w_x, w_h = torch.cat([w_ih, bias], dim=1) * double, w_hh * double  # the gates are W @ columns: (4H, F + 1) @ (F + 1, N)
    mult = torch.empty((steps, 4 * hid, n), **opts)
    through_c = torch.empty((steps, hid, n), **opts)
    forget = torch.empty((steps, hid, n), **opts)
    gates, a, slope = (torch.empty((4 * hid, n), **opts) for _ in range(3))  # a: sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)
    tanh_c = torch.empty((hid, n), **opts)
    minus_one = torch.tensor(-1.0, **opts)
    a_i, a_f, a_g, a_o = a[i_], a[f_], a[g_], a[o_]
    s_i, s_f, s_g, s_o = slope[i_], slope[f_], slope[g_], slope[o_]
    h, c = h0, c0
    for t in range(steps - 1, -1, -1) if reverse else range(steps):
        # the input projection step by step: all steps at once would be a (T, 4H, N) tensor in fresh memory, slower on a CPU
        torch.mm(w_x, x[t], out=gates).addmm_(w_h, h)
        torch.sigmoid(gates, out=a)
        torch.addcmul(a, a, a, value=-1.0, out=slope)  # s (1 - s) for all four
        torch.add(minus_one, a_g, alpha=2.0, out=a_g)  # tanh(g) = 2 s - 1
        m = mult[t]
        torch.mul(s_i, a_g, out=m[i_])
        torch.mul(s_f, c, out=m[f_])
        torch.mul(s_g, a_i, out=m[g_])
        forget[t] = a_f
        c = torch.addcmul(a_f * c, a_i, a_g)
        torch.tanh(c, out=tanh_c)
        torch.mul(s_o, tanh_c, out=m[o_])
        h = torch.mul(a_o, tanh_c, out=out[t])
        torch.addcmul(a_o, h, tanh_c, value=-1.0, out=through_c[t])  # o - o tanh(c)^2
    return h, c, (mult, through_c, forget)


class _Backward:
    """The batched backward through time of one direction of one LSTM layer, one step at a time.

    ``k`` cotangents at once: ``d h`` and ``d c`` are ``(H, k, N)``. Each
    :meth:`step` is a few elementwise products with the slopes the forward
    saved, written as the four contiguous gate blocks of ``(4H, k N)``, then
    one product ``[W_hh | W_ih]^T @ gates`` into a buffer reused by every
    step, whose two row blocks are the next step's recurrent ``d h`` and this
    step's input gradient. Stacked one-directional layers run their steps in
    lockstep (:func:`_backward_stack`), so a layer's input gradient is used
    by the layer below while still in cache and never stored for all steps.
    """

    def __init__(self, saved: tuple, w_ih: torch.Tensor, w_hh: torch.Tensor, k: int, d_h: torch.Tensor | None, d_c: torch.Tensor | None) -> None:
        mult, through_c, forget = saved
        steps, hid4, n = mult.shape
        self.k, self.n, self.hid = k, n, hid4 // 4
        opts = {"dtype": mult.dtype, "device": mult.device}
        w = torch.cat([w_hh, w_ih], dim=1)  # one product gives the recurrent and the input gradient (measured faster than two)
        w[2 * self.hid : 3 * self.hid] *= 4.0  # the g slope is saved as s (1 - s) = (1 - tanh(g)^2) / 4
        self.w = w.t().contiguous()  # (H + F, 4H)
        self.out = torch.empty((self.w.shape[0], k * n), **opts)
        self.gates = torch.empty((4, self.hid, k, n), **opts)
        self.mult = mult.view(steps, 4, self.hid, 1, n)  # broadcast over the k cotangents
        self.through_c, self.forget = through_c.unsqueeze(2), forget.unsqueeze(2)
        self.dh = d_h if d_h is not None else torch.zeros((self.hid, k, n), **opts)
        self.dc = d_c if d_c is not None else torch.zeros((self.hid, k, n), **opts)  # a tensor of our own: updated in place

    def step(self, t: int, d_out: torch.Tensor | None) -> torch.Tensor:
        """Step ``t`` with ``d_out`` ``(H, k, N)`` from above; the step's input gradient ``(F, k, N)``, valid until the next step."""
        dh = self.dh if d_out is None else self.dh + d_out
        dc = self.dc.addcmul_(dh, self.through_c[t])
        torch.mul(dc, self.mult[t, :3], out=self.gates[:3])
        torch.mul(dh, self.mult[t, 3], out=self.gates[3])
        dc.mul_(self.forget[t])
        torch.mm(self.w, self.gates.view(4 * self.hid, -1), out=self.out)
        self.dh = self.out[: self.hid].view(self.hid, self.k, self.n)
        return self.out[self.hid :].view(-1, self.k, self.n)

    def initial(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The gradients of the initial ``h`` and ``c`` after the last step."""
        return self.dh.clone(), self.dc


def _gru_forward_direction(x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor | None,
                           b_hh: torch.Tensor | None, reverse: bool, out: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    """The GRU's :func:`_forward_direction` (``x`` ``(T, F + 1, N)``, last row ones): writes the outputs into ``out``
    ``(T, H, N)``, returns the final ``h`` and the slopes.

    ``h' = n + z (h - n)``, ``n = tanh(i_n + r (W_hn h + b_hn))``; with
    ``A = (1 - z) (1 - n^2)`` every gradient of a step is ``d h'`` times a
    saved slope: the r, z and recurrent-n pre-activations get ``A g_n r (1 - r)``,
    ``(h - n) z (1 - z)``, ``A r``, the input-n one ``A``, the previous ``h``
    also ``z``. ``mult`` ``(T, 4H, N)`` holds the first four with the
    constant factors of the sigmoid form of ``tanh`` (see
    :func:`_forward_direction`) left to the backward's weight, ``update`` the z gate.
    """
    steps, n = x.shape[0], x.shape[2]
    hid = w_hh.shape[1]
    opts = {"dtype": x.dtype, "device": x.device}
    r_, z_, n_ = slice(0, hid), slice(hid, 2 * hid), slice(2 * hid, 3 * hid)
    double = torch.ones(3 * hid, 1, **opts)
    double[n_] = 2.0  # the n rows: one sigmoid of 2 n_pre gives tanh(n_pre)
    # the input bias, and the recurrent one of r and z, come out of the input product; b_hn stays inside r (W_hn h + b_hn)
    b_x = torch.zeros((3 * hid, 1), **opts) if b_ih is None else b_ih.unsqueeze(1).clone()
    b_hn = torch.zeros((hid, 1), **opts) if b_hh is None else 2.0 * b_hh[n_].unsqueeze(1)
    if b_hh is not None:
        b_x[: 2 * hid] += b_hh[: 2 * hid].unsqueeze(1)
    w_x, w_h = torch.cat([w_ih, b_x], dim=1) * double, w_hh * double
    mult = torch.empty((steps, 4 * hid, n), **opts)
    update = torch.empty((steps, hid, n), **opts)
    gi, gh = (torch.empty((3 * hid, n), **opts) for _ in range(2))
    rz, srz = (torch.empty((2 * hid, n), **opts) for _ in range(2))
    s_n, slope_n, diff = (torch.empty((hid, n), **opts) for _ in range(3))
    r, z, srz_r, srz_z = rz[r_], rz[z_], srz[r_], srz[z_]
    minus_one = torch.tensor(-1.0, **opts)
    h = h0
    for t in range(steps - 1, -1, -1) if reverse else range(steps):
        torch.mm(w_x, x[t], out=gi)
        torch.mm(w_h, h, out=gh)[n_].add_(b_hn)  # gh's n part is 2 (W_hn h + b_hn)
        torch.sigmoid(torch.add(gi[: 2 * hid], gh[: 2 * hid], out=rz), out=rz)
        torch.addcmul(rz, rz, rz, value=-1.0, out=srz)  # r (1 - r), z (1 - z)
        torch.sigmoid(torch.addcmul(gi[n_], r, gh[n_], out=s_n), out=s_n)
        torch.addcmul(s_n, s_n, s_n, value=-1.0, out=slope_n)  # (1 - n^2) / 4
        n_t = torch.add(minus_one, s_n, alpha=2.0, out=s_n)  # tanh(n_pre)
        torch.sub(h, n_t, out=diff)
        m = mult[t]  # rows: r, z, recurrent n, input n
        a = torch.addcmul(slope_n, z, slope_n, value=-1.0, out=m[3 * hid :])  # A / 4 = (1 - z) (1 - n^2) / 4
        torch.mul(torch.mul(a, gh[n_], out=m[r_]), srz_r, out=m[r_])  # A g_n r (1 - r) / 4 (gh doubled: x 2 in the weight)
        torch.mul(diff, srz_z, out=m[z_])
        torch.mul(a, r, out=m[n_])
        update[t] = z
        h = torch.addcmul(n_t, z, diff, out=out[t])
    return h, (mult, update)


class _GRUBackward:
    """:class:`_Backward` for one direction of a GRU layer: per step one product with the saved slopes, one matrix product, one ``addcmul``."""

    def __init__(self, saved: tuple, w_ih: torch.Tensor, w_hh: torch.Tensor, k: int, d_h: torch.Tensor | None, d_c: torch.Tensor | None) -> None:
        mult, update = saved
        steps, hid4, n = mult.shape
        self.k, self.n, self.hid = k, n, hid4 // 4
        hid, n_in = self.hid, w_ih.shape[1]
        opts = {"dtype": mult.dtype, "device": mult.device}
        # rows: d r_pre, d z_pre, d (W_hn h + b_hn), d (W_in x + b_in); the factors undo the saved slopes' scaling
        w = torch.zeros((4 * hid, hid + n_in), **opts)
        w[:hid, :hid], w[:hid, hid:] = 2.0 * w_hh[:hid], 2.0 * w_ih[:hid]
        w[hid : 2 * hid, :hid], w[hid : 2 * hid, hid:] = w_hh[hid : 2 * hid], w_ih[hid : 2 * hid]
        w[2 * hid : 3 * hid, :hid] = 4.0 * w_hh[2 * hid :]
        w[3 * hid :, hid:] = 4.0 * w_ih[2 * hid :]
        self.w = w.t().contiguous()  # (H + F, 4H)
        self.out = torch.empty((hid + n_in, k * n), **opts)
        self.gates = torch.empty((4, hid, k, n), **opts)
        self.mult = mult.view(steps, 4, hid, 1, n)
        self.update = update.unsqueeze(2)
        self.dh = d_h if d_h is not None else torch.zeros((hid, k, n), **opts)

    def step(self, t: int, d_out: torch.Tensor | None) -> torch.Tensor:
        dh = self.dh if d_out is None else self.dh + d_out
        torch.mul(dh, self.mult[t], out=self.gates)
        torch.mm(self.w, self.gates.view(4 * self.hid, -1), out=self.out)
        self.dh = torch.addcmul(self.out[: self.hid].view(self.hid, self.k, self.n), dh, self.update[t])
        return self.out[self.hid :].view(-1, self.k, self.n)

    def initial(self) -> tuple[torch.Tensor, None]:
        return self.dh, None


def _backward_stack(kind: str, saved: list[tuple], weights: Sequence[torch.Tensor], stride: int, num_layers: int, dirs: int, k: int,
                    d_out: torch.Tensor | None, d_hn: torch.Tensor | None, d_cn: torch.Tensor | None, d_x: torch.Tensor,
                    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """The per-direction initial-state gradients ``(H, k, N)`` of a stack; the input gradient goes into ``d_x``.

    ``d_out`` ``(T, D H, k, N)``, ``d_hn``/``d_cn`` ``(L D, H, k, N)`` (ours:
    ``d_cn`` is updated in place), ``d_x`` ``(T, F, k, N)``, zeros, a view of
    the input gradient in the caller's layout (written one step at a time).
    """
    steps = saved[0][0].shape[0]
    cls = _Backward if kind == "lstm" else _GRUBackward

    def backward(idx: int) -> _Backward | _GRUBackward:
        w = weights[idx * stride : (idx + 1) * stride]
        return cls(saved[idx], w[0], w[1], k, None if d_hn is None else d_hn[idx], None if d_cn is None else d_cn[idx])

    if dirs == 1:  # all layers step by step in lockstep, from the top
        layers = [backward(i) for i in range(num_layers)]
        for t in range(steps - 1, -1, -1):
            g = None if d_out is None else d_out[t]
            for layer in reversed(layers):
                g = layer.step(t, g)
            d_x[t] = g
        states = [layer.initial() for layer in layers]
        return [s[0] for s in states], [s[1] for s in states]
    h0s, c0s = [None] * (num_layers * dirs), [None] * (num_layers * dirs)
    g_all = d_out
    for layer in range(num_layers - 1, -1, -1):  # a bidirectional layer needs both directions' gradients before the one below
        d_in = d_x if layer == 0 else None
        for d in range(dirs):
            idx = layer * dirs + d
            b = backward(idx)
            hid = b.hid
            for t in range(steps) if d == 1 else range(steps - 1, -1, -1):
                g = b.step(t, None if g_all is None else g_all[t, d * hid : (d + 1) * hid])
                if d_in is None:
                    d_in = torch.zeros((steps, *g.shape), dtype=g.dtype, device=g.device)
                d_in[t] += g
            h0s[idx], c0s[idx] = b.initial()
        g_all = d_in
    return h0s, c0s  # type: ignore[return-value]


# --- the whole call ---------------------------------------------------------------------------------


class _Recurrent(torch.autograd.Function):
    """``torch._VF.lstm`` / ``gru`` on padded input, as one node with a batched backward for its input and initial states."""

    @staticmethod
    def forward(ctx: Any, kind: str, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None, layout: tuple,  # noqa: ANN401
                *weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        num_layers, bidirectional, batch_first, has_biases = layout
        dirs = 2 if bidirectional else 1
        stride = len(weights) // (num_layers * dirs)
        rows = x.transpose(0, 1) if batch_first else x  # (T, N, F)
        steps, n, features = rows.shape
        hid = weights[1].shape[1]
        layer_in = _with_ones(steps, features, n, x)  # (T, F + 1, N) from here on
        _columns(rows, layer_in[:, :features])
        h0 = _columns(h0)  # (L D, H, N)
        c0 = _columns(c0) if c0 is not None else None
        saved, h_n, c_n = [], [], []
        for layer in range(num_layers):
            out = _with_ones(steps, dirs * hid, n, x)  # the next layer's input columns
            for d in range(dirs):
                idx = layer * dirs + d
                w = weights[idx * stride : (idx + 1) * stride]
                b_ih, b_hh = (w[2], w[3]) if has_biases else (None, None)
                block = out[:, d * hid : (d + 1) * hid]
                if kind == "lstm":
                    h, c, s = _forward_direction(layer_in, h0[idx], c0[idx], w[0], w[1], b_ih, b_hh, d == 1, block)
                    c_n.append(c)
                else:
                    h, s = _gru_forward_direction(layer_in, h0[idx], w[0], w[1], b_ih, b_hh, d == 1, block)
                saved.append(s)
                h_n.append(h)
            layer_in = out
        # rows again, time-major, one 2-D transposed copy per step; batch_first returns its transpose, as nn.LSTM/GRU do
        # on a CPU (a contiguous (N, T, D H) output would be written a column at a time: ~4x slower in fresh memory)
        output = torch.empty((steps, n, dirs * hid), dtype=x.dtype, device=x.device)
        for t in range(steps):
            output[t].copy_(layer_in[t, : dirs * hid].t())
        output = output.transpose(0, 1) if batch_first else output
        ctx.kind, ctx.layout, ctx.stride, ctx.saved, ctx.x_shape = kind, layout, stride, saved, x.shape
        ctx.weights = weights  # constants (detached by routed_call): no gradients are returned for them
        ctx.set_materialize_grads(False)
        h_n = torch.stack([h.t() for h in h_n])
        if kind == "lstm":
            return output, h_n, torch.stack([c.t() for c in c_n])
        return output, h_n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, d_output: torch.Tensor | None, d_hn: torch.Tensor | None, d_cn: torch.Tensor | None = None) -> tuple:  # noqa: ANN401
        num_layers, bidirectional, batch_first, _ = ctx.layout
        dirs = 2 if bidirectional else 1
        d_out, d_hn, d_cn = _unbatch(d_output), _unbatch(d_hn), _unbatch(d_cn)
        given = next((g for g in (d_out, d_hn, d_cn) if g is not None), None)
        if given is None:
            return (None,) * (5 + len(ctx.weights))
        k = given.shape[0]
        steps, _, n = ctx.saved[0][0].shape
        if d_out is not None:  # (k, N, T, DH) or (k, T, N, DH) -> (T, DH, k, N)
            rows = d_out.permute(2, 0, 1, 3) if batch_first else d_out.transpose(0, 1)
            d_out = _columns(rows.reshape(steps, k * n, -1)).view(steps, -1, k, n)
        states = []
        for g in (d_hn, d_cn):  # (k, L D, N, H) -> (L D, H, k, N)
            states.append(None if g is None else _columns(g.transpose(0, 1).reshape(g.shape[1], k * n, -1)).view(g.shape[1], -1, k, n))
        d_x = torch.zeros((k, *ctx.x_shape), dtype=given.dtype, device=given.device)
        d_x_cols = d_x.permute(2, 3, 0, 1) if batch_first else d_x.permute(1, 3, 0, 2)  # (T, F, k, N) view
        d_h0, d_c0 = _backward_stack(ctx.kind, ctx.saved, ctx.weights, ctx.stride, num_layers, dirs, k, d_out, states[0], states[1], d_x_cols)
        need = ctx.needs_input_grad

        def rows_of(grads: list[torch.Tensor]) -> torch.Tensor:  # per direction (H, k, N) -> (k, L D, N, H)
            res = torch.empty((k, len(grads), n, grads[0].shape[0]), dtype=given.dtype, device=given.device)
            for i, g in enumerate(grads):
                res[:, i].copy_(g.permute(1, 2, 0))
            return res

        return (None, _rebatch(d_x) if need[1] else None, _rebatch(rows_of(d_h0)) if need[2] else None,
                _rebatch(rows_of(d_c0)) if need[3] and ctx.kind == "lstm" else None, None, *([None] * len(ctx.weights)))


def _check(name: str, args: tuple, kwargs: dict) -> None:
    """Raise :class:`UnsupportedRecurrence` for a ``torch._VF.lstm``/``gru`` call :func:`routed_call` cannot take."""
    hx_ok = isinstance(args[1], (tuple, list)) if name == "lstm" else (isinstance(args[1], torch.Tensor) and args[1].is_floating_point())
    if kwargs or len(args) != 9 or not hx_ok:
        raise UnsupportedRecurrence(f"{name} over a packed sequence (PackedSequence) or with an unexpected signature")
    x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first = args
    if train and dropout > 0 and num_layers > 1:
        raise UnsupportedRecurrence(f"{name} with dropout between layers in training mode")
    dirs = 2 if bidirectional else 1
    stride = len(params) // (num_layers * dirs)
    if stride != (4 if has_biases else 2):
        raise UnsupportedRecurrence(f"{name} with proj_size (a projected hidden state)")
    if x.dim() != 3 or not x.dtype.is_floating_point:
        raise UnsupportedRecurrence(f"{name} on an unbatched or non-float input")


def routed_call(name: str, args: tuple, kwargs: dict) -> tuple[torch.Tensor, ...]:
    """What ``torch._VF.<name>(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)`` returns."""
    _check(name, args, kwargs)
    x, hx, params, has_biases, num_layers, _, _, bidirectional, batch_first = args
    h0, c0 = hx if name == "lstm" else (hx, None)
    weights = [p.detach() for p in params]
    return _Recurrent.apply(name, x, h0, c0, (int(num_layers), bool(bidirectional), bool(batch_first), bool(has_biases)), *weights)


class RoutedRecurrent(TorchFunctionMode):
    """While active, ``nn.LSTM``/``GRU`` calls run as :class:`_Recurrent` nodes; any other recurrent kernel raises :class:`UnsupportedRecurrence`."""

    def __init__(self, check_only: bool = False) -> None:
        """``check_only``: raise for what cannot be routed, but run every call as usual (a cheap probe of a model)."""
        super().__init__()
        self.check_only = check_only

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch protocol
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in SUPPORTED_KERNELS:
            if self.check_only:
                _check(name, args, kwargs)
                return func(*args, **kwargs)
            return routed_call(name, args, kwargs)
        if name in KERNELS:
            raise UnsupportedRecurrence(f"{name}: only nn.LSTM and nn.GRU have a batched backward here")
        return func(*args, **kwargs)



def batched_support(model: Any) -> tuple[bool, str]:
    """Whether every recurrent layer behind ``model`` can take the batched backward, and why (not).

    Static checks only; what shows at call time (a packed sequence) raises
    :class:`UnsupportedRecurrence` from :class:`RoutedRecurrent` instead.
    """
    from aeinterp.model import torch_modules

    from .autodiff import _is_recurrent

    private = ("_add_batch_dim", "_remove_batch_dim")
    if not all(hasattr(torch, n) for n in private) or not hasattr(torch._C, "_vmapmode_increment_nesting"):
        return False, f"this torch ({torch.__version__}) lacks the batched-gradient calls the batched backward relies on"
    for root in torch_modules(model):
        for name, m in root.named_modules():
            label = name or type(m).__name__
            if isinstance(m, torch.jit.ScriptModule) and any(_is_recurrent(s) for s in m.modules()):
                return False, f"{label}: a recurrent layer inside TorchScript (its kernel cannot be routed)"
            if not _is_recurrent(m):
                continue
            if type(m) not in (torch.nn.LSTM, torch.nn.GRU):
                return False, f"{label}: {type(m).__name__} has no batched backward here (only nn.LSTM and nn.GRU)"
            if getattr(m, "proj_size", 0):
                return False, f"{label}: nn.LSTM with proj_size"
            if m.training and m.dropout > 0 and m.num_layers > 1:
                return False, f"{label}: {type(m).__name__} with dropout between layers in training mode"
    return True, "nn.LSTM/GRU layers: one hand-written backward pass carries every target's cotangent at once (aeinterp_gradients.recurrent_vjp)"
