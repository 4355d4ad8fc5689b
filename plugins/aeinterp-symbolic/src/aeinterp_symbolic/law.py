"""The latent-size law: held-out reconstruction error as a formula of the latent size.

:func:`latent_size_law` trains the built-in autoencoder for the data's kind
(or the one named) at several latent sizes on the fit split, records each
model's mean squared reconstruction error on the held-out explain split, and
fits ``error = f(latent_size)`` with the same symbolic regression backends and
settings as the ``symbolic_regression`` explainer. With a handful of points
there is nothing left to validate on, so the formula is chosen by the same
parsimony rule on the points themselves and its R^2 is in-sample (reported as
such).

Usage from Python::

    from aeinterp.datasets import load_dataset
    from aeinterp_symbolic.law import latent_size_law

    law = latent_size_law(load_dataset(builtin="breast_cancer"), sizes=[2, 4, 8, 16],
                          train={"epochs": 60}, params={"generations": 50})
    print(law.formula, law.r2_in_sample)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from aeinterp.architectures import DEFAULT_FOR_KIND
from aeinterp.data import ArrayDataset
from aeinterp.errors import DataError, require
from aeinterp.explanation import jsonable
from aeinterp.progress import NullProgress, Progress
from aeinterp.loading import build_builtin
from aeinterp.training import TrainConfig

from .backends import SearchSettings, make_backend
from .explainer import SymbolicRegression, available_cpus

__all__ = ["LatentSizeLaw", "latent_size_law", "LAW_OPERATORS"]

LAW_OPERATORS = ["add", "sub", "mul", "div", "exp", "log", "sqrt"]


@dataclass(frozen=True)
class LatentSizeLaw:
    """Held-out reconstruction error per latent size and the symbolic law fitted to it."""

    sizes: list[int]
    errors: list[float]
    train_losses: list[float]
    formula: str
    latex: str
    r2_in_sample: float
    rmse_in_sample: float
    r2_displayed: float
    backend: str
    architecture: str
    pareto_front: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (for ``results.json`` or a report)."""
        return jsonable(asdict(self))

    def lines(self) -> list[str]:
        """Human-readable lines: one per size, then the law."""
        rows = [f"latent size {k:>3}: held-out MSE {e:.4g}" for k, e in zip(self.sizes, self.errors)]
        return rows + [f"error = {self.formula}   (in-sample R^2 {self.r2_in_sample:.3f}, {self.backend})"]


def latent_size_law(
    data: ArrayDataset,
    *,
    sizes: Sequence[int] = (2, 4, 8, 16, 32),
    architecture: str | None = None,
    options: Mapping[str, Any] | None = None,
    train: TrainConfig | Mapping[str, Any] | None = None,
    params: SymbolicRegression.Params | Mapping[str, Any] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> LatentSizeLaw:
    """Train the built-in autoencoder at each of ``sizes`` and fit ``error = f(latent_size)``.

    ``options`` are the architecture's constructor options (e.g. ``{"hidden": [32]}``),
    ``train`` a :class:`TrainConfig` or its fields (its seed defaults to ``seed``),
    ``params`` the explainer's params for the search (backend, operators, sizes,
    budget; default operators :data:`LAW_OPERATORS`, ``max_size`` 12, ``parsimony`` 0.02).
    """
    require("sympy", "symbolic", "the latent-size law")
    progress = progress or NullProgress()
    sizes = sorted({int(k) for k in sizes})
    if len(sizes) < 3 or sizes[0] < 1:
        raise DataError(f"the latent-size law needs at least 3 distinct positive latent sizes, got {sizes}")
    arch = architecture or DEFAULT_FOR_KIND[data.kind]
    config = train if isinstance(train, TrainConfig) else TrainConfig(**{"seed": seed, **dict(train or {})})
    if isinstance(params, SymbolicRegression.Params):
        p = params
    else:
        p = SymbolicRegression.Params(**{"operators": LAW_OPERATORS, "max_size": 12, "parsimony": 0.02, **dict(params or {})})

    errors, losses = [], []
    for k in progress.track(sizes, total=len(sizes), description="latent-size law: training"):
        _, result = build_builtin(arch, data, latent_dim=k, options=options, train=config)  # seeded initial weights
        errors.append(float(result.val_error))
        losses.append(float(result.train_loss[-1]) if result.train_loss else float("nan"))

    from .formulas import make_symbols
    from .search import Job, fit_target

    backend = make_backend(p.backend, allow_julia_install=p.allow_julia_install)
    x = np.asarray(sizes, dtype=np.float64)[:, None]
    y = np.asarray(errors, dtype=np.float64)
    settings = SearchSettings(
        operators=tuple(p.operators), max_size=p.max_size, generations=p.generations, population_size=p.population_size,
        time_budget=p.time_budget, threads=p.threads or available_cpus(), seed=p.seed if p.seed is not None else seed,
        optimizer_iterations=p.optimizer_iterations,
    )
    job = Job(index=0, columns=np.array([0]), x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y,
              settings=settings, parsimony=p.parsimony, precision=p.precision)
    fit = fit_target(backend, job, make_symbols(1), ["latent_size"])
    return LatentSizeLaw(
        sizes=sizes, errors=errors, train_losses=losses, formula=fit.text, latex=fit.latex,
        r2_in_sample=fit.r2, rmse_in_sample=fit.rmse, r2_displayed=fit.r2_displayed, backend=backend.name, architecture=arch, pareto_front=fit.front,
    )
