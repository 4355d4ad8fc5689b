"""Facts about a dependence matrix: top features, MIG-style gaps, redundant features, dead latents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["summarise"]


def summarise(
    dep: np.ndarray,
    feature_names: Sequence[str],
    target_names: Sequence[str],
    *,
    threshold: float,
    top: int,
    entropy: np.ndarray | None = None,
    constant_targets: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Extras (JSON-able) and arrays for a ``(targets, features)`` dependence matrix.

    ``entropy`` holds each feature's entropy in nats where it is defined
    (discrete features) and NaN elsewhere; the gap of a target whose top
    feature has an entropy is also given normalised by it, as in the mutual
    information gap (MIG) of disentanglement metrics.
    """
    n_t, n_f = dep.shape
    order = np.argsort(-dep, axis=1, kind="stable")
    top1 = dep[np.arange(n_t), order[:, 0]]
    top2 = dep[np.arange(n_t), order[:, 1]] if n_f > 1 else np.zeros(n_t)
    gap = top1 - top2
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.where(top1 > 0, gap / np.where(top1 > 0, top1, 1.0), np.nan)
        ent = np.full(n_f, np.nan) if entropy is None else np.asarray(entropy, dtype=np.float64)
        h_top = ent[order[:, 0]]
        normalised = np.where(h_top > 0, gap / np.where(h_top > 0, h_top, 1.0), np.nan)
    # the per-feature view (the original MIG): for each feature, the gap between its two most informed targets
    f_sorted = -np.sort(-dep, axis=0)
    feature_gap = f_sorted[0] - (f_sorted[1] if n_t > 1 else 0.0)
    gaps = {
        t: {
            "top": feature_names[order[r, 0]],
            "second": feature_names[order[r, 1]] if n_f > 1 else None,
            "gap": float(gap[r]),
            "relative_gap": None if np.isnan(relative[r]) else float(relative[r]),
            "normalized_gap": None if np.isnan(normalised[r]) else float(normalised[r]),
        }
        for r, t in enumerate(target_names)
    }
    dead_mask = dep.max(axis=1) < threshold
    if constant_targets is not None:
        dead_mask |= constant_targets
    extras: dict[str, Any] = {
        "top_features": {t: [[feature_names[i], float(dep[r, i])] for i in order[r, : min(top, n_f)]] for r, t in enumerate(target_names)},
        "gaps": gaps,
        "mean_relative_gap": float(np.nanmean(relative)) if np.isfinite(relative).any() else None,
        "mig": float(np.nanmean(normalised)) if np.isfinite(normalised).any() else None,
        "redundant_features": [feature_names[i] for i in np.flatnonzero(dep.max(axis=0) < threshold)],
        "dead_latents": [target_names[r] for r in np.flatnonzero(dead_mask)],
        "constant_targets": [] if constant_targets is None else [target_names[r] for r in np.flatnonzero(constant_targets)],
    }
    arrays = {"gap_per_target": gap, "gap_per_feature": feature_gap, "relative_gap_per_target": relative}
    return extras, arrays
