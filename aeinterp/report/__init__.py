"""Reporters: they read Explanations (a finished run) and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from ..registry import ExplainerRegistry
from ..results import RunResults

__all__ = ["render_reports"]


def render_reports(results: RunResults, registry: ExplainerRegistry | None, *, console: Console | None, options: Any = None) -> list[Path]:
    """Terminal report (when ``console`` is given), PNG plots and the HTML report, as ``options`` say."""
    top_k = getattr(options, "top_k", 5)
    written: list[Path] = []
    if console is not None and getattr(options, "terminal", True):
        from .terminal import print_report

        print_report(console, results, top_k=top_k)
    plots: dict[str, list[Path]] = {}
    if getattr(options, "plots", True) or getattr(options, "html", True):
        from .plots import write_plots

        plots = write_plots(results.out_dir, results.explanations, registry)
        written += [p for ps in plots.values() for p in ps]
    if getattr(options, "html", True):
        from .html import write_html

        written.append(write_html(results, plots, top_k=top_k))
    return written
