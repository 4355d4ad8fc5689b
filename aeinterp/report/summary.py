"""Facts the reports show, computed from Explanations only, in one place so the terminal,
the HTML and ``results.json`` say the same: top features, which targets an explanation
explains, the unit of its importance, redundant features and dead latents (with the basis
they were judged on), agreement between explainers, and which rows/columns a view shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from ..explanation import Explanation

__all__ = [
    "RELATIVE_FLOOR",
    "Verdicts",
    "verdicts",
    "redundant_features",
    "dead_targets",
    "explained_rows",
    "unit_of",
    "measures_inputs",
    "Agreement",
    "agreements",
    "top_columns",
    "top_rows",
    "shown_note",
]

RELATIVE_FLOOR = 0.05  # below 5 % of the explanation's largest importance counts as "does not depend on it"


def explained_rows(e: Explanation) -> list[int]:
    """The targets ``e`` actually explains: ``extras["explained_targets"]`` or ``extras["dims"]``
    (indices) where the explainer covered only some, else all of them."""
    for key in ("explained_targets", "dims"):
        dims = e.extras.get(key)
        if isinstance(dims, (list, tuple)) and all(isinstance(d, int) and 0 <= d < len(e.target_names) for d in dims):
            return sorted(set(int(d) for d in dims))
    return list(range(len(e.target_names)))


def measures_inputs(e: Explanation) -> bool:
    """Whether ``e``'s feature axis is the model's inputs (not its outputs, as for a latent traversal,
    which says ``extras["feature_axis"] = "output"``)."""
    return str(e.extras.get("feature_axis", "input")) != "output"


def unit_of(e: Explanation) -> str:
    """What one unit of ``e.importance`` is, as the explainer states it."""
    unit = e.extras.get("unit")
    if unit:
        return str(unit)
    described = e.extras.get("importance")
    if isinstance(described, str) and described:
        return described
    return "mean |attribution| per sample, in the target's units" if e.local is not None else "unit not stated by the explainer"


def _floor(e: Explanation, rows: Sequence[int]) -> float:
    block = np.abs(e.importance[list(rows)]) if len(rows) else np.zeros((0, 0))
    return RELATIVE_FLOOR * float(block.max()) if block.size else 0.0


def redundant_features(e: Explanation) -> list[str]:
    """Features no explained target of ``e`` depends on (importance <= 5 % of ``e``'s peak for all)."""
    rows = explained_rows(e)
    floor = _floor(e, rows)
    if floor == 0.0:
        return []
    weak = (e.importance[rows] <= floor).all(axis=0)
    return [e.feature_names[i] for i in np.flatnonzero(weak)]


def dead_targets(e: Explanation) -> list[str]:
    """Explained targets of ``e`` that depend on no feature (importance <= 5 % of ``e``'s peak everywhere)."""
    rows = explained_rows(e)
    floor = _floor(e, rows)
    if floor == 0.0 or len(rows) < 2:
        return []
    return [e.target_names[r] for r in rows if (e.importance[r] <= floor).all()]


@dataclass(frozen=True)
class Verdicts:
    """The run-level verdicts, each with its basis. ``to_json`` is what ``results.json`` keeps."""

    latents: list[str]
    explained: list[str]
    not_explained: list[str]
    dead: list[str]
    redundant: list[str]
    basis: dict[str, str]
    judged_by: list[str]
    per_explainer: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def verdicts(explanations: Mapping[str, Explanation], latent_dim: int | None = None) -> Verdicts:
    """Dead latents and redundant features over every latent-target explanation of the inputs.

    A latent is *dead* when every explanation that explains it finds no feature above 5 % of that
    explanation's peak; latents no explanation covers are *not explained*, never dead. A feature
    is *redundant* when no explained latent of any such explanation depends on it above 5 % of the
    explanation's peak (all explanations must agree).
    """
    judges = {
        a: e
        for a, e in explanations.items()
        if e.target == "latent" and measures_inputs(e) and e.importance.size and np.abs(e.importance).max() > 0
    }
    names: list[str] = []
    for e in explanations.values():
        if e.target == "latent" and len(e.target_names) > len(names):
            names = list(e.target_names)
    if latent_dim is not None and len(names) < latent_dim:
        names = [f"z{i}" for i in range(latent_dim)]
    explained: set[str] = set()
    dead_votes: dict[str, list[bool]] = {}
    redundant_sets: list[set[str]] = []
    per: dict[str, dict[str, list[str]]] = {}
    features: list[str] = []
    for alias, e in judges.items():
        rows = explained_rows(e)
        explained.update(e.target_names[r] for r in rows)
        dead = set(dead_targets(e))
        for r in rows:
            dead_votes.setdefault(e.target_names[r], []).append(e.target_names[r] in dead)
        red = redundant_features(e)
        redundant_sets.append(set(red))
        features = features or list(e.feature_names)
        per[alias] = {"explained": [e.target_names[r] for r in rows], "dead": sorted(dead, key=e.target_names.index), "redundant": red}
    dead_all = [n for n in names if dead_votes.get(n) and all(dead_votes[n])]
    redundant = [f for f in features if redundant_sets and all(f in s for s in redundant_sets)]
    pct = f"{RELATIVE_FLOOR:.0%}".replace("%", " %")
    basis = {
        "dead": f"every explainer that explains the latent finds no input above {pct} of that explainer's largest importance",
        "redundant": f"no explained latent depends on it above {pct} of the max, in every explainer of the inputs on target latent",
        "not_explained": "no step explained these latents (they are not judged dead)",
    }
    return Verdicts(
        latents=names,
        explained=[n for n in names if n in explained],
        not_explained=[n for n in names if n not in explained],
        dead=dead_all,
        redundant=redundant,
        basis=basis,
        judged_by=list(judges),
        per_explainer=per,
    )


def top_columns(e: Explanation, k: int, rows: Sequence[int] | None = None) -> list[int]:
    """The ``k`` features with the largest share of importance summed over (explained) targets."""
    share = e.normalized()[list(rows) if rows is not None else slice(None)].sum(axis=0)
    return [int(i) for i in np.argsort(-share, kind="stable")[:k]]


def top_rows(e: Explanation, k: int) -> list[int]:
    """The ``k`` explained targets with the largest total importance, in their original order."""
    rows = explained_rows(e)
    if len(rows) <= k:
        return rows
    total = np.abs(e.importance[rows]).sum(axis=1)
    keep = np.argsort(-total, kind="stable")[:k]
    return sorted(rows[i] for i in keep)


def shown_note(shown: int, total: int, what: str, by: str = "total importance") -> str:
    """``"top 40 of 200 targets by total importance"``, or ``"all 12 targets"``."""
    return f"all {total} {what}" if shown >= total else f"top {shown} of {total} {what} by {by}"


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


def agreements(explanations: Mapping[str, Explanation]) -> list[Agreement]:
    """Rank agreement between every pair of explanations of the same target and features (over the
    targets both explain)."""
    out = []
    for (na, a), (nb, b) in combinations(explanations.items(), 2):
        if a.target != b.target or a.feature_names != b.feature_names or a.target_names != b.target_names:
            continue
        if not (measures_inputs(a) and measures_inputs(b)):
            continue
        rows = sorted(set(explained_rows(a)) & set(explained_rows(b)))
        if not rows:
            continue
        ia, ib = a.importance[rows], b.importance[rows]
        top1 = float(np.mean(np.argmax(ia, axis=1) == np.argmax(ib, axis=1)))
        out.append(Agreement(na, nb, a.target, _spearman(ia.ravel(), ib.ravel()), top1))
    return out


def agreeing(explanations: Mapping[str, Explanation], target_name: str, k: int = 3) -> tuple[list[str], list[str]]:
    """For one latent: the top ``k`` inputs by consensus over the explainers that explain it (mean
    normalised rank, 1 = first; ties by mean share of importance, as the latent pages rank them), and
    the explainers whose own top input is the first of those."""
    from scipy.stats import rankdata

    scores: dict[str, float] = {}
    ranks: dict[str, float] = {}
    tops: dict[str, str] = {}
    for alias, e in explanations.items():
        if e.target != "latent" or not measures_inputs(e) or target_name not in e.target_names:
            continue
        r = e.target_names.index(target_name)
        if r not in explained_rows(e):
            continue
        row = e.normalized()[r]
        if row.sum() <= 0:
            continue
        tops[alias] = e.feature_names[int(np.argmax(row))]
        norm = 1.0 - (rankdata(-e.importance[r], method="average") - 1) / max(len(row) - 1, 1)
        for i, v in enumerate(row):
            scores[e.feature_names[i]] = scores.get(e.feature_names[i], 0.0) + float(v)
            ranks[e.feature_names[i]] = ranks.get(e.feature_names[i], 0.0) + float(norm[i])
    ranked = sorted(scores, key=lambda f: (-ranks[f], -scores[f]))[:k]
    agree = [a for a, t in tops.items() if ranked and t == ranked[0]]
    return ranked, agree
