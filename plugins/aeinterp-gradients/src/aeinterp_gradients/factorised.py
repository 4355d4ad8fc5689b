"""Gradients through an affine first layer, factorised out of the integration.

When every target reads a tabular input only through an encoder whose first
layer is affine, ``T(x) = g(A x + b)``, the chain rule gives
``dT/dx = dT/da (A x + b) @ A``. Integrated gradients average ``dT/dx`` over
the path points ``x_s``; since ``A`` does not depend on ``x_s``::

    sum_s w_s dT/dx(x_s) = (sum_s w_s dT/da(a_s)) @ A,   a_s = A x_s + b

so the per-step, per-target backward passes stop at the first layer's output
(``targets x h`` per row instead of ``targets x n``), the steps are combined
there, and ``A`` is applied once per sample. The first layer's outputs along
the path are interpolated between its outputs at the baseline and at the
sample (``a_s = a_b + alpha_s (a_x - a_b)``, exact for an affine map), so
the widest layer is not even evaluated per step.

Detection is structural and conservative (:func:`first_layer_split`): the
model is a :class:`aeinterp.model.TorchAutoencoder` on tabular data, and its
resolved encoder is

* an ``nn.Linear`` or an ``nn.Sequential`` whose first module is one, or
* the unmodified ``encode`` method of a built-in architecture
  (``BuiltinAutoencoder.encode``: ``to_code(encoder(x))`` or the VAE heads
  ``(to_mu(h), to_logvar(h))``; ``SupervisedVAE.encode`` delegating to its
  MLP), or of the planted test model (``encoder(x)``),

with no hooks on the modules that are bypassed. When moreover the target is
the latent code and the encoder after the first layer is one elementwise
activation and an affine layer ``W``, ``z = W act(a) + c``, the summed
Jacobian is ``W * sum_s w_s act'(a_s)`` (:func:`summed_code_jacobian`): no
per-target backward pass at all, one ``targets x h @ h x n`` product per sample. All four targets then read
the input only through the encoder: the reconstruction error compares the
reconstruction with the *unperturbed* sample, a constant the gradient does
not flow into, so it factorises exactly too. Anything else takes the generic
path.
"""

from __future__ import annotations

from typing import Any

import torch

from aeinterp.targets import Target
from aeinterp.toolkit.first_layer import ELEMENTWISE, FirstLayer, first_layer_split, layer_target_function

__all__ = [
    "ELEMENTWISE",
    "FirstLayer",
    "first_layer_split",
    "layer_target_function",
    "summed_code_jacobian",
    "jacobian_factorised",
    "code_jacobian",
]

#: per-sample products over the active units only when one dense product is at least this many multiply-adds and at
#: least a quarter of the slopes are exactly 0 (ReLU): the zero columns cost half the work of a dense product
SPARSE_MIN_MACS = 2**22


def summed_code_jacobian(layer: FirstLayer, points: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(B, k, h)``: ``sum_s w_s dz/da(a_s)`` for ``z = out(act(a))``, i.e. ``out.weight * sum_s w_s act'(a_s)``.

    ``points`` are the first layer's outputs ``(S, B, h)``, ``weights`` ``(S,)``.
    """
    act, out, _ = layer.tail  # type: ignore[misc]
    from torch.func import jvp

    slope = jvp(act, (points,), (torch.ones_like(points),))[1]  # act'(a), elementwise
    summed = (slope * weights.to(points.dtype).view(-1, 1, 1)).sum(dim=0)  # (B, h)
    return out.weight.detach().unsqueeze(0) * summed.unsqueeze(1)


def jacobian_factorised(p, model, data, target: Target, state: dict[str, Any]) -> bool:  # noqa: ANN001
    """Whether the Jacobian is ``W act'(A x + b) A`` (latent code of ``Linear -> activation -> Linear``; mode ``auto``):
    one ``(targets x h) @ (h x n)`` product per sample, the floor of any autodiff; sets the mode, blocks and path."""
    info = state["info"]
    if p.mode != "auto" or target is not Target.LATENT or info["recurrent_layers"]:
        return False
    layer, reason = first_layer_split(model, data, target)
    if layer is None or layer.tail is None:
        return False
    n_t, n_e, h = len(state["names"]), state["n_e"], layer.width
    rows = max(1, int(p.memory_mb * 2**20 // (4.0 * (2 * n_t * h + 3 * n_t * n_e))))  # weight x slope, the Jacobian and its |.|
    state.update(mode="none", rows=rows, chunk=None, head=None)
    info.update(
        mode="none",
        samples_per_block=rows,
        path="first-layer factorised",
        first_layer=[int(layer.linear.in_features), h],
        path_reason=f"{reason}; the code is an affine map of an elementwise {type(layer.tail[0]).__name__}: "
        "its Jacobian is the weight times the activation's slope times the first layer's weight, no autodiff",
    )
    return True


def code_jacobian(layer: FirstLayer, x: torch.Tensor) -> torch.Tensor:
    """``(B, k, n)``: the Jacobian ``W diag(act'(A x + b)) A`` of ``z = W act(A x + b) + c`` for each row of ``x``.

    Where many slopes are exactly 0 (ReLU) and the product is large, each
    sample's product runs over its active units only: the skipped terms are
    exact zeros, so the values are those of the dense product.
    """
    act, out, _ = layer.tail  # type: ignore[misc]
    from torch.func import jvp

    a = layer(x)
    slope = jvp(act, (a,), (torch.ones_like(a),))[1]  # (B, h)
    w_out, w_in = out.weight.detach(), layer.linear.weight.detach()
    k, h = w_out.shape
    active = slope != 0
    if k * h * w_in.shape[1] < SPARSE_MIN_MACS or 4 * int(active.sum()) > 3 * active.numel():
        return (w_out.unsqueeze(0) * slope.unsqueeze(1)) @ w_in
    jac = torch.empty((x.shape[0], k, w_in.shape[1]), dtype=w_in.dtype, device=w_in.device)
    for i in range(x.shape[0]):
        idx = torch.nonzero(active[i]).squeeze(1)
        torch.matmul(w_out[:, idx] * slope[i, idx], w_in[idx], out=jac[i])
    return jac
