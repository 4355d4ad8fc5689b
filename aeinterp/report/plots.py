"""PNG plots of every explanation: its global view, the input ranking, the signed per-sample views
where it has ``local``, and the explainer's own figures."""

from __future__ import annotations

import contextlib
import re
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..errors import AeinterpError
from ..explanation import Explanation
from ..plugins.registry import ExplainerRegistry
from ..run.cache import Cache
from .figures import bar_summary, importance_figure
from .layout import layout_of
from .local_figures import beeswarm, dependence, feature_values, image_samples, waterfall
from .summary import explained_rows, measures_inputs, top_rows

_SAFE_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")

__all__ = ["heatmap_figure", "report_figures", "write_plots", "DPI"]

DPI = 90


def heatmap_figure(e: Explanation, data_info: Mapping[str, Any] | None = None) -> Figure:
    """The global importance view of ``e`` (kept under its old name)."""
    return importance_figure(e, data_info)


def report_figures(e: Explanation, data_info: Mapping[str, Any] | None = None, data: Any = None) -> dict[str, Figure]:
    """The report's own figures of ``e``, keyed by the file suffix ("" for the main view)."""
    figs: dict[str, Figure] = {"": importance_figure(e, data_info)}
    if len(explained_rows(e)) > 1:
        figs["summary"] = bar_summary(e)
    if e.local is not None and e.local.shape[0] > 0 and measures_inputs(e):  # per-sample views of input attributions
        figs["beeswarm"] = beeswarm(e, data=data)
        target = top_rows(e, 1)[0]
        figs["waterfall"] = waterfall(e, 0, target, data=data)
        layout = layout_of(e, data_info)
        if data is not None and layout.kind == "image" and layout.cells is not None:  # each sample's attribution over its own image
            with contextlib.suppress(AeinterpError):  # rows that cannot be matched to their images: no such figure
                figs["samples"] = image_samples(e, list(range(min(4, e.local.shape[0]))), data=data, max_targets=6, data_info=data_info)
        if feature_values(e, data) is not None:
            feature = int(np.argmax(e.importance[target]))
            figs["dependence"] = dependence(e, feature, target, data=data)
    return figs


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def _file(out_dir: Path, alias: str, key: str) -> Path:
    return out_dir / (f"{alias}.{key}.png" if key else f"{alias}.png")


def write_plots(
    out_dir: Path,
    explanations: Mapping[str, Explanation],
    registry: ExplainerRegistry | None = None,
    *,
    data_info: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    cache: Cache | None = None,
) -> dict[str, list[Path]]:
    """Write ``<alias>.png``, ``<alias>.<view>.png`` and the explainer's ``<alias>.<key>.png``; paths per alias.

    ``data`` maps aliases to the explained rows' feature values (for beeswarm colours and dependence
    plots). A figure that fails only loses itself (with a warning). With a ``cache``, an
    explanation whose figures were drawn before from the same values gets copies of them
    (:meth:`aeinterp.run.cache.Cache.load_figures`); newly drawn ones are stored there.
    """
    written: dict[str, list[Path]] = {}
    for alias, e in explanations.items():
        entry = registry.get(e.explainer) if registry is not None else None
        key = None
        values = (data or {}).get(alias)
        if cache is not None:
            import matplotlib

            key = cache.figures_key(
                e,
                dict(data_info or {}),
                matplotlib.__version__,
                DPI,
                None if entry is None else [entry.distribution, entry.version],
                arrays=() if values is None else [values],
            )
            hit = cache.load_figures(key)
            if hit is not None:
                written[alias] = [Path(shutil.copyfile(path, _file(out_dir, alias, name))) for name, path in hit.items()]
                continue
        files, failed = _draw(out_dir, alias, e, entry, data_info, values)
        if cache is not None and key is not None and not failed:
            cache.save_figures(key, files)
        written[alias] = list(files.values())
    return written


def _draw(
    out_dir: Path, alias: str, e: Explanation, entry: Any, data_info: Mapping[str, Any] | None, values: Any
) -> tuple[dict[str, Path], bool]:
    """Draw and save one explanation's figures: the files by figure name, and whether any figure failed."""
    files: dict[str, Path] = {}
    failed = False
    try:
        for key, fig in report_figures(e, data_info, values).items():
            files[key] = _save(fig, _file(out_dir, alias, key))
    except Exception as exc:  # a drawing bug must not lose the rest of the report
        warnings.warn(f"drawing {alias} failed: {type(exc).__name__}: {exc}", stacklevel=3)
        failed = True
    if entry is not None:
        try:
            extra = entry.cls.figures(e)
        except Exception as exc:  # a plugin's plotting bug must not lose the report
            warnings.warn(f"{e.explainer} ({entry.distribution}) failed to draw its figures: {type(exc).__name__}: {exc}", stacklevel=3)
            extra, failed = {}, True
        for key, f in extra.items():
            if not _SAFE_KEY.fullmatch(str(key)):  # a figure name is a file name inside the output folder
                warnings.warn(
                    f"{e.explainer} ({entry.distribution}) named a figure {str(key)[:60]!r}; figure names are letters, digits, '_', '-' and '.', so it was not saved",
                    stacklevel=3,
                )
                continue
            files[str(key)] = _save(f, _file(out_dir, alias, str(key)))
    return files, failed
