"""One self-contained HTML report (PNGs embedded as data URIs, no external assets)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path


from ..results import RunResults
from .summary import agreements, dead_targets, redundant_features

__all__ = ["write_html"]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}
th{background:#f4f4f4}.err{color:#b00020}.ok{color:#0a7d28}img{max-width:100%;margin:.5rem 0;border:1px solid #eee}
.muted{color:#666;font-size:.85rem}code{background:#f4f4f4;padding:0 .2rem}
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(results: RunResults, plots: dict[str, list[Path]], *, top_k: int = 5) -> Path:
    doc = results.doc
    e_ = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>aeinterp report</title><style>{CSS}</style></head><body>"]
    parts.append(f"<h1>aeinterp report</h1><p class='muted'>aeinterp {e_(str(doc.get('aeinterp_version')))} · status {e_(str(doc.get('status')))} · started {e_(str(doc.get('started')))}</p>")
    data, model = doc.get("data", {}), doc.get("model", {})
    parts.append(_table([[e_(k), e_(json.dumps(v))] for k, v in data.items()], ["data", ""]))
    parts.append(_table([[e_(k), e_(json.dumps(v))] for k, v in model.items()], ["model", ""]))
    steps = [[e_(x["alias"]), e_(x["name"]), e_(x.get("target", "")), "<span class='ok'>ok</span>" if x.get("status") == "ok" else "<span class='err'>error</span>", f"{x.get('runtime_s') or 0:.2f}" if x.get("status") == "ok" else e_(x.get("error", ""))] for x in results.entries]
    parts.append("<h2>Steps</h2>" + _table(steps, ["alias", "explainer", "target", "status", "time (s) / error"]))
    for alias, ex in results.explanations.items():
        parts.append(f"<h2 id='{e_(alias)}'>{e_(alias)} <span class='muted'>{e_(ex.explainer)} · {e_(ex.distribution)} {e_(ex.version)} · target {e_(ex.target)}</span></h2>")
        for p in plots.get(alias, []):
            parts.append(_img(p))
        summary = ex.extras.get("summary") or []
        if summary:
            parts.append("<ul>" + "".join(f"<li>{e_(str(line))}</li>" for line in summary) + "</ul>")
        top = list(ex.top_features(top_k).items())[:64]
        rows = [[e_(t), e_(", ".join(f"{name} ({value:.3g})" for name, value in features))] for t, features in top]
        parts.append(_table(rows, ["target", f"top {top_k} features"]))
        red, dead = redundant_features(ex), dead_targets(ex) if ex.target == "latent" else []
        if red:
            parts.append(f"<p><b>Redundant features</b> (no target depends on them): {e_(', '.join(red))}</p>")
        if dead:
            parts.append(f"<p><b>Dead latents</b>: {e_(', '.join(dead))}</p>")
        if ex.extras:
            parts.append(f"<details><summary>details</summary><pre>{e_(json.dumps(ex.extras, indent=1)[:20000])}</pre></details>")
        parts.append(f"<p class='muted'>params: <code>{e_(json.dumps(ex.params))}</code></p>")
    pairs = agreements(results.explanations)
    if pairs:
        parts.append("<h2>Agreement between explainers</h2>" + _table([[e_(p.a), e_(p.b), e_(p.target), f"{p.spearman:.2f}", f"{p.top1:.0%}"] for p in pairs], ["a", "b", "target", "Spearman", "same top feature"]))
    if results.failures:
        parts.append("<h2>Failures</h2>" + "".join(f"<p class='err'><b>{e_(f['alias'])}</b> ({e_(f['name'])} from {e_(f.get('distribution') or '?')} {e_(f.get('version') or '')}): {e_(f.get('error', ''))}</p>" for f in results.failures))
    plugins = doc.get("plugins", [])
    if plugins:
        parts.append("<h2>Plugins</h2>" + _table([[e_(p["name"]), e_(p["distribution"]), e_(p["version"]), e_(p["status"]), e_(p.get("error", ""))] for p in plugins], ["plugin", "distribution", "version", "status", "error"]))
    parts.append("</body></html>")
    path = results.out_dir / "report.html"
    tmp = path.with_name(".report.html.tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(path)
    return path
