"""Figure builders for global importance: drawn to fit the data kind, never dropping targets silently.

- :func:`importance_figure` picks the view: bars for one target, ``H x W`` maps for images,
  ``feature x time`` maps for sequences, a heatmap for narrow tabular data and top-k bars per
  target (plus the aggregate of the rest) for wide tabular data.
- :func:`bar_summary` is the model-level ranking of inputs over all explained targets.

Every builder returns a ``matplotlib.figure.Figure`` (no pyplot, no global state) whose title says
what is shown ("top 40 of 200 targets by total importance") and in which unit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..explanation import Explanation
from .layout import Layout, element_maps, layout_of
from .summary import explained_rows, shown_note, top_columns, top_rows, unit_of

__all__ = [
    "importance_figure",
    "heatmap_figure",
    "bar_summary",
    "target_bars",
    "topk_figure",
    "image_maps",
    "sequence_maps",
    "MAX_TARGETS",
    "TOP_K",
    "DIVERGING",
    "SEQUENTIAL",
]

MAX_TARGETS = 40  # targets drawn in one figure; the rest are named in the title and kept in the HTML tables
MAX_HEATMAP_FEATURES = 40  # wider tabular data is drawn as top-k bars per target
TOP_K = 12
DIVERGING = "RdBu_r"
SEQUENTIAL = "magma_r"


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(min(max(width, 4.0), 22.0), min(max(height, 2.6), 22.0)), layout="constrained")


def _label(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


#: the unit line of signed per-sample figures (waterfall, beeswarm, dependence, per-sample maps)
SIGNED_UNIT = "signed attribution per sample, in the target's units"


def _title(e: Explanation, what: str, note: str = "", *, unit: str | None = None) -> str:
    import textwrap

    head = f"{e.explainer or 'explanation'} on {e.target}: {what}"
    lines = [head] + ([note] if note else []) + [f"[{unit or unit_of(e)}]"]
    return "\n".join(textwrap.fill(line, 90) for line in lines)


def importance_figure(
    e: Explanation, data_info: Mapping[str, Any] | None = None, *, max_targets: int = MAX_TARGETS, top_k: int = TOP_K
) -> Figure:
    """The global view of ``e`` that fits its data (see the module docstring)."""
    rows = explained_rows(e)
    layout = layout_of(e, data_info)
    if len(rows) == 1:
        return target_bars(e, rows[0], top_k=max(top_k, 20))
    if layout.kind == "image" and element_maps(e, layout) is not None:
        return image_maps(e, layout, max_targets=max_targets)
    if layout.kind == "sequence" and element_maps(e, layout) is not None:
        return sequence_maps(e, layout, max_targets=min(max_targets, 12))
    if len(e.feature_names) > MAX_HEATMAP_FEATURES:
        return topk_figure(e, top_k=top_k, max_targets=min(max_targets, 12))
    return heatmap_figure(e, max_targets=max_targets)


def heatmap_figure(e: Explanation, *, max_targets: int = MAX_TARGETS, max_features: int = MAX_HEATMAP_FEATURES) -> Figure:
    """Targets x features, the most important ``max_targets`` x ``max_features`` (both said in the title)."""
    rows = top_rows(e, max_targets)
    cols = sorted(top_columns(e, max_features, explained_rows(e)))
    note = shown_note(len(rows), len(e.target_names), "targets")
    if len(cols) < len(e.feature_names):
        note += "; " + shown_note(len(cols), len(e.feature_names), "features")
    skipped = len(e.target_names) - len(explained_rows(e))
    if skipped:
        note += f"; {skipped} targets not explained by this step"
    fig = _figure(3.2 + 0.22 * len(cols), 2.2 + 0.28 * len(rows))
    ax = fig.add_subplot()
    im = ax.imshow(e.importance[np.ix_(rows, cols)], aspect="auto", cmap=SEQUENTIAL, interpolation="nearest")
    ax.set_yticks(range(len(rows)), [e.target_names[r] for r in rows], fontsize=8 if len(rows) > 20 else 9)
    ax.set_xticks(range(len(cols)), [_label(e.feature_names[c]) for c in cols], rotation=90, fontsize=8 if len(cols) > 24 else 9)
    ax.set_title(_title(e, "importance", note), fontsize=9)
    fig.colorbar(im, ax=ax, label="importance", shrink=0.85)
    return fig


def _ranked(values: np.ndarray, k: int) -> tuple[np.ndarray, float, int]:
    order = np.argsort(-values, kind="stable")
    shown, rest = order[:k], order[k:]
    return shown, float(values[rest].sum()), len(rest)


def _hbars(
    ax: Any, labels: Sequence[str], values: np.ndarray, err: np.ndarray | None, rest: tuple[float, int] | None, *, color: str = "tab:blue"
) -> None:
    """Ranked horizontal bars; the features not shown are one grey line of text under them (their sum as a
    number, never as a bar: a long tail summed would dwarf the bars that matter and squeeze their scale)."""
    labels = [_label(n) for n in labels]
    vals = np.asarray(values, dtype=np.float64)
    pos = np.arange(len(vals))[::-1]
    ax.barh(
        pos, vals, xerr=None if err is None else list(err), color=color, capsize=2 if err is not None else 0, error_kw={"linewidth": 0.8}
    )
    ax.set_yticks(pos, labels, fontsize=9)
    if rest is not None and rest[1] > 0:
        ax.text(
            0.99,
            -0.9,
            f"+ {rest[1]} other features, sum {rest[0]:.3g} (not drawn)",
            transform=ax.get_yaxis_transform(),
            ha="right",
            va="center",
            fontsize=8,
            color="0.35",
            style="italic",
        )
        ax.set_ylim(-1.4, len(vals) - 0.4)
    ax.axvline(0, color="0.3", linewidth=0.6)
    ax.grid(axis="x", alpha=0.3, linewidth=0.5)


def target_bars(e: Explanation, row: int, *, top_k: int = 20) -> Figure:
    """One target's importance as ranked bars (with its std where there is a spread)."""
    values = e.importance[row]
    shown, rest, n_rest = _ranked(values, top_k)
    err = None if e.std is None or not np.any(e.std[row] > 0) else e.std[row][shown]
    fig = _figure(6.5, 1.2 + 0.26 * (len(shown) + 1))
    ax = fig.add_subplot()
    _hbars(ax, [e.feature_names[i] for i in shown], values[shown], err, (rest, n_rest))
    ax.set_xlabel("importance" + (" (bars: ± std)" if err is not None else ""))
    note = shown_note(len(shown), len(values), "features", "importance")
    stability = e.extras.get("stability")
    if isinstance(stability, dict) and isinstance(stability.get("overlap"), list) and row < len(stability["overlap"]):
        note += f"; top-{stability.get('topk')} split-half overlap {float(stability['overlap'][row]):.2f}"
    ax.set_title(_title(e, f"{e.target_names[row]}", note), fontsize=9)
    return fig


def bar_summary(e: Explanation, *, top_k: int = 20) -> Figure:
    """The model-level ranking: mean importance of each input over all explained targets, with the mean
    std where the explainer has repeats, and the sum of the features not shown."""
    rows = explained_rows(e)
    values = e.importance[rows].mean(axis=0)
    shown, rest, n_rest = _ranked(values, top_k)
    err = None
    if e.std is not None and np.any(e.std[rows] > 0):
        err = np.sqrt((e.std[rows] ** 2).mean(axis=0))[shown]
    fig = _figure(6.5, 1.4 + 0.26 * (len(shown) + 1))
    ax = fig.add_subplot()
    _hbars(ax, [e.feature_names[i] for i in shown], values[shown], err, (rest, n_rest), color="tab:purple")
    ax.set_xlabel(f"mean importance over {len(rows)} targets" + (" (bars: ± RMS std over repeats)" if err is not None else ""))
    ax.set_title(
        _title(e, "input ranking over all targets", shown_note(len(shown), len(values), "features", "mean importance")), fontsize=9
    )
    return fig


def topk_figure(e: Explanation, *, top_k: int = TOP_K, max_targets: int = 16) -> Figure:
    """Wide data: for each target its ``top_k`` features as bars with readable labels, and the rest summed."""
    rows = top_rows(e, max_targets)
    ncols = min(3, len(rows))  # at most ~10 inches wide: readable where a notebook shows it
    nrows = int(np.ceil(len(rows) / ncols))
    fig = _figure(3.4 * ncols, (0.24 * (top_k + 1) + 1.0) * nrows + 0.8)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(rows):
            ax.set_axis_off()
            continue
        r = rows[i]
        shown, rest, n_rest = _ranked(e.importance[r], top_k)
        _hbars(ax, [e.feature_names[j] for j in shown], e.importance[r][shown], None, (rest, n_rest))
        ax.set_title(e.target_names[r], fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    note = shown_note(len(rows), len(e.target_names), "targets") + f"; top {top_k} of {len(e.feature_names)} features each"
    fig.suptitle(_title(e, "importance", note), fontsize=9)
    return fig


def _grey(image: Any, grid: tuple[int, int]) -> np.ndarray:
    """``image`` (``H x W``, or with channels first or last) as one grey ``H x W`` array."""
    arr = np.asarray(image, dtype=np.float64)
    h, w = grid
    if arr.size == h * w:
        return arr.reshape(h, w)
    if arr.ndim == 3 and arr.shape[-2:] == (h, w):
        return arr.mean(axis=0)
    if arr.ndim == 3 and arr.shape[:2] == (h, w):
        return arr.mean(axis=2)
    raise ValueError(f"over= has shape {arr.shape}; give one {h}x{w} image (channels first or last)")


def overlay(ax: Any, amap: np.ndarray, lim: float, image: np.ndarray | None = None, *, signed: bool = True) -> Any:
    """Draw ``amap`` on ``ax``: over ``image`` (grey, full contrast) as a transparent map whose opacity grows
    with |value| (so the image shows where the attribution is small), alone as an opaque map otherwise.
    Returns a mappable for the colour bar."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cmap = colormaps[DIVERGING if signed else SEQUENTIAL]
    norm = Normalize(-lim if signed else 0.0, lim)
    if image is None:
        return ax.imshow(amap, cmap=cmap, norm=norm, interpolation="nearest")
    ax.imshow(image, cmap="gray", interpolation="nearest", alpha=0.6)  # a lighter image: the colours stay readable on it
    rgba = cmap(norm(np.nan_to_num(amap)))
    rgba[..., 3] = np.clip(np.abs(np.nan_to_num(amap)) / lim, 0.0, 1.0) ** 0.7 * 0.9
    ax.imshow(rgba, interpolation="nearest")
    return ScalarMappable(norm=norm, cmap=cmap)


def _map_targets(e: Explanation, max_targets: int) -> list[int]:
    return top_rows(e, max_targets)


def image_maps(
    e: Explanation,
    layout: Layout | None = None,
    *,
    max_targets: int = MAX_TARGETS,
    over: np.ndarray | None = None,
    data_info: Mapping[str, Any] | None = None,
) -> Figure:
    """One ``H x W`` map per target on the image grid, signed values on a diverging scale shared by
    all panels (importance on a sequential one); with ``over`` (one image, ``H x W`` or with channels) each
    map is a transparent overlay on it (opaque where |value| is large); per-sample overlays are
    ``exp.plot.image(samples=[...], data=X)``."""
    layout = layout or layout_of(e, data_info)
    got = element_maps(e, layout)
    if got is None or layout.grid_shape is None:
        raise ValueError(f"{e.explainer or 'this explanation'}: its features ({len(e.feature_names)}) do not lie on an image grid")
    maps, what = got
    rows = _map_targets(e, max_targets)
    signed = bool(np.nanmin(maps[rows]) < 0)
    lim = float(np.nanmax(np.abs(maps[rows]))) or 1.0
    ncols = min(6, len(rows))
    nrows = int(np.ceil(len(rows) / ncols))
    fig = _figure(1.5 * ncols + 1.4, 1.6 * nrows + 1.0)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    im = None
    under = None if over is None else _grey(over, layout.grid_shape)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= len(rows):
            ax.set_axis_off()
            continue
        im = overlay(ax, maps[rows[i]], lim, under, signed=signed)
        ax.set_title(e.target_names[rows[i]], fontsize=9)
    h, w = layout.grid_shape
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.7, label=("red +, blue −" if signed else "importance"))
    unit = "signed: red raises the target, blue lowers it; in the target's units" if signed else None
    fig.suptitle(_title(e, f"{what} on the {h}x{w} image", shown_note(len(rows), len(e.target_names), "targets"), unit=unit), fontsize=9)
    return fig


def sequence_maps(
    e: Explanation, layout: Layout | None = None, *, max_targets: int = 12, data_info: Mapping[str, Any] | None = None
) -> Figure:
    """Per target: a feature x time map (signed where possible, one shared scale) and a per-feature bar."""
    layout = layout or layout_of(e, data_info)
    got = element_maps(e, layout)
    if got is None or layout.grid_shape is None:
        raise ValueError(f"{e.explainer or 'this explanation'}: its features do not lie on a time x feature grid")
    maps, what = got  # (k, T, F)
    rows = _map_targets(e, max_targets)
    t, f = layout.grid_shape
    feats = list(layout.col_labels) or [f"f{j}" for j in range(f)]
    signed = bool(np.nanmin(maps[rows]) < 0)
    lim = float(np.nanmax(np.abs(maps[rows]))) or 1.0
    fig = _figure(8.5, (0.22 * f + 0.7) * len(rows) + 1.0)
    axes = fig.subplots(len(rows), 2, squeeze=False, width_ratios=[4, 1])
    im = None
    if list(e.feature_names) == feats:  # feature groups over all steps: their own importance
        per_feature, bar_title = e.importance, "importance"
    else:
        per_feature, bar_title = np.nansum(np.abs(maps), axis=1), "sum |.| over time"  # (k, F)
    for i, r in enumerate(rows):
        ax, bx = axes[i]
        im = ax.imshow(
            maps[r].T,
            aspect="auto",
            cmap=DIVERGING if signed else SEQUENTIAL,
            vmin=-lim if signed else 0.0,
            vmax=lim,
            interpolation="nearest",
        )
        ax.set_yticks(range(f), [_label(n, 18) for n in feats], fontsize=8)
        ax.set_ylabel(e.target_names[r], fontsize=9)
        if i == len(rows) - 1:
            ax.set_xlabel("time step")
        bx.barh(np.arange(f), per_feature[r], color="tab:blue")
        bx.set_yticks(range(f), [])
        bx.invert_yaxis()
        bx.tick_params(axis="x", labelsize=8)
        if i == 0:
            bx.set_title(bar_title, fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes[:, 0], shrink=0.7, label=("red +, blue −" if signed else "importance"))
    fig.suptitle(_title(e, f"{what}, feature x time ({t} steps)", shown_note(len(rows), len(e.target_names), "targets")), fontsize=9)
    return fig
