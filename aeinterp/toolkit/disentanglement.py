"""How disentangled a code is: label-free measures and the standard scores with known factors.

Definitions follow disentanglement_lib (Locatello et al. 2019) so the numbers compare with the literature:

* codes are discretised per latent into ``bins`` equal-width bins over their range (``histogram_discretize``);
* **MIG** (Chen et al. 2018): for each factor, the gap between the largest and the second-largest discrete
  mutual information of a latent with it, divided by the factor's entropy; averaged over factors;
* **DCI** (Eastwood & Williams 2018): an importance matrix ``R`` (latents x factors) from one gradient-boosted
  tree ensemble per factor; *disentanglement* = sum over latents of ``(1 - H_K(R_i / sum R_i)) * sum R_i / sum R``,
  *completeness* = the same over factors with entropy base = number of latents, *informativeness* = the
  ensembles' mean held-out accuracy;
* **SAP** (Kumar et al. 2018): a score matrix (latents x factors) -- R^2 of a one-latent linear fit for
  continuous factors, held-out accuracy of a one-latent linear classifier for discrete ones -- and for each
  factor the gap between its two best latents; averaged over factors.

Label-free: the **Gaussian total correlation** ``TC = -1/2 log det(corr(z))`` (the KL divergence from the
code's Gaussian fit to the product of its marginals; 0 for independent latents), **pairwise mutual
information** between latents (discrete, same binning as MIG), **dead** latents (no spread) and
**duplicate** pairs (``|Pearson| >= 0.99``).

Everything is numpy / scikit-learn; inputs are ``(samples, latents)`` codes and ``(samples, factors)`` factors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "histogram_discretize",
    "discrete_mutual_info",
    "discrete_entropy",
    "mig",
    "dci",
    "dci_from_importance",
    "sap",
    "sap_from_scores",
    "gaussian_total_correlation",
    "pairwise_mutual_info",
    "pair_bins",
    "pearson",
    "dead_latents",
    "duplicate_pairs",
    "CodeSummary",
    "code_summary",
    "DEAD_RELATIVE_STD",
    "DUPLICATE_CORRELATION",
]

DEAD_RELATIVE_STD = 1e-3  # a latent whose SD is below this share of the largest latent SD is dead (collapsed)
DUPLICATE_CORRELATION = 0.99


def _matrix(a: Any, what: str) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{what} must be a (samples, columns) array with at least 2 samples, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} holds NaN or inf")
    return x


def histogram_discretize(x: Any, bins: int = 20) -> np.ndarray:
    """Each column's values as the index of its equal-width bin over the column's range (ints, 0..bins-1)."""
    x = _matrix(x, "codes")
    out = np.zeros(x.shape, dtype=np.int64)
    for j in range(x.shape[1]):
        col = x[:, j]
        edges = np.histogram(col, bins)[1]
        out[:, j] = np.digitize(col, edges[1:-1])
    return out


def _is_discrete(col: np.ndarray, bins: int) -> bool:
    return bool(np.all(col == np.round(col))) and len(np.unique(col)) <= max(bins, 2)


def _discrete_factors(factors: Any, bins: int) -> np.ndarray:
    """Integer factor columns as they are (relabelled 0..), continuous ones binned like the codes."""
    f = _matrix(factors, "factors")
    out = np.zeros(f.shape, dtype=np.int64)
    for j in range(f.shape[1]):
        col = f[:, j]
        out[:, j] = np.unique(col, return_inverse=True)[1] if _is_discrete(col, bins) else histogram_discretize(col, bins)[:, 0]
    return out


def _mi(a: np.ndarray, b: np.ndarray) -> float:
    """Discrete mutual information (nats) of two integer vectors, from their joint histogram."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    joint = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(joint, (ia, ib), 1.0)
    p = joint / joint.sum()
    pa, pb = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / (pa @ pb)[nz])))


def discrete_mutual_info(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``(latents, factors)`` mutual information (nats) between integer-valued columns."""
    return np.array([[_mi(codes[:, i], factors[:, j]) for j in range(factors.shape[1])] for i in range(codes.shape[1])])


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each integer-valued column."""
    return np.array([_mi(factors[:, j], factors[:, j]) for j in range(factors.shape[1])])


def mig(codes: Any, factors: Any, *, bins: int = 20) -> dict[str, Any]:
    """Mutual information gap. Returns ``{"mig", "per_factor", "mutual_info"}`` (mutual_info: latents x factors, nats)."""
    z = histogram_discretize(codes, bins)
    f = _discrete_factors(factors, bins)
    if z.shape[1] < 2:
        raise ValueError("MIG needs at least 2 latents (it is the gap between the two most informative)")
    m = discrete_mutual_info(z, f)
    h = discrete_entropy(f)
    top = np.sort(m, axis=0)[::-1]
    gap = np.divide(top[0] - top[1], h, out=np.zeros_like(h), where=h > 0)
    return {"mig": float(gap.mean()), "per_factor": gap, "mutual_info": m}


def _normalized_entropy(p: np.ndarray, base: int) -> float:
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)) / np.log(base)) if base > 1 else 0.0


def dci_from_importance(importance: Any) -> dict[str, float]:
    """Disentanglement and completeness from a ``(latents, factors)`` non-negative importance matrix."""
    r = np.abs(np.asarray(importance, dtype=np.float64))
    n_codes, n_factors = r.shape
    total = r.sum()
    if total <= 0:
        return {"disentanglement": 0.0, "completeness": 0.0}
    per_code = np.array([1.0 - _normalized_entropy(row / row.sum(), n_factors) if row.sum() > 0 else 0.0 for row in r])
    per_factor = np.array([1.0 - _normalized_entropy(col / col.sum(), n_codes) if col.sum() > 0 else 0.0 for col in r.T])
    return {
        "disentanglement": float(np.sum(per_code * r.sum(axis=1) / total)),
        "completeness": float(np.sum(per_factor * r.sum(axis=0) / total)),
    }


def _split(n: int, test_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = max(1, min(n - 1, int(round(n * (1 - test_share)))))
    return order[:cut], order[cut:]


def dci(codes: Any, factors: Any, *, bins: int = 20, test_share: float = 0.3, seed: int = 0, n_estimators: int = 50) -> dict[str, Any]:
    """DCI with one gradient-boosted classifier per (discretised) factor, as disentanglement_lib computes it.
    Returns ``disentanglement``, ``completeness``, ``informativeness`` (mean held-out accuracy) and ``importance``."""
    from sklearn.ensemble import GradientBoostingClassifier

    z = _matrix(codes, "codes")
    f = _discrete_factors(factors, bins)
    train, test = _split(len(z), test_share, seed)
    r = np.zeros((z.shape[1], f.shape[1]))
    acc = []
    for j in range(f.shape[1]):
        y = f[:, j]
        if len(np.unique(y[train])) < 2:
            acc.append(1.0)
            continue
        model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=seed).fit(z[train], y[train])
        r[:, j] = np.abs(model.feature_importances_)
        acc.append(float(np.mean(model.predict(z[test]) == y[test])))
    return {**dci_from_importance(r), "informativeness": float(np.mean(acc)), "importance": r}


def sap_from_scores(scores: Any) -> dict[str, Any]:
    """SAP from a ``(latents, factors)`` score matrix: mean over factors of the gap between its two best latents."""
    s = np.asarray(scores, dtype=np.float64)
    if s.shape[0] < 2:
        raise ValueError("SAP needs at least 2 latents")
    top = np.sort(s, axis=0)[::-1]
    gap = top[0] - top[1]
    return {"sap": float(gap.mean()), "per_factor": gap}


def sap(
    codes: Any, factors: Any, *, continuous: bool | None = None, bins: int = 20, test_share: float = 0.3, seed: int = 0
) -> dict[str, Any]:
    """Separated attribute predictability. ``continuous``: R^2 of a one-latent linear fit per (latent, factor);
    else (discrete factors) the held-out accuracy of a one-latent linear SVM (C=0.01, as disentanglement_lib).
    ``None``: continuous unless every factor column holds few integer values."""
    z = _matrix(codes, "codes")
    f_raw = _matrix(factors, "factors")
    if continuous is None:
        continuous = not all(_is_discrete(f_raw[:, j], bins) for j in range(f_raw.shape[1]))
    scores = np.zeros((z.shape[1], f_raw.shape[1]))
    if continuous:
        zc, fc = z - z.mean(axis=0), f_raw - f_raw.mean(axis=0)
        cov = zc.T @ fc / len(z)
        var = np.outer(zc.var(axis=0), fc.var(axis=0))
        scores = np.divide(cov**2, var, out=np.zeros_like(cov), where=var > 0)
    else:
        from sklearn.svm import LinearSVC

        f = _discrete_factors(f_raw, bins)
        train, test = _split(len(z), test_share, seed)
        for j in range(f.shape[1]):
            y = f[:, j]
            for i in range(z.shape[1]):
                if len(np.unique(y[train])) < 2:
                    continue
                clf = LinearSVC(C=0.01, dual="auto", random_state=seed).fit(z[train, i : i + 1], y[train])
                scores[i, j] = float(np.mean(clf.predict(z[test, i : i + 1]) == y[test]))
    return {**sap_from_scores(scores), "scores": scores, "continuous": bool(continuous)}


def pearson(codes: Any) -> np.ndarray:
    """``(latents, latents)`` Pearson correlation; 0 where a latent has no spread."""
    z = _matrix(codes, "codes")
    zc = z - z.mean(axis=0)
    sd = np.sqrt((zc**2).mean(axis=0))
    ok = sd > 0
    c = np.zeros((z.shape[1], z.shape[1]))
    c[np.ix_(ok, ok)] = (zc[:, ok].T @ zc[:, ok]) / len(z) / np.outer(sd[ok], sd[ok])
    return np.clip(c, -1.0, 1.0)


def gaussian_total_correlation(codes: Any, *, live: np.ndarray | None = None) -> float:
    """``-1/2 log det(corr)`` over the latents with spread (``live``): 0 for uncorrelated latents, in nats."""
    z = _matrix(codes, "codes")
    keep = np.asarray(live, dtype=bool) if live is not None else z.std(axis=0) > 0
    if keep.sum() < 2:
        return 0.0
    c = pearson(z[:, keep])
    sign, logdet = np.linalg.slogdet(c + 1e-9 * np.eye(len(c)))
    return float("inf") if sign <= 0 else float(max(0.0, -0.5 * logdet))


def pair_bins(n: int) -> int:
    """Bins per latent for the latent-latent MI: about 5 samples per cell of the joint histogram (2..20).
    The plug-in estimate's bias is about (bins - 1)^2 / (2 n) nats, so 20 bins on 400 rows would add 0.45 nats."""
    return int(np.clip(round(np.sqrt(n / 5)), 2, 20))


def pairwise_mutual_info(codes: Any, *, bins: int | None = None) -> np.ndarray:
    """``(latents, latents)`` discrete mutual information (nats) between latents, equal-width binned as for MIG
    (``bins``; default :func:`pair_bins` of the sample count)."""
    z = _matrix(codes, "codes")
    z = histogram_discretize(z, bins or pair_bins(len(z)))
    k = z.shape[1]
    m = np.zeros((k, k))
    for i in range(k):
        for j in range(i, k):
            m[i, j] = m[j, i] = _mi(z[:, i], z[:, j])
    return m


def dead_latents(codes: Any, *, relative: float = DEAD_RELATIVE_STD) -> np.ndarray:
    """Boolean per latent: its SD is 0 or below ``relative`` x the largest latent SD."""
    sd = _matrix(codes, "codes").std(axis=0)
    peak = float(sd.max()) if sd.size else 0.0
    return (sd <= relative * peak) | (sd == 0)


def duplicate_pairs(corr: np.ndarray, names: list[str], *, threshold: float = DUPLICATE_CORRELATION) -> list[tuple[str, str, float]]:
    """Pairs of latents whose |Pearson| is at least ``threshold``."""
    iu, ju = np.triu_indices(len(names), k=1)
    return [(names[i], names[j], float(corr[i, j])) for i, j in zip(iu, ju) if abs(corr[i, j]) >= threshold]


@dataclass
class CodeSummary:
    """The code page's numbers. ``factors`` scores are absent when no factors were given."""

    names: list[str]
    n_samples: int
    total_correlation: float
    correlation: np.ndarray
    mutual_info: np.ndarray
    dead: list[str]
    duplicates: list[tuple[str, str, float]]
    factor_names: list[str] = field(default_factory=list)
    scores: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        from ..explanation import jsonable

        return jsonable({k: v for k, v in asdict(self).items()})


def code_summary(
    codes: Any, names: list[str], *, factors: Any = None, factor_names: list[str] | None = None, bins: int = 20, seed: int = 0
) -> CodeSummary:
    """Everything the code page shows for ``codes`` (samples x latents) and optional ``factors``."""
    z = _matrix(codes, "codes")
    dead = dead_latents(z)
    corr = pearson(z)
    out = CodeSummary(
        names=list(names),
        n_samples=int(len(z)),
        total_correlation=gaussian_total_correlation(z, live=~dead),
        correlation=corr,
        mutual_info=pairwise_mutual_info(z),
        dead=[n for n, d in zip(names, dead) if d],
        duplicates=duplicate_pairs(np.where(np.outer(~dead, ~dead), corr, 0.0), list(names)),
    )
    if factors is not None and z.shape[1] >= 2:
        f = _matrix(factors, "factors")
        out.factor_names = list(factor_names or [f"factor{j}" for j in range(f.shape[1])])
        m = mig(z, f, bins=bins)
        d = dci(z, f, bins=bins, seed=seed)
        s = sap(z, f, bins=bins, seed=seed)
        out.scores = {
            "mig": m["mig"],
            "mig_per_factor": m["per_factor"],
            "disentanglement": d["disentanglement"],
            "completeness": d["completeness"],
            "informativeness": d["informativeness"],
            "sap": s["sap"],
            "sap_continuous": s["continuous"],
            "factor_mutual_info": m["mutual_info"],
        }
    return out
