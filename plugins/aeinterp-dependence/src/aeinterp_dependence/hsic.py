"""Normalised HSIC between every feature group and every target, with Gaussian kernels.

For a group ``X_g`` (its standardised elements) and a target column ``z_j``
on ``n`` samples, with Gram matrices ``K`` and ``L`` of Gaussian kernels whose
bandwidth is the median pairwise distance (the median heuristic) and ``H`` the
centring matrix::

    nHSIC(g, j) = <HKH, HLH>_F / (||HKH||_F ||HLH||_F)

which lies in [0, 1] (it is the kernel-alignment / CKA form of HSIC; the
biased HSIC's ``1/(n-1)^2`` factors cancel). The whole matrix is one product
of the flattened centred Gram matrices, computed in chunks of groups; the
memory is ``O(n^2)`` per group, hence the sample cap (:data:`DEFAULT_CAP`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from aeinterp.progress import NullProgress, Progress

__all__ = ["DEFAULT_CAP", "hsic_matrix", "centred_gram"]

DEFAULT_CAP = 500
"""Samples the HSIC method uses unless ``max_samples`` says otherwise: its cost is
``groups x targets x n^2`` (about 1.3e11 multiply-adds for 1000 x 500 at n = 500)."""


def centred_gram(v: torch.Tensor) -> torch.Tensor:
    """Centred Gaussian Gram matrices, median heuristic, normalised to unit Frobenius norm.

    ``v`` is ``(B, n, d)`` (B variables of dimension d); returns ``(B, n * n)``.
    A constant variable gives a zero row.
    """
    b, n, _ = v.shape
    d2 = torch.cdist(v, v).pow(2)  # (B, n, n)
    iu = torch.triu_indices(n, n, offset=1)
    pairs = d2[:, iu[0], iu[1]]
    med = pairs.kthvalue((pairs.shape[1] + 1) // 2, dim=1).values  # median squared distance (lower median)
    med = torch.where(med > 0, med, d2.flatten(1).amax(dim=1))
    med = torch.where(med > 0, med, torch.ones_like(med))
    k = torch.exp(-d2 / (2.0 * med.view(b, 1, 1)))
    k = k - k.mean(dim=1, keepdim=True) - k.mean(dim=2, keepdim=True) + k.mean(dim=(1, 2), keepdim=True)
    k = k.reshape(b, n * n)
    norm = k.norm(dim=1, keepdim=True)
    return torch.where(norm > 1e-12 * n, k / norm.clamp_min(1e-300), torch.zeros_like(k))


def _standardise(a: np.ndarray) -> np.ndarray:
    sd = a.std(axis=0)
    return (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def hsic_matrix(
    x: np.ndarray,
    z: np.ndarray,
    groups: Sequence[np.ndarray],
    *,
    progress: Progress | None = None,
    memory_mb: float = 256.0,
) -> np.ndarray:
    """``(n_groups, T)`` normalised HSIC; ``x`` is ``(n, D)`` flattened samples, ``z`` ``(n, T)``."""
    progress = progress or NullProgress()
    n = x.shape[0]
    xs = torch.from_numpy(_standardise(np.asarray(x, dtype=np.float64))).float()
    zs = torch.from_numpy(_standardise(np.asarray(z, dtype=np.float64))).float()
    n_t = zs.shape[1]
    budget = memory_mb * 2**20 / 2
    step = max(1, int(budget // (4 * 4 * n * n)))  # variables whose Gram matrices are built at once
    cached = n_t * 4 * n * n <= budget  # keep every target's Gram matrix, or rebuild them per block of groups

    def target_grams(t0: int) -> torch.Tensor:
        return centred_gram(zs[:, t0 : t0 + step].T.unsqueeze(2))

    lz_all = torch.cat([target_grams(t0) for t0 in range(0, n_t, step)]) if cached else None
    out = torch.empty((len(groups), n_t), dtype=torch.float32)
    sizes = np.array([len(g) for g in groups])
    starts = range(0, len(groups), step)
    for g0 in progress.track(starts, total=len(starts), description="HSIC"):
        ids = np.arange(g0, min(g0 + step, len(groups)))
        for size in np.unique(sizes[ids]):  # groups of one size stack into one (B, n, d) batch
            same = ids[sizes[ids] == size].tolist()
            kx = centred_gram(torch.stack([xs[:, torch.as_tensor(groups[g])] for g in same]))
            if lz_all is not None:
                out[same] = (kx @ lz_all.T).clamp_min(0.0)
            else:
                for t0 in range(0, n_t, step):
                    out[same, t0 : t0 + step] = (kx @ target_grams(t0).T).clamp_min(0.0)
    return out.double().numpy()
