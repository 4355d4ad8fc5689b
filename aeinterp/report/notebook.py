"""Notebook display of an Explanation: a compact importance image and a top-features table."""

from __future__ import annotations

import base64
import html
import io

from ..explanation import Explanation
from .summary import explained_rows, shown_note, unit_of

__all__ = ["explanation_html", "figure_png"]

MAX_TABLE_ROWS = 20


def figure_png(fig, dpi: int = 80) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def explanation_html(e: Explanation, *, top_k: int = 5) -> str:
    """HTML for ``Explanation._repr_html_``."""
    from .figures import importance_figure

    esc = html.escape
    rows = explained_rows(e)
    try:
        img = base64.b64encode(figure_png(importance_figure(e, max_targets=16, top_k=8), dpi=64)).decode()
        picture = f'<img alt="importance" style="max-width:640px" src="data:image/png;base64,{img}">'
    except Exception as exc:  # a drawing problem must not hide the numbers
        picture = f"<p><i>no picture ({esc(type(exc).__name__)}: {esc(str(exc))})</i></p>"
    top = e.top_features(top_k)
    body = []
    for r in rows[:MAX_TABLE_ROWS]:
        name = e.target_names[r]
        cells = ", ".join(f"{esc(f)} <small>({v:.3g}{'' if e.std is None or e.std[r, e.feature_names.index(f)] == 0 else f' ± {e.std[r, e.feature_names.index(f)]:.2g}'})</small>" for f, v in top[name])
        body.append(f"<tr><td><b>{esc(name)}</b></td><td style='text-align:left'>{cells}</td></tr>")
    note = shown_note(min(len(rows), MAX_TABLE_ROWS), len(rows), "explained targets", "order")
    extra = f"; {len(e.target_names) - len(rows)} not explained" if len(rows) < len(e.target_names) else ""
    local = f", local {tuple(e.local.shape)}" if e.local is not None else ""
    return (
        f"<div class='aeinterp-explanation'><b>Explanation</b> {esc(e.explainer or '')} on <code>{esc(e.target)}</code>: "
        f"{len(e.target_names)} targets x {len(e.feature_names)} features{esc(local)}"
        f"{'' if e.runtime_s is None else f' · {e.runtime_s:.2f} s'}<br><small>unit: {esc(unit_of(e))}</small>{picture}"
        f"<table><tr><th>target</th><th style='text-align:left'>top {top_k} features ({esc(note)}{esc(extra)})</th></tr>{''.join(body)}</table>"
        f"<small>figures: <code>.plot.importance() .bar() .beeswarm(data=X) .waterfall(sample=0) .dependence(feature, data=X) .image() .sequence()</code></small></div>"
    )
