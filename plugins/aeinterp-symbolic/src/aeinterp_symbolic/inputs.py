"""What the formulas are fitted on: input columns, target values, and per-target screening.

Inputs
    ``latent`` and ``reconstruction_error`` targets are formulas of the data's
    **feature groups**, each reduced to the mean of its elements (tabular
    columns stay themselves; a sequence feature becomes its mean over time; an
    image pixel position its mean over channels; ``patches:K`` groups their
    patch mean). The ``reconstruction`` target is explained as the decoder:
    each reconstructed element as a formula of the latent code ``z0 .. zk``.

Screening
    Symbolic regression slows down with many inputs. ``features`` names the
    inputs to use (for example the top features another explainer found);
    otherwise, when there are more than ``max_features`` inputs, each target
    keeps its top ``max_features`` by ``mutual_info`` (catches non-linear and
    non-monotone links such as ``sin(x1) * x2``), ``correlation`` (absolute
    Pearson, linear links only) or ``variance`` (the same inputs for all).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aeinterp.data import Dataset
from aeinterp.errors import DataError
from aeinterp.model import Model, evaluate
from aeinterp.targets import Target, evaluate_target, target_names
from aeinterp.toolkit.perturb import reduce_groups, subsample

__all__ = ["Inputs", "build_inputs", "screen", "REDUCTION"]

REDUCTION = {
    "latent": "each feature group reduced to the mean of its elements (tabular columns unchanged)",
    "reconstruction_error": "each feature group reduced to the mean of its elements (tabular columns unchanged)",
    "reconstruction": "decoder formulas: each reconstructed element as a function of the latent code",
}


@dataclass(frozen=True)
class Inputs:
    """Inputs (``x``) and targets (``y``) on the fit and held-out splits, as float64."""

    x_fit: np.ndarray
    y_fit: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    names: list[str]
    target_names: list[str]

    @property
    def n_targets(self) -> int:
        return int(self.y_fit.shape[1])


def _group_means(x: np.ndarray, data: Dataset) -> np.ndarray:
    flat = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
    groups = data.groups
    if all(g.indices.size == 1 for g in groups):
        return np.ascontiguousarray(flat[:, [int(g.indices[0]) for g in groups]])
    return np.asarray(reduce_groups(flat, groups, "mean"), dtype=np.float64)


def build_inputs(model: Model, data: Dataset, target: Target, rng: np.random.Generator, max_samples: int | None) -> Inputs:
    """Evaluate the model and build the regression problem for ``target``.

    The fit split (at most ``max_samples`` random rows) is what formulas are
    searched and selected on; the explain split is kept for measuring fidelity.
    """
    x_fit = subsample(data.x_fit, max_samples, rng)
    x_test = data.x_explain
    if target is Target.RECONSTRUCTION:
        z_fit = evaluate(model.encode, x_fit, model=model)
        z_test = evaluate(model.encode, x_test, model=model)
        y_fit = evaluate(model.decode, z_fit, model=model).reshape(len(x_fit), -1)
        y_test = evaluate(model.decode, z_test, model=model).reshape(len(x_test), -1)
        k = int(z_fit.shape[1])
        return Inputs(
            x_fit=z_fit.double().numpy(),
            y_fit=y_fit.double().numpy(),
            x_test=z_test.double().numpy(),
            y_test=y_test.double().numpy(),
            names=target_names(Target.LATENT, k, []),
            target_names=target_names(target, k, list(data.feature_names)),
        )
    y_fit = evaluate(lambda xb: evaluate_target(model, target, xb), x_fit, model=model).double().numpy()
    y_test = evaluate(lambda xb: evaluate_target(model, target, xb), x_test, model=model).double().numpy()
    return Inputs(
        x_fit=_group_means(x_fit, data),
        y_fit=y_fit,
        x_test=_group_means(x_test, data),
        y_test=y_test,
        names=list(data.group_names),
        target_names=target_names(target, int(y_fit.shape[1]), list(data.feature_names)),
    )


def _named_columns(features: Sequence[str], names: Sequence[str]) -> np.ndarray:
    position = {n: i for i, n in enumerate(names)}
    unknown = [f for f in features if f not in position]
    if unknown:
        hints = []
        for f in unknown:
            close = difflib.get_close_matches(f, list(names), n=1)
            hints.append(f"{f!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise DataError(f"symbolic_regression: `features` names inputs that do not exist: {', '.join(hints)}")
    return np.array(sorted({position[f] for f in features}), dtype=np.int64)


def screen(
    x: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    *,
    features: Sequence[str] | None,
    max_features: int | None,
    method: str,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """The input columns each target's search may use (sorted indices, one array per target)."""
    n_targets = y.shape[1]
    base = _named_columns(features, names) if features else np.arange(x.shape[1])
    if max_features is None or base.size <= max_features:
        return [base] * n_targets
    xs = x[:, base]
    if method == "variance":
        keep = np.sort(base[np.argsort(-xs.var(axis=0), kind="stable")[:max_features]])
        return [keep] * n_targets
    if method == "correlation":
        xc = (xs - xs.mean(0)) / np.where(xs.std(0) > 0, xs.std(0), 1.0)
        yc = (y - y.mean(0)) / np.where(y.std(0) > 0, y.std(0), 1.0)
        scores = np.abs(xc.T @ yc) / len(x)  # (inputs, targets), all at once
    elif method == "mutual_info":
        from sklearn.feature_selection import mutual_info_regression

        seed = int(rng.integers(0, 2**31 - 1))
        scores = np.stack([mutual_info_regression(xs, y[:, t], random_state=seed) for t in range(n_targets)], axis=1)
    else:
        raise ValueError(f"unknown prescreen {method!r}")
    order = np.argsort(-scores, axis=0, kind="stable")[:max_features]
    return [np.sort(base[order[:, t]]) for t in range(n_targets)]
