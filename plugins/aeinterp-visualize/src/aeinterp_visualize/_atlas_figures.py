"""Drawing the activation atlas from a finished explanation's arrays.

Left panel: the atlas itself, every rendered cell at its place on the grid
showing its mean code's decoded output (an image tile, a bar glyph of the
standardized feature profile, or line glyphs of the standardized sequence),
framed or tinted by the cell's majority label; occupied cells below
``min_density`` are grey. Right panel: the projected samples coloured by label,
with the grid. Tabular atlases get a key below naming the bars.
"""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np

from ._common import Geometry, columns_to_show
from ._plots import IMAGE_CMAP, as_image, new_figure

__all__ = ["atlas_figure"]

MAX_GLYPH_BARS = 40
GLYPH_CLIP = {"tabular": 3.0, "sequence": 2.0}  # standardized values beyond this are drawn at the glyph's edge


def _label_colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def atlas_figure(explanation: Any) -> Any:
    """The atlas figure: ``fig.axes[0]`` is the atlas, ``fig.axes[1]`` the projected samples."""
    from matplotlib.patches import Rectangle

    arrays, extras = explanation.arrays, explanation.extras
    geo = Geometry.from_extras(extras)
    counts = np.asarray(arrays["counts"])
    rendered = np.asarray(arrays["rendered"]).astype(bool)
    grid = counts.shape[0]
    ex, ey = np.asarray(arrays["edges_x"]), np.asarray(arrays["edges_y"])
    decoded = np.asarray(arrays["decoded"]).reshape(grid, grid, -1)
    mean, scale = np.asarray(arrays["data_mean"]), np.asarray(arrays["data_scale"])
    label_names = [str(n) for n in extras.get("label_names", [])]
    majority = np.asarray(arrays["label_majority"]) if "label_majority" in arrays else None
    colours = _label_colours(len(label_names)) if label_names else []
    method = str(extras.get("projection", "projection"))

    standardized = (decoded - mean) / scale
    shown = np.arange(decoded.shape[-1])
    if geo.kind == "tabular":
        spread = np.nan_to_num(np.nanstd(standardized[rendered], axis=0)) if rendered.any() else np.zeros(decoded.shape[-1])
        shown = columns_to_show(spread, MAX_GLYPH_BARS)

    if geo.kind == "tabular":
        fig = new_figure(15.0, 10.0)
        axes = fig.subplot_mosaic([["atlas", "samples"], ["key", "key"]], height_ratios=[3.2, 1.0])
    else:
        fig = new_figure(14.0, 7.0)
        axes = fig.subplot_mosaic([["atlas", "samples"]])
    ax, ax_s = axes["atlas"], axes["samples"]

    vmin, vmax = float(np.min(arrays["data_lo"])), float(np.max(arrays["data_hi"]))
    for r in range(grid):
        for c in range(grid):
            if counts[r, c] == 0:
                continue
            x0, x1, y0, y1 = ex[c], ex[c + 1], ey[r], ey[r + 1]
            w, h = x1 - x0, y1 - y0
            if not rendered[r, c]:
                ax.add_patch(Rectangle((x0, y0), w, h, facecolor="0.9", edgecolor="none"))
                continue
            label = int(majority[r, c]) if majority is not None and majority[r, c] >= 0 else None
            edge = colours[label] if label is not None else "0.5"
            if geo.kind == "image":
                pw, ph = 0.04 * w, 0.04 * h
                ax.imshow(
                    as_image(decoded[r, c], geo.sample_shape, vmin, vmax),
                    cmap=IMAGE_CMAP,
                    vmin=vmin,
                    vmax=vmax,
                    extent=(x0 + pw, x1 - pw, y0 + ph, y1 - ph),
                    interpolation="nearest",
                    aspect="auto",
                )
                ax.add_patch(Rectangle((x0 + pw, y0 + ph), w - 2 * pw, h - 2 * ph, fill=False, edgecolor=edge, linewidth=1.6))
                continue
            if label is not None:
                ax.add_patch(Rectangle((x0, y0), w, h, facecolor=edge, alpha=0.15, edgecolor="none"))
            ax.add_patch(Rectangle((x0, y0), w, h, fill=False, edgecolor="0.55", linewidth=0.8))
            clip = GLYPH_CLIP[geo.kind]
            values = np.clip(standardized[r, c], -clip, clip) / clip * 0.42 * h
            centre = y0 + 0.5 * h
            g0, gw = x0 + 0.07 * w, 0.86 * w  # the glyph keeps a margin inside its cell
            if geo.kind == "tabular":
                m = len(shown)
                xs = g0 + (np.arange(m) + 0.5) / m * gw
                vals = values[shown]
                ax.bar(xs, vals, width=0.75 * gw / m, bottom=centre, color=np.where(vals >= 0, "tab:red", "tab:blue"), linewidth=0)
                ax.plot([g0, g0 + gw], [centre, centre], color="0.5", linewidth=0.4)
            else:
                steps, n_feat = geo.sample_shape
                seq = values.reshape(steps, n_feat)
                ts = np.linspace(g0, g0 + gw, steps)
                for f in range(n_feat):
                    ax.plot(ts, centre + seq[:, f], color=f"C{f % 10}", linewidth=1.0)
    ax.set_xlim(ex[0], ex[-1])
    ax.set_ylim(ey[0], ey[-1])
    ax.set_xticks(ex, labels=[])
    ax.set_yticks(ey, labels=[])
    ax.grid(color="0.85", linewidth=0.4)
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    what = {
        "image": "tile = the decoded mean code of the cell's samples",
        "tabular": "bars = decoded features of the cell's mean code, standardized (red > mean, blue < mean)",
        "sequence": "lines = decoded features of the cell's mean code over time, standardized",
    }[geo.kind] + "; grey = fewer samples"
    what = textwrap.fill(what, 80)
    ax.set_title(f"Activation atlas: {int(rendered.sum())} cells with >= {extras.get('min_density', '?')} samples\n{what}", fontsize=10)
    if geo.kind == "sequence":
        from matplotlib.lines import Line2D

        feats = geo.sequence_features or [f"f{j}" for j in range(geo.sample_shape[1])]
        ax.legend(
            [Line2D([], [], color=f"C{j % 10}") for j in range(len(feats))],
            feats,
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(0.0, -0.08),
            ncol=min(len(feats), 6),
            frameon=False,
        )

    pts = np.asarray(arrays["embedding_clipped"])
    if "labels" in arrays and label_names:
        labs = np.asarray(arrays["labels"])
        for i, name in enumerate(label_names):
            sel = labs == i
            ax_s.scatter(pts[sel, 0], pts[sel, 1], s=7, color=colours[i], label=name, alpha=0.8, linewidths=0)
        ax_s.legend(fontsize=8, markerscale=2.0, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="label", frameon=False)
        ax_s.set_title("Samples in the projection, coloured by label\n(atlas frames / tints: the cell's majority label)", fontsize=10)
    else:
        ax_s.scatter(pts[:, 0], pts[:, 1], s=6, color="0.3", alpha=0.6, linewidths=0)
        ax_s.set_title("Samples in the projection\n(clipped to the atlas extent)", fontsize=10)
    ax_s.set_xlim(ex[0], ex[-1])
    ax_s.set_ylim(ey[0], ey[-1])
    ax_s.set_xticks(ex, labels=[])
    ax_s.set_yticks(ey, labels=[])
    ax_s.grid(color="0.85", linewidth=0.4)
    ax_s.set_xlabel(f"{method} 1")

    if geo.kind == "tabular":
        key = axes["key"]
        names = [geo.element_names[i] if i < len(geo.element_names) else f"x{i}" for i in shown]
        spread = np.nan_to_num(np.nanstd(standardized[rendered], axis=0)) if rendered.any() else np.zeros(len(mean))
        key.bar(np.arange(len(shown)), spread[shown], color="0.45")
        key.set_xticks(np.arange(len(shown)), labels=names, rotation=90, fontsize=7)
        key.set_xlim(-0.5, len(shown) - 0.5)
        key.set_ylabel("SD across cells", fontsize=8)
        key.set_title("Key: bar order inside each glyph (bar height here: how much the feature varies across the atlas)", fontsize=9)
    return fig
