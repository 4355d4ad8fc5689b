"""One self-contained, interactive HTML report (Jinja2 templates in ``templates/``).

Everything is inline: PNGs as data URIs, the stylesheet and a small script (sortable and filterable
tables, the latent selector, hover values on heatmaps, full matrices on demand); nothing is fetched.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from ..explanation import Explanation, jsonable
from ..run.results import RunResults
from ..text import script_json
from .layout import element_maps, layout_of
from .summary import Verdicts, agreeing, agreements, explained_rows, measures_inputs, shown_note, top_columns, top_rows, unit_of, verdicts

__all__ = ["write_html", "render_html", "MAX_HEATMAP_ROWS", "MAX_HEATMAP_COLUMNS"]

MAX_HEATMAP_ROWS = 40
MAX_HEATMAP_COLUMNS = 40
TEMPLATES = Path(__file__).parent / "templates"
_FIGURE_CAPTIONS = {
    "": "global importance, drawn for the data kind",
    "summary": "input ranking over all targets (model level)",
    "beeswarm": "per-sample signed attributions (colour = feature value)",
    "waterfall": "one sample's attributions, from the expected value to its output",
    "dependence": "attribution against the feature's value",
    "samples": "each sample's signed attribution over its own image, one row per target",
}


def _fmt(v: float) -> str:
    if v is None or not np.isfinite(v):
        return "nan"
    return f"{v:.3g}"


def _anchor(alias: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", alias)


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _colour(v: float, peak: float, signed: bool) -> str:
    if not np.isfinite(v):
        return "#eee"
    if signed:
        level = 0.0 if peak <= 0 else max(-1.0, min(1.0, v / peak))
        if level >= 0:
            return f"rgb(255,{int(255 - 200 * level)},{int(255 - 210 * level)})"
        return f"rgb({int(255 + 200 * level)},{int(255 + 150 * level)},255)"
    level = 0.0 if peak <= 0 else max(0.0, min(1.0, v / peak))
    return f"rgb({int(255 - 90 * level)},{int(255 - 215 * level)},{int(255 - 175 * level)})"


def heatmap_table(
    rows: Sequence[str], cols: Sequence[str], values: np.ndarray, *, unit: str, signed: bool = False, grid: bool = False
) -> Markup:
    """An HTML heatmap: one cell per value, its value on hover (``data-tip``) and in ``data-v``."""
    esc = html.escape
    finite = values[np.isfinite(values)]
    peak = float(np.abs(finite).max()) if finite.size else 0.0
    out = [f"<table class='hm{' grid' if grid else ''}' title='{esc(unit)}'>"]
    if not grid:
        out.append("<tr><th></th>" + "".join(f"<th class='col' title='{esc(c)}'>{esc(c)}</th>" for c in cols) + "</tr>")
    for i, r in enumerate(rows):
        cells = []
        for j, c in enumerate(cols):
            v = float(values[i, j])
            tip = f"{r} · {c}: {_fmt(v)}" if not grid else f"[{i},{j}]: {_fmt(v)}"
            cells.append(f"<td data-tip='{esc(tip)}' style='background:{_colour(v, peak, signed)}'></td>")
        out.append(f"<tr><th>{esc(r)}</th>" + "".join(cells) + "</tr>" if not grid else "<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return Markup("".join(out))


def bars_html(names: Sequence[str], values: np.ndarray, *, unit: str, k: int = 8) -> Markup:
    """Ranked horizontal bars of the ``k`` largest |values| with their values, the rest summed."""
    esc = html.escape
    order = np.argsort(-np.abs(values), kind="stable")
    shown, rest = order[:k], order[k:]
    peak = float(np.abs(values[shown]).max()) if len(shown) else 0.0
    out = ["<div class='bars'>"]
    for i in shown:
        v = float(values[i])
        width = 0 if peak <= 0 else int(160 * abs(v) / peak)
        out.append(
            f"<div class='r' data-tip='{esc(names[i])}: {_fmt(v)} ({esc(unit)})'><span class='l' title='{esc(names[i])}'>{esc(names[i])}</span><span class='b{' neg' if v < 0 else ''}' style='width:{width}px'></span><span class='v'>{_fmt(v)}</span></div>"
        )
    if len(rest):
        out.append(
            f"<div class='r muted'><span class='l'>sum of the other {len(rest)}</span><span class='v'>{_fmt(float(values[rest].sum()))}</span></div>"
        )
    out.append("</div>")
    return Markup("".join(out))


def _target_lines(e: Explanation, name: str) -> list[str]:
    """The explainer's headline lines about one target (lines that start with its name)."""
    out = []
    for line in e.extras.get("summary") or []:
        head = str(line).split(" ", 1)[0].rstrip(":=,")
        if head == name:
            out.append(str(line))
    return out


def _latent_view(e: Explanation, r: int, data_info: Mapping[str, Any]) -> Markup:
    layout = layout_of(e, data_info)
    unit = unit_of(e)
    if layout.kind in ("image", "sequence"):
        got = element_maps(e, layout)
        if got is not None and layout.grid_shape is not None:
            maps, what = got
            m = maps[r]
            a, b = layout.grid_shape
            if layout.kind == "image":
                table = heatmap_table([""] * a, [""] * b, m, unit=unit, signed=bool(np.nanmin(m) < 0), grid=True)
                return Markup(f"<div class='muted'>{html.escape(what)} on the {a}×{b} image</div>") + table
            feats = list(layout.col_labels) or [f"f{j}" for j in range(b)]
            return Markup(f"<div class='muted'>{html.escape(what)}, feature × time</div>") + heatmap_table(
                feats, list(layout.row_labels) or [f"t{i}" for i in range(a)], m.T, unit=unit, signed=bool(np.nanmin(m) < 0)
            )
    values = e.importance[r]  # the step's own ranking (a signed mean would cancel across samples)
    kind = e.extras.get("importance_summary", "mean_abs" if e.local is not None else "")
    label = "importance" + (f" ({kind})" if kind else "")
    return Markup(f"<div class='muted'>{html.escape(label)}</div>") + bars_html(e.feature_names, values, unit=unit)


def _step(alias: str, e: Explanation, paths: Sequence[Path], top_k: int) -> dict[str, Any]:
    unit = unit_of(e)
    rows = top_rows(e, MAX_HEATMAP_ROWS)
    cols = sorted(top_columns(e, MAX_HEATMAP_COLUMNS, explained_rows(e)))
    note = shown_note(len(rows), len(e.target_names), "targets") + "; " + shown_note(len(cols), len(e.feature_names), "features")
    figures = []
    for p in paths:
        key = p.name[len(alias) + 1 : -len(".png")] if p.name != f"{alias}.png" else ""
        figures.append({"name": p.name, "src": _img(p), "caption": f"{p.name}: {_FIGURE_CAPTIONS.get(key, key)}"})
    spread = e.std is not None and bool(np.any(e.std > 0))
    order = np.argsort(-e.importance, axis=1, kind="stable")[:, :top_k]
    top = []
    for r in explained_rows(e):
        feats = []
        for i in order[r]:
            text = _fmt(float(e.importance[r, i])) + (
                f" ± {_fmt(float(e.std[r, i]))}" if spread and e.std is not None and e.std[r, i] > 0 else ""
            )
            feats.append({"name": e.feature_names[i], "v": _fmt(float(e.importance[r, i])), "text": text})
        total = float(e.importance[r].sum())
        top.append({"index": r, "target": e.target_names[r], "total": _fmt(total), "total_text": _fmt(total), "features": feats})
    skipped = len(e.target_names) - len(explained_rows(e))
    matrix = script_json({"rows": e.target_names, "cols": e.feature_names, "v": jsonable(np.round(e.importance, 6))}, allow_nan=False)
    extras = {k: v for k, v in e.extras.items() if k != "summary"}
    return {
        "alias": alias,
        "anchor": _anchor(alias),
        "explainer": e.explainer,
        "distribution": e.distribution,
        "version": e.version,
        "target": e.target,
        "unit": unit,
        "note": f"{skipped} of {len(e.target_names)} targets not explained by this step" if skipped else "",
        "summary": [str(x) for x in e.extras.get("summary") or []],
        "heatmap": heatmap_table(
            [e.target_names[r] for r in rows], [e.feature_names[c] for c in cols], e.importance[np.ix_(rows, cols)], unit=unit
        ),
        "heatmap_note": note + " (the full matrix: the button below)",
        "matrix_json": Markup(matrix),
        "n_targets": len(e.target_names),
        "n_features": len(e.feature_names),
        "figures": figures,
        "top": top,
        "top_note": f"all {len(top)} explained targets; sort by a column, filter above",
        "extras": json.dumps(jsonable(extras), indent=1)[:20000] if extras else "",
        "params": json.dumps(jsonable(e.params)),
    }


def render_html(
    results: RunResults,
    plots: Mapping[str, Sequence[Path]],
    *,
    top_k: int = 5,
    verdict: Verdicts | None = None,
    data_info: Mapping[str, Any] | None = None,
) -> str:
    """The report as one HTML string."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    doc = results.doc
    data, model = doc.get("data") or {}, doc.get("model") or {}
    data_info = data_info or data
    verdict = verdict or verdicts(results.explanations, model.get("latent_dim") if isinstance(model.get("latent_dim"), int) else None)
    from . import latent_source
    from .code_page import build_code_page, code_html
    from .latent import build_page
    from .latent_render import page_html

    source = latent_source(results, data_info=data_info)
    pages = {n: build_page(source, n) for n in verdict.latents if n in source.names()}
    latents = []
    for n in verdict.latents:
        page = pages.get(n)
        if n in verdict.not_explained:
            v, css = "not explained", "muted"
        elif n in verdict.dead or (page is not None and page.flags):
            v, css = "dead", "warn"
        else:
            v, css = "", ""
        top = page.top_inputs(3) if page is not None and page.consensus else agreeing(results.explanations, n)[0]
        agree = page.agreement if page is not None else None
        latents.append(
            {
                "name": n,
                "top": top,
                "agree_share": f"{agree:.3f}" if agree is not None else "0",
                "agree_text": f"{agree:.2f} over {len(page.steps)} explainers" if page is not None and agree is not None else "",
                "verdict": v,
                "css": css,
            }
        )
    code = None
    if source.codes is not None and len(source.codes.latent_names) >= 2:
        code = Markup(code_html(build_code_page(source)))
    views: dict[str, list[dict[str, Any]]] = {n: [] for n in verdict.latents}
    for alias, e in results.explanations.items():
        if e.target != "latent":
            continue
        rows = explained_rows(e)
        for r in rows:
            name = e.target_names[r]
            if name not in views:
                continue
            unit = unit_of(e) + ("" if measures_inputs(e) else " (over the model's outputs)")
            views[name].append(
                {
                    "alias": alias,
                    "anchor": _anchor(alias),
                    "explainer": e.explainer,
                    "unit": unit,
                    "view": _latent_view(e, r, data_info),
                    "lines": _target_lines(e, name),
                }
            )
    steps = [_step(alias, e, plots.get(alias, []), top_k) for alias, e in results.explanations.items()]
    entries = [
        {
            "alias": x["alias"],
            "anchor": _anchor(x["alias"]),
            "name": x["name"],
            "target": x.get("target", ""),
            "ok": x.get("status") == "ok",
            "time": _fmt(float(x.get("runtime_s") or 0)),
            "time_text": f"{x.get('runtime_s') or 0:.2f}" if x.get("status") == "ok" else str(x.get("error", ""))[:200],
        }
        for x in results.entries
    ]
    pairs = [
        {
            "a": p.a,
            "b": p.b,
            "target": p.target,
            "spearman": _fmt(p.spearman),
            "spearman_text": f"{p.spearman:.2f}",
            "top1": _fmt(p.top1),
            "top1_text": f"{p.top1:.0%}",
        }
        for p in agreements(results.explanations)
    ]
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]), trim_blocks=False)
    return env.get_template("report.html.j2").render(
        version=doc.get("aeinterp_version"),
        status=doc.get("status"),
        started=doc.get("started"),
        finished=doc.get("finished"),
        data_name=data.get("name", ""),
        data_kind=data.get("kind", ""),
        n_explain=data.get("n_explain"),
        n_fit=data.get("n_fit"),
        n_groups=data.get("n_groups"),
        model_desc=model.get("description", ""),
        latent_dim=model.get("latent_dim"),
        latents=latents,
        latent_names=[n for n in verdict.latents],
        latent_views=views,
        code_page=code,
        latent_pages={n: Markup(page_html(pages[n])) if n in pages else Markup("") for n in verdict.latents},
        verdict=verdict,
        members=data.get("group_members") or {},
        steps=steps,
        entries=entries,
        pairs=pairs,
        failures=results.failures,
        top_k=top_k,
        data_rows=[(k, json.dumps(v)[:400]) for k, v in data.items() if k != "group_members"],
        model_rows=[(k, json.dumps(v)[:400]) for k, v in model.items()],
        plugins=doc.get("plugins") or [],
    )


def write_html(
    results: RunResults,
    plots: Mapping[str, Sequence[Path]],
    *,
    top_k: int = 5,
    verdict: Verdicts | None = None,
    data_info: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``report.html`` (atomically) beside ``results.json``."""
    path = results.out_dir / "report.html"
    tmp = path.with_name(".report.html.tmp")
    tmp.write_text(render_html(results, plots, top_k=top_k, verdict=verdict, data_info=data_info), encoding="utf-8")
    tmp.replace(path)
    return path
