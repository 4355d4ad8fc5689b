"""Signed output effects, streamed over rows: the numerics behind ``output_effects``.

For latent ``j`` with values ``lo``, ``mid``, ``hi`` (its low quantile,
median and high quantile over the explained rows' codes) and each reference
row ``z`` (a real row's code, or the median code), three decodings are made
with ``z_j`` replaced by ``lo``, ``mid`` and ``hi``, the other latents kept
at the row's own values. Per output element ``d``::

    effect[j, d]      = mean_rows  decode(z; z_j=hi)[d] - decode(z; z_j=lo)[d]
    effect_high[j, d] = mean_rows  decode(z; z_j=hi)[d] - decode(z; z_j=mid)[d]   (the "j+" direction)
    effect_low[j, d]  = mean_rows  decode(z; z_j=lo)[d] - decode(z; z_j=mid)[d]   (the "j-" direction)

so ``effect = effect_high - effect_low``; ``effect_sd`` is the spread over
rows of the per-row ``hi - lo`` change (0 for a decoder additive in ``z_j``).
With ``scale="log"`` every decoding is replaced by its natural log first
(log fold changes, e.g. of expression means).

Rows are decoded in chunks of ``rows x latents x 3`` codes sized to
``batch_size`` and ``memory_mb``, and only ``latents x outputs`` sums are
kept, so memory does not grow with the number of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._common import decode

__all__ = ["Effects", "signed_effects", "swap_codes", "top_lists"]


@dataclass(frozen=True)
class Effects:
    """Means over rows, each ``(K, D)``; ``n`` rows were used."""

    effect: np.ndarray
    effect_high: np.ndarray
    effect_low: np.ndarray
    effect_sd: np.ndarray
    n: int


def swap_codes(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Codes ``(N, K, S, K)``: row ``i`` with latent ``j`` replaced by ``values[s, j]`` (``values`` is ``(S, K)``)."""
    k = rows.shape[1]
    eye = np.eye(k, dtype=np.float64)[None, :, None, :]
    return rows[:, None, None, :] * (1.0 - eye) + values.T[None, :, :, None] * eye


def signed_effects(
    model: Any,
    rows: np.ndarray,
    values: np.ndarray,
    *,
    log: bool = False,
    batch_size: int = 2048,
    memory_mb: float = 256.0,
    track: Callable[[Iterable[int], int], Iterable[int]] | None = None,
    positive_check: Callable[[np.ndarray], None] | None = None,
) -> Effects:
    """Mean signed effects of moving each latent between ``values[0]`` (low), ``values[1]`` (mid) and ``values[2]`` (high).

    ``rows`` ``(N, K)`` hold the other latents' values; ``values`` is ``(3, K)``.
    ``positive_check`` is called on each decoded chunk before a log is taken.
    """
    n, k = rows.shape
    probe = decode(model, rows[:1], batch_size)
    d = probe.shape[1]
    per_row = 3 * k * d * 8 * 3  # decoded chunk, its log and the differences, float64
    chunk = max(1, min(n, max(1, batch_size // (3 * k)), int(memory_mb * 2**20 // per_row)))
    sums = {key: np.zeros((k, d)) for key in ("effect", "high", "low")}
    seen, run_mean, m2 = 0, np.zeros((k, d)), np.zeros((k, d))  # Chan et al.'s pairwise update of the spread: no cancellation
    starts = range(0, n, chunk)
    for s in track(starts, len(starts)) if track else starts:
        z = rows[s : s + chunk]
        out = decode(model, swap_codes(z, values).reshape(-1, k), batch_size).reshape(len(z), k, 3, d)
        if log:
            if positive_check is not None:
                positive_check(out)
            out = np.log(out)
        change = out[:, :, 2] - out[:, :, 0]
        sums["effect"] += change.sum(axis=0)
        c_mean = change.mean(axis=0)
        delta, total = c_mean - run_mean, seen + len(z)
        m2 += ((change - c_mean) ** 2).sum(axis=0) + delta**2 * (seen * len(z) / total)
        run_mean += delta * (len(z) / total)
        seen = total
        sums["high"] += (out[:, :, 2] - out[:, :, 1]).sum(axis=0)
        sums["low"] += (out[:, :, 0] - out[:, :, 1]).sum(axis=0)
    mean = sums["effect"] / n
    var = m2 / (n - 1) if n > 1 else np.zeros_like(m2)
    return Effects(effect=mean, effect_high=sums["high"] / n, effect_low=sums["low"] / n, effect_sd=np.sqrt(var), n=n)


def top_lists(effect: np.ndarray, names: list[str], latents: list[str], top: int) -> tuple[dict[str, list], dict[str, list]]:
    """Per latent, the ``top`` outputs with the largest positive and the most negative effect: ``[[name, value], ...]``.

    Only outputs whose effect has that sign are listed (a latent that raises
    every output has an empty ``-`` list).
    """
    up: dict[str, list] = {}
    down: dict[str, list] = {}
    for j, latent in enumerate(latents):
        row = effect[j]
        order = np.argsort(-row, kind="stable")
        up[latent] = [[names[i], float(row[i])] for i in order[:top] if row[i] > 0]
        order = np.argsort(row, kind="stable")
        down[latent] = [[names[i], float(row[i])] for i in order[:top] if row[i] < 0]
    return up, down
