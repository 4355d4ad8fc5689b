"""From the fitted formulas to the ``symbolic_regression`` Explanation: rows, headlines, feature usage.

Rows
    The Explanation covers exactly the targets searched (``dims``, default
    all): its ``target_names`` are theirs, ``extras["dims"]`` their indices
    among all the target's rows. Targets not searched are absent rather than
    rows of zeros, so no report mistakes them for dead latents.

Feature usage (the headline table of a symbolic-regression analysis)
    Computed once, from the searched targets' formulas, and stored in
    ``extras["feature_usage"]`` and the arrays ``usage_count`` /
    ``usage_weighted``; the summary line, the ``usage`` figure and
    ``extras["never_used"]`` (also ``redundant_features``) all read it:

    * ``formulas``: how many formulas use the input (from the expression tree);
    * ``weighted``: the sum of ``max(R^2, 0)`` (held-out) over those formulas,
      so a faithful formula's inputs count more than a poor one's;
    * ``never_used``: inputs no searched formula uses.

Headlines
    One line per target: the formula, its held-out R^2 and the sparse linear
    baseline's; where the chosen formula is the linear one because no closed
    form within the size cap matched it, the line says so: ``z3 ~ linear in
    31 inputs, R^2 0.98; best closed form with <= 25 nodes R^2 0.88``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from aeinterp import Explanation
from aeinterp.targets import Target

if TYPE_CHECKING:
    from .search import TargetFit

__all__ = ["build_explanation", "usage_table", "USAGE_WEIGHTING"]

SELECTION_RULE = (
    "the least complex formula (closed forms from the search and linear candidates from the lasso path) whose R^2 on a "
    "validation part of the fit split is within `parsimony` of the best and at least the sparse linear baseline's; "
    "fidelity is then measured on the held-out explain split"
)
IMPORTANCE_RULES = {
    "fidelity_usage": "max(R^2, 0) of the formula where it uses the input (from the expression tree), else 0",
    "usage": "1 where the formula uses the input (from the expression tree), else 0",
    "sensitivity": "max(R^2, 0) * mean |df/dx| of the formula over the held-out split",
}
USAGE_WEIGHTING = "formulas: how many searched formulas use the input; weighted: the sum of their max(held-out R^2, 0)"
MAX_LISTED = 12  # inputs named in the summary line


def usage_table(usage: np.ndarray, r2: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Feature usage over the searched formulas: counts, fidelity-weighted counts, never-used inputs.

    ``usage`` is ``(formulas, inputs)`` 0/1, ``r2`` the formulas' held-out R^2.
    Rows of the table are sorted by weighted usage, then count, then name order.
    """
    fidelity = np.clip(np.nan_to_num(np.asarray(r2, dtype=float), nan=0.0, neginf=0.0), 0.0, 1.0)
    count = usage.sum(axis=0)
    weighted = (fidelity[:, None] * usage).sum(axis=0)
    n = int(usage.shape[0])
    order = sorted(range(len(names)), key=lambda j: (-weighted[j], -count[j], j))
    table = [
        {"feature": names[j], "formulas": int(count[j]), "share": float(count[j] / n) if n else 0.0, "weighted": float(weighted[j])}
        for j in order
    ]
    never = [names[j] for j in range(len(names)) if count[j] == 0]
    return {"n_formulas": n, "weighting": USAGE_WEIGHTING, "table": table, "never_used": never, "count": count, "weighted": weighted}


def _usage_line(table: dict[str, Any]) -> str:
    used = [row for row in table["table"] if row["formulas"] > 0]
    shown = ", ".join(f"{row['feature']} {row['formulas']}" for row in used[:MAX_LISTED]) + (
        f" (+{len(used) - MAX_LISTED} more)" if len(used) > MAX_LISTED else ""
    )
    never = table["never_used"]
    never_text = ", ".join(never[:MAX_LISTED]) + (f" (+{len(never) - MAX_LISTED} more)" if len(never) > MAX_LISTED else "")
    line = f"feature usage (formulas using each input, of {table['n_formulas']}): {shown or 'none'}"
    return line + f"; never used ({len(never)} of {len(table['table'])}): {never_text or 'none'}"


def _headline(name: str, fit: TargetFit, explained: bool, used_names: list[str]) -> str:
    base = fit.baseline
    flag = "" if explained else "  [NOT EXPLAINED]"
    closed = fit.closed_form
    if fit.family == "linear":
        closed_text = (
            f"best closed form with <= {closed['max_size']} nodes R^2 {closed['r2']:.2f}" if "r2" in closed else "no closed form found"
        )
        return f"{name} ~ linear in {len(fit.used)} inputs, R^2 {fit.r2:.2f}; {closed_text} (stopped by {fit.info.get('stopped_by', '?')}){flag}"
    uses = ", ".join(used_names)
    line = f"{name} = {fit.text}   (held-out R^2 {fit.r2:.3f}, RMSE {fit.rmse:.3g}, {fit.complexity} nodes"
    if base:
        line += f"; sparse linear R^2 {base['r2']:.3f} in {base['n_inputs']} inputs"
    return line + f"; uses {uses or 'nothing'}){flag}"


def build_explanation(
    fits: dict[int, TargetFit],
    names: list[str],
    tnames: list[str],
    target: Target,
    p: Any,
    backend: str,
    backend_version: str,
    n_considered: dict[int, int],
    reduction: str,
) -> Explanation:
    """The Explanation of the searched targets (rows in ``sorted(fits)`` order)."""
    dims = sorted(fits)
    n_t, n_in = len(dims), len(names)
    usage = np.zeros((n_t, n_in))
    sens = np.zeros((n_t, n_in))
    r2, rmse, r2_val, r2_shown, complexity, lin_r2, lin_k, ols_r2, closed_r2 = (np.full(n_t, np.nan) for _ in range(9))
    max_front = max((len(f.front) for f in fits.values()), default=0)
    front_c, front_r2 = np.full((n_t, max_front), np.nan), np.full((n_t, max_front), np.nan)
    records, summary = [], []
    for row, t in enumerate(dims):
        fit = fits[t]
        usage[row, fit.used] = 1.0
        sens[row] = fit.sensitivity
        r2[row], rmse[row], r2_val[row], r2_shown[row], complexity[row] = (
            fit.r2,
            fit.rmse,
            fit.r2_validation,
            fit.r2_displayed,
            fit.complexity,
        )
        if fit.baseline:
            lin_r2[row], lin_k[row] = fit.baseline["r2"], fit.baseline["n_inputs"]
            ols_r2[row] = fit.baseline["ols_r2"] if fit.baseline.get("ols_r2") is not None else np.nan
        closed_r2[row] = fit.closed_form.get("r2", np.nan)
        for i, entry in enumerate(fit.front):
            front_c[row, i], front_r2[row, i] = entry["complexity"], entry["r2_validation"]
        explained = fit.r2 >= p.fidelity_threshold
        used_names = [names[j] for j in fit.used]
        records.append(
            {
                "target": tnames[t],
                "index": t,
                "formula": fit.text,
                "latex": fit.latex,
                "r2": fit.r2,
                "rmse": fit.rmse,
                "r2_validation": fit.r2_validation,
                "r2_displayed": fit.r2_displayed,
                "explained": explained,
                "features": used_names,
                "complexity": fit.complexity,
                "simplified": fit.simplified,
                "family": fit.family,
                "linear_baseline": fit.baseline,
                "closed_form": fit.closed_form,
                "engine_formula": fit.engine_text,
                "inputs_considered": n_considered[t],
                "runtime_s": fit.runtime_s,
                "pareto_front": fit.front,
                **fit.info,
            }
        )
        summary.append(_headline(tnames[t], fit, explained, used_names))
    table = usage_table(usage, r2, list(names))
    summary.append(_usage_line(table))
    fidelity = np.clip(np.nan_to_num(r2, nan=0.0, neginf=0.0), 0.0, 1.0)[:, None]
    importance = {"usage": usage, "fidelity_usage": fidelity * usage, "sensitivity": fidelity * sens}[p.importance]
    count, weighted = table.pop("count"), table.pop("weighted")
    return Explanation(
        importance=importance,
        feature_names=list(names),
        target_names=[tnames[t] for t in dims],
        target=target.value,
        arrays={
            "r2": r2,
            "rmse": rmse,
            "r2_validation": r2_val,
            "r2_displayed": r2_shown,
            "complexity": complexity,
            "usage": usage,
            "sensitivity": sens,
            "pareto_complexity": front_c,
            "pareto_r2_validation": front_r2,
            "linear_r2": lin_r2,
            "linear_inputs": lin_k,
            "ols_r2": ols_r2,
            "closed_form_r2": closed_r2,
            "usage_count": count.astype(np.int64),
            "usage_weighted": weighted,
        },
        extras={
            "backend": backend,
            "backend_version": backend_version,
            "formulas": records,
            "summary": summary,
            "dims": dims,
            "n_rows_total": len(tnames),
            "fidelity_threshold": p.fidelity_threshold,
            "not_explained": [tnames[t] for t in dims if not fits[t].r2 >= p.fidelity_threshold],
            "feature_usage": table,
            "never_used": table["never_used"],
            "redundant_features": table["never_used"],
            "redundant_rule": "inputs that no searched formula uses (the same list as never_used)",
            "selection_rule": SELECTION_RULE,
            "importance_rule": IMPORTANCE_RULES[p.importance],
            "inputs": reduction,
        },
    )
