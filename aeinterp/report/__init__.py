"""Reporters: they read Explanations (a finished run) and nothing else.

The run's dataset, where the caller has it, only gives the explained rows' feature values (saved as
``report_values.npz`` so ``aeinterp report`` redraws the same figures) and the feature groups' members.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ..plugins.registry import ExplainerRegistry
from ..run.results import RESULTS_FILE, RunResults, write_json_atomic

__all__ = ["render_reports", "VALUES_FILE", "save_values", "load_values"]

VALUES_FILE = "report_values.npz"
MAX_VALUES = 20_000_000  # explained rows x feature groups kept for the figures' colours


def save_values(out_dir: Path, data: Any) -> np.ndarray | None:
    """The explained rows' value of every feature group (the mean of its elements), saved beside the results."""
    groups = list(data.groups)
    if data.x_explain.shape[0] * len(groups) > MAX_VALUES:  # before reading: a lazily read matrix stays on disk
        return None
    x = np.asarray(data.x_explain)
    flat = x.reshape(x.shape[0], -1)
    values = np.stack([flat[:, np.asarray(g.indices)].mean(axis=1) for g in groups], axis=1).astype(np.float32)
    tmp = out_dir / (VALUES_FILE + ".tmp.npz")
    np.savez_compressed(tmp, values=values, feature_names=np.array([g.name for g in groups]))
    tmp.replace(out_dir / VALUES_FILE)
    return values


def load_values(out_dir: Path) -> tuple[np.ndarray, list[str]] | None:
    path = out_dir / VALUES_FILE
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as npz:
        return npz["values"], [str(n) for n in npz["feature_names"]]


def render_reports(
    results: RunResults, registry: ExplainerRegistry | None, *, console: Console | None, options: Any = None, data: Any = None, cache: Any = None,
) -> list[Path]:
    """Terminal report (when ``console`` is given), PNG plots and the HTML report, as ``options`` say.

    ``options``: ``terminal``, ``plots``, ``html``, ``top_k`` and ``targets`` (names, or a count of the
    most important). ``data``: the run's dataset, for feature values and group members. ``cache``: an
    :class:`aeinterp.run.cache.Cache` that keeps drawn figures (an unchanged step's plots are copied from it).
    The run-level verdicts (dead latents, redundant features, their basis) are added to ``results.json``.
    """
    from .summary import verdicts

    top_k = getattr(options, "top_k", 5)
    targets = getattr(options, "targets", None)
    doc = results.doc
    if data is not None:
        members = {g.name: [data.feature_names[i] for i in np.asarray(g.indices)] for g in data.groups if len(g.indices) > 1}
        if members:
            doc.setdefault("data", {})["group_members"] = members
    model_dim = (doc.get("model") or {}).get("latent_dim")
    verdict = verdicts(results.explanations, int(model_dim) if isinstance(model_dim, int) else None)
    doc["verdicts"] = verdict.to_json()
    if (results.out_dir / RESULTS_FILE).exists() or data is not None:
        write_json_atomic(results.out_dir / RESULTS_FILE, doc)
    stored = save_values(results.out_dir, data) if data is not None else None
    loaded = (stored, [g.name for g in data.groups]) if stored is not None else load_values(results.out_dir)
    values = {}
    if loaded is not None:
        arr, names = loaded
        values = {a: arr for a, e in results.explanations.items() if list(e.feature_names) == names}
    written: list[Path] = []
    if console is not None and getattr(options, "terminal", True):
        from .terminal import print_report

        print_report(console, results, top_k=top_k, targets=targets, verdict=verdict)
    plots: dict[str, list[Path]] = {}
    data_info = doc.get("data") or {}
    if getattr(options, "plots", True) or getattr(options, "html", True):
        from .plots import write_plots

        plots = write_plots(results.out_dir, results.explanations, registry, data_info=data_info, data=values, cache=cache)
        written += [p for ps in plots.values() for p in ps]
    if getattr(options, "html", True):
        from .html import write_html

        written.append(write_html(results, plots, top_k=top_k, verdict=verdict, data_info=data_info))
    return written
