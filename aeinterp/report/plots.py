"""PNG plots: the importance heatmap of every explanation, plus each explainer's own figures."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from matplotlib.figure import Figure

from ..explanation import Explanation
from ..registry import ExplainerRegistry

_SAFE_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")

__all__ = ["heatmap_figure", "write_plots"]

MAX_HEATMAP_TARGETS = 64


def heatmap_figure(e: Explanation) -> Figure:
    rows = min(len(e.target_names), MAX_HEATMAP_TARGETS)
    cols = len(e.feature_names)
    fig = Figure(figsize=(min(3 + 0.28 * cols, 22), min(3 + 0.3 * rows, 16)), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(e.importance[:rows], aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_yticks(range(rows), e.target_names[:rows], fontsize=7 if rows > 20 else 9)
    if cols <= 80:
        ax.set_xticks(range(cols), e.feature_names, rotation=90, fontsize=7 if cols > 30 else 9)
    else:
        ax.set_xlabel(f"{cols} features")
    title = f"{e.explainer}: {e.target}"
    if len(e.target_names) > rows:
        title += f" (first {rows} of {len(e.target_names)} targets)"
    unit = e.extras.get("unit")
    ax.set_title(title + (f"\n({unit})" if unit else ""), fontsize=10)
    fig.colorbar(im, ax=ax, label="importance")
    return fig


def write_plots(out_dir: Path, explanations: dict[str, Explanation], registry: ExplainerRegistry | None = None) -> dict[str, list[Path]]:
    """Write ``<alias>.png`` and ``<alias>.<key>.png`` for explainer figures; returns paths per alias.

    A plugin whose ``figures`` fails only loses its own pictures (with a warning).
    """
    written: dict[str, list[Path]] = {}
    for alias, e in explanations.items():
        paths = []
        fig = heatmap_figure(e)
        path = out_dir / f"{alias}.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
        entry = registry.get(e.explainer) if registry is not None else None
        if entry is not None:
            try:
                extra = entry.cls.figures(e)
            except Exception as exc:  # a plugin's plotting bug must not lose the report
                warnings.warn(f"{e.explainer} ({entry.distribution}) failed to draw its figures: {type(exc).__name__}: {exc}", stacklevel=2)
                extra = {}
            for key, f in extra.items():
                if not _SAFE_KEY.fullmatch(str(key)):  # a figure name is a file name inside the output folder
                    warnings.warn(f"{e.explainer} ({entry.distribution}) named a figure {str(key)[:60]!r}; figure names are letters, digits, '_', '-' and '.', so it was not saved", stacklevel=2)
                    continue
                p = out_dir / f"{alias}.{key}.png"
                f.savefig(p, dpi=110)
                paths.append(p)
        written[alias] = paths
    return written


