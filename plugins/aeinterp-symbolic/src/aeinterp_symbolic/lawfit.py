"""Fitting a law ``error = f(latent_size)`` to a handful of measured errors, and judging it honestly.

Errors fall by orders of magnitude across latent sizes, so a fit on the raw
scale is dominated by the smallest size and can miss every other one by a
factor while reporting R^2 0.99. Every law here is fitted on **log error**
(equivalently, relative-error weights), and judged by

* R^2 on the log scale (in-sample);
* **leave-one-size-out**: the law refitted without each size predicts it;
  the ratio predicted / measured per size, and the RMS of the log ratios;
* its **plateau** ``lim f(L)`` as ``L -> inf``: a plateau above a measured
  error is a law that does not describe the largest sizes, and is said so
  (``plateau_above``).

Candidate families (all on the log scale):

``power+plateau``  ``c + a * L**-b`` (c, a, b >= 0)
``exp+plateau``    ``c + a * exp(-b * L)``
``power``          ``a * L**-b``
``symbolic``       a formula for ``log(error)`` found by the symbolic backend (optional)

The law reported is the family with the smallest leave-one-size-out RMS log
ratio (ties: fewer parameters).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["LawFit", "fit_law", "FAMILIES"]

FAMILIES = ("power+plateau", "exp+plateau", "power")
PLATEAU_TOL = 0.05  # a plateau more than 5 % above a measured error is "above the measured errors"

Refit = Callable[[np.ndarray, np.ndarray], "Callable[[np.ndarray], np.ndarray] | None"]


def _model(family: str, theta: np.ndarray, size: np.ndarray) -> np.ndarray:
    size = np.asarray(size, dtype=np.float64)
    if family == "power+plateau":
        c, a, b = theta
        return c + a * size ** (-b)
    if family == "exp+plateau":
        c, a, b = theta
        return c + a * np.exp(-b * size)
    if family == "power":
        a, b = theta
        return a * size ** (-b)
    raise ValueError(family)


def _fit_family(family: str, sizes: np.ndarray, errors: np.ndarray) -> np.ndarray | None:
    """Least squares on log error, several starts; parameters >= 0 (log-parametrised)."""
    from scipy.optimize import least_squares

    log_e = np.log(errors)
    lo, hi = float(errors.min()), float(errors.max())
    n_params = 2 if family == "power" else 3

    def unpack(p: np.ndarray) -> np.ndarray:
        return np.exp(p)

    def residual(p: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            pred = _model(family, unpack(p), sizes)
        out = np.log(np.maximum(pred, 1e-300)) - log_e
        return np.where(np.isfinite(out), out, 1e3)

    scale_b = 1.0 / max(1.0, float(np.median(sizes))) if family == "exp+plateau" else 1.0
    starts = []
    for b in (0.3, 1.0, 2.0):
        if n_params == 2:
            starts.append([math.log(hi * sizes.min() ** b), math.log(b)])
        else:
            for c in (0.01 * lo, 0.5 * lo, 0.9 * lo):
                starts.append([math.log(max(c, 1e-300)), math.log(hi), math.log(b * scale_b)])
    best, best_cost = None, math.inf
    for s in starts:
        try:
            res = least_squares(residual, np.asarray(s, dtype=np.float64), method="lm" if len(sizes) > n_params else "trf", max_nfev=2000)
        except (ValueError, RuntimeError):
            continue
        if np.all(np.isfinite(res.x)) and res.cost < best_cost:
            best, best_cost = res.x, float(res.cost)
    return None if best is None else unpack(best)


def _parametric(family: str) -> Refit:
    def refit(sizes: np.ndarray, errors: np.ndarray) -> Callable[[np.ndarray], np.ndarray] | None:
        theta = _fit_family(family, sizes, errors)
        if theta is None:
            return None
        return lambda s, theta=theta: _model(family, theta, s)

    return refit


@dataclass
class FamilyFit:
    family: str
    formula: str
    plateau: float | None
    r2_log: float
    loso_ratio: list[float | None]
    loso_rms_log: float
    n_params: int
    params: dict[str, float] = field(default_factory=dict)


@dataclass
class LawFit:
    """The chosen law, every candidate family's fit, and the honesty checks."""

    sizes: list[int]
    errors: list[float]
    family: str
    formula: str
    plateau: float | None
    r2_log: float
    r2_raw: float
    fitted: list[float]
    fit_ratio: list[float]
    loso_ratio: list[float | None]
    loso_rms_log: float
    plateau_above: list[int]
    warnings: list[str]
    candidates: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    if not np.all(np.isfinite(pred)):
        return -math.inf
    sst = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / sst if sst > 0 else (1.0 if np.allclose(y, pred) else 0.0)


def _formula(family: str, theta: np.ndarray) -> str:
    g = lambda v: f"{v:.4g}"  # noqa: E731
    if family == "power+plateau":
        return f"{g(theta[0])} + {g(theta[1])}*latent_size**(-{g(theta[2])})"
    if family == "exp+plateau":
        return f"{g(theta[0])} + {g(theta[1])}*exp(-{g(theta[2])}*latent_size)"
    return f"{g(theta[0])}*latent_size**(-{g(theta[1])})"


def _loso(refit: Refit, sizes: np.ndarray, errors: np.ndarray) -> tuple[list[float | None], float]:
    ratios: list[float | None] = []
    for i in range(len(sizes)):
        keep = np.arange(len(sizes)) != i
        f = refit(sizes[keep], errors[keep])
        pred = float(np.asarray(f(sizes[i : i + 1]))[0]) if f is not None else math.nan
        ratios.append(pred / float(errors[i]) if math.isfinite(pred) and pred > 0 else None)
    logs = [math.log(r) for r in ratios if r is not None]
    rms = math.sqrt(sum(v * v for v in logs) / len(logs)) if len(logs) == len(ratios) else math.inf
    return ratios, rms


def fit_law(
    sizes: Sequence[int],
    errors: Sequence[float],
    *,
    symbolic: tuple[Refit, Callable[[], tuple[Callable[[np.ndarray], np.ndarray], str, float | None]]] | None = None,
    families: Sequence[str] = FAMILIES,
) -> LawFit:
    """Fit every family on log error, score each by leave-one-size-out, keep the best.

    ``symbolic`` (optional) is ``(refit, full)``: ``refit(sizes, errors)`` gives
    a predictor of error fitted without the held-out size, ``full()`` the law
    fitted on all sizes as ``(predictor, formula_text, plateau)``.
    """
    s = np.asarray(sizes, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    if len(s) < 3 or np.any(e <= 0) or not np.all(np.isfinite(e)):
        raise ValueError("a law needs at least 3 sizes with positive, finite errors")
    log_e = np.log(e)
    fits: list[tuple[FamilyFit, Callable[[np.ndarray], np.ndarray]]] = []
    for fam in families:
        theta = _fit_family(fam, s, e)
        if theta is None:
            continue
        n_params = 2 if fam == "power" else 3
        if len(s) <= n_params:  # leave-one-out would leave too few points to fit
            ratios, rms = [None] * len(s), math.inf
        else:
            ratios, rms = _loso(_parametric(fam), s, e)
        pred = _model(fam, theta, s)
        plateau = float(theta[0]) if fam != "power" else 0.0
        names = ("c", "a", "b") if n_params == 3 else ("a", "b")
        ff = FamilyFit(
            fam,
            _formula(fam, theta),
            plateau,
            _r2(log_e, np.log(np.maximum(pred, 1e-300))),
            ratios,
            rms,
            n_params,
            dict(zip(names, map(float, theta))),
        )
        fits.append((ff, lambda x, fam=fam, theta=theta: _model(fam, theta, x)))
    if symbolic is not None:
        refit, full = symbolic
        f, text, plateau = full()
        ratios, rms = _loso(refit, s, e)
        pred = np.asarray(f(s), dtype=np.float64)
        fits.append((FamilyFit("symbolic", text, plateau, _r2(log_e, np.log(np.maximum(pred, 1e-300))), ratios, rms, 0), f))
    if not fits:
        raise ValueError("no law could be fitted to these errors")
    best, predictor = min(fits, key=lambda t: (t[0].loso_rms_log, t[0].n_params, -t[0].r2_log))
    fitted = np.asarray(predictor(s), dtype=np.float64)
    above = [int(k) for k, err in zip(sizes, e) if best.plateau is not None and best.plateau > err * (1 + PLATEAU_TOL)]
    warnings = []
    if above:
        worst = max(best.plateau / err for k, err in zip(sizes, e) if int(k) in above)
        warnings.append(
            f"the law's plateau {best.plateau:.4g} lies above the measured error at latent size {', '.join(map(str, above))} "
            f"(up to {worst:.2g}x): it does not describe those sizes"
        )
    bad = [int(k) for k, r in zip(sizes, best.loso_ratio) if r is None or not 0.5 <= r <= 2.0]
    if bad:
        warnings.append(f"left out of the fit, latent size {', '.join(map(str, bad))} is predicted more than 2x off")
    return LawFit(
        sizes=[int(k) for k in sizes],
        errors=[float(v) for v in e],
        family=best.family,
        formula=best.formula,
        plateau=best.plateau,
        r2_log=best.r2_log,
        r2_raw=_r2(e, fitted),
        fitted=fitted.tolist(),
        fit_ratio=(fitted / e).tolist(),
        loso_ratio=best.loso_ratio,
        loso_rms_log=best.loso_rms_log,
        plateau_above=above,
        warnings=warnings,
        candidates=[asdict(ff) for ff, _ in fits],
    )
