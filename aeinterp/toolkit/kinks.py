"""Exact code changes of a ``Linear -> ReLU/LeakyReLU -> Linear`` encoder when a few inputs change.

With ``a = A x + b`` (the first layer), ``z = W act(a) + c`` and an ``act``
that is linear on each side of a kink at 0 (slope ``s_ri`` on the side of
``a_ri``), changing the columns ``C`` of ``x`` by ``D`` (``N x |C|``) moves
``a`` by ``da = D A_C^T`` and the code by exactly::

    dz_r = sum_c D_rc J_c[r]  +  sum_{i crosses} (act(a_ri + da_ri) - act(a_ri) - s_ri da_ri) W[:, i]

where ``J_c = (s * A[:, c]) W^T`` is column ``c`` of the code's Jacobian at
``a``. The first sum is the change of every unit that stays on its side of
the kink; the second corrects the units whose pre-activation crosses it. A
unit can only cross where ``|a_ri| <= |da_ri| <= sum_c |D_rc| max_i |A_ic|``:
with the units of each row sorted by ``|a|`` once, the candidates of a row
are a prefix of that order, found by one binary search per row
(:meth:`KinkUpdate.change`). On random and trained networks a few percent of
the units are candidates, so a copy costs a few passes over ``N x k``
instead of the second layer's ``N x h x k`` matmul.

The column Jacobians cost that matmul once per column set, so the update
pays when several copies perturb the same columns: permutation's repeats do
(:func:`aeinterp.toolkit.perturb.perturbation_sums`, ``column_sets``). The result is
the plain forward pass's up to float rounding.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..targets import Target
from .first_layer import FirstLayer

__all__ = ["KINKED", "MIN_SECOND_LAYER", "KinkUpdate", "kink_update_reason"]

#: Activations linear on each side of a kink at 0 (``Identity``: the same slope on both).
KINKED = (nn.ReLU, nn.LeakyReLU, nn.Identity)

#: Below this many weights (h x k) in the second layer its matmul costs less than the
#: update's fixed per-call work (bench/bench_perturbation.py: 0.8x at 45 x 30, 1.05x at
#: 150 x 100, 1.3x at 300 x 200, 3x and more at 750 x 500).
MIN_SECOND_LAYER = 2**14


def kink_update_reason(layer: FirstLayer | None, target: Target) -> str | None:
    """None when :class:`KinkUpdate` gives ``target`` for ``layer``; otherwise why not."""
    if layer is None:
        return "no affine first layer"
    if target is not Target.LATENT:
        return f"the {target} target is not the latent code"
    if layer.tail is None:
        return "the encoder after its first layer is not one activation and one nn.Linear"
    if type(layer.tail[0]) not in KINKED:
        return f"the activation {type(layer.tail[0]).__name__} is not piecewise linear with a kink at 0"
    size = layer.width * layer.tail[1].out_features
    if size < MIN_SECOND_LAYER:
        return f"the second layer ({layer.width} x {layer.tail[1].out_features}) is too small for the update to pay (< {MIN_SECOND_LAYER} weights)"
    return None


class KinkUpdate:
    """The code changes of one sample chunk ``x`` (rows of pre-activations ``a0 = A x + b``)."""

    def __init__(self, layer: FirstLayer, a0: torch.Tensor) -> None:
        assert layer.tail is not None and type(layer.tail[0]) in KINKED
        act, out, _ = layer.tail
        self.act = act
        self.weight_t = layer.linear.weight.detach().T  # (D, h): a view; one column set's rows are gathered per call
        self.out_t = out.weight.detach().T.contiguous()  # (h, k); sparse @ a transposed view is 4x slower
        self.a0 = a0
        one = torch.ones((), dtype=a0.dtype, device=a0.device)
        zero = torch.zeros_like(one)
        with torch.no_grad():
            s_pos, s_neg = act(one.clone()) - act(zero.clone()), act(zero.clone()) - act(-one)
        self.s_pos, self.s_neg = s_pos, s_neg
        self.slope = torch.where(a0 > 0, s_pos, s_neg)  # (N, h): act's slope on each unit's side
        self.kinked = bool(s_pos != s_neg)
        if self.kinked:  # each row's units in the order of |a|, where the candidates to cross are a prefix
            self.sorted_abs, self.order = torch.sort(a0.abs(), dim=1)
            self.sorted_a0 = torch.gather(a0, 1, self.order)
            self.col_max = self.weight_t.abs().amax(dim=1)  # (D,): max_i |A_ic|

    def jacobian(self, cols: torch.Tensor) -> torch.Tensor:
        """``(|C|, N, k)``: the code's Jacobian columns for the input columns ``cols`` at ``a0``."""
        return torch.stack([(self.slope * w) @ self.out_t for w in self.weight_t[cols]])  # [cols]: a contiguous copy

    def change(self, cols: torch.Tensor, delta: torch.Tensor, jacobian: torch.Tensor) -> torch.Tensor:
        """``(q, N, k)``: the code's change for ``q`` copies whose columns ``cols`` change by ``delta`` (``q x N x |C|``).

        One call handles all copies of a column set: each operation here
        costs tens of microseconds whatever its size, so copies share them.
        """
        q, (n, h) = delta.shape[0], self.a0.shape
        single = len(cols) == 1
        dz = delta * jacobian[0] if single else torch.einsum("qnc,cnk->qnk", delta, jacobian).contiguous()
        if not self.kinked:
            return dz
        # |da_ri| <= sum_c |D_rc| max_i |A_ic|; the margin covers the rounding of da and of the bound
        bound = (delta.abs() @ self.col_max[cols]) * (1 + 1e-5 * len(cols))  # (q, N)
        width = int(torch.searchsorted(self.sorted_abs, bound.T.contiguous(), right=True).max())
        if width == 0:
            return dz
        # every row's first `width` units by |a| hold all its candidates; testing the others too is harmless
        order = self.order[:, :width]
        a0 = self.sorted_a0[:, :width]  # (N, w)
        w = self.weight_t[cols][:, order]  # (|C|, N, w)
        da = delta[..., 0, None] * w[0] if single else torch.einsum("qnc,cnw->qnw", delta, w)
        positive = a0 > 0
        cross = ((a0 + da) > 0) != positive  # (q, N, w): the units that cross the kink
        copy, row, j = cross.nonzero(as_tuple=True)
        if copy.numel() == 0:
            return dz
        rows, units, a0, da = copy * n + row, order[row, j], a0[row, j], da[copy, row, j]
        step = self.act(a0 + da) - self.act(a0) - torch.where(a0 > 0, self.s_pos, self.s_neg) * da
        crow = torch.zeros(q * n + 1, dtype=torch.int64, device=dz.device)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=q * n), 0)  # rows are sorted: a CSR matrix as they come
        with warnings.catch_warnings():  # "sparse CSR support is in beta": addmm with it is stable and tested here
            warnings.simplefilter("ignore", UserWarning)
            correction = torch.sparse_csr_tensor(crow, units, step, size=(q * n, h))
        dz.view(q * n, -1).addmm_(correction, self.out_t)  # in place: twice as fast as addmm's copy
        return dz
