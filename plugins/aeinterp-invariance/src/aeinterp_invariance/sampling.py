"""Drawing nuisance codes while the task code stays fixed.

Three ways (the ``sampling`` param of the ``invariance`` explainer):

``prior``
    each draw is ``N(0, I)`` on the nuisance dims, the VAE prior;
``posterior``
    each draw comes from the aggregate posterior: a random sample of the fit
    split, and a draw from its posterior ``N(mu, std^2)`` on the nuisance dims
    where the model exposes the spread (:mod:`.posterior`), else its mean; the
    generated inputs combine this sample's task code with another real
    sample's nuisance;
``traverse``
    one nuisance dim at a time over ``mean +- range * std`` of that dim's codes
    on the fit split (``steps`` values), the other nuisance dims at the
    sample's own code.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["Sampling", "nuisance_draws", "invariant_codes"]

Sampling = Literal["prior", "posterior", "traverse"]


def nuisance_draws(
    mode: Sampling,
    own: np.ndarray,
    pool: np.ndarray,
    rng: np.random.Generator,
    *,
    n_draws: int,
    steps: int = 5,
    span: float = 2.0,
    pool_std: np.ndarray | None = None,
) -> np.ndarray:
    """Nuisance codes ``(samples, draws, nuisance_dims)`` for the samples whose own nuisance code is ``own``.

    ``pool`` holds nuisance codes of the fit split (``posterior`` draws from
    it, adding ``pool_std``-scaled normal noise when the posterior spread is
    known; ``traverse`` takes its mean and spread). ``traverse`` gives
    ``nuisance_dims * steps`` draws per sample, ordered dim by dim.
    """
    s, m = own.shape
    if mode == "prior":
        return rng.standard_normal((s, n_draws, m)).astype(np.float32)
    if mode == "posterior":
        pick = rng.integers(0, pool.shape[0], size=(s, n_draws))
        if pool_std is None:
            return pool[pick].astype(np.float32)
        return (pool[pick] + pool_std[pick] * rng.standard_normal((s, n_draws, m))).astype(np.float32)
    if mode == "traverse":
        grid = np.linspace(-span, span, steps, dtype=np.float32)
        centre, scale = pool.mean(axis=0), pool.std(axis=0)
        values = centre[:, None] + grid[None, :] * scale[:, None]  # (m, steps)
        draws = np.repeat(own[:, None, :], m * steps, axis=1).reshape(s, m, steps, m)
        dims = np.arange(m)
        draws[:, dims, :, dims] = values[:, None, :]  # draw (j, i) sets nuisance dim j to its i-th grid value
        return draws.reshape(s, m * steps, m).astype(np.float32)
    raise ValueError(f"unknown sampling {mode!r}; use prior, posterior or traverse")


def invariant_codes(codes: np.ndarray, nuisance: list[int], draws: np.ndarray) -> np.ndarray:
    """Full codes ``(samples, draws, latent_dim)``: each sample's own code with its nuisance dims replaced."""
    out = np.repeat(codes[:, None, :], draws.shape[1], axis=1).astype(np.float32)
    out[:, :, nuisance] = draws
    return out
