"""Drawing primitives shared by the figures: image tile grids, heatmaps, sequence panels.

Figures are built with ``matplotlib.figure.Figure`` (never pyplot) and use a
constrained layout so labels do not overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["new_figure", "as_image", "image_grid", "heatmap", "panel_grid", "IMAGE_CMAP", "DIVERGING_CMAP"]

IMAGE_CMAP = "gray_r"  # ink dark on white, as digits are usually shown
DIVERGING_CMAP = "RdBu_r"


def new_figure(width: float, height: float) -> Any:
    """A constrained-layout figure of at most 24 x 24 inches."""
    from matplotlib.figure import Figure

    return Figure(figsize=(min(max(width, 3.0), 24.0), min(max(height, 2.0), 24.0)), layout="constrained")


def as_image(flat: np.ndarray, sample_shape: Sequence[int], vmin: float, vmax: float) -> np.ndarray:
    """One flattened image sample as ``(H, W)`` (one channel, or the channel mean) or ``(H, W, 3)`` RGB in [0, 1]."""
    c, h, w = (int(s) for s in sample_shape)
    img = np.asarray(flat, dtype=np.float64).reshape(c, h, w)
    if c == 3:
        span = vmax - vmin if vmax > vmin else 1.0
        return np.clip((img.transpose(1, 2, 0) - vmin) / span, 0.0, 1.0)
    return img.mean(axis=0)


def image_grid(
    fig: Any,
    tiles: np.ndarray,
    sample_shape: Sequence[int],
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    vmin: float,
    vmax: float,
    cmap: str = IMAGE_CMAP,
) -> np.ndarray:
    """Draw ``tiles`` ``(rows, cols, D)`` as a grid of image axes; returns the ``(rows, cols)`` axes.

    Tiles that are all NaN are left blank (their axis is switched off).
    """
    rows, cols = tiles.shape[:2]
    axes = fig.subplots(rows, cols, squeeze=False)
    for i in range(rows):
        for j in range(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_linewidth(0.5)
                spine.set_color("0.6")
            tile = tiles[i, j]
            if np.all(np.isnan(tile)):
                ax.set_facecolor("0.95")
            else:
                ax.imshow(as_image(tile, sample_shape, vmin, vmax), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            if j == 0:
                ax.set_ylabel(row_labels[i], rotation=0, ha="right", va="center", fontsize=9)
            if i == 0:
                ax.set_title(col_labels[j], fontsize=8)
    return axes


def heatmap(
    fig: Any,
    ax: Any,
    matrix: np.ndarray,
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    colorbar_label: str,
    limit: float | None = None,
    cmap: str = DIVERGING_CMAP,
) -> Any:
    """A diverging heatmap centred on 0 (clipped at ``limit``), with labels and a colour bar."""
    values = np.asarray(matrix, dtype=np.float64)
    finite = values[np.isfinite(values)]
    vmax = limit if limit is not None else (float(np.abs(finite).max()) if finite.size else 1.0)
    vmax = vmax if vmax > 0 else 1.0
    im = ax.imshow(np.clip(values, -vmax, vmax), cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(row_labels)), labels=list(row_labels), fontsize=8)
    ax.set_xticks(range(len(col_labels)), labels=list(col_labels), fontsize=7, rotation=90)
    fig.colorbar(im, ax=ax, label=colorbar_label, shrink=0.8)
    return im


def panel_grid(
    fig: Any,
    rows: Sequence[str],
    cols: Sequence[str],
    draw: Callable[[Any, int, int], None],
    *,
    xlabel: str = "",
) -> np.ndarray:
    """A grid of small line-plot panels, ``draw(ax, row, col)`` filling each one."""
    axes = fig.subplots(len(rows), len(cols), squeeze=False, sharex=True)
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax = axes[i, j]
            draw(ax, i, j)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.25, linewidth=0.5)
            if i == 0:
                ax.set_title(cols[j], fontsize=9)
            if j == 0:
                ax.set_ylabel(rows[i], fontsize=9)
            if i == len(rows) - 1 and xlabel:
                ax.set_xlabel(xlabel, fontsize=8)
    return axes
