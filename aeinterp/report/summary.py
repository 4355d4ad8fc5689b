"""Facts the reports show, computed from Explanations only: top features,
redundant features, dead latents, agreement between explainers."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ..explanation import Explanation

__all__ = ["redundant_features", "dead_targets", "Agreement", "agreements", "top_columns"]

RELATIVE_FLOOR = 0.01  # below 1% of the largest importance counts as "none"


def _floor(e: Explanation) -> float:
    peak = float(np.max(np.abs(e.importance))) if e.importance.size else 0.0
    return RELATIVE_FLOOR * peak


def redundant_features(e: Explanation) -> list[str]:
    """Features no target depends on: importance below 1% of the matrix's peak for every target."""
    floor = _floor(e)
    if floor == 0.0:
        return []
    weak = (e.importance <= floor).all(axis=0)
    return [e.feature_names[i] for i in np.flatnonzero(weak)]


def dead_targets(e: Explanation) -> list[str]:
    """Targets (latents) that depend on no feature: importance below 1% of the peak everywhere."""
    floor = _floor(e)
    if floor == 0.0 or len(e.target_names) < 2:
        return []
    dead = (e.importance <= floor).all(axis=1)
    return [e.target_names[i] for i in np.flatnonzero(dead)]


def top_columns(e: Explanation, k: int) -> list[int]:
    """The ``k`` features with the largest share of importance summed over targets."""
    share = e.normalized().sum(axis=0)
    return [int(i) for i in np.argsort(-share, kind="stable")[:k]]


@dataclass(frozen=True)
class Agreement:
    a: str
    b: str
    target: str
    spearman: float
    top1: float  # share of targets whose most important feature is the same


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def agreements(explanations: dict[str, Explanation]) -> list[Agreement]:
    """Rank agreement between every pair of explanations of the same target and features."""
    out = []
    for (na, a), (nb, b) in combinations(explanations.items(), 2):
        if a.target != b.target or a.feature_names != b.feature_names or a.target_names != b.target_names:
            continue
        top1 = float(np.mean(np.argmax(a.importance, axis=1) == np.argmax(b.importance, axis=1)))
        out.append(Agreement(na, nb, a.target, _spearman(a.importance.ravel(), b.importance.ravel()), top1))
    return out
