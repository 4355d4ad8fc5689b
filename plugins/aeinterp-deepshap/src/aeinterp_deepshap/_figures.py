"""Figures of a deepshap result: the additivity check, and attributions per time step for sequences.

Everything is read from the Explanation (``arrays`` and ``extras``), so the
figures can be redrawn from a saved run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aeinterp import Explanation

__all__ = ["figures"]


def figures(explanation: Explanation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    arrays, extras = explanation.arrays, explanation.extras
    if "additivity_max_rel" in arrays:
        out["additivity"] = _additivity(
            explanation, np.asarray(arrays["additivity_max_rel"]), np.asarray(arrays["additivity_mean_rel"]), extras
        )
    if "importance_steps" in arrays:
        out["steps"] = _steps(explanation, np.asarray(arrays["importance_steps"]))
    return out


def _additivity(explanation: Explanation, max_rel: np.ndarray, mean_rel: np.ndarray, extras: dict[str, Any]) -> Any:
    from matplotlib.figure import Figure

    k = len(max_rel)
    fig = Figure(figsize=(max(4.0, min(12.0, 0.3 * k + 2)), 3.2))
    ax = fig.add_subplot()
    pos = np.arange(k)
    floor = 1e-17
    ax.bar(pos - 0.2, np.maximum(max_rel, floor), width=0.4, label="max over samples")
    ax.bar(pos + 0.2, np.maximum(mean_rel, floor), width=0.4, label="mean over samples")
    tol = (extras.get("additivity") or {}).get("tolerance")
    if tol:
        ax.axhline(tol, color="crimson", linestyle="--", linewidth=1, label=f"tolerance {tol:g}")
    ax.set_yscale("log")
    if k <= 40:
        ax.set_xticks(pos, explanation.target_names, rotation=90 if k > 8 else 0, fontsize=7)
    ax.set_ylabel("relative error")
    method = extras.get("method", "")
    ax.set_title(f"additivity of the SHAP values ({method})\n|sum(phi) - (f(x) - E f(background))| / mean |f(x) - E f|", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _steps(explanation: Explanation, steps: np.ndarray) -> Any:
    from matplotlib.figure import Figure

    k, t = steps.shape
    fig = Figure(figsize=(max(4.0, min(12.0, 0.25 * t + 2)), max(2.5, min(10.0, 0.3 * k + 1.5))))
    ax = fig.add_subplot()
    im = ax.imshow(steps, aspect="auto", cmap="viridis")
    ax.set_xlabel("time step")
    if k <= 40:
        ax.set_yticks(np.arange(k), explanation.target_names, fontsize=7)
    ax.set_title("mean |SHAP| per time step (all features)", fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig
