"""Notebook display of an Explanation: a compact importance image, a top-features table, and the
figure methods that apply to this result (never one that would raise)."""

from __future__ import annotations

import base64
import html
import io

from ..explanation import Explanation
from .display import NOTEBOOK_DPI, png_size
from .layout import layout_of
from .summary import explained_rows, shown_note, unit_of

__all__ = ["explanation_html", "figure_png", "available_views"]

MAX_TABLE_ROWS = 20


def figure_png(fig, dpi: int = 80) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def available_views(e: Explanation) -> list[str]:
    """The ``exp.plot`` calls that draw for this result (its data kind, whether it has per-sample values)."""
    layout = layout_of(e)
    views = [".plot()", ".plot.bar()", '.plot.bar("z0")' if "z0" in e.target_names else ".plot.target(0)", ".plot.heatmap()"]
    local = e.local is not None
    if layout.kind == "image" and layout.grid_shape is not None:
        views.append(".plot.image()")
        if local and layout.cells is not None:
            views.append(".plot.image(samples=[0, 1, 2], data=X)")
    elif layout.kind == "sequence" and layout.grid_shape is not None:
        views.append(".plot.sequence()")
    if local and layout.kind == "tabular":
        first = repr(e.sample_names[0]) if e.sample_names else "0"
        views += [".plot.beeswarm(data=X)", f".plot.waterfall(sample={first}, data=X)", ".plot.dependence(feature, data=X)"]
    return views


def explanation_html(e: Explanation, *, top_k: int = 5) -> str:
    """HTML for ``Explanation._repr_html_``."""
    from .figures import importance_figure

    esc = html.escape
    rows = explained_rows(e)
    try:
        png = figure_png(importance_figure(e, max_targets=16, top_k=8), dpi=2 * NOTEBOOK_DPI)
        width = png_size(png)[0] // 2
        img = base64.b64encode(png).decode()
        picture = f'<img alt="importance" width="{min(width, 1150)}" style="max-width:none" src="data:image/png;base64,{img}">'
    except Exception as exc:  # a drawing problem must not hide the numbers
        picture = f"<p><i>no picture ({esc(type(exc).__name__)}: {esc(str(exc))})</i></p>"
    top = e.top_features(top_k)
    body = []
    for r in rows[:MAX_TABLE_ROWS]:
        name = e.target_names[r]
        cells = ", ".join(
            f"{esc(f)} <small>({v:.3g}{'' if e.std is None or e.std[r, e.feature_names.index(f)] == 0 else f' ± {e.std[r, e.feature_names.index(f)]:.2g}'})</small>"
            for f, v in top[name]
        )
        body.append(f"<tr><td><b>{esc(name)}</b></td><td style='text-align:left'>{cells}</td></tr>")
    note = shown_note(min(len(rows), MAX_TABLE_ROWS), len(rows), "explained targets", "order")
    extra = f"; {len(e.target_names) - len(rows)} not explained" if len(rows) < len(e.target_names) else ""
    local = f", per-sample values for {e.local.shape[0]} rows" if e.local is not None else ""
    if e.sample_names:
        local += f" ({e.sample_names[0]} … {e.sample_names[-1]})" if len(e.sample_names) > 1 else f" ({e.sample_names[0]})"
    method = e.extras.get("method")
    method = f" ({esc(str(method))})" if method and method != e.explainer else ""
    views = " ".join(available_views(e))
    more = (
        '.sel(target="z0") .to_pandas() .save(path)' if e.local is None else '.sel(target="z0", sample=...) .to_pandas("local") .save(path)'
    )
    return (
        f"<div class='aeinterp-explanation'><b>Explanation</b> {esc(e.explainer or '')}{method} on <code>{esc(e.target)}</code>: "
        f"{len(e.target_names)} targets x {len(e.feature_names)} features{esc(local)}"
        f"{'' if e.runtime_s is None else f' · {e.runtime_s:.2f} s'}<br><small>unit: {esc(unit_of(e))}</small><br>{picture}"
        f"<table><tr><th>target</th><th style='text-align:left'>top {top_k} features ({esc(note)}{esc(extra)})</th></tr>{''.join(body)}</table>"
        f"<small>figures: <code>{esc(views)}</code><br>more: <code>{esc(more)}</code></small></div>"
    )
