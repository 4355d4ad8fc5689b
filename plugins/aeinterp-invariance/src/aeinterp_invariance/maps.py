"""The invariance map: which feature groups vary freely, stay fixed, or drive the decision."""

from __future__ import annotations

import numpy as np

__all__ = ["STATUS", "invariance_map"]

# status codes stored in the ``status`` array
# "not informative": the group would vary freely, but only through collapsed nuisance dims (or not at all)
STATUS: tuple[str, ...] = ("stays fixed", "varies freely", "drives the decision", "not informative")


def _unit(values: np.ndarray) -> np.ndarray:
    top = float(values.max()) if values.size else 0.0
    return values / top if top > 0 else np.zeros_like(values)


def invariance_map(
    change: np.ndarray, importance: np.ndarray, *, diversity_threshold: float, attribution_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Classify each group from how much nuisance sampling changes it and how much the decision uses it.

    ``change`` is ``(groups,)``, the mean absolute change the nuisance draws
    cause (against the sample's own reconstruction); ``importance`` is the
    ``(classes, groups)`` stable attribution. Both are scaled to [0, 1] by their
    largest value (attribution: the largest over classes). A group

    * **drives the decision** when its scaled attribution is at least ``attribution_threshold``;
    * otherwise **varies freely** (the invariance map) when its scaled change is at least ``diversity_threshold``;
    * otherwise **stays fixed**.

    Returns ``(status, score, change_scaled, attribution_scaled)`` where
    ``score = change_scaled * (1 - attribution_scaled)`` grades how invariant
    the decision is to each group.
    """
    d = _unit(np.asarray(change, dtype=np.float64))
    a = _unit(np.asarray(importance, dtype=np.float64).max(axis=0))
    status = np.zeros(d.shape, dtype=np.int8)
    status[d >= diversity_threshold] = 1
    status[a >= attribution_threshold] = 2
    return status, d * (1.0 - a), d, a
