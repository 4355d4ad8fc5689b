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

from .._select import resolve_sample, sample_labels
from ..errors import AeinterpError
from ..explanation import Explanation
from ..toolkit.summaries import SUMMARIES, ranking_key
from .figures import SIGNED_UNIT, _figure, _label, _title, overlay
from .layout import grid_values, layout_of
from .summary import explained_rows, shown_note, top_rows

__all__ = ["feature_values", "beeswarm", "waterfall", "dependence", "image_samples", "MAX_POINTS"]

MAX_POINTS = 1000  # samples drawn per beeswarm row (a seeded subset beyond it, said in the title)
ROW_INDEX_ARRAYS = ("explain_rows", "sample_index")


def _needs_local(e: Explanation, view: str) -> np.ndarray:
    if e.local is None:
        raise AeinterpError(
            f"{e.explainer or 'this explanation'} has no per-sample attributions (local), so it has no {view}; its bar summary is exp.plot.bar()"
        )
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
            raise AeinterpError(
                f"unknown target {target!r}; this explanation has {', '.join(e.target_names[:8])}{' ...' if len(e.target_names) > 8 else ''}"
            )
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
    return {"variance_share": "share of the target's variance", "direction": "|direction|", "mean_abs": "mean |attribution|"}.get(
        str(summary), "mean |attribution|"
    )


def beeswarm(
    e: Explanation, target: int | str | None = None, *, data: Any = None, max_features: int = 10, max_targets: int = 4, seed: int = 0
) -> Figure:
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
    ncols = min(2, len(rows))  # two panels a row: readable at a notebook's width
    nrows = int(np.ceil(len(rows) / ncols))
    fig = _figure(4.6 * ncols + 1.2, (0.36 * k + 1.0) * nrows + 0.8)
    grid = fig.subplots(nrows, ncols, squeeze=False)
    for spare in grid.flat[len(rows) :]:
        spare.set_axis_off()
    axes = grid.flat[: len(rows)]
    sc = None
    for ax, r in zip(axes, rows):
        att = np.asarray(local[pick, r, :], dtype=np.float64)
        order = np.argsort(-_rank_key(e, r, att), kind="stable")[:k]
        for pos, f in enumerate(order):
            y = (k - 1 - pos) + _swarm_offsets(att[:, f], rng)
            if values is not None:
                sc = ax.scatter(
                    att[:, f], y, c=_colours(values[pick, f]), cmap="coolwarm", vmin=0, vmax=1, s=7, linewidths=0, rasterized=True
                )
            else:
                ax.scatter(att[:, f], y, color="0.35", s=7, linewidths=0, rasterized=True)
        ax.set_yticks(range(k), [_label(e.feature_names[f]) for f in order][::-1], fontsize=8)
        ax.axvline(0, color="0.4", linewidth=0.7)
        ax.set_title(f"{e.target_names[r]}", fontsize=9)
        ax.set_xlabel("attribution (+ raises the target)", fontsize=8)
        ax.grid(axis="x", alpha=0.3, linewidth=0.5)
    if sc is not None:
        fig.colorbar(sc, ax=list(axes), shrink=0.8, ticks=[0, 1], label="feature value").ax.set_yticklabels(["low", "high"])
    notes = [shown_note(k, len(e.feature_names), "features", _rank_name(e))]
    if target is None:
        notes.append(shown_note(len(rows), len(explained_rows(e)), "targets"))
    notes.append(f"{len(pick)} of {n} samples" if len(pick) < n else f"{n} samples")
    if values is None:
        notes.append("no feature values given: grey")
    fig.suptitle(_title(e, "per-sample attributions", "; ".join(notes), unit=SIGNED_UNIT), fontsize=9)
    return fig


def waterfall(e: Explanation, sample: int | str = 0, target: int | str | None = None, *, top_k: int = 10, data: Any = None) -> Figure:
    """One sample's attributions to one target, stacked from the expected value to the sample's output
    (the largest ``top_k`` by |value|, the rest as one bar). ``sample``: a row label or a position in
    ``local``; ``target``: a name or index (default: the first explained target, z0); ``data``: the
    explained rows or the dataset, to show each feature's value ("age = 61")."""
    local = _needs_local(e, "waterfall")
    pos_ = resolve_sample(e, sample)
    r = _resolve_target(e, target) if target is not None else explained_rows(e)[0]
    contrib = np.asarray(local[pos_, r], dtype=np.float64)
    order = np.argsort(-np.abs(contrib), kind="stable")
    shown, rest = order[:top_k], order[top_k:]
    base_arr = e.arrays.get("expected_value")
    base = float(np.asarray(base_arr).reshape(-1)[r]) if base_arr is not None and np.asarray(base_arr).size == len(e.target_names) else 0.0
    values = feature_values(e, data)
    labels = [_label(e.feature_names[i]) + ("" if values is None else f" = {values[pos_, i]:.3g}") for i in shown]
    steps = list(contrib[shown])
    if len(rest):
        labels.append(f"{len(rest)} other features")
        steps.append(float(contrib[rest].sum()))
    ends = base + np.cumsum(steps)
    lo, hi = min(base, float(ends.min())), max(base, float(ends.max()))
    span = (hi - lo) or max(abs(base), 1.0)
    fig = _figure(7.5, 0.32 * (len(steps) + 2) + 1.4)
    ax = fig.add_subplot()
    start = base
    for i, v in enumerate(steps):
        y = len(steps) - i
        ax.barh(y, v, left=start, color="tab:red" if v > 0 else "tab:blue", height=0.7)
        ax.text(start + v + (0.01 if v >= 0 else -0.01) * span, y, f"{v:+.3g}", va="center", ha="left" if v >= 0 else "right", fontsize=8)
        start += v
    ax.set_xlim(lo - 0.16 * span, hi + 0.16 * span)  # room for the value labels on both sides: inside the axes, clear of the names
    ax.set_ylim(0.4, len(steps) + 0.6)
    ax.set_yticks(range(len(steps), 0, -1), labels, fontsize=9)
    ax.axvline(base, color="0.4", linestyle=":", linewidth=0.8)
    ax.axvline(start, color="0.1", linewidth=0.8)
    ax.grid(axis="x", alpha=0.3, linewidth=0.5)
    base_label = "E[f(background)]" if base_arr is not None else "0 (no expected value saved)"
    ax.set_xlabel(f"{e.target_names[r]}: from {base_label} = {base:.3g} to {base:.3g} + sum = {start:.3g}", fontsize=9)
    name = sample_labels(e)[pos_]
    note = f"{len(shown)} largest of {len(contrib)} features by |attribution|" if len(rest) else f"all {len(contrib)} features"
    fig.suptitle(_title(e, f"sample {name}, {e.target_names[r]}", note, unit=SIGNED_UNIT), fontsize=9)
    return fig


def dependence(e: Explanation, feature: int | str, target: int | str | None = None, *, data: Any = None) -> Figure:
    """Attribution of ``feature`` against its value, one point per sample (needs ``data``); ``target``
    defaults to the one that depends on the feature most."""
    local = _needs_local(e, "dependence plot")
    f = _resolve_feature(e, feature)
    r = _resolve_target(e, target) if target is not None else int(np.argmax(e.importance[:, f]))
    values = feature_values(e, data)
    if values is None:
        raise AeinterpError(
            "a dependence plot needs the feature values: pass data= (the dataset or the explained rows, samples x features)"
        )
    fig = _figure(5.2, 3.8)
    ax = fig.add_subplot()
    ax.scatter(values[:, f], local[:, r, f], s=9, color="tab:purple", alpha=0.7, linewidths=0)
    ax.axhline(0, color="0.5", linewidth=0.6)
    ax.set_xlabel(f"{_label(e.feature_names[f], 40)} (value)")
    ax.set_ylabel(f"attribution to {e.target_names[r]}")
    ax.grid(alpha=0.3, linewidth=0.5)
    fig.suptitle(_title(e, f"dependence on {_label(e.feature_names[f], 40)}", f"{local.shape[0]} samples", unit=SIGNED_UNIT), fontsize=9)
    return fig


def _sample_images(e: Explanation, data: Any, positions: list[int], grid: tuple[int, int]) -> list[np.ndarray | None]:
    """Each picked sample's own image (channels averaged to grey) from ``data``, matched like feature values."""
    if data is None:
        return [None] * len(positions)
    x = np.asarray(data.x_explain if hasattr(data, "x_explain") else data, dtype=np.float64)
    ids = e._sample_ids()
    if len(x) != len(e.local) and len(ids) == len(e.local) and ids.size and ids.max() < len(x):  # type: ignore[arg-type]
        x = x[ids]
    if len(x) != len(e.local) or x[0].size % (grid[0] * grid[1]):  # type: ignore[arg-type]
        raise AeinterpError(
            f"data has {len(x)} rows of {x.shape[1:]}; give the explained rows ({len(e.local)} images of {grid[0]}x{grid[1]})"  # type: ignore[arg-type]
        )  # type: ignore[arg-type]
    images = x.reshape(len(x), -1, grid[0], grid[1]).mean(axis=1)
    return [images[p] for p in positions]


def image_samples(
    e: Explanation, samples: Any = (0, 1, 2, 3), target: Any = None, *, data: Any = None, max_targets: int = 6, data_info: Any = None
) -> Figure:
    """Per-sample image overlays: one row per target (latent), one column per sample; each panel is the
    sample's own image in grey (from ``data``) under its signed attribution (red +, blue −), transparent
    where the attribution is small. ``samples``: row labels or positions; ``target``: names or indices
    (default: the ``max_targets`` most important)."""
    local = _needs_local(e, "per-sample image")
    layout = layout_of(e, data_info)
    if layout.grid_shape is None or layout.cells is None:
        raise AeinterpError(f"{e.explainer or 'this explanation'}: its features ({len(e.feature_names)}) do not lie on an image grid")
    picked = [resolve_sample(e, s) for s in ([samples] if isinstance(samples, (int, str)) else list(samples))]
    if target is None:
        rows = top_rows(e, max_targets)
    else:
        rows = [_resolve_target(e, t) for t in ([target] if isinstance(target, (int, str)) else list(target))]
    maps = grid_values(layout, np.asarray(local[picked], dtype=np.float64)[:, rows])  # (samples, targets, H, W)
    lim = float(np.nanmax(np.abs(maps))) or 1.0
    images = _sample_images(e, data, picked, layout.grid_shape)
    names = sample_labels(e)
    fig = _figure(1.7 * len(picked) + 1.6, 1.7 * len(rows) + 1.2)
    axes = fig.subplots(len(rows), len(picked), squeeze=False)
    mappable = None
    for i, r in enumerate(rows):
        for j, p in enumerate(picked):
            ax = axes[i, j]
            mappable = overlay(ax, maps[j, i], lim, images[j])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(_label(names[p], 16) if e.sample_names is not None else f"sample {names[p]}", fontsize=9)
            if j == 0:
                ax.set_ylabel(e.target_names[r], fontsize=9)
    if mappable is not None:
        fig.colorbar(mappable, ax=axes, shrink=0.7, label="attribution: red +, blue −")
    note = f"{len(picked)} samples x {len(rows)} targets" + ("" if images[0] is not None else "; no data= given: no image beneath")
    fig.suptitle(_title(e, "per-sample attribution over the image", note, unit=SIGNED_UNIT), fontsize=9)
    return fig
