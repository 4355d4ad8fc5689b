"""Fit, select and measure one formula per target; run the targets in parallel.

Candidates
    The backend returns its Pareto front (complexity vs training error). The
    linear candidates of :mod:`.linear` (relaxed lasso path and least squares,
    fitted on the same training rows) join it, so a target that is nearly
    linear in many inputs is never explained worse than a linear regression.

Adaptive size cap
    With ``grow`` on, the search is repeated with ``max_size`` doubled (up to
    ``max_size_limit``) while the best validation R^2 of its Pareto front
    improves by more than ``grow_tol``, within the target's time budget (each
    round but the last may use half of what is left). ``info["stopped_by"]``
    says what ended it: ``converged`` (the front stopped improving),
    ``size limit``, ``time budget``, ``exact`` (validation R^2 reached 1) or
    ``fixed`` (growing off).

Selection (the parsimony rule)
    Each formula is scored by R^2 on a **validation** part of the fit split
    (never seen by the search). Let ``best`` be the highest validation R^2; the
    chosen formula is the *least complex* one whose validation R^2 is at least
    ``best - parsimony`` and at least the sparse linear baseline's (ties:
    fewer inputs, then higher validation R^2). A formula using more inputs
    than the baseline must beat it by ``parsimony``.

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
from .backend_types import Backend, Candidate, SearchSettings
from .linear import linear_candidates

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
    linear: bool = True
    grow: bool = False
    max_size_limit: int = 100
    grow_tol: float = 0.002


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
    family: str = "closed form"
    baseline: dict[str, Any] = field(default_factory=dict)
    closed_form: dict[str, Any] = field(default_factory=dict)


def choose(
    val_r2: Sequence[float],
    complexity: Sequence[int],
    parsimony: float,
    *,
    floor: float | None = None,
    n_inputs: Sequence[int] | None = None,
    floor_inputs: int | None = None,
) -> int | None:
    """Index of the least complex candidate within ``parsimony`` of the best validation R^2.

    ``floor`` (the sparse linear baseline's validation R^2) is a lower bound
    every eligible candidate must reach; one using more than ``floor_inputs``
    inputs must reach ``floor + parsimony``. Ties go to fewer inputs, then to
    the higher validation R^2.
    """
    finite = [i for i, r in enumerate(val_r2) if math.isfinite(r)]
    if not finite:
        return None
    best = max(val_r2[i] for i in finite)
    inputs = list(n_inputs) if n_inputs is not None else [0] * len(val_r2)

    def ok(i: int) -> bool:
        if val_r2[i] < best - parsimony:
            return False
        if floor is None:
            return True
        need = floor + (parsimony if floor_inputs is not None and inputs[i] > floor_inputs else 0.0)
        return val_r2[i] >= need

    eligible = [i for i in finite if ok(i)] or [max(finite, key=lambda i: val_r2[i])]
    return min(eligible, key=lambda i: (complexity[i], inputs[i], -val_r2[i]))


def _finish(raw: sympy.Expr, symbols: Sequence[sympy.Symbol], job: Job, engine_r2: float) -> tuple[sympy.Expr, bool]:
    scale = float(np.std(job.y_train))
    expr = F.prune_terms(F.simplify(F.chop(raw)), symbols, job.x_val, scale)
    r2, _ = F.r2_rmse(job.y_val, F.compile_expr(expr, symbols)(job.x_val))
    if math.isfinite(engine_r2) and not r2 >= engine_r2 - 1e-3:
        return raw, False
    return expr, expr != raw


def _search_rounds(
    backend: Backend, job: Job, xt: np.ndarray, xv: np.ndarray, symbols: Sequence[sympy.Symbol], names: Sequence[str], start: float
) -> tuple[list[Candidate], list[float], dict[str, Any]]:
    """Run the backend, growing ``max_size`` while the validation front improves; all rounds' candidates."""
    settings = job.settings
    budget = settings.time_budget
    deadline = None if budget is None else start + budget
    size, best_prev = settings.max_size, -math.inf
    limit = max(job.max_size_limit, size)
    candidates: list[Candidate] = []
    val_r2: list[float] = []
    rounds: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    stopped_by = "fixed"
    while True:
        last = not job.grow or size >= limit
        round_budget = None
        if deadline is not None:
            left = deadline - time.perf_counter()
            round_budget = max(1.0, left if last else left / 2)
        t0 = time.perf_counter()
        result = backend.search(xt, job.y_train, symbols, names, replace(settings, max_size=size, time_budget=round_budget))
        cands = result.candidates
        vals = [F.r2_rmse(job.y_val, c.predict(xv))[0] for c in cands]
        candidates += cands
        val_r2 += vals
        finite = [v for v in vals if math.isfinite(v)]
        front_best = max(finite) if finite else -math.inf
        rounds.append({"max_size": size, "best_r2_validation": front_best, "search_s": time.perf_counter() - t0, **result.info})
        info.update(result.info)
        if not job.grow:
            break
        if front_best >= 1.0 - 1e-9:
            stopped_by = "exact"
            break
        if len(rounds) > 1 and not front_best > best_prev + job.grow_tol:
            stopped_by = "converged"
            break
        if size >= limit:
            stopped_by = "size limit"
            break
        if deadline is not None and deadline - time.perf_counter() < 1.0:
            stopped_by = "time budget"
            break
        best_prev = max(best_prev, front_best)
        size = min(limit, 2 * size)
    info.update(rounds=rounds, size_cap=rounds[-1]["max_size"], stopped_by=stopped_by)
    return candidates, val_r2, info


def _inputs_of(expr: sympy.Expr, symbols: Sequence[sympy.Symbol]) -> int:
    present = expr.free_symbols
    return sum(1 for s in symbols if s in present)


def _pareto(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows not dominated in (complexity, validation R^2), by complexity; the chosen row always kept."""
    out: list[dict[str, Any]] = []
    best = -math.inf
    for row in sorted(rows, key=lambda r: (r["complexity"], -r["r2_validation"] if math.isfinite(r["r2_validation"]) else math.inf)):
        if row["chosen"] or (math.isfinite(row["r2_validation"]) and row["r2_validation"] > best):
            out.append(row)
            if math.isfinite(row["r2_validation"]):
                best = max(best, row["r2_validation"])
    return out


def fit_target(backend: Backend, job: Job, all_symbols: Sequence[sympy.Symbol], all_names: Sequence[str]) -> TargetFit:
    """Search (growing the size cap), add the linear candidates, select by validation R^2, finish, measure on the held-out split."""
    start = time.perf_counter()
    cols = [int(c) for c in job.columns]
    symbols = [all_symbols[c] for c in cols]
    names = {s: all_names[c] for s, c in zip(symbols, cols)}
    xt, xv, xh = job.x_train[:, cols], job.x_val[:, cols], job.x_test[:, cols]
    local = replace(job, x_train=xt, x_val=xv, x_test=xh)
    gp, gp_val, info = _search_rounds(backend, job, xt, xv, symbols, [all_names[c] for c in cols], start)
    search_s = time.perf_counter() - start
    lin = linear_candidates(xt, job.y_train, symbols) if job.linear else None
    lin_cands = ([*lin.candidates, lin.ols] if lin.ols is not None else []) if lin is not None else []
    lin_val = [F.r2_rmse(job.y_val, c.predict(xv))[0] for c in lin_cands]
    lin_inputs = [_inputs_of(c.expr, symbols) for c in lin_cands]
    candidates = gp + lin_cands
    val_r2 = gp_val + lin_val
    n_inputs = [_inputs_of(c.expr, symbols) for c in gp] + lin_inputs
    family = ["closed form"] * len(gp) + ["linear"] * len(lin_cands)
    base = choose(lin_val, [c.complexity for c in lin_cands], job.parsimony) if lin_cands else None
    floor = lin_val[base] if base is not None else None
    pick = choose(
        val_r2,
        [c.complexity for c in candidates],
        job.parsimony,
        floor=floor,
        n_inputs=n_inputs,
        floor_inputs=lin_inputs[base] if base is not None else None,
    )
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
    rows = [
        {
            "complexity": c.complexity,
            "loss": c.loss,
            "r2_validation": r,
            "formula": F.render_text(F.round_floats(F.chop(c.expr), job.precision), names),
            "chosen": i == pick,
            "family": family[i],
            "n_inputs": n_inputs[i],
        }
        for i, (c, r) in enumerate(zip(candidates, val_r2))
    ]
    baseline: dict[str, Any] = {}
    if base is not None:
        b = lin_cands[base]
        baseline = {
            "method": "relaxed lasso (LARS path, least-squares refit), fewest inputs within parsimony of the best linear validation R^2",
            "r2": F.r2_rmse(job.y_test, b.predict(xh))[0],
            "r2_validation": lin_val[base],
            "n_inputs": lin_inputs[base],
            "complexity": b.complexity,
            "ols_r2": F.r2_rmse(job.y_test, lin.ols.predict(xh))[0] if lin is not None and lin.ols is not None else None,
            "ols_inputs": lin_inputs[-1] if lin_cands else None,
        }
    closed: dict[str, Any] = {"max_size": info["size_cap"]}
    finite_gp = [i for i, v in enumerate(gp_val) if math.isfinite(v)]
    if finite_gp:
        g = max(finite_gp, key=lambda i: (gp_val[i], -gp[i].complexity))
        closed.update(
            r2=F.r2_rmse(job.y_test, gp[g].predict(xh))[0], r2_validation=gp_val[g], complexity=gp[g].complexity, n_inputs=n_inputs[g]
        )
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
        front=_pareto(rows),
        runtime_s=time.perf_counter() - start,
        info={**info, "search_s": search_s},
        family=family[pick] if pick is not None else "constant",
        baseline=baseline,
        closed_form=closed,
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
