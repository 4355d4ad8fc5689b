"""``symbolic_regression``: a closed-form formula per latent, with held-out fidelity.

For every target (latent dimension, reconstructed element, or the
reconstruction error; ``dims`` may restrict which) a symbolic regression
backend searches formulas on part of the fit split; the formula is chosen on
the rest of the fit split by the parsimony rule of :mod:`.search`, simplified
with sympy and rendered with the real feature names as text and LaTeX. Its
fidelity (R^2, RMSE) is measured on the held-out explain split. Formulas below
``fidelity_threshold`` are flagged "not explained".

Importance (targets x inputs), by ``importance``:

``fidelity_usage`` (default)
    ``max(R^2, 0)`` of the target's formula where the formula uses the input,
    0 where it does not: a feature counts as much as the formula that uses it
    is faithful.
``usage``
    1 where the formula uses the input, 0 otherwise.
``sensitivity``
    ``max(R^2, 0) * mean |df/dx_j|`` over the held-out split (derivatives of
    the sympy formula), so inputs a formula barely moves with count little.

"Uses" is read from the formula's expression tree (its set of symbols), never
from its text. Redundant (never used) inputs are those no searched formula
uses; the usage table, its figure and the summary line are built once from
the searched formulas (:mod:`.result`).

Every formula is at least as faithful on the validation rows as the sparse
linear baseline (:mod:`.linear`), whose held-out R^2 is reported beside it;
the size cap grows while the Pareto front improves (:mod:`.search`). For the ``reconstruction`` target the inputs are the
latent code (``z0 .. zk``), so ``feature_names`` are latent names.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, model_validator

from aeinterp import Capabilities, ExplainerParams, Explanation, StepRef
from aeinterp.errors import CapabilityError, DataError, require
from aeinterp.targets import Target
from aeinterp.toolkit.chunks import ChunkedExplainer, Partial

from .backends import BINARY, Operator, SearchSettings, make_backend
from .result import IMPORTANCE_RULES, SELECTION_RULE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SymbolicRegression", "SELECTION_RULE", "IMPORTANCE_RULES"]

DEFAULT_OPERATORS: list[str] = ["add", "sub", "mul", "div", "square", "sin", "cos", "exp", "tanh"]


def available_cpus() -> int:
    """CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class SymbolicRegression(ChunkedExplainer):
    """A closed-form formula per latent (pyoperon or PySR), with held-out R^2 and the exact inputs it uses.

    Its work splits over targets (``splits="targets"``): ``prepare`` builds one
    search job per target, ``explain_chunk`` fits a chunk of them. On an
    executor that runs chunks in parallel (Ray) each target is its own task
    with its own time budget; locally all targets are one chunk, fitted in
    parallel threads. Each target's search has its own seed, so the formulas do
    not depend on the chunking.
    """

    name = "symbolic_regression"

    class Params(ExplainerParams):
        backend: Literal["pyoperon", "pysr"] = Field(
            "pyoperon", description="search engine: pyoperon (no extra runtime) or pysr (needs Julia)"
        )
        dims: list[int] | None = Field(
            None,
            description="explain only these target rows (e.g. latent indices); default all. Rows left out get importance 0 and no formula",
        )
        operators: list[Operator] = Field(
            default_factory=lambda: list(DEFAULT_OPERATORS),
            min_length=1,
            description="operators formulas may use (same names for both backends)",
        )
        max_size: int = Field(
            25, ge=5, le=200, description="largest formula, in nodes (Operon max_length, PySR maxsize), of the first search round"
        )
        grow_size: bool = Field(
            True,
            description="repeat the search with max_size doubled while the best validation R^2 of its Pareto front improves by more than grow_tol, within time_budget",
        )
        max_size_limit: int = Field(100, ge=5, le=400, description="largest max_size growing may reach")
        grow_tol: float = Field(0.002, ge=0.0, description="validation R^2 gain below which growing the size cap stops")
        linear_baseline: bool = Field(
            True,
            description="fit the sparse linear baseline (relaxed lasso path + least squares) on the same rows; its candidates join the Pareto front and no formula less faithful than it is chosen",
        )
        generations: int = Field(100, ge=1, description="generations (Operon) / iterations (PySR) per target")
        population_size: int = Field(500, ge=10, description="population size per target")
        time_budget: float | None = Field(
            60.0,
            gt=0,
            description="seconds each target's search may take, all size rounds together (Operon: whole seconds, checked once per generation); None for no limit. A search cut short by it is not reproducible",
        )
        threads: int | None = Field(
            None, ge=1, description="CPU threads for all searches together; default all available. Targets are fitted in parallel within it"
        )
        seed: int | None = Field(None, description="search seed; default drawn from the run's seed")
        optimizer_iterations: int = Field(10, ge=0, description="iterations of constant optimisation per formula (both backends)")
        max_samples: int | None = Field(
            1000, ge=20, description="rows of the fit split used for searching and selecting formulas (random, seeded)"
        )
        validation_fraction: float = Field(
            0.25, gt=0.0, lt=0.9, description="part of those rows held back to choose among the Pareto front"
        )
        parsimony: float = Field(
            0.01, ge=0.0, description="choose the least complex formula whose validation R^2 is within this of the best"
        )
        fidelity_threshold: float = Field(0.9, le=1.0, description="formulas with held-out R^2 below this are flagged 'not explained'")
        importance: Literal["fidelity_usage", "usage", "sensitivity"] = Field(
            "fidelity_usage",
            description="how usage becomes importance: fidelity-weighted usage, 0/1 usage, or fidelity-weighted mean |df/dx|",
        )
        features: list[str] | None = Field(
            None,
            description="use only these inputs (feature group names, or latent names for target reconstruction), e.g. the top features of another explainer",
        )
        features_from: StepRef | None = Field(
            None,
            description="alias of an earlier step: each target keeps its top `max_features` inputs (default 10) by that step's importance",
        )
        max_features: int | None = Field(
            None, ge=1, description="when there are more inputs, each target keeps its top ones by `prescreen` (or by `features_from`)"
        )
        prescreen: Literal["mutual_info", "correlation", "variance"] = Field(
            "mutual_info", description="how to pick max_features inputs per target"
        )
        precision: int = Field(4, ge=1, le=15, description="significant digits of numbers in the printed formulas")
        allow_julia_install: bool = Field(False, description="pysr only: let juliapkg download Julia when none is found (needs internet)")

        @model_validator(mode="after")
        def _needs_a_binary_operator(self) -> "SymbolicRegression.Params":
            if not BINARY.intersection(self.operators):
                raise ValueError(f"operators must include at least one of {', '.join(sorted(BINARY))}")
            if self.dims is not None and any(d < 0 for d in self.dims):
                raise ValueError("dims must be non-negative indices")
            return self

    capabilities = Capabilities(needs_gradients=False, deterministic=True, local=False, splits="targets")

    def check(self, model, data, target) -> None:  # noqa: ANN001 - signature fixed by Explainer
        super().check(model, data, target)
        if self.params.backend == "pysr":
            from .julia import require_pysr

            require_pysr(allow_julia_install=self.params.allow_julia_install, plugin=self.name)

    def _top_from_earlier(self, names: list[str], target_names: list[str], dims: list[int]) -> list[np.ndarray]:
        """Per target, the top inputs by an earlier step's importance (its row for the same target, else its column sums)."""
        earlier = self.result_of(str(self.params.features_from))
        if list(earlier.feature_names) != list(names):
            raise CapabilityError(
                f"step {self.params.features_from!r} explains other inputs ({len(earlier.feature_names)} columns) than this search ({len(names)})",
                plugin=self.name,
            )
        k = self.params.max_features or 10
        rows = {t: r for r, t in enumerate(earlier.target_names)}
        overall = earlier.importance.sum(axis=0)
        picks = []
        for d in dims:
            score = earlier.importance[rows[target_names[d]]] if target_names[d] in rows else overall
            picks.append(np.sort(np.argsort(-score, kind="stable")[:k]))
        return picks

    def prepare(self, model, data, *, target, rng):  # noqa: ANN001 - signature fixed by ChunkedExplainer
        """One search job per target (inputs, screening, seeds); the chunks fit them."""
        p = self.params
        require("sympy", "symbolic", "symbolic_regression")
        from .inputs import build_inputs, screen
        from .search import Job

        backend = make_backend(p.backend, allow_julia_install=p.allow_julia_install)
        target = Target(target)
        inputs = build_inputs(model, data, target, rng, p.max_samples)
        n_targets = inputs.n_targets
        dims = _dims(p.dims, n_targets, target)
        n = inputs.x_fit.shape[0]
        if n < 20:
            raise DataError(f"symbolic_regression needs at least 20 fit samples, got {n}")
        order = rng.permutation(n)
        n_val = max(5, int(round(p.validation_fraction * n)))
        val, train = order[:n_val], order[n_val:]
        x_train, x_val = inputs.x_fit[train], inputs.x_fit[val]  # shared by every job, not copied per target
        if p.features_from is not None:
            screened = self._top_from_earlier(inputs.names, inputs.target_names, dims)
        else:
            screened = screen(
                x_train,
                inputs.y_fit[train][:, dims],
                inputs.names,
                features=p.features,
                max_features=p.max_features,
                method=p.prescreen,
                rng=rng,
            )
        columns = dict(zip(dims, screened))
        base_seed = p.seed if p.seed is not None else int(rng.integers(0, 2**31 - 1))
        seeds = np.random.default_rng(base_seed).integers(0, 2**31 - 1, size=n_targets)
        settings = SearchSettings(
            operators=tuple(p.operators),
            max_size=p.max_size,
            generations=p.generations,
            population_size=p.population_size,
            time_budget=p.time_budget,
            threads=1,
            seed=0,
            optimizer_iterations=p.optimizer_iterations,
        )
        jobs = [
            Job(
                index=t,
                columns=columns[t],
                x_train=x_train,
                y_train=inputs.y_fit[train, t],
                x_val=x_val,
                y_val=inputs.y_fit[val, t],
                x_test=inputs.x_test,
                y_test=inputs.y_test[:, t],
                settings=replace(settings, seed=int(seeds[t])),
                parsimony=p.parsimony,
                precision=p.precision,
                linear=p.linear_baseline,
                grow=p.grow_size,
                max_size_limit=p.max_size_limit,
                grow_tol=p.grow_tol,
            )
            for t in dims
        ]
        return {
            "jobs": {job.index: job for job in jobs},
            "dims": dims,
            "names": inputs.names,
            "target_names": inputs.target_names,
            "backend": backend.name,
            "backend_version": backend.version(),
            "considered": {t: len(c) for t, c in columns.items()},
        }

    def units(self, model, data, state, *, target):  # noqa: ANN001 - signature fixed by ChunkedExplainer
        """The target rows; one per chunk where chunks run in parallel, else all in one chunk (fitted in threads)."""
        dims = np.asarray(state["dims"], dtype=np.int64)
        return dims, 1 if getattr(self.executor, "workers", 1) > 1 else max(1, len(dims))

    def explain_chunk(self, model, data, state, units, *, target, rng):  # noqa: ANN001 - signature fixed by ChunkedExplainer
        """Fit the targets of this chunk; the fits travel as one object row per target."""
        from .formulas import make_symbols
        from .search import run_jobs

        p = self.params
        backend = make_backend(p.backend, allow_julia_install=p.allow_julia_install)
        threads = p.threads or available_cpus()
        if self.cpus:  # a task's share of a cluster
            threads = min(threads, self.cpus)
        jobs = [_writable(state["jobs"][int(t)]) for t in units]
        symbols = make_symbols(len(state["names"]))
        fits = run_jobs(
            backend,
            jobs,
            symbols,
            state["names"],
            threads=threads,
            progress=self.progress,
            description=f"symbolic regression ({Target(target).value})",
        )
        row = np.empty(len(jobs), dtype=object)
        for i, job in enumerate(jobs):
            row[i] = fits[job.index]
        return Partial(rows={"fits": row}, count=len(jobs))

    def finish(self, model, data, state, total, *, target):  # noqa: ANN001 - signature fixed by ChunkedExplainer
        from .inputs import REDUCTION
        from .result import build_explanation

        fits = {int(f.index): f for f in total.rows.get("fits", [])}
        target = Target(target)
        return build_explanation(
            fits,
            state["names"],
            state["target_names"],
            target,
            self.params,
            state["backend"],
            state["backend_version"],
            state["considered"],
            REDUCTION[target.value],
        )

    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Figure]:
        from .figures import fidelity_figure, pareto_figure, usage_figure

        if "r2" not in explanation.arrays:
            return {}
        figs = {"fidelity": fidelity_figure(explanation), "pareto": pareto_figure(explanation)}
        if "usage_count" in explanation.arrays:
            figs["usage"] = usage_figure(explanation)
        return figs


def _writable(job):  # noqa: ANN001, ANN202 - a search.Job
    """The job with its arrays writable (arrays from Ray's object store are read-only; the engines want writable ones)."""
    arrays = {k: np.array(v) for k, v in vars(job).items() if isinstance(v, np.ndarray) and not v.flags.writeable}
    return replace(job, **arrays) if arrays else job


def _dims(dims: list[int] | None, n_targets: int, target: Target) -> list[int]:
    if dims is None:
        return list(range(n_targets))
    bad = [d for d in dims if d >= n_targets]
    if bad:
        raise DataError(f"symbolic_regression: dims {bad} out of range; target {target.value} has rows 0..{n_targets - 1}")
    return sorted(set(dims))
