"""Integrated gradients of every class logit at once, and attribution stable under invariance.

``class_integrated_gradients`` differentiates ``logits = head(encode(x)[:, task_dims])``
along the straight path from a baseline to each input, with Gauss-Legendre
quadrature. All classes come from one forward pass: the backward pass is
batched over the classes (``torch.autograd.grad(..., is_grads_batched=True)``,
i.e. ``vmap`` over one-hot output cotangents, with the quadrature weights
folded in). Models whose operations ``vmap`` cannot batch fall back to
stacking one copy of the points per class and one ordinary backward pass.

``stable_importance`` turns the attributions of the originals and of their
invariant samples into the importance matrix (see its docstring).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from aeinterp.progress import NullProgress, Progress

__all__ = ["class_integrated_gradients", "stable_importance"]

EPS = 1e-12


def _class_grads(
    f: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor, weights: torch.Tensor, n_classes: int, info: dict[str, Any]
) -> torch.Tensor:
    """``(classes, rows, *shape)``: ``weights[row] * d logit_c / d points[row]`` for every class."""
    eye = torch.eye(n_classes, dtype=points.dtype, device=points.device)
    cotangents = eye[:, None, :] * weights[None, :, None]  # (C, rows, C)
    if info.get("ig_backward") != "stacked":
        x = points.detach().requires_grad_(True)
        try:
            with torch.enable_grad():
                out = f(x)
                (grads,) = torch.autograd.grad(out, x, grad_outputs=cotangents, is_grads_batched=True)
            info["ig_backward"] = "batched"
            return grads
        except (RuntimeError, NotImplementedError) as exc:
            if "vmap" not in str(exc).lower() and "batch" not in str(exc).lower():
                raise
            info["ig_backward"] = "stacked"
            info["ig_backward_reason"] = str(exc).splitlines()[0][:160]
    rows = points.shape[0]
    x = (
        points.detach()
        .unsqueeze(0)
        .expand(n_classes, *points.shape)
        .reshape(n_classes * rows, *points.shape[1:])
        .clone()
        .requires_grad_(True)
    )
    with torch.enable_grad():
        out = f(x).reshape(n_classes, rows, n_classes)
        (grads,) = torch.autograd.grad(out, x, grad_outputs=cotangents)
    return grads.reshape(n_classes, rows, *points.shape[1:])


def class_integrated_gradients(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    baseline: torch.Tensor,
    n_classes: int,
    *,
    steps: int = 16,
    memory_mb: float = 256.0,
    progress: Progress | None = None,
    info: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrated gradients of all class logits; returns ``(ig, gap)``.

    ``x`` is ``(N, *shape)``, ``baseline`` broadcasts to it. ``ig`` is
    ``(N, classes, elements)`` (flattened elements, on the CPU) and ``gap`` the
    completeness error ``|sum_e ig - (f(x) - f(baseline))|`` per sample and
    class, ``(N, classes)``; ``info`` receives its maximum and its sum
    relative to ``sum |f(x) - f(baseline)|``. Samples are processed in blocks whose gradient
    tensors stay within about ``memory_mb``.
    """
    progress = progress or NullProgress()
    info = info if info is not None else {}
    n, shape = x.shape[0], tuple(x.shape[1:])
    d = int(np.prod(shape))
    nodes, w = np.polynomial.legendre.leggauss(steps)
    alphas = torch.as_tensor((nodes + 1.0) / 2.0, dtype=x.dtype, device=x.device)
    weights = torch.as_tensor(w / 2.0, dtype=x.dtype, device=x.device)
    per_sample = 4.0 * 3 * steps * (n_classes + 1) * d
    block = max(1, int(memory_mb * 2**20 // per_sample))
    base = baseline.expand_as(x)
    ig = torch.empty((n, n_classes, d), dtype=x.dtype)
    gap = torch.empty((n, n_classes), dtype=x.dtype)
    delta_sum = 0.0
    starts = range(0, n, block)
    for start in progress.track(starts, total=len(starts), description="integrated gradients"):
        xb, bb = x[start : start + block], base[start : start + block]
        b = xb.shape[0]
        diff = xb - bb
        points = (bb.unsqueeze(0) + alphas.reshape(-1, *([1] * (1 + len(shape)))) * diff.unsqueeze(0)).reshape(steps * b, *shape)
        grads = _class_grads(f, points, weights.repeat_interleave(b), n_classes, info)  # (C, steps*b, *shape)
        avg = grads.reshape(n_classes, steps, b, d).sum(dim=1)  # weights already applied
        block_ig = avg.permute(1, 0, 2) * diff.reshape(b, 1, d)
        ig[start : start + b] = block_ig.detach().cpu()
        with torch.no_grad():
            delta = f(xb) - f(bb)
        gap[start : start + b] = (block_ig.sum(dim=2) - delta).abs().detach().cpu()
        delta_sum += float(delta.abs().sum())
    delta_total = float(delta_sum)
    info["ig_completeness_gap"] = float(gap.max())
    info["ig_relative_gap"] = float(gap.sum()) / delta_total if delta_total > EPS else 0.0
    return ig, gap


def stable_importance(original: np.ndarray, invariant: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Importance = attribution of the originals, weighted by how stable it stays under invariance.

    ``original`` is ``(S, C, G)`` (group attributions of the explained
    samples), ``invariant`` ``(S, K, C, G)`` (of their ``K`` invariant
    samples each). For class ``c`` and group ``g``::

        magnitude[c, g] = mean_s |original[s, c, g]|
        instability[c, g] = sum_s std_k invariant[s, k, c, g]
                            / sum_s (|mean_k invariant[s, k, c, g]| + std_k invariant[s, k, c, g])
        stability = 1 - instability                       (in [0, 1])
        importance = magnitude * stability

    A group the decision relies on keeps its attribution while the nuisance
    code changes (stability near 1); a group the decision ignores gets small
    or sign-changing attributions as it varies (stability near 0). The
    normalised std is pooled over samples (sums, not a mean of ratios) so
    that samples where a group carries no attribution at all do not count.
    Returns ``(importance, magnitude, stability, spread)`` where ``spread``
    is ``mean_s std_k`` in logit units (the Explanation's ``std``).
    """
    magnitude = np.abs(original).mean(axis=0)
    if invariant.shape[1] < 2:
        stability = np.ones_like(magnitude)
        spread = np.zeros_like(magnitude)
    else:
        sd = invariant.std(axis=1)
        mu = np.abs(invariant.mean(axis=1))
        num, den = sd.sum(axis=0), (mu + sd).sum(axis=0)
        stability = 1.0 - np.divide(num, den, out=np.zeros_like(num), where=den > EPS)
        spread = sd.mean(axis=0)
    return magnitude * stability, magnitude, stability, spread
