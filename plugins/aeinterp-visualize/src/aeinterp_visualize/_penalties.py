"""Regularisers that keep optimized inputs plausible.

All penalties are means over elements (or pairs of neighbours), so their
weights do not depend on the input size, and work on inputs divided by the
data's kind-aware scale (:class:`aeinterp_visualize._common.FitStats`).

:class:`Mahalanobis` measures the squared Mahalanobis distance to the fit
split, divided by the number of non-constant elements (about 1 for a typical
sample). Its covariance is regularised:

``full``
    Ledoit-Wolf shrinkage of the sample covariance (scikit-learn), whitened
    once by a Cholesky factor of the precision; used up to ``max_full``
    elements under ``auto``.
``lowrank``
    probabilistic PCA: the top ``rank`` principal directions keep their
    variance, every other direction gets the mean remaining variance
    ``sigma^2``, i.e. ``Sigma = V (L - sigma^2) V^T + sigma^2 I``, inverted by
    the Woodbury identity without forming a ``D x D`` matrix; used for wide
    data under ``auto``.
``diagonal``
    per-element variances only.
Elements that are constant on the fit split are left out (the box already
pins them).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

__all__ = ["Mahalanobis", "total_variation", "time_smoothness", "CovarianceMode"]

CovarianceMode = Literal["auto", "full", "lowrank", "diagonal"]


class Mahalanobis:
    """Squared Mahalanobis distance to the fit split per row, divided by the number of used elements."""

    def __init__(
        self,
        x_fit: np.ndarray,
        mode: CovarianceMode = "auto",
        *,
        rank: int = 64,
        max_full: int = 512,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        flat = np.asarray(x_fit, dtype=np.float64).reshape(x_fit.shape[0], -1)
        var = flat.var(axis=0)
        self.active = torch.as_tensor(np.flatnonzero(var > 1e-12 * max(1.0, float(var.max(initial=0.0)))))
        x = flat[:, self.active.numpy()]
        n, d = x.shape
        self.n_active = max(d, 1)
        self.mean = torch.as_tensor(x.mean(axis=0), dtype=dtype)
        if mode == "auto":
            mode = "full" if d <= max_full else "lowrank"
        if mode == "lowrank" and min(rank, n - 1, d - 1) < 1:
            mode = "diagonal"
        if d == 0 or n < 2:  # nothing varies (or one sample): no covariance to estimate
            mode = "diagonal"
        #: why the covariance mode asked for was not used (None: it was)
        self.fallback: str | None = None
        if mode not in ("full", "lowrank", "diagonal"):
            raise ValueError(f"unknown covariance mode {mode!r}; use auto, full, lowrank or diagonal")
        centred = x - x.mean(axis=0)
        if mode == "full":
            from sklearn.covariance import LedoitWolf

            precision = LedoitWolf(assume_centered=True).fit(centred).precision_
            precision = 0.5 * (precision + precision.T)
            try:
                self.whiten = torch.as_tensor(np.linalg.cholesky(precision), dtype=dtype)  # d2 = ||c @ L||^2
            except np.linalg.LinAlgError:  # too few samples for a positive definite estimate
                mode = "diagonal"
                self.fallback = f"the full covariance of {n} fit samples x {d} elements is singular; used the diagonal"
        elif mode == "lowrank":
            r = min(rank, n - 1, d - 1)
            _, s, vt = np.linalg.svd(centred, full_matrices=False)
            eig = s**2 / max(n - 1, 1)
            sigma2 = max(float(eig[r:].sum()) / max(d - r, 1), 1e-6 * float(eig[0]), 1e-12)
            self.components = torch.as_tensor(vt[:r].T, dtype=dtype)  # (d, r)
            self.shrink = torch.as_tensor(1.0 - sigma2 / np.maximum(eig[:r], sigma2), dtype=dtype)
            self.sigma2 = sigma2
            self.rank = r
        if mode == "diagonal":
            self.inv_var = torch.as_tensor(1.0 / np.maximum(centred.var(axis=0), 1e-12), dtype=dtype)
        self.mode: str = mode

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` is ``(rows, D)`` (flattened samples); returns ``(rows,)``."""
        c = x[:, self.active] - self.mean
        if self.mode == "full":
            d2 = (c @ self.whiten).pow(2).sum(dim=1)
        elif self.mode == "lowrank":
            proj = c @ self.components
            d2 = (c.pow(2).sum(dim=1) - (self.shrink * proj.pow(2)).sum(dim=1)) / self.sigma2
        else:
            d2 = (c.pow(2) * self.inv_var).sum(dim=1)
        return d2 / self.n_active


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between vertical and horizontal neighbours; ``x`` is ``(rows, C, H, W)``."""
    rows = x.shape[0]
    parts = []
    if x.shape[-2] > 1:
        parts.append((x[..., 1:, :] - x[..., :-1, :]).abs().reshape(rows, -1))
    if x.shape[-1] > 1:
        parts.append((x[..., :, 1:] - x[..., :, :-1]).abs().reshape(rows, -1))
    if not parts:
        return x.new_zeros(rows)
    return torch.cat(parts, dim=1).mean(dim=1)


def time_smoothness(x: torch.Tensor) -> torch.Tensor:
    """Mean squared step-to-step change along time; ``x`` is ``(rows, T, F)``."""
    if x.shape[1] < 2:
        return x.new_zeros(x.shape[0])
    return (x[:, 1:] - x[:, :-1]).pow(2).reshape(x.shape[0], -1).mean(dim=1)
