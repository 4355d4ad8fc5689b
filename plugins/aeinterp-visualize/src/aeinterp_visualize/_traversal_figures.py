"""Figures of latent traversals and component contributions, drawn from a finished explanation."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import Geometry, columns_to_show, rows_to_show, shown_of
from ._plots import DIVERGING_CMAP, image_grid, new_figure, panel_grid

__all__ = ["traversal_figures", "contribution_figures", "decomposition_figure", "share_y"]

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
        title = (
            f"Latent traversal around {which}: each row sweeps one latent, the others held{shown_of(shown, len(explanation.target_names))}"
        )
        if geo.kind == "image":
            lo, hi = float(np.min(arrays["data_lo"])), float(np.max(arrays["data_hi"]))
            fig = new_figure(0.85 * s + 1.6, 0.85 * len(shown) + 1.0)
            image_grid(fig, decoded[ref, shown], geo.sample_shape, row_labels=names, col_labels=step_labels, vmin=lo, vmax=hi)
            if ref == 0:
                delta = decoded[ref, shown] - ref_out[ref]
                lim = float(np.percentile(np.abs(delta), 99)) or 1.0
                dfig = new_figure(0.85 * s + 1.6, 0.85 * len(shown) + 1.0)
                image_grid(
                    dfig, delta, geo.sample_shape, row_labels=names, col_labels=step_labels, vmin=-lim, vmax=lim, cmap=DIVERGING_CMAP
                )
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
        im = ax.imshow(
            np.clip(delta[i][:, cols_idx].T, -vmax, vmax),
            cmap=DIVERGING_CMAP,
            vmin=-vmax,
            vmax=vmax,
            aspect="auto",
            interpolation="nearest",
        )
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
    share_y(axes)
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="sweep quantile of the latent (one y-scale for all panels)", shrink=0.6
    )
    return fig


def share_y(axes: np.ndarray) -> None:
    """One y-range for every panel, so small wiggles do not look like large effects."""
    lims = [ax.get_ylim() for ax in axes.flat]
    lo, hi = min(a for a, _ in lims), max(b for _, b in lims)
    for ax in axes.flat:
        ax.set_ylim(lo, hi)


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
    unit = str(explanation.extras.get("unit_short", "data SDs"))
    if geo.kind == "image":
        fig = new_figure(0.95 * len(shown) + 1.8, 4.4)
        top, bottom = fig.subfigures(2, 1)
        hi = float(mean_abs[shown].max()) or 1.0
        image_grid(
            top, mean_abs[shown][None], geo.sample_shape, row_labels=["mean |c|"], col_labels=names, vmin=0.0, vmax=hi, cmap="magma_r"
        )
        lim = float(np.abs(signed[shown]).max()) or 1.0
        image_grid(
            bottom, signed[shown][None], geo.sample_shape, row_labels=["mean c"], col_labels=names, vmin=-lim, vmax=lim, cmap=DIVERGING_CMAP
        )
        top.suptitle(f"Mean |contribution| per latent (dark = large; max {hi:.2g} {unit})", fontsize=9)
        bottom.suptitle(f"Mean signed contribution (red +, blue -; +-{lim:.2g} {unit})", fontsize=9)
        fig.suptitle(
            f"Component contributions: decode(z) - decode(z with z_j at its mean); non-linear, reference-dependent{shown_of(shown, k)}",
            fontsize=10,
        )
        out = {"maps": fig}
        if "example_contribution" in arrays:
            out["decomposition"] = decomposition_figure(explanation)
        return out
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
        share_y(panel_grid(fig, names, feats, draw, xlabel="time step"))
        fig.suptitle(
            f"Component contributions over time ({unit}, one y-scale for all panels); non-linear, reference-dependent{shown_of(shown, k)}",
            fontsize=10,
        )
        out = {"over_time": fig}
        if "example_contribution" in arrays:
            out["decomposition"] = decomposition_figure(explanation)
        return out
    return {}


NOTE = (
    "contributions are non-linear and reference-dependent: c_j = decode(z) - decode(z with z_j at its {baseline}); "
    "they need not add up to the reconstruction"
)


def decomposition_figure(explanation: Any, samples: int = 4, max_latents: int = 8) -> Any:
    """Per sample: original | reconstruction | each latent's contribution (one shared signed scale), and
    beneath each contribution the reconstruction with that latent at its reference. Sequences: the same
    columns as feature x time maps."""
    arrays = explanation.arrays
    geo = Geometry.from_extras(explanation.extras)
    orig = np.asarray(arrays["example_original"], dtype=np.float64)
    recon = np.asarray(arrays["example_reconstruction"], dtype=np.float64)
    contrib = np.asarray(arrays["example_contribution"], dtype=np.float64)
    m = min(samples, orig.shape[0])
    shown = rows_to_show(explanation.importance, max_latents)
    lim = float(np.abs(contrib[:m, shown]).max()) or 1.0
    note = NOTE.format(baseline=explanation.extras.get("baseline", "mean"))
    index = np.asarray(arrays.get("sample_index", np.arange(m)))
    cols = 2 + len(shown)
    if geo.kind == "image":
        lo, hi = float(min(orig[:m].min(), recon[:m].min())), float(max(orig[:m].max(), recon[:m].max()))
        fig = new_figure(1.2 * cols + 1.6, 2.4 * m + 1.2)
        rows = fig.subfigures(m, 1, squeeze=False)[:, 0]
        for i in range(m):
            flat_c = contrib[i, shown].reshape(len(shown), -1)
            at_ref = recon[i].reshape(1, -1) - flat_c
            top = np.concatenate([orig[i].reshape(1, -1), recon[i].reshape(1, -1), np.full_like(flat_c, np.nan)])
            bottom = np.concatenate([np.full((2, flat_c.shape[1]), np.nan), at_ref])
            sub = rows[i].subfigures(1, 2, width_ratios=[2, len(shown)], squeeze=False)[0]
            image_grid(
                sub[0],
                np.stack([top[:2], bottom[:2]]),
                geo.sample_shape,
                row_labels=[f"#{int(index[i])}", ""],
                col_labels=["original", "reconstruction"],
                vmin=lo,
                vmax=hi,
            )
            right = sub[1].subfigures(2, 1, squeeze=False)[:, 0]
            names = [f"c of {explanation.target_names[j]}" for j in shown]
            image_grid(
                right[0],
                flat_c[None],
                geo.sample_shape,
                row_labels=["contribution"],
                col_labels=names,
                vmin=-lim,
                vmax=lim,
                cmap=DIVERGING_CMAP,
            )
            image_grid(
                right[1],
                at_ref[None],
                geo.sample_shape,
                row_labels=["latent at ref."],
                col_labels=[f"{explanation.target_names[j]} at ref." for j in shown],
                vmin=lo,
                vmax=hi,
            )
        fig.suptitle(
            f"Per-sample decomposition (contributions: red +, blue -, one scale +-{lim:.2g} in data units){shown_of(shown, contrib.shape[1])}\n{note}",
            fontsize=9,
        )
        return fig
    steps, n_feat = geo.sample_shape
    feats = geo.sequence_features or [f"f{j}" for j in range(n_feat)]
    fig = new_figure(1.9 * cols + 1.5, 1.7 * m + 1.4)
    axes = fig.subplots(m, cols, squeeze=False)
    v_lo, v_hi = float(min(orig[:m].min(), recon[:m].min())), float(max(orig[:m].max(), recon[:m].max()))
    im = None
    for i in range(m):
        panels = [orig[i], recon[i]] + [contrib[i, j] for j in shown]
        for c, (ax, panel) in enumerate(zip(axes[i], panels)):
            signed = c >= 2
            im_ = ax.imshow(
                np.asarray(panel).reshape(steps, n_feat).T,
                aspect="auto",
                interpolation="nearest",
                cmap=DIVERGING_CMAP if signed else "viridis",
                vmin=-lim if signed else v_lo,
                vmax=lim if signed else v_hi,
            )
            im = im_ if signed else im
            ax.set_yticks(range(n_feat), feats if c == 0 else [""] * n_feat, fontsize=7)
            ax.tick_params(axis="x", labelsize=6)
            if i == 0:
                ax.set_title(["original", "reconstruction"][c] if c < 2 else f"c of {explanation.target_names[shown[c - 2]]}", fontsize=8)
        axes[i, 0].set_ylabel(f"#{int(index[i])}", fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes[:, 2:], shrink=0.7, label="contribution (data units)")
    fig.suptitle(
        f"Per-sample decomposition, feature x time (one signed scale +-{lim:.2g}){shown_of(shown, contrib.shape[1])}\n{note}", fontsize=9
    )
    return fig
