"""Integrated Hessians (Janizek, Sturmfels & Lee 2020) for every target at once.

For a baseline ``x'`` and ``d = x - x'``, the interaction of inputs ``i != j`` is

    G_ij = d_i d_j  int_0^1 int_0^1 a b  d2f/dx_i dx_j (x' + a b d) da db

and the self-interaction (main effect)

    G_ii = d_i int int  df/dx_i (x' + a b d) da db  +  d_i^2 int int a b d2f/dx_i^2 (x' + a b d) da db.

Rows sum to the integrated-gradients attribution of ``i`` and the whole
matrix to ``f(x) - f(x')`` (interaction completeness). The double integral
depends on ``a b`` only, and ``t = a b`` has density ``-ln t`` on ``(0, 1)``,
so both are one path integral with weight ``-ln t``:

    int int h(a b) da db = int_0^1 h(t) (-ln t) dt,

computed with an ``m``-point Gauss rule for that weight (:func:`log_weight_rule`,
exact for polynomials of degree ``2m - 1``): ``m`` Hessians per sample instead of
the ``m^2`` of a product rule. The Hessians of all targets at all points of a
block of samples come from one ``torch.func`` transform: ``vmap`` over the
points of ``jacfwd(jacrev(f))`` — forward-over-reverse Hessian-vector
products for every input direction and every target at once, no Python loop
over targets or pairs. Where forward mode is missing (``nn.LSTM`` on CPU) it
is reverse over reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

__all__ = ["log_weight_rule", "integrated_hessians", "hessian_fn", "factorised_integrated_hessians"]

TargetFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@lru_cache(maxsize=32)
def log_weight_rule(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the ``m``-point Gauss rule for ``int_0^1 h(t) (-ln t) dt``.

    Built by the discretised Stieltjes procedure on a Gauss-Legendre product
    grid in ``(a, b)`` with ``t = a b`` (exact for the moments needed), then
    Golub-Welsch. The weights sum to 1.
    """
    n = max(64, 2 * m)
    g, w = np.polynomial.legendre.leggauss(n)
    g, w = (g + 1) / 2, w / 2
    t = np.outer(g, g).ravel()
    wt = np.outer(w, w).ravel()
    alpha, beta = np.zeros(m), np.zeros(m)
    p_prev, p = np.zeros_like(t), np.ones_like(t)
    norm_prev = 1.0
    for k in range(m):
        norm = float(np.sum(wt * p * p))
        alpha[k] = float(np.sum(wt * t * p * p)) / norm
        beta[k] = norm / norm_prev if k > 0 else norm
        p_next = (t - alpha[k]) * p - (beta[k] if k > 0 else 0.0) * p_prev
        scale = np.sqrt(np.sum(wt * p_next * p_next)) or 1.0  # keep the polynomials O(1)
        p_prev, p, norm_prev = p / scale, p_next / scale, norm / scale**2
    jacobi = np.diag(alpha) + np.diag(np.sqrt(beta[1:]), 1) + np.diag(np.sqrt(beta[1:]), -1)
    nodes, vecs = np.linalg.eigh(jacobi)
    weights = beta[0] * vecs[0] ** 2
    return nodes, weights


def hessian_fn(f: TargetFn, mode: str = "fwd") -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``(points (P, E), references (P, E)) -> (Hessians (P, T, E, E), gradients (P, T, E))``."""
    from torch.func import jacfwd, jacrev, vmap

    def one(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return f(x.unsqueeze(0), ref.unsqueeze(0))[0]

    def grad_twice(x: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        j = jacrev(one)(x, ref)
        return j, j

    outer = jacfwd if mode == "fwd" else jacrev
    return vmap(outer(grad_twice, has_aux=True))


def integrated_hessians(
    f: TargetFn,
    x: torch.Tensor,
    baseline: torch.Tensor,
    steps: int,
    *,
    mode: str = "fwd",
) -> tuple[torch.Tensor, str]:
    """``(B, T, E, E)`` Integrated Hessians of every target for a block of samples ``x`` ``(B, E)``.

    ``baseline`` is ``(E,)`` or ``(B, E)``; ``f(x, reference)`` maps flattened
    ``(n, E)`` inputs to ``(n, T)`` (see ``aeinterp_gradients``' target
    functions). Returns the matrices and the autodiff mode that ran.
    """
    nodes, weights = log_weight_rule(steps)
    t = torch.as_tensor(nodes, dtype=x.dtype, device=x.device)
    w = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
    b, e = x.shape
    base = baseline.expand(b, e)
    d = x - base  # (B, E)
    points = (base.unsqueeze(0) + t.view(-1, 1, 1) * d.unsqueeze(0)).reshape(-1, e)  # (m*B, E), point-major
    refs = x.unsqueeze(0).expand(len(t), b, e).reshape(-1, e)
    try:
        hess, grad = hessian_fn(f, mode)(points, refs)
    except NotImplementedError:  # no forward-mode derivative for some layer (e.g. nn.LSTM on CPU)
        mode = "rev"
        hess, grad = hessian_fn(f, mode)(points, refs)
    n_t = grad.shape[1]
    hess = hess.reshape(len(t), b, n_t, e, e)
    grad = grad.reshape(len(t), b, n_t, e)
    h_int = torch.einsum("k,kbtij->btij", w * t, hess)  # int int a b  d2f
    g_int = torch.einsum("k,kbti->bti", w, grad)  # int int df
    out = h_int * (d.unsqueeze(1).unsqueeze(-1) * d.unsqueeze(1).unsqueeze(-2))
    diag = torch.diagonal(out, dim1=-2, dim2=-1)
    diag += g_int * d.unsqueeze(1)
    return out, mode


def factorised_integrated_hessians(
    linear: torch.nn.Linear,
    act: torch.nn.Module,
    out_weight: torch.Tensor,
    x: torch.Tensor,
    baseline: torch.Tensor,
    steps: int,
) -> torch.Tensor:
    """Integrated Hessians of ``z = W act(A x + b) + c`` (``W`` = ``out_weight``, ``(T, h)``) for a block ``x`` ``(B, E)``.

    With ``a = A x + b`` the Hessian of ``z_t`` is ``A^T diag(W_t * act''(a)) A``
    and its gradient ``A^T (W_t * act'(a))``; ``A`` does not move along the
    path, so the path integral is taken over the ``h`` slopes ``act'`` and
    curvatures ``act''`` (two nested ``torch.func.jvp`` of the activation, exact
    for any elementwise one) and ``A`` applied once per sample:
    ``G = (A d)^T diag(W_t * int int a b act'') (A d) + diag(d * A^T (W_t * int int act'))``.
    No autodiff through the network, no loop over targets.
    """
    from torch.func import jvp

    nodes, weights = log_weight_rule(steps)
    t = torch.as_tensor(nodes, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    w = torch.as_tensor(weights, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    a_w = linear.weight.detach()
    d = x - baseline.expand_as(x)
    a_base = torch.nn.functional.linear(baseline.expand_as(x), a_w, None if linear.bias is None else linear.bias.detach())
    a = a_base.unsqueeze(0) + t * (d @ a_w.T).unsqueeze(0)  # (m, B, h): the first layer is affine, so the path maps to a line
    ones = torch.ones_like(a)

    def slope(u: torch.Tensor) -> torch.Tensor:
        return jvp(act, (u,), (ones,))[1]

    d1, d2 = jvp(slope, (a,), (ones,))  # act'(a) and act''(a)
    s1 = (w * d1).sum(dim=0)  # (B, h)
    s2 = (w * t * d2).sum(dim=0)
    ad = a_w.unsqueeze(0) * d.unsqueeze(1)  # (B, h, E): A with each column scaled by d
    m2 = out_weight.unsqueeze(0) * s2.unsqueeze(1)  # (B, T, h)
    gamma = ad.transpose(1, 2).unsqueeze(1) @ (m2.unsqueeze(-1) * ad.unsqueeze(1))  # (B, T, E, E)
    g1 = (out_weight.unsqueeze(0) * s1.unsqueeze(1)) @ a_w  # (B, T, E)
    diag = torch.diagonal(gamma, dim1=-2, dim2=-1)
    diag += g1 * d.unsqueeze(1)
    return gamma
