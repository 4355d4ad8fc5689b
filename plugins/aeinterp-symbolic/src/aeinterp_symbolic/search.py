"""Fit, select and measure one formula per target; run the targets in parallel.

Selection (the parsimony rule)
    The backend returns its Pareto front (complexity vs training error). Each
    formula is scored by R^2 on a **validation** part of the fit split (never
    seen by the search). Let ``best`` be the highest validation R^2; the chosen
    formula is the *least complex* one whose validation R^2 is at least
    ``best - parsimony`` (ties: higher validation R^2).

Finishing
    The chosen formula has numbers below 1e-8 set to 0, is simplified with
    sympy, and loses additive terms that move it by less than 1e-4 of the
    target's standard deviation. If that changed its validation R^2 by more
    than 1e-3 the unsimplified formula is kept instead.

Fidelity
    R^2 and RMSE of the finished formula (full precision, evaluated in float64)
    against the target on the **held-out explain split**, which neither the
    search nor the selection saw. ``r2_displayed`` is the same for the formula
    as printed (numbers rounded to ``precision`` significant digits).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import sympy

from aeinterp.progress import NullProgress, Progress

from . import formulas as F
from .backends import Backend, Candidate, SearchSettings

__all__ = ["Job", "TargetFit", "fit_target", "run_jobs", "choose"]


@dataclass(frozen=True)
class Job:
    """One target's regression problem; ``columns`` index the full input list."""

    index: int
    columns: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    settings: SearchSettings
    parsimony: float
    precision: int


@dataclass
class TargetFit:
    """The chosen formula for one target, its fidelity and what it uses."""

    index: int
    expr: sympy.Expr
    text: str
    latex: str
    engine_text: str
    used: list[int]
    sensitivity: np.ndarray
    r2: float
    rmse: float
    r2_displayed: float
    r2_validation: float
    complexity: int
    simplified: bool
    front: list[dict[str, Any]] = field(default_factory=list)
    runtime_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


def choose(val_r2: Sequence[float], complexity: Sequence[int], parsimony: float) -> int | None:
    """Index of the least complex candidate within ``parsimony`` of the best validation R^2."""
    finite = [i for i, r in enumerate(val_r2) if math.isfinite(r)]
    if not finite:
        return None
    best = max(val_r2[i] for i in finite)
    eligible = [i for i in finite if val_r2[i] >= best - parsimony]
    return min(eligible, key=lambda i: (complexity[i], -val_r2[i]))


def _finish(raw: sympy.Expr, symbols: Sequence[sympy.Symbol], job: Job, engine_r2: float) -> tuple[sympy.Expr, bool]:
    scale = float(np.std(job.y_train))
    expr = F.prune_terms(F.simplify(F.chop(raw)), symbols, job.x_val, scale)
    r2, _ = F.r2_rmse(job.y_val, F.compile_expr(expr, symbols)(job.x_val))
    if math.isfinite(engine_r2) and not r2 >= engine_r2 - 1e-3:
        return raw, False
    return expr, expr != raw


def fit_target(backend: Backend, job: Job, all_symbols: Sequence[sympy.Symbol], all_names: Sequence[str]) -> TargetFit:
    """Search, select by validation R^2 with the parsimony rule, finish, and measure on the held-out split."""
    start = time.perf_counter()
    cols = [int(c) for c in job.columns]
    symbols = [all_symbols[c] for c in cols]
    names = {s: all_names[c] for s, c in zip(symbols, cols)}
    xt, xv, xh = job.x_train[:, cols], job.x_val[:, cols], job.x_test[:, cols]
    local = replace(job, x_train=xt, x_val=xv, x_test=xh)
    result = backend.search(xt, job.y_train, symbols, [all_names[c] for c in cols], job.settings)
    search_s = time.perf_counter() - start
    candidates: list[Candidate] = result.candidates
    val_r2 = [F.r2_rmse(job.y_val, c.predict(xv))[0] for c in candidates]
    pick = choose(val_r2, [c.complexity for c in candidates], job.parsimony)
    if pick is None:  # nothing usable: the honest fallback is the mean
        mean = float(np.mean(job.y_train))
        chosen = Candidate(sympy.Float(mean), 1, float(np.var(job.y_train)), lambda x: np.full(len(x), mean), str(mean))
        chosen_val = F.r2_rmse(job.y_val, np.full(len(xv), mean))[0]
    else:
        chosen, chosen_val = candidates[pick], val_r2[pick]
    expr, simplified = _finish(chosen.expr, symbols, local, chosen_val)
    evaluate = F.compile_expr(expr, symbols)
    r2, rmse = F.r2_rmse(job.y_test, evaluate(xh))
    shown = F.round_floats(expr, job.precision)
    r2_shown, _ = F.r2_rmse(job.y_test, F.compile_expr(shown, symbols)(xh))
    front = [
        {
            "complexity": c.complexity,
            "loss": c.loss,
            "r2_validation": r,
            "formula": F.render_text(F.round_floats(F.chop(c.expr), job.precision), names),
            "chosen": i == pick,
        }
        for i, (c, r) in sorted(enumerate(zip(candidates, val_r2)), key=lambda t: t[1][0].complexity)
    ]
    present = expr.free_symbols
    sens = np.zeros(len(all_symbols))
    sens[cols] = F.sensitivity(expr, symbols, xh)
    return TargetFit(
        index=job.index,
        expr=expr,
        text=F.render_text(shown, names),
        latex=F.render_latex(shown, names),
        engine_text=chosen.engine_text,
        used=sorted(c for s, c in zip(symbols, cols) if s in present),
        sensitivity=sens,
        r2=r2,
        rmse=rmse,
        r2_displayed=r2_shown,
        r2_validation=chosen_val,
        complexity=chosen.complexity,
        simplified=simplified,
        front=front,
        runtime_s=time.perf_counter() - start,
        info={**result.info, "search_s": search_s},
    )


def run_jobs(
    backend: Backend,
    jobs: Sequence[Job],
    all_symbols: Sequence[sympy.Symbol],
    all_names: Sequence[str],
    *,
    threads: int,
    progress: Progress | None = None,
    description: str = "symbolic regression",
) -> dict[int, TargetFit]:
    """Fit every job, at most ``threads`` CPU threads in all; one progress step per finished target.

    Thread-safe backends run ``min(threads, len(jobs))`` fits at once, each
    with ``threads // workers`` engine threads; others run one fit at a time
    with all ``threads``.
    """
    progress = progress or NullProgress()
    if not jobs:
        return {}
    workers = min(threads, len(jobs)) if backend.thread_safe else 1
    per_fit = max(1, threads // workers)
    jobs = [replace(j, settings=replace(j.settings, threads=per_fit)) for j in jobs]
    results: dict[int, TargetFit] = {}
    if workers == 1:
        for job in progress.track(jobs, total=len(jobs), description=description):
            results[job.index] = fit_target(backend, job, all_symbols, all_names)
        return results
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aeinterp-sr")
    try:
        futures = [pool.submit(fit_target, backend, job, all_symbols, all_names) for job in jobs]
        for fut in progress.track(as_completed(futures), total=len(futures), description=description):
            fit = fut.result()
            results[fit.index] = fit
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results
