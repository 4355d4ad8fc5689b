"""Reporters: they read Explanations (a finished run) and nothing else.

The terminal report (:mod:`.terminal`), PNG plots (:mod:`.plots`, drawn by
:mod:`.figures` and :mod:`.local_figures`), the self-contained HTML report
(:mod:`.html`), notebook display (:mod:`.notebook`, :mod:`.display`) and
``exp.plot`` (:mod:`.plotting`), which :mod:`.views` attaches to the result
type. The report layer sits above the run: it may read results, the cache
and the registry; nothing below imports it.

The run's dataset, where the caller has it, only gives the explained rows' feature values (saved as
``report_values.npz`` so ``aeinterp report`` redraws the same figures) and the feature groups' members.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..run.results import RESULTS_FILE, RunResults, write_json_atomic

if TYPE_CHECKING:  # annotations only: importing the report (for `exp.plot`, say) loads neither torch nor rich
    from rich.console import Console

    from ..plugins.registry import ExplainerRegistry

__all__ = ["render_reports", "VALUES_FILE", "save_values", "load_values", "latent_source", "latent_page"]

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


def latent_source(results: RunResults, *, data_info: Any = None) -> Any:
    """What the latent pages of a run are built from: its explanations, ``latent_codes.npz`` and ``report_values.npz``."""
    from .latent import LatentSource
    from .latent_store import load_codes
    from .summary import verdicts

    doc = results.doc
    model_dim = (doc.get("model") or {}).get("latent_dim")
    verdict = verdicts(results.explanations, int(model_dim) if isinstance(model_dim, int) else None)
    codes = load_codes(results.out_dir)
    names = list(codes.latent_names) if codes is not None else list(verdict.latents)
    return LatentSource(
        results.explanations,
        codes=codes,
        values=load_values(results.out_dir),
        data_info=dict(data_info or doc.get("data") or {}),
        latent_names=names,
        dead_by_attribution=list(verdict.dead),
    )


def latent_page(results: RunResults, name: str) -> Any:
    """The page of latent ``name`` of a finished run (``load_results(OUT)``): shows itself in a notebook
    (``_repr_html_``) and in a rich console. See docs/latent-pages.md."""
    from .latent import build_page

    return build_page(latent_source(results), name)


def render_reports(
    results: RunResults,
    registry: ExplainerRegistry | None,
    *,
    console: Console | None,
    options: Any = None,
    data: Any = None,
    cache: Any = None,
    model: Any = None,
) -> list[Path]:
    """Terminal report (when ``console`` is given), PNG plots and the HTML report, as ``options`` say.

    ``model``: the run's model, to keep the explained rows' latent codes (``latent_codes.npz``) for the latent pages.
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
    if model is not None and data is not None:
        _save_codes(results, model, data)
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


def _save_codes(results: RunResults, model: Any, data: Any) -> None:
    """Keep the codes the latent pages need; a model that cannot be encoded here only loses those pages' codes."""
    import warnings

    from .latent_store import CODES_FILE, compute_codes, save_codes

    names = None
    for e in results.explanations.values():
        if e.target == "latent" and names is None:
            names = list(e.target_names)
    try:
        codes = compute_codes(model, data, names)
    except Exception as exc:  # noqa: BLE001 - the results are on disk; the pages say no codes were kept
        warnings.warn(f"the latent codes were not kept for the latent pages ({type(exc).__name__}: {exc})", stacklevel=3)
        return
    if codes is not None:
        from ..toolkit.disentanglement import code_summary

        save_codes(results.out_dir, codes)
        s = code_summary(np.asarray(codes.codes, dtype=np.float64), list(codes.latent_names))
        results.doc["latent_codes"] = {
            "file": CODES_FILE,
            "n_rows": int(codes.codes.shape[0]),
            "total_correlation": s.total_correlation,
            "dead": s.dead,
            "duplicates": [[a, b, r] for a, b, r in s.duplicates],
            "basis": "codes of the explained rows; total correlation = -1/2 log det corr(z) over live latents (nats); dead: SD below 0.1 % of the largest latent's; duplicates: |Pearson| >= 0.99",
        }
