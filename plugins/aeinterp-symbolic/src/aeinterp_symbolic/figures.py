"""Figures of a ``symbolic_regression`` result, drawn from its saved arrays only."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from aeinterp import Explanation

__all__ = ["fidelity_figure", "pareto_figure", "usage_figure"]

MAX_BARS = 60


def fidelity_figure(explanation: Explanation) -> Figure:
    """Held-out R^2 of each fitted target's formula, with the "explained" threshold (red: below it)."""
    r2 = np.asarray(explanation.arrays["r2"], dtype=float)
    names = list(explanation.target_names)
    if len(r2) != len(names):  # results of 0.1.0 kept a NaN row for every target left out by `dims`
        fitted = [int(t) for t in explanation.extras.get("dims", range(len(r2)))]
        r2, names = r2[fitted], [names[t] for t in fitted]
    threshold = float(explanation.extras.get("fidelity_threshold", 0.9))
    shown = np.clip(np.nan_to_num(r2, nan=0.0, neginf=0.0), 0.0, 1.0)
    fig = Figure(figsize=(max(4.0, 0.35 * len(names) + 2.0), 3.2))
    ax = fig.add_subplot()
    colors = ["tab:green" if v >= threshold else "tab:red" for v in np.nan_to_num(r2, nan=-np.inf)]
    ax.bar(np.arange(len(names)), shown, color=colors)
    ax.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_xticks(np.arange(len(names)), names, rotation=90 if len(names) > 12 else 0, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("held-out R$^2$ of the formula")
    ax.set_title("Symbolic regression fidelity")
    linear = explanation.arrays.get("linear_r2")
    if linear is not None and len(linear) == len(r2) and np.isfinite(linear).any():
        ax.scatter(
            np.arange(len(names)),
            np.clip(np.nan_to_num(linear, nan=0.0), 0.0, 1.0),
            marker="_",
            s=120,
            color="black",
            label="sparse linear baseline",
            zorder=3,
        )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def usage_figure(explanation: Explanation) -> Figure:
    """Feature usage: how many searched formulas use each input (bar), and the fidelity-weighted count (dark bar).

    Inputs are sorted by weighted usage; at most ``MAX_BARS`` used inputs are
    drawn, and the never-used ones are counted in the title.
    """
    usage = explanation.extras.get("feature_usage") or {}
    rows = [r for r in usage.get("table", []) if r["formulas"] > 0][:MAX_BARS]
    never = usage.get("never_used", [])
    n = usage.get("n_formulas", 0)
    fig = Figure(figsize=(max(4.0, 0.28 * len(rows) + 2.0), 3.4))
    ax = fig.add_subplot()
    pos = np.arange(len(rows))
    ax.bar(pos, [r["formulas"] for r in rows], color="tab:blue", alpha=0.35, label="formulas using it")
    ax.bar(pos, [r["weighted"] for r in rows], color="tab:blue", width=0.5, label="weighted by held-out R$^2$")
    ax.set_xticks(pos, [r["feature"] for r in rows], rotation=90, fontsize=7)
    ax.set_ylabel(f"formulas (of {n})")
    ax.set_title(f"Feature usage across formulas; never used: {len(never)} of {len(usage.get('table', []))} inputs", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def pareto_figure(explanation: Explanation) -> Figure:
    """Validation R^2 against complexity along each target's Pareto front; the chosen formula marked."""
    comp = np.asarray(explanation.arrays["pareto_complexity"], dtype=float)
    r2 = np.asarray(explanation.arrays["pareto_r2_validation"], dtype=float)
    chosen_c = np.asarray(explanation.arrays["complexity"], dtype=float)
    chosen_r2 = np.asarray(explanation.arrays["r2_validation"], dtype=float)
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    for t, name in enumerate(explanation.target_names):
        ok = np.isfinite(comp[t]) & np.isfinite(r2[t]) if comp.size else np.zeros(0, bool)
        if not ok.any():
            continue
        (line,) = ax.plot(comp[t, ok], np.clip(r2[t, ok], -0.1, 1.0), marker=".", linewidth=1, label=name)
        if np.isfinite(chosen_c[t]) and np.isfinite(chosen_r2[t]):
            ax.scatter([chosen_c[t]], [max(-0.1, min(1.0, chosen_r2[t]))], s=60, facecolors="none", edgecolors=line.get_color())
    ax.set_xlabel("complexity (nodes)")
    ax.set_ylabel("validation R$^2$")
    ax.set_title("Pareto fronts (circle: chosen formula)")
    if len(explanation.target_names) <= 12:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
