"""Signed per-sample views of an explanation's ``local`` (samples x targets x features):
beeswarm (colour = feature value, as shap draws it), waterfall for one sample, dependence for one feature.

Feature values come from the caller (``data=``: the run's dataset, an array of the explained rows,
or the ``report_values.npz`` the reports save); the Explanation itself holds no inputs. Rows of
``local`` are matched to data rows through ``arrays["sample_index"]`` (or ``explain_rows``) when the
explainer recorded which explained rows it used, else by position when the counts agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..errors import AeinterpError
from ..explanation import Explanation
from .figures import _figure, _hbars, _label, _title
from ..toolkit.summaries import SUMMARIES, ranking_key
from .summary import explained_rows, shown_note, top_rows

__all__ = ["feature_values", "beeswarm", "waterfall", "dependence", "MAX_POINTS"]

MAX_POINTS = 1000  # samples drawn per beeswarm row (a seeded subset beyond it, said in the title)
ROW_INDEX_ARRAYS = ("explain_rows", "sample_index")


def _needs_local(e: Explanation, view: str) -> np.ndarray:
    if e.local is None:
        raise AeinterpError(f"{e.explainer or 'this explanation'} has no per-sample attributions (local), so it has no {view}; its bar summary is exp.plot.bar()")
    return np.asarray(e.local)


def _group_values(data: Any, names: list[str]) -> np.ndarray | None:
    """Explained rows' values per feature group of a dataset (the mean of the group's elements)."""
    x = np.asarray(data.x_explain)
    flat = x.reshape(x.shape[0], -1)
    groups = list(data.groups)
    if [g.name for g in groups] != list(names):
        return None
    return np.stack([flat[:, np.asarray(g.indices)].mean(axis=1) for g in groups], axis=1)


def feature_values(e: Explanation, data: Any) -> np.ndarray | None:
    """``(local samples, features)`` values for colouring, or None when they cannot be matched.

    ``data``: a dataset (``x_explain`` + ``groups``), an array of the explained rows (``(n, features)``
    or ``(n, *sample_shape)`` when every feature is one element), or None.
    """
    if data is None or e.local is None:
        return None
    if hasattr(data, "x_explain") and hasattr(data, "groups"):
        values = _group_values(data, e.feature_names)
    else:
        arr = np.asarray(data, dtype=np.float64)
        values = arr.reshape(arr.shape[0], -1) if arr.ndim >= 2 else None
    if values is None or values.shape[1] != len(e.feature_names):
        return None
    n = e.local.shape[0]
    for key in ROW_INDEX_ARRAYS:
        idx = e.arrays.get(key)
        if idx is not None and np.asarray(idx).ndim == 1 and len(idx) == n and np.issubdtype(np.asarray(idx).dtype, np.integer):
            idx = np.asarray(idx)
            if idx.size and 0 <= idx.min() and idx.max() < values.shape[0]:
                return values[idx]
    return values if values.shape[0] == n else None


def _resolve_target(e: Explanation, target: int | str | None) -> int:
    if target is None:
        return top_rows(e, 1)[0]
    if isinstance(target, str):
        if target not in e.target_names:
            raise AeinterpError(f"unknown target {target!r}; this explanation has {', '.join(e.target_names[:8])}{' ...' if len(e.target_names) > 8 else ''}")
        return e.target_names.index(target)
    if not 0 <= int(target) < len(e.target_names):
        raise AeinterpError(f"target index {target} outside 0..{len(e.target_names) - 1}")
    return int(target)


def _resolve_feature(e: Explanation, feature: int | str) -> int:
    if isinstance(feature, str):
        if feature not in e.feature_names:
            raise AeinterpError(f"unknown feature {feature!r}")
        return e.feature_names.index(feature)
    if not 0 <= int(feature) < len(e.feature_names):
        raise AeinterpError(f"feature index {feature} outside 0..{len(e.feature_names) - 1}")
    return int(feature)


def _swarm_offsets(x: np.ndarray, rng: np.random.Generator, width: float = 0.38) -> np.ndarray:
    """Vertical offsets that spread points where they are dense (a cheap beeswarm)."""
    if x.size < 2 or np.ptp(x) == 0:
        return rng.uniform(-width, width, size=x.size) * 0.5
    bins = np.clip(((x - x.min()) / np.ptp(x) * 60).astype(int), 0, 59)
    counts = np.bincount(bins, minlength=60)
    density = counts[bins] / counts.max()
    return rng.uniform(-1, 1, size=x.size) * width * density


def _colours(v: np.ndarray) -> np.ndarray:
    lo, hi = np.nanpercentile(v, 5), np.nanpercentile(v, 95)
    span = hi - lo if hi > lo else 1.0
    return np.clip((v - lo) / span, 0.0, 1.0)


def _rank_key(e: Explanation, row: int, att: np.ndarray) -> np.ndarray:
    """What the beeswarm orders features by: the importance summary the explainer used, else mean |attribution| of the samples shown."""
    summary = e.extras.get("importance_summary")
    if summary in SUMMARIES and e.importance.shape[1] == att.shape[1]:
        return ranking_key(str(summary), np.asarray(e.importance[row], dtype=np.float64))
    return np.abs(att).mean(axis=0)


def _rank_name(e: Explanation) -> str:
    summary = e.extras.get("importance_summary")
    return {"variance_share": "share of the target's variance", "direction": "|direction|", "mean_abs": "mean |attribution|"}.get(str(summary), "mean |attribution|")


def beeswarm(e: Explanation, target: int | str | None = None, *, data: Any = None, max_features: int = 10, max_targets: int = 4, seed: int = 0) -> Figure:
    """Per target, one row per feature (the ``max_features`` with the largest mean |local|), one point per
    sample at its signed attribution, coloured by the feature's value (blue low, red high) when ``data``
    is given. ``target=None`` draws the ``max_targets`` targets with the largest total importance."""
    local = _needs_local(e, "beeswarm")
    rows = [_resolve_target(e, target)] if target is not None else top_rows(e, max_targets)
    values = feature_values(e, data)
    n = local.shape[0]
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n, MAX_POINTS, replace=False)) if n > MAX_POINTS else np.arange(n)
    k = min(max_features, len(e.feature_names))
    fig = _figure(4.6 * len(rows) + 1.2, 0.36 * k + 1.6)
    axes = fig.subplots(1, len(rows), squeeze=False)[0]
    sc = None
    for ax, r in zip(axes, rows):
        att = np.asarray(local[pick, r, :], dtype=np.float64)
        order = np.argsort(-_rank_key(e, r, att), kind="stable")[:k]
        for pos, f in enumerate(order):
            y = (k - 1 - pos) + _swarm_offsets(att[:, f], rng)
            if values is not None:
                sc = ax.scatter(att[:, f], y, c=_colours(values[pick, f]), cmap="coolwarm", vmin=0, vmax=1, s=7, linewidths=0, rasterized=True)
            else:
                ax.scatter(att[:, f], y, color="0.35", s=7, linewidths=0, rasterized=True)
        ax.set_yticks(range(k), [_label(e.feature_names[f]) for f in order][::-1], fontsize=8)
        ax.axvline(0, color="0.4", linewidth=0.7)
        ax.set_title(f"{e.target_names[r]}", fontsize=9)
        ax.set_xlabel("attribution (+ raises the target)", fontsize=8)
        ax.grid(axis="x", alpha=0.3, linewidth=0.5)
    if sc is not None:
        fig.colorbar(sc, ax=axes, shrink=0.8, ticks=[0, 1], label="feature value").ax.set_yticklabels(["low", "high"])
    notes = [shown_note(k, len(e.feature_names), "features", _rank_name(e))]
    if target is None:
        notes.append(shown_note(len(rows), len(explained_rows(e)), "targets"))
    notes.append(f"{len(pick)} of {n} samples" if len(pick) < n else f"{n} samples")
    if values is None:
        notes.append("no feature values given: grey")
    fig.suptitle(_title(e, "per-sample attributions", "; ".join(notes)), fontsize=9)
    return fig


def waterfall(e: Explanation, sample: int = 0, target: int | str | None = None, *, top_k: int = 10) -> Figure:
    """One sample's attributions to one target, stacked from the expected value to the sample's output
    (the largest ``top_k`` by |value|, the rest as one bar)."""
    local = _needs_local(e, "waterfall")
    if not 0 <= sample < local.shape[0]:
        raise AeinterpError(f"sample {sample} outside 0..{local.shape[0] - 1} (the explained samples of this step)")
    r = _resolve_target(e, target)
    contrib = np.asarray(local[sample, r], dtype=np.float64)
    order = np.argsort(-np.abs(contrib), kind="stable")
    shown, rest = order[:top_k], order[top_k:]
    base_arr = e.arrays.get("expected_value")
    base = float(np.asarray(base_arr).reshape(-1)[r]) if base_arr is not None and np.asarray(base_arr).size == len(e.target_names) else 0.0
    labels = [_label(e.feature_names[i]) for i in shown]
    steps = list(contrib[shown])
    if len(rest):
        labels.append(f"{len(rest)} other features")
        steps.append(float(contrib[rest].sum()))
    fig = _figure(7.0, 0.3 * (len(steps) + 2) + 1.2)
    ax = fig.add_subplot()
    start = base
    for pos, (lab, v) in enumerate(zip(labels, steps)):
        y = len(steps) - pos
        ax.barh(y, v, left=start, color="tab:red" if v > 0 else "tab:blue", height=0.7)
        ax.text(start + v, y, f" {v:+.3g}", va="center", ha="left" if v > 0 else "right", fontsize=7)
        start += v
    ax.set_yticks(range(len(steps), 0, -1), labels, fontsize=8)
    ax.axvline(base, color="0.4", linestyle=":", linewidth=0.8)
    ax.axvline(start, color="0.1", linewidth=0.8)
    base_label = "E[f(background)]" if base_arr is not None else "0 (no expected value saved)"
    ax.set_xlabel(f"target value: from {base_label} = {base:.3g} to {base:.3g} + sum = {start:.3g}", fontsize=8)
    fig.suptitle(_title(e, f"sample {sample}, {e.target_names[r]}", shown_note(len(shown), len(contrib), "features", "|attribution|")), fontsize=9)
    return fig


def dependence(e: Explanation, feature: int | str, target: int | str | None = None, *, data: Any = None) -> Figure:
    """Attribution of ``feature`` against its value, one point per sample (needs ``data``); ``target``
    defaults to the one that depends on the feature most."""
    local = _needs_local(e, "dependence plot")
    f = _resolve_feature(e, feature)
    r = _resolve_target(e, target) if target is not None else int(np.argmax(e.importance[:, f]))
    values = feature_values(e, data)
    if values is None:
        raise AeinterpError("a dependence plot needs the feature values: pass data= (the dataset or the explained rows, samples x features)")
    fig = _figure(5.2, 3.8)
    ax = fig.add_subplot()
    ax.scatter(values[:, f], local[:, r, f], s=9, color="tab:purple", alpha=0.7, linewidths=0)
    ax.axhline(0, color="0.5", linewidth=0.6)
    ax.set_xlabel(f"{_label(e.feature_names[f], 40)} (value)")
    ax.set_ylabel(f"attribution to {e.target_names[r]}")
    ax.grid(alpha=0.3, linewidth=0.5)
    fig.suptitle(_title(e, f"dependence on {_label(e.feature_names[f], 40)}", f"{local.shape[0]} samples"), fontsize=9)
    return fig
