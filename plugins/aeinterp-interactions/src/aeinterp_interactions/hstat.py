"""Friedman & Popescu's pairwise H-statistic from shared perturbed copies, every target at once.

With ``S`` samples ``x_1..x_S`` as both grid and background, the partial
dependence of group ``j`` at sample ``i`` is the mean over ``l`` of
``f(x_l with group j set to x_ij)``; that of a pair ``(j, k)`` sets both. One
perturbed copy of the ``S`` samples gives one partial-dependence value for
every target, so ``S (G + P)`` copies give all ``G`` main and ``P`` pairwise
partial dependences; they run through :func:`aeinterp.toolkit.perturb.perturbation_effects`
in memory-bounded blocks. After centring,

    H_jk   = sqrt( mean_i (PD_jk - PD_j - PD_k)^2 )        (unnormalised, target units)
    H2_jk  = sum_i (PD_jk - PD_j - PD_k)^2 / sum_i PD_jk^2  (Friedman's normalised H^2)

``H_jk`` is zero exactly when ``f`` is additive in ``j`` and ``k`` given the
other inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from aeinterp.progress import Progress
from aeinterp.toolkit.perturb import perturbation_effects

__all__ = ["partial_dependences", "h_statistics"]


def partial_dependences(
    model,
    target,
    x: np.ndarray,
    columns: Sequence[np.ndarray],
    pairs: Sequence[tuple[int, int]],
    *,
    memory_mb: float,
    progress: Progress | None = None,
    mains: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001
    """``(G, S, T)`` main (``(0, S, T)`` unless ``mains``) and ``(P, S, T)`` pairwise partial dependences (uncentred),
    and each group's total effect ``(G, T)``: the RMS change of the targets when the group alone takes another sample's value."""
    s = x.shape[0]
    flat = torch.as_tensor(x.reshape(s, -1))
    cols = [torch.as_tensor(np.asarray(c), dtype=torch.long) for c in columns]
    pair_cols = [torch.cat([cols[a], cols[b]]) for a, b in pairs]
    g = len(cols) if mains else 0

    def fill(block: torch.Tensor, ids: Sequence[int]) -> list[torch.Tensor]:
        changed = []
        for k, copy_id in enumerate(ids):
            unit, i = divmod(copy_id, s)
            c = cols[unit] if unit < g else pair_cols[unit - g]
            block[k][:, c] = flat[i, c].to(block.dtype)
            changed.append(c)
        return changed

    def measure(perturbed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        # the partial dependence, and the mean squared change (for the groups' total effects)
        return torch.cat([perturbed.double().mean(dim=0), (perturbed - original).double().pow(2).mean(dim=0)])

    out = perturbation_effects(
        model,
        target,
        x,
        s * (g + len(pairs)),
        fill,
        memory_mb=memory_mb,
        progress=progress,
        description="partial dependence",
        measure=measure,
    ).numpy()
    n_t = out.shape[1] // 2
    main = out[: g * s].reshape(g, s, 2, n_t)
    return main[:, :, 0], out[g * s :, :n_t].reshape(len(pairs), s, n_t), np.sqrt(main[:, :, 1].mean(axis=1))


def h_statistics(main: np.ndarray, pair: np.ndarray, pairs: Sequence[tuple[int, int]], n_groups: int) -> dict[str, np.ndarray]:
    """Main-effect strength ``(T, G)`` and the ``(T, G, G)`` H and H^2 matrices (zero diagonal)."""
    main = main - main.mean(axis=1, keepdims=True)
    pair = pair - pair.mean(axis=1, keepdims=True)
    n_t = main.shape[2]
    h = np.zeros((n_t, n_groups, n_groups))
    h2 = np.zeros((n_t, n_groups, n_groups))
    if len(pairs):
        a, b = np.asarray(pairs).T
        rest = pair - main[a] - main[b]  # (P, S, T): what the pair does beyond its two main effects
        num = (rest**2).sum(axis=1)  # (P, T)
        den = (pair**2).sum(axis=1)
        hv = np.sqrt(num / pair.shape[1]).T  # (T, P)
        h2v = np.divide(num, den, out=np.zeros_like(num), where=den > 1e-300).T
        h[:, a, b] = h[:, b, a] = hv
        h2[:, a, b] = h2[:, b, a] = h2v
    strength = np.sqrt((main**2).mean(axis=1)).T  # (T, G)
    return {"main_effect": strength, "interaction": h, "h_squared": h2}
