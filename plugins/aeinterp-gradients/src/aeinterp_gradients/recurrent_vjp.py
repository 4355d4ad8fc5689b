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
  :mod:`aeinterp.toolkit.recurrent`, the same values up to rounding), run without
  autograd, keeping only what the backward recomputes from: each layer's
  input and output (which exist anyway) and the cell states;
* its backward is a hand-written backward through time for the inputs and
  initial states only (the weights are constants here: no weight gradients,
  which the fused kernel computes anyway), over ``k x rows`` rows at once.
  Per step it recomputes the step's gates and local slopes from ``x_t`` and
  the previous ``h`` and ``c`` (once for all targets, with the forward's own
  functions), then a few elementwise products on the ``k`` cotangents and
  one matrix product with ``[W_hh | W_ih]``, so the input gradient of every
  step comes out of the same product as the recurrent one.

Layout: every per-step tensor is in columns, ``(features, rows)`` (gates
``(4H, N)``, cotangents ``(H, k, N)``, gate gradients ``(4H, k N)``; the
products are ``W @ columns``), so each gate is one contiguous block and the
elementwise products run over the long row dimension. With rows innermost
(``(k, N, 4, H)``) the product of ``d c`` with the i, f, g slopes broadcast
inside every row and measured ~2x slower per element; the conversions at
the boundaries are one 2-D transposed copy per step (:func:`_columns`).

Why recompute rather than save the slopes (6H floats per row, step and
layer): on the bench shape (two-stack LSTM, 2048 rows, 30 steps) the saved
slopes were ~50 MB of fresh memory per layer, and writing it (page faults,
~0.6 us per 4 KiB page here, and cold caches) cost more than recomputing
the gates, whose tensors stay in cache; saving only the gate activations
(4H) was slower still. Measured in fresh processes, the whole explanation
(``bench/bench_gradients.py --lstm-only``, 4 latents): 0.145-0.16 s saving
slopes with rows innermost, 0.13-0.14 s in columns, ~0.12 s recomputing,
with less than half the memory.

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
:class:`aeinterp.toolkit.recurrent.UnsupportedRecurrence`, and the caller falls
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

from aeinterp.toolkit.recurrent import KERNELS, UnsupportedRecurrence

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
# Every per-step tensor below is (features, rows): a layer's input x_t (F + 1, N, last row ones), its states h, c
# (H, N), its gates (4H, N), and in the backward the cotangents (H, k, N) and gate gradients (4H, k N). Why, see the
# module docstring.


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


class _Scratch:
    """Per-step buffers shared by every direction of a stack, by name and shape.

    A direction uses them within one of its steps only, and directions run
    one after another (or layer after layer within a step), so one buffer
    serves all: fresh memory once, and still in cache for the next layer.
    """

    def __init__(self, like: torch.Tensor) -> None:
        self.opts = {"dtype": like.dtype, "device": like.device}
        self.buffers: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}

    def __call__(self, name: str, *shape: int) -> torch.Tensor:
        key = (name, shape)
        if key not in self.buffers:
            self.buffers[key] = torch.empty(shape, **self.opts)
        return self.buffers[key]


class _Direction:
    """One direction of one layer: its weights, and its inputs and outputs over the steps (what the backward recomputes from).

    ``x`` ``(T, F + 1, N)`` is the layer's input (:func:`_with_ones`),
    ``out`` ``(T, H, N)`` this direction's block of the layer's output,
    ``cells`` ``(T, H, N)`` its cell states (LSTM; None for a GRU), ``h0``,
    ``c0`` ``(H, N)`` its initial states.
    """

    def __init__(
        self,
        kind: str,
        x: torch.Tensor,
        weights: Sequence[torch.Tensor],
        has_biases: bool,
        reverse: bool,
        h0: torch.Tensor,
        c0: torch.Tensor | None,
    ) -> None:
        w_ih, w_hh = weights[0], weights[1]
        self.kind, self.x, self.reverse, self.h0, self.c0 = kind, x, reverse, h0, c0
        self.w_ih, self.w_hh = w_ih, w_hh
        self.steps, self.n, self.hid = x.shape[0], x.shape[2], w_hh.shape[1]
        b_ih, b_hh = (weights[2], weights[3]) if has_biases else (None, None)
        self.w_x, self.w_h, self.b_hn = _lstm_weights(w_ih, w_hh, b_ih, b_hh) if kind == "lstm" else _gru_weights(w_ih, w_hh, b_ih, b_hh)
        opts = {"dtype": x.dtype, "device": x.device}
        self.cells = torch.empty((self.steps, self.hid, self.n), **opts) if kind == "lstm" else None
        # the per-step matrices as lists of views, made once (indexing them in every step is Python overhead per operation)
        self.xs = x.unbind(0)
        self.cell_steps = self.cells.unbind(0) if self.cells is not None else None
        self.outs: tuple[torch.Tensor, ...] = ()
        self.minus_one = torch.tensor(-1.0, **opts)  # for _tanh_from_sigmoid_, made once per direction

    def set_output(self, out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``out`` ``(T, H, N)``, this direction's block of the layer's output: its steps, written by the forward."""
        self.outs = out.unbind(0)
        return self.outs

    def order(self) -> range:
        """The steps in the order the recurrence runs them."""
        return range(self.steps - 1, -1, -1) if self.reverse else range(self.steps)

    def previous(self, t: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The ``h`` and ``c`` step ``t`` starts from."""
        first = t == (self.steps - 1 if self.reverse else 0)
        if first:
            return self.h0, self.c0
        s = t + 1 if self.reverse else t - 1
        return self.outs[s], None if self.cell_steps is None else self.cell_steps[s]


def _lstm_weights(
    w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor | None, b_hh: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, None]:
    """``[W_ih | b_ih + b_hh]`` ``(4H, F + 1)`` and ``W_hh`` ``(4H, H)`` with the g rows doubled (exact in floating point).

    One sigmoid over all four gates then gives ``s = sigmoid(2 g)``,
    ``tanh(g) = 2 s - 1`` and ``1 - tanh(g)^2 = 4 s (1 - s)``; the rounding
    differs from ``torch.tanh`` by about one unit of 1.0 (float32: ~1e-7;
    the fused kernel differs by as much).
    """
    hid = w_hh.shape[1]
    double = torch.ones(4 * hid, 1, dtype=w_hh.dtype, device=w_hh.device)
    double[2 * hid : 3 * hid] = 2.0
    bias = torch.zeros_like(double) if b_ih is None or b_hh is None else (b_ih + b_hh).unsqueeze(1)
    return torch.cat([w_ih, bias], dim=1) * double, w_hh * double, None


def _lstm_gates(d: _Direction, t: int, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Into ``a`` ``(4H, N)``: the sigmoids of step ``t``'s four gates (the g rows doubled) from the previous ``h``.

    The forward and the backward call this same function, so the backward's
    recomputed gates are the forward's; :func:`_tanh_from_sigmoid_` turns
    the g rows into ``tanh(g)`` (after the backward took their slope).
    """
    torch.mm(d.w_x, d.xs[t], out=a).addmm_(d.w_h, h)
    return torch.sigmoid(a, out=a)


def _tanh_from_sigmoid_(s: torch.Tensor, minus_one: torch.Tensor) -> torch.Tensor:
    """``s = sigmoid(2 v)`` in place to ``tanh(v) = 2 s - 1`` (one fused operation; ``minus_one`` a 0-d tensor of ``s``'s dtype)."""
    return torch.add(minus_one, s, alpha=2.0, out=s)


def _forward_direction(
    d: _Direction, scratch: _Scratch, out: torch.Tensor, rows: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs one LSTM direction, writing ``h_t`` into ``out[t]`` ``(H, N)`` (and, transposed, into ``rows[t]`` ``(N, H)``
    while it is in cache: the stack's returned output) and ``c_t`` into ``d.cells[t]``; the final ``h``, ``c``.

    Nothing else is kept: the backward recomputes each step's gates from
    ``x_t`` and the previous ``h`` (:class:`_Backward`). Saving the local
    slopes instead (6 H floats per row and step) meant writing ~50 MB of
    fresh memory per layer on the bench shape, which cost more (page faults,
    cold caches) than the recomputation, whose tensors stay in cache.
    """
    outs, cells = d.set_output(out), d.cell_steps
    a, tanh_c = scratch("a", 4 * d.hid, d.n), scratch("tanh_c", d.hid, d.n)
    a_i, a_f, a_g, a_o = a.chunk(4)
    row_steps = rows.unbind(0) if rows is not None else None
    h, c = d.h0, d.c0
    for t in d.order():
        _lstm_gates(d, t, h, a)
        tanh_g = _tanh_from_sigmoid_(a_g, d.minus_one)
        c = torch.addcmul(torch.mul(a_f, c, out=cells[t]), a_i, tanh_g, out=cells[t])  # type: ignore[index]
        h = torch.mul(a_o, torch.tanh(c, out=tanh_c), out=outs[t])
        if row_steps is not None:
            row_steps[t].copy_(h.t())
    return h, c


class _Backward:
    """The batched backward through time of one direction of one LSTM layer, one step at a time.

    ``k`` cotangents at once: ``d h`` and ``d c`` are ``(H, k, N)``. Each
    :meth:`step` first recomputes the step's gates and local slopes, once
    for all targets (``(4H, N)``, buffers shared by all layers): ``mult`` holds ``d gates / d c``
    for the i, f, g gates and ``d gates / d h`` for the o gate
    (``g i (1 - i)``, ``c_prev f (1 - f)``, ``i (1 - g^2) / 4``,
    ``tanh(c) o (1 - o)``; the g rows of the weight carry the 4),
    ``through_c`` is ``d h / d c = o (1 - tanh(c)^2)``. Then a few
    elementwise products with the k cotangents, written as the four
    contiguous gate blocks of ``(4H, k N)``, and one product
    ``[W_hh | W_ih]^T @ gates`` into a buffer reused by every step, whose
    two row blocks are the next step's recurrent ``d h`` and this step's
    input gradient. Stacked one-directional layers run their steps in
    lockstep (:func:`_backward_stack`), so a layer's input gradient is used
    by the layer below while still in cache and never stored for all steps.
    """

    def __init__(self, d: _Direction, scratch: _Scratch, k: int, d_h: torch.Tensor | None, d_c: torch.Tensor | None) -> None:
        self.d, self.k, self.n, self.hid = d, k, d.n, d.hid
        hid, n = self.hid, self.n
        opts = {"dtype": d.x.dtype, "device": d.x.device}
        w = torch.cat([d.w_hh, d.w_ih], dim=1)  # one product gives the recurrent and the input gradient (measured faster than two)
        w[2 * hid : 3 * hid] *= 4.0  # the g slope is kept as s (1 - s) = (1 - tanh(g)^2) / 4
        self.w = w.t().contiguous()  # (H + F, 4H)
        self.out = torch.empty((self.w.shape[0], k * self.n), **opts)
        self.gates, self.a = scratch("gates", 4, hid, k, n), scratch("a", 4 * hid, n)
        self.mult = scratch("mult", 4, hid, 1, n)  # broadcast over the k cotangents
        self.through_c, self.tanh_c = scratch("through_c", hid, 1, n), scratch("tanh_c", hid, n)
        self.dh_total = scratch("dh_total", hid, k, n)
        self.dh = d_h if d_h is not None else torch.zeros((hid, k, self.n), **opts)
        self.dc = d_c if d_c is not None else torch.zeros((hid, k, self.n), **opts)  # a tensor of our own: updated in place
        # views made once: the per-step code below only calls the operations
        self.a_i, self.a_f, self.a_g, self.a_o = self.a.chunk(4)
        self.forget = self.a_f.unsqueeze(1)
        self.m = self.mult.view(4 * hid, n)
        self.m_i, self.m_f, self.m_g, self.m_o = self.m.chunk(4)
        self.mult_ifg, self.mult_o = self.mult[:3], self.mult[3]
        self.gates_ifg, self.gates_o, self.gates_2d = self.gates[:3], self.gates[3], self.gates.view(4 * hid, k * n)
        self.through_c_2d = self.through_c.view(hid, n)
        self.dh_next, self.d_input = self.out[:hid].view(hid, k, n), self.out[hid:].view(-1, k, n)

    def _slopes(self, t: int) -> None:
        """The step's ``mult`` and ``through_c``, in their buffers (and its f gate in ``forget``)."""
        d = self.d
        h, c = d.previous(t)
        a = _lstm_gates(d, t, h, self.a)
        torch.addcmul(a, a, a, value=-1.0, out=self.m)  # s (1 - s) for all four
        self.m_i.mul_(_tanh_from_sigmoid_(self.a_g, d.minus_one))
        self.m_f.mul_(c)
        self.m_g.mul_(self.a_i)
        self.m_o.mul_(torch.tanh(d.cell_steps[t], out=self.tanh_c))  # type: ignore[index]
        torch.addcmul(self.a_o, d.outs[t], self.tanh_c, value=-1.0, out=self.through_c_2d)  # o - o tanh(c)^2

    def step(self, t: int, d_out: torch.Tensor | None) -> torch.Tensor:
        """Step ``t`` with ``d_out`` ``(H, k, N)`` from above; the step's input gradient ``(F, k, N)``, valid until the next step."""
        self._slopes(t)
        dh = self.dh if d_out is None else torch.add(self.dh, d_out, out=self.dh_total)
        dc = self.dc.addcmul_(dh, self.through_c)
        torch.mul(dc, self.mult_ifg, out=self.gates_ifg)
        torch.mul(dh, self.mult_o, out=self.gates_o)
        dc.mul_(self.forget)
        torch.mm(self.w, self.gates_2d, out=self.out)
        self.dh = self.dh_next
        return self.d_input

    def initial(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The gradients of the initial ``h`` and ``c`` after the last step."""
        return self.dh.clone(), self.dc


def _gru_weights(
    w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor | None, b_hh: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[W_ih | b]`` ``(3H, F + 1)``, ``W_hh`` ``(3H, H)`` and ``b_hn`` ``(H, 1)``, the n rows doubled (one sigmoid of ``2 n_pre`` gives ``tanh(n_pre)``).

    The input bias, and the recurrent one of r and z, come out of the input
    product; ``b_hn`` stays inside ``r (W_hn h + b_hn)``.
    """
    hid = w_hh.shape[1]
    opts = {"dtype": w_hh.dtype, "device": w_hh.device}
    double = torch.ones(3 * hid, 1, **opts)
    double[2 * hid :] = 2.0
    b_x = torch.zeros((3 * hid, 1), **opts) if b_ih is None else b_ih.unsqueeze(1).clone()
    b_hn = torch.zeros((hid, 1), **opts) if b_hh is None else 2.0 * b_hh[2 * hid :].unsqueeze(1)
    if b_hh is not None:
        b_x[: 2 * hid] += b_hh[: 2 * hid].unsqueeze(1)
    return torch.cat([w_ih, b_x], dim=1) * double, w_hh * double, b_hn


def _gru_gates(d: _Direction, t: int, h: torch.Tensor, gi: torch.Tensor, gh: torch.Tensor, rz: torch.Tensor, n_t: torch.Tensor) -> None:
    """Into the buffers: ``gi``, ``gh`` ``(3H, N)`` (the input and recurrent products; gh's n part is ``2 (W_hn h + b_hn)``),
    ``rz`` ``(2H, N)`` the r and z gates, ``n_t`` ``(H, N)`` ``sigmoid(2 n_pre)`` (:func:`_tanh_from_sigmoid_` gives the
    candidate ``tanh(n_pre)``). The forward's and the backward's gates."""
    hid = d.hid
    torch.mm(d.w_x, d.xs[t], out=gi)
    torch.mm(d.w_h, h, out=gh)[2 * hid :].add_(d.b_hn)
    torch.sigmoid(torch.add(gi[: 2 * hid], gh[: 2 * hid], out=rz), out=rz)
    torch.sigmoid(torch.addcmul(gi[2 * hid :], rz[:hid], gh[2 * hid :], out=n_t), out=n_t)


def _gru_buffers(d: _Direction, scratch: _Scratch) -> tuple[torch.Tensor, ...]:
    """``gi``, ``gh``, ``rz``, ``n_t`` for :func:`_gru_gates`."""
    return tuple(scratch(name, rows * d.hid, d.n) for name, rows in (("gi", 3), ("gh", 3), ("rz", 2), ("n_t", 1)))


def _gru_forward_direction(d: _Direction, scratch: _Scratch, out: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`_forward_direction` for a GRU: writes ``h_t`` into ``out[t]`` (and ``rows[t]``), returns the final ``h``; ``h' = n + z (h - n)``."""
    outs = d.set_output(out)
    gi, gh, rz, n_t = _gru_buffers(d, scratch)
    z, diff = rz[d.hid :], scratch("diff", d.hid, d.n)
    row_steps = rows.unbind(0) if rows is not None else None
    h = d.h0
    for t in d.order():
        _gru_gates(d, t, h, gi, gh, rz, n_t)
        _tanh_from_sigmoid_(n_t, d.minus_one)
        h = torch.addcmul(n_t, z, torch.sub(h, n_t, out=diff), out=outs[t])
        if row_steps is not None:
            row_steps[t].copy_(h.t())
    return h


class _GRUBackward:
    """:class:`_Backward` for one direction of a GRU layer: the step's gates recomputed, then per step one product with
    the slopes, one matrix product, one ``addcmul``.

    With ``A = (1 - z) (1 - n^2)`` every gradient of a step is ``d h'`` times
    a slope: the r, z and recurrent-n pre-activations get ``A g_n r (1 - r)``,
    ``(h - n) z (1 - z)``, ``A r``, the input-n one ``A``, the previous ``h``
    also ``z``. ``mult`` holds the first four with the constant factors of
    the sigmoid form of ``tanh`` left to the weight.
    """

    def __init__(self, d: _Direction, scratch: _Scratch, k: int, d_h: torch.Tensor | None, d_c: torch.Tensor | None) -> None:
        self.d, self.k, self.n, self.hid = d, k, d.n, d.hid
        hid, n_in, n = self.hid, d.w_ih.shape[1], self.n
        w_ih, w_hh = d.w_ih, d.w_hh
        opts = {"dtype": d.x.dtype, "device": d.x.device}
        # rows: d r_pre, d z_pre, d (W_hn h + b_hn), d (W_in x + b_in); the factors undo the slopes' scaling
        w = torch.zeros((4 * hid, hid + n_in), **opts)
        w[:hid, :hid], w[:hid, hid:] = 2.0 * w_hh[:hid], 2.0 * w_ih[:hid]
        w[hid : 2 * hid, :hid], w[hid : 2 * hid, hid:] = w_hh[hid : 2 * hid], w_ih[hid : 2 * hid]
        w[2 * hid : 3 * hid, :hid] = 4.0 * w_hh[2 * hid :]
        w[3 * hid :, hid:] = 4.0 * w_ih[2 * hid :]
        self.w = w.t().contiguous()  # (H + F, 4H)
        self.out = torch.empty((hid + n_in, k * self.n), **opts)
        self.gates, self.buffers = scratch("gates", 4, hid, k, n), _gru_buffers(d, scratch)
        self.mult, self.slope = scratch("mult", 4, hid, 1, n), scratch("slope", 2 * hid, n)
        self.dh_total = scratch("dh_total", hid, k, n)
        self.dh = d_h if d_h is not None else torch.zeros((hid, k, self.n), **opts)

    def _slopes(self, t: int) -> torch.Tensor:
        """The step's ``mult`` (in its buffer); returns the z gate ``(H, 1, N)``."""
        d, hid = self.d, self.hid
        h, _ = d.previous(t)
        gi, gh, rz, n_t = self.buffers
        _gru_gates(d, t, h, gi, gh, rz, n_t)
        r, z = rz[:hid], rz[hid:]
        m = self.mult.view(4, hid, self.n)
        srz = torch.addcmul(rz, rz, rz, value=-1.0, out=self.slope)  # r (1 - r), z (1 - z)
        a = torch.addcmul(n_t, n_t, n_t, value=-1.0, out=m[3])  # s (1 - s) = (1 - n^2) / 4
        _tanh_from_sigmoid_(n_t, d.minus_one)
        a.addcmul_(z, a, value=-1.0)  # A / 4 = (1 - z) (1 - n^2) / 4
        torch.mul(a, gh[2 * hid :], out=m[0]).mul_(srz[:hid])  # A g_n r (1 - r) / 4 (gh doubled: x 2 in the weight)
        torch.mul(torch.sub(h, n_t, out=m[1]), srz[hid:], out=m[1])  # (h - n) z (1 - z)
        torch.mul(a, r, out=m[2])
        return z.unsqueeze(1)

    def step(self, t: int, d_out: torch.Tensor | None) -> torch.Tensor:
        update = self._slopes(t)
        dh = self.dh if d_out is None else torch.add(self.dh, d_out, out=self.dh_total)
        torch.mul(dh, self.mult, out=self.gates)
        torch.mm(self.w, self.gates.view(4 * self.hid, -1), out=self.out)
        self.dh = torch.addcmul(self.out[: self.hid].view(self.hid, self.k, self.n), dh, update)
        return self.out[self.hid :].view(-1, self.k, self.n)

    def initial(self) -> tuple[torch.Tensor, None]:
        return self.dh, None


def _backward_stack(
    directions: list[_Direction],
    num_layers: int,
    dirs: int,
    k: int,
    d_out: torch.Tensor | None,
    d_hn: torch.Tensor | None,
    d_cn: torch.Tensor | None,
    d_x: torch.Tensor,
) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """The per-direction initial-state gradients ``(H, k, N)`` of a stack; the input gradient goes into ``d_x``.

    ``d_out`` ``(T, D H, k, N)``, ``d_hn``/``d_cn`` ``(L D, H, k, N)`` (ours:
    ``d_cn`` is updated in place), ``d_x`` ``(T, F, k, N)``, zeros, a view of
    the input gradient in the caller's layout (written one step at a time).
    """
    steps = directions[0].steps
    cls = _Backward if directions[0].kind == "lstm" else _GRUBackward
    scratch = _Scratch(directions[0].x)

    def backward(idx: int) -> _Backward | _GRUBackward:
        return cls(directions[idx], scratch, k, None if d_hn is None else d_hn[idx], None if d_cn is None else d_cn[idx])

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
    def forward(
        ctx: Any,
        kind: str,
        x: torch.Tensor,
        h0: torch.Tensor,
        c0: torch.Tensor | None,
        layout: tuple,  # noqa: ANN401
        *weights: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
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
        # the returned output: time-major rows, one 2-D transposed copy per step; batch_first returns its transpose, as
        # nn.LSTM/GRU do on a CPU (a contiguous (N, T, D H) output would be written a column at a time: ~4x slower)
        output = torch.empty((steps, n, dirs * hid), dtype=x.dtype, device=x.device)
        directions, h_n, c_n = [], [], []
        scratch = _Scratch(x)
        for layer in range(num_layers):
            out = _with_ones(steps, dirs * hid, n, x)  # the next layer's input columns
            for d in range(dirs):
                idx = layer * dirs + d
                direction = _Direction(
                    kind, layer_in, weights[idx * stride : (idx + 1) * stride], has_biases, d == 1, h0[idx], None if c0 is None else c0[idx]
                )
                block = out[:, d * hid : (d + 1) * hid]
                rows_out = output[..., d * hid : (d + 1) * hid] if layer == num_layers - 1 else None
                if kind == "lstm":
                    h, c = _forward_direction(direction, scratch, block, rows_out)
                    c_n.append(c)
                else:
                    h = _gru_forward_direction(direction, scratch, block, rows_out)
                directions.append(direction)
                h_n.append(h)
            layer_in = out
        output = output.transpose(0, 1) if batch_first else output
        ctx.layout, ctx.directions, ctx.x_shape = layout, directions, x.shape
        ctx.n_weights = len(weights)  # the weights are constants (detached by routed_call): no gradients are returned for them
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
            return (None,) * (5 + ctx.n_weights)
        k = given.shape[0]
        steps, n = ctx.directions[0].steps, ctx.directions[0].n
        if d_out is not None:  # (k, N, T, DH) or (k, T, N, DH) -> (T, DH, k, N)
            rows = d_out.permute(2, 0, 1, 3) if batch_first else d_out.transpose(0, 1)
            d_out = _columns(rows.reshape(steps, k * n, -1)).view(steps, -1, k, n)
        states = []
        for g in (d_hn, d_cn):  # (k, L D, N, H) -> (L D, H, k, N)
            states.append(None if g is None else _columns(g.transpose(0, 1).reshape(g.shape[1], k * n, -1)).view(g.shape[1], -1, k, n))
        # the input gradient in columns, returned as a permuted view (k, N, T, F) / (k, T, N, F): the steps are written
        # as contiguous blocks, and autograd's next nodes (reshape, the sum over the path points) read any strides;
        # writing the caller's layout step by step measured ~3% of the whole explanation
        features = ctx.x_shape[-1]
        d_x_cols = (torch.empty if dirs == 1 else torch.zeros)((steps, features, k, n), dtype=given.dtype, device=given.device)
        d_x = d_x_cols.permute(2, 3, 0, 1) if batch_first else d_x_cols.permute(2, 0, 3, 1)
        d_h0, d_c0 = _backward_stack(ctx.directions, num_layers, dirs, k, d_out, states[0], states[1], d_x_cols)
        need = ctx.needs_input_grad

        def rows_of(grads: list[torch.Tensor]) -> torch.Tensor:  # per direction (H, k, N) -> (k, L D, N, H)
            res = torch.empty((k, len(grads), n, grads[0].shape[0]), dtype=given.dtype, device=given.device)
            for i, g in enumerate(grads):
                res[:, i].copy_(g.permute(1, 2, 0))
            return res

        lstm = ctx.directions[0].kind == "lstm"
        return (
            None,
            _rebatch(d_x) if need[1] else None,
            _rebatch(rows_of(d_h0)) if need[2] else None,
            _rebatch(rows_of(d_c0)) if need[3] and lstm else None,
            None,
            *([None] * ctx.n_weights),
        )


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


_RECURRENT_NAMES = {"LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"}


def is_recurrent(m: torch.nn.Module) -> bool:
    """An ``nn.LSTM``/``GRU``/``RNN`` or cell, or one of them compiled to TorchScript."""
    if isinstance(m, (torch.nn.RNNBase, torch.nn.RNNCellBase)):
        return True
    return isinstance(m, torch.jit.ScriptModule) and getattr(m, "original_name", "") in _RECURRENT_NAMES


def batched_support(model: Any) -> tuple[bool, str]:
    """Whether every recurrent layer behind ``model`` can take the batched backward, and why (not).

    Static checks only; what shows at call time (a packed sequence) raises
    :class:`UnsupportedRecurrence` from :class:`RoutedRecurrent` instead.
    """
    from aeinterp.model import torch_modules

    private = ("_add_batch_dim", "_remove_batch_dim")
    if not all(hasattr(torch, n) for n in private) or not hasattr(torch._C, "_vmapmode_increment_nesting"):
        return False, f"this torch ({torch.__version__}) lacks the batched-gradient calls the batched backward relies on"
    for root in torch_modules(model):
        for name, m in root.named_modules():
            label = name or type(m).__name__
            if isinstance(m, torch.jit.ScriptModule) and any(is_recurrent(s) for s in m.modules()):
                return False, f"{label}: a recurrent layer inside TorchScript (its kernel cannot be routed)"
            if not is_recurrent(m):
                continue
            if type(m) not in (torch.nn.LSTM, torch.nn.GRU):
                return False, f"{label}: {type(m).__name__} has no batched backward here (only nn.LSTM and nn.GRU)"
            if getattr(m, "proj_size", 0):
                return False, f"{label}: nn.LSTM with proj_size"
            if m.training and m.dropout > 0 and m.num_layers > 1:
                return False, f"{label}: {type(m).__name__} with dropout between layers in training mode"
    return (
        True,
        "nn.LSTM/GRU layers: one hand-written backward pass carries every target's cotangent at once (aeinterp_gradients.recurrent_vjp)",
    )
