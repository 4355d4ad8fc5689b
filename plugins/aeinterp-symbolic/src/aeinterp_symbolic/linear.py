"""The sparse linear baseline every formula must match, and the linear candidates on the Pareto front.

A latent of a trained MLP autoencoder is often nearly linear in many inputs;
a formula search capped at a few dozen nodes then loses to a plain linear
regression. So every target also gets linear candidates, fitted on the same
training rows as the search:

* the **lasso path** (LARS, :func:`sklearn.linear_model.lars_path`) on
  standardised inputs gives one active set per step, from 1 input up to all;
  each active set is refitted by ordinary least squares ("relaxed lasso"), so
  a candidate with ``k`` inputs is the best linear formula the path found
  with those ``k`` inputs;
* the full ordinary least-squares fit on every non-constant input
  (``LinearRegression``).

Each candidate is a :class:`~aeinterp_symbolic.backends.Candidate` whose
complexity counts nodes the way the search does: ``k`` weighted variables,
``k`` additions and one constant, ``2k + 1``. The **sparse linear baseline**
is the candidate the parsimony rule picks among the linear ones alone (the
fewest inputs whose validation R^2 is within ``parsimony`` of the best linear
one). The explainer then only accepts a formula at least as faithful on the
validation rows as that baseline (:func:`aeinterp_symbolic.search.choose`),
and reports both held-out R^2 values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sympy

from .backend_types import Candidate

__all__ = ["LinearFit", "linear_candidates", "linear_size"]


def linear_size(k: int) -> int:
    """Nodes of a linear formula in ``k`` inputs: ``k`` weighted variables, ``k`` additions, one constant."""
    return 2 * int(k) + 1


@dataclass
class LinearFit:
    """Linear candidates along the lasso path (fewest inputs first) and the full least-squares fit."""

    candidates: list[Candidate]
    n_inputs: list[int]
    ols: Candidate | None


def _affine(coef: np.ndarray, intercept: float, cols: Sequence[int], symbols: Sequence[sympy.Symbol]) -> sympy.Expr:
    terms = [sympy.Float(float(c)) * symbols[i] for c, i in zip(coef, cols) if c != 0.0]
    return sympy.Add(sympy.Float(float(intercept)), *terms)


def _candidate(x: np.ndarray, y: np.ndarray, cols: np.ndarray, symbols: Sequence[sympy.Symbol], label: str) -> Candidate:
    design = np.column_stack([np.ones(len(x)), x[:, cols]])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    intercept, coef = float(beta[0]), beta[1:]
    loss = float(np.mean((design @ beta - y) ** 2))

    def predict(z: np.ndarray, cols: np.ndarray = cols, coef: np.ndarray = coef, intercept: float = intercept) -> np.ndarray:
        return np.asarray(z, dtype=np.float64)[:, cols] @ coef + intercept

    return Candidate(
        expr=_affine(coef, intercept, [int(c) for c in cols], symbols),
        complexity=linear_size(len(cols)),
        loss=loss,
        predict=predict,
        engine_text=f"{label} in {len(cols)} inputs",
    )


def linear_candidates(x: np.ndarray, y: np.ndarray, symbols: Sequence[sympy.Symbol], *, max_inputs: int | None = None) -> LinearFit:
    """Relaxed-lasso candidates (one per distinct active-set size) and the full OLS fit, on ``x`` (float64) and ``y``.

    ``symbols[i]`` stands for column ``i`` of ``x``. Constant columns are
    left out. ``max_inputs`` stops the path early.
    """
    from sklearn.linear_model import lars_path

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    std = x.std(axis=0)
    live = np.flatnonzero(std > 1e-12 * np.maximum(1.0, np.abs(x).max(axis=0, initial=0.0)))
    if live.size == 0 or float(np.std(y)) == 0.0:
        return LinearFit([], [], None)
    xs = (x[:, live] - x[:, live].mean(axis=0)) / std[live]
    yc = y - y.mean()
    limit = live.size if max_inputs is None else min(live.size, int(max_inputs))
    _, _, coefs = lars_path(xs, yc, method="lasso", max_iter=4 * live.size)
    by_size: dict[int, np.ndarray] = {}
    for step in range(coefs.shape[1]):
        active = np.flatnonzero(coefs[:, step])
        if 0 < active.size <= limit and active.size not in by_size:
            by_size[active.size] = live[active]
    cands, sizes = [], []
    for k in sorted(by_size):
        cands.append(_candidate(x, y, by_size[k], symbols, "relaxed lasso"))
        sizes.append(k)
    ols = _candidate(x, y, live, symbols, "least squares")
    return LinearFit(cands, sizes, ols)
