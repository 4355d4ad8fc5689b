"""Figures of latent traversals and component contributions, drawn from a finished explanation."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import Geometry, columns_to_show, rows_to_show
from ._plots import DIVERGING_CMAP, image_grid, new_figure, panel_grid

__all__ = ["traversal_figures", "contribution_figures"]

MAX_ROWS = 16
MAX_COLUMNS = 40
MAX_REFERENCE_FIGURES = 4


def _row_label(name: str, values: np.ndarray) -> str:
    return f"{name}\n{values[0]:.2g} .. {values[-1]:.2g}"


def traversal_figures(explanation: Any) -> dict[str, Any]:
    """One figure per reference (``grid``, ``grid_ref1``, ...): rows = latents, columns = sweep steps."""
    arrays = explanation.arrays
    geo = Geometry.from_extras(explanation.extras)
    decoded = np.asarray(arrays["decoded"])
    r, k, s = decoded.shape[:3]
    decoded = decoded.reshape(r, k, s, -1)
    values = np.asarray(arrays["sweep_values"])
    levels = np.asarray(arrays["quantile_levels"])
    ref_out = np.asarray(arrays["reference_decoded"]).reshape(r, -1)
    ref_index = np.asarray(arrays["reference_index"])
    scale = np.asarray(arrays["data_scale"])
    shown = rows_to_show(explanation.importance, MAX_ROWS)
    step_labels = [f"q{100 * q:.0f}%" for q in levels]
    figs: dict[str, Any] = {}
    for ref in range(min(r, MAX_REFERENCE_FIGURES)):
        which = "the mean code" if ref_index[ref] < 0 else f"explain sample #{int(ref_index[ref])}"
        names = [_row_label(explanation.target_names[j], values[ref, j]) for j in shown]
        title = f"Latent traversal around {which}: each row sweeps one latent, the others held"
        if geo.kind == "image":
            lo, hi = float(np.min(arrays["data_lo"])), float(np.max(arrays["data_hi"]))
            fig = new_figure(0.85 * s + 1.6, 0.85 * len(shown) + 1.0)
            image_grid(fig, decoded[ref, shown], geo.sample_shape, row_labels=names, col_labels=step_labels, vmin=lo, vmax=hi)
            if ref == 0:
                delta = decoded[ref, shown] - ref_out[ref]
                lim = float(np.percentile(np.abs(delta), 99)) or 1.0
                dfig = new_figure(0.85 * s + 1.6, 0.85 * len(shown) + 1.0)
                image_grid(dfig, delta, geo.sample_shape, row_labels=names, col_labels=step_labels, vmin=-lim, vmax=lim, cmap=DIVERGING_CMAP)
                dfig.suptitle(f"Traversal minus the decoding of {which}: red = higher value, blue = lower (+-{lim:.2g})", fontsize=10)
                figs["delta"] = dfig
        elif geo.kind == "tabular":
            delta = (decoded[ref, shown] - ref_out[ref]) / scale  # (rows, S, D)
            fig = _tabular_multiples(delta, names, step_labels, geo, explanation.importance[shown])
            title += "; colour = decoded change from the reference's decoding, in data SDs"
        else:
            fig = _sequence_sweeps(decoded[ref, shown], names, levels, geo)
        fig.suptitle(title, fontsize=10)
        figs["grid" if ref == 0 else f"grid_ref{ref}"] = fig
    return figs


def _tabular_multiples(delta: np.ndarray, names: list[str], step_labels: list[str], geo: Geometry, importance: np.ndarray) -> Any:
    """One heatmap (features x steps) per latent, sharing one colour scale and the feature axis."""
    n_rows = delta.shape[0]
    cols_idx = columns_to_show(np.abs(delta).max(axis=(0, 1)), MAX_COLUMNS)
    labels = [geo.element_names[i] if i < len(geo.element_names) else f"x{i}" for i in cols_idx]
    ncols = min(n_rows, 4)
    nrows = int(np.ceil(n_rows / ncols))
    fig = new_figure(2.6 * ncols + 2.2, (0.16 * len(cols_idx) + 1.0) * nrows + 0.8)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    vmax = float(np.nanpercentile(np.abs(delta[:, :, cols_idx]), 99)) or 1.0
    im = None
    for i in range(nrows * ncols):
        ax = axes.flat[i]
        if i >= n_rows:
            ax.set_axis_off()
            continue
        im = ax.imshow(np.clip(delta[i][:, cols_idx].T, -vmax, vmax), cmap=DIVERGING_CMAP, vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
        ax.set_title(names[i].replace("\n", "  "), fontsize=9)
        ax.set_xticks(range(len(step_labels)), labels=step_labels, fontsize=6, rotation=90)
        ax.set_yticks(range(len(labels)), labels=labels, fontsize=7)
    if im is not None:
        fig.colorbar(im, ax=axes, label="change of decoded value (data SDs)", shrink=0.6)
    return fig


def _sequence_sweeps(decoded: np.ndarray, names: list[str], levels: np.ndarray, geo: Geometry) -> Any:
    """Rows = latents, columns = sequence features, one line per sweep step coloured low -> high."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    steps, n_feat = geo.sample_shape
    feats = geo.sequence_features or [f"f{j}" for j in range(n_feat)]
    seq = decoded.reshape(decoded.shape[0], decoded.shape[1], steps, n_feat)
    cmap = colormaps["viridis"]
    norm = Normalize(vmin=float(levels[0]), vmax=float(levels[-1]))
    time = np.arange(steps)

    def draw(ax: Any, i: int, j: int) -> None:
        for s, q in enumerate(levels):
            ax.plot(time, seq[i, s, :, j], color=cmap(norm(q)), linewidth=1.2)

    fig = new_figure(2.6 * n_feat + 2.0, 1.4 * len(names) + 1.0)
    axes = panel_grid(fig, names, feats, draw, xlabel="time step")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="sweep quantile of the latent", shrink=0.6)
    return fig


def contribution_figures(explanation: Any) -> dict[str, Any]:
    """Images: mean |contribution| and mean signed contribution per latent; sequences: lines over time."""
    arrays = explanation.arrays
    geo = Geometry.from_extras(explanation.extras)
    mean_abs = np.asarray(arrays["mean_abs_contribution"])
    k = mean_abs.shape[0]
    mean_abs = mean_abs.reshape(k, -1)
    signed = np.asarray(arrays["mean_contribution"]).reshape(k, -1)
    shown = rows_to_show(explanation.importance, MAX_ROWS)
    names = [explanation.target_names[j] for j in shown]
    if geo.kind == "image":
        fig = new_figure(0.95 * len(shown) + 1.8, 4.4)
        top, bottom = fig.subfigures(2, 1)
        hi = float(mean_abs[shown].max()) or 1.0
        image_grid(top, mean_abs[shown][None], geo.sample_shape, row_labels=["mean |c|"], col_labels=names, vmin=0.0, vmax=hi, cmap="magma_r")
        lim = float(np.abs(signed[shown]).max()) or 1.0
        image_grid(bottom, signed[shown][None], geo.sample_shape, row_labels=["mean c"], col_labels=names, vmin=-lim, vmax=lim, cmap=DIVERGING_CMAP)
        top.suptitle(f"Mean |contribution| per latent (dark = large; max {hi:.2g} data SDs)", fontsize=9)
        bottom.suptitle(f"Mean signed contribution (red +, blue -; +-{lim:.2g} data SDs)", fontsize=9)
        fig.suptitle("Component contributions: decode(z) - decode(z with z_j at its mean); non-linear, reference-dependent", fontsize=10)
        return {"maps": fig}
    if geo.kind == "sequence":
        steps, n_feat = geo.sample_shape
        feats = geo.sequence_features or [f"f{j}" for j in range(n_feat)]
        a = mean_abs[shown].reshape(len(shown), steps, n_feat)
        sg = signed[shown].reshape(len(shown), steps, n_feat)
        time = np.arange(steps)

        def draw(ax: Any, i: int, j: int) -> None:
            ax.plot(time, a[i, :, j], color="tab:purple", linewidth=1.6, label="mean |c|")
            ax.plot(time, sg[i, :, j], color="0.4", linewidth=0.9, linestyle="--", label="mean c")
            ax.axhline(0, color="0.7", linewidth=0.5)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)

        fig = new_figure(2.6 * n_feat + 1.0, 1.4 * len(shown) + 1.0)
        panel_grid(fig, names, feats, draw, xlabel="time step")
        fig.suptitle("Component contributions over time (data SDs); non-linear, reference-dependent", fontsize=10)
        return {"over_time": fig}
    return {}
