"""A latent page as HTML (report tab and notebook) and as rich text (terminal).

Pictures are inline SVG (histogram, beeswarm, sequences) or PNG data URIs written here without
matplotlib (images), so one page renders in milliseconds and nothing is fetched.
"""

from __future__ import annotations

import base64
import html
import struct
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the page module imports this one to draw itself
    from .latent import LatentPage

__all__ = ["page_html", "page_document", "page_rich", "PAGE_CSS", "matrix_html"]

esc = html.escape

PAGE_CSS = """
.lp{font:14px/1.45 system-ui,sans-serif;color:#222;max-width:1100px}
.lp h3{margin:.2em 0}.lp h4{margin:.8em 0 .3em;border-bottom:1px solid #ddd}
.lp .muted{color:#777;font-size:12px}.lp .flag{color:#a15c00;font-weight:600}
.lp table{border-collapse:collapse;margin:.3em 0}.lp td,.lp th{border:1px solid #e3e3e3;padding:2px 6px;text-align:right;font-size:13px}
.lp td.l,.lp th.l{text-align:left}.lp .grid{display:flex;flex-wrap:wrap;gap:18px}.lp .grid>div{min-width:260px}
.lp .up{color:#b2182b}.lp .down{color:#2166ac}.lp img.ex{image-rendering:pixelated;width:56px;height:56px;border:1px solid #ccc}
"""


def _f(v: float) -> str:
    return "nan" if v is None or not np.isfinite(v) else f"{v:.3g}"


def matrix_html(names: list[str], m: np.ndarray, *, signed: bool) -> str:
    """A small square heatmap table (latents x latents), its value in each cell's tooltip."""
    finite = m[np.isfinite(m)]
    peak = float(np.abs(finite).max()) if finite.size else 0.0
    peak = peak or 1.0
    rows = ["<table class='hm'><tr><th></th>" + "".join(f"<th>{esc(n)}</th>" for n in names) + "</tr>"]
    for i, a in enumerate(names):
        cells = []
        for j, b in enumerate(names):
            v = float(m[i, j])
            t = max(-1.0, min(1.0, v / peak)) if np.isfinite(v) else 0.0
            bg = (
                (f"rgb(255,{int(255 - 200 * t)},{int(255 - 210 * t)})" if t >= 0 else f"rgb({int(255 + 200 * t)},{int(255 + 150 * t)},255)")
                if signed
                else f"rgb({int(255 - 90 * abs(t))},{int(255 - 215 * abs(t))},{int(255 - 175 * abs(t))})"
            )
            text = f"{v:.2f}" if len(names) <= 12 and np.isfinite(v) else ""
            cells.append(
                f"<td data-tip='{esc(a)} · {esc(b)}: {_f(v)}' title='{_f(v)}' style='background:{bg};min-width:2.4em;height:1.5em;font-size:11px;text-align:center'>{text}</td>"
            )
        rows.append(f"<tr><th>{esc(a)}</th>{''.join(cells)}</tr>")
    return "".join(rows) + "</table>"


def _png(img: np.ndarray) -> str:
    """A greyscale / RGB uint8 PNG (no matplotlib) as a data URI."""
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    u8 = np.zeros(a.shape, np.uint8) if hi <= lo else np.clip((a - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
    h, w = u8.shape[:2]
    colour = 2 if u8.ndim == 3 else 0
    raw = b"".join(b"\x00" + u8[r].tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _sparkline(seq: np.ndarray, w: int = 120, h: int = 36) -> str:
    a = np.asarray(seq, dtype=np.float64).reshape(seq.shape[0], -1)
    lo, hi = float(a.min()), float(a.max())
    span = hi - lo or 1.0
    xs = np.linspace(2, w - 2, a.shape[0])
    lines = []
    for k in range(min(a.shape[1], 4)):
        ys = h - 2 - (a[:, k] - lo) / span * (h - 4)
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
        lines.append(
            f"<polyline fill='none' stroke='{['#1b9e77', '#d95f02', '#7570b3', '#e7298a'][k]}' stroke-width='1.2' points='{pts}'/>"
        )
    return f"<svg width='{w}' height='{h}' role='img'>{''.join(lines)}</svg>"


def histogram_svg(z: np.ndarray, marks: dict[str, float], w: int = 320, h: int = 110, bins: int = 30) -> str:
    counts, edges = np.histogram(z, bins=bins)
    peak = max(int(counts.max()), 1)
    bw = (w - 10) / bins
    bars = "".join(
        f"<rect x='{5 + i * bw:.1f}' y='{h - 18 - c / peak * (h - 26):.1f}' width='{max(bw - 1, 1):.1f}' height='{c / peak * (h - 26):.1f}' fill='#8c6bb1'><title>{_f(edges[i])} … {_f(edges[i + 1])}: {c}</title></rect>"
        for i, c in enumerate(counts)
    )
    span = float(edges[-1] - edges[0]) or 1.0
    ticks = "".join(
        f"<line x1='{5 + (v - edges[0]) / span * (w - 10):.1f}' x2='{5 + (v - edges[0]) / span * (w - 10):.1f}' y1='4' y2='{h - 18}' stroke='#444' stroke-dasharray='2,2'><title>{esc(k)} {_f(v)}</title></line>"
        for k, v in marks.items()
    )
    axis = f"<text x='5' y='{h - 4}' font-size='10'>{_f(edges[0])}</text><text x='{w - 5}' y='{h - 4}' font-size='10' text-anchor='end'>{_f(edges[-1])}</text>"
    return f"<svg class='hist' width='{w}' height='{h}' role='img' aria-label='histogram'>{bars}{ticks}{axis}</svg>"


def beeswarm_svg(names: list[str], local: np.ndarray, colour: np.ndarray | None, w: int = 440, max_points: int = 300) -> str:
    """Per-sample signed attributions of the shown features (rows in the given order), colour = feature value."""
    rows = len(names)
    rh, left = 18, 110
    h = rows * rh + 20
    peak = float(np.nanmax(np.abs(local))) if local.size else 0.0
    peak = peak or 1.0
    rng = np.random.default_rng(0)
    take = np.arange(local.shape[0]) if local.shape[0] <= max_points else np.sort(rng.choice(local.shape[0], max_points, replace=False))
    mid = left + (w - left - 8) / 2
    out = [
        f"<svg class='swarm' width='{w}' height='{h}' role='img' aria-label='beeswarm'><line x1='{mid:.1f}' x2='{mid:.1f}' y1='0' y2='{h - 16}' stroke='#999'/>"
    ]
    for k, name in enumerate(names):
        y0 = 10 + k * rh
        out.append(f"<text x='{left - 4}' y='{y0 + 4}' font-size='11' text-anchor='end'>{esc(name[:16])}</text>")
        col = colour[take, k] if colour is not None else None
        lo, hi = (float(np.nanmin(col)), float(np.nanmax(col))) if col is not None and col.size else (0.0, 0.0)
        jitter = rng.uniform(-5, 5, size=len(take))
        for n, s in enumerate(take):
            if not np.isfinite(local[s, k]):  # not among this sample's kept top features
                continue
            x = mid + local[s, k] / peak * (w - left - 8) / 2
            t = 0.5 if col is None or hi <= lo else (col[n] - lo) / (hi - lo)
            fill = f"rgb({int(30 + 225 * t)},{int(60 + 40 * (1 - abs(2 * t - 1)))},{int(255 - 225 * t)})"
            out.append(f"<circle cx='{x:.1f}' cy='{y0 + jitter[n]:.1f}' r='1.8' fill='{fill}'/>")
    out.append(
        f"<text x='{mid:.1f}' y='{h - 3}' font-size='10' text-anchor='middle'>signed attribution; colour = feature value (blue low, red high)</text></svg>"
    )
    return "".join(out)


def _example_cell(page: LatentPage, row: int) -> str:
    ex = page.examples.get(row)
    if ex is None:
        return ""
    if page.data_kind == "image":
        return f"<img class='ex' alt='row {row}' src='{_png(ex)}'>"
    if page.data_kind == "sequence":
        return _sparkline(ex)
    return ""


def _rows_table(page: LatentPage, rows: list[dict[str, Any]], caption: str) -> str:
    head = "<tr><th>sample</th><th>" + esc(page.name) + "</th>" + "".join(f"<th>{esc(f)}</th>" for f in page.row_features)
    head += "<th class='l'>input</th></tr>" if page.examples else "</tr>"
    body = []
    for r in rows:
        cells = "".join(f"<td>{_f(v)}</td>" for v in r["values"])
        ex = f"<td class='l'>{_example_cell(page, r['row'])}</td>" if page.examples else ""
        body.append(f"<tr><td>{r['sample']}</td><td><b>{_f(r['z'])}</b></td>{cells}{ex}</tr>")
    return f"<div><div class='muted'>{esc(caption)}</div><table>{head}{''.join(body)}</table></div>"


def _effect_html(eff: dict[str, Any]) -> str:
    def lst(items: list[tuple[str, float]], css: str, sign: str) -> str:
        if not items:
            return f"<div class='muted'>no output {'raised' if sign == '+' else 'lowered'} above 5 % of the peak</div>"
        return "<table>" + "".join(f"<tr><td class='l {css}'>{sign} {esc(n)}</td><td>{_f(v)}</td></tr>" for n, v in items) + "</table>"

    head = f"<div class='muted'>{esc(str(eff['source']))}: {esc(str(eff['unit']))}</div>"
    if not eff["signed"]:
        return f"<div>{head}{lst(eff['up'], '', '')}</div>"
    return f"<div>{head}<div class='grid'><div><b class='up'>raises</b>{lst(eff['up'], 'up', '+')}</div><div><b class='down'>lowers</b>{lst(eff['down'], 'down', '−')}</div></div></div>"


def page_html(page: LatentPage) -> str:
    """The page as an HTML fragment (``<div class='lp'>``), the same in the report and the notebook."""
    out = [f"<div class='lp' data-latent-page='{esc(page.name)}'><h3>{esc(page.name)}</h3>"]
    for flag in page.flags:
        out.append(f"<p class='flag'>⚠ {esc(flag)}</p>")
    # drives
    out.append("<h4>What drives it</h4>")
    if page.consensus:
        trust = (
            ""
            if page.agreement is None
            else f"agreement {page.agreement:.2f} (share of each explainer's top {len(page.core)} that are the consensus top {len(page.core)})"
        )
        if page.weighted_tau is not None:
            trust += f"; weighted Kendall τ between explainers {page.weighted_tau:.2f}"
        out.append(f"<p>consensus: <b>{esc(', '.join(page.core))}</b> <span class='muted'>{esc(trust)}</span></p>")
        head = (
            "<tr><th class='l'>input</th><th>consensus</th><th>mean share</th>"
            + "".join(f"<th title='{esc(v.label)}'>{esc(v.alias)} rank</th>" for v in page.steps)
            + "</tr>"
        )
        rows = []
        for f, score, share in page.consensus[:10]:
            ranks = "".join(f"<td>{v.rank.get(f, float('nan')):.0f}</td>" for v in page.steps)
            rows.append(f"<tr><td class='l'>{esc(f)}</td><td>{score:.2f}</td><td>{share:.3f}</td>{ranks}</tr>")
        out.append(
            f"<table class='consensus'>{head}{''.join(rows)}</table><p class='muted'>consensus = mean over explainers of the normalised rank (1 = first, 0 = last); each explainer ranks by its own importance, never a signed mean</p>"
        )
        out.append("<div class='grid'>")
        drawn = False
        for v in page.steps:
            peak = max((abs(x) for _, x in v.top), default=0.0) or 1.0
            bars = "".join(
                f"<div class='r' data-tip='{esc(n)}: {_f(x)}'><span class='l'>{esc(n)}</span><span class='b' style='display:inline-block;background:#6a51a3;height:9px;width:{int(120 * abs(x) / peak)}px'></span> <span class='v'>{_f(x)}</span></div>"
                for n, x in v.top[:8]
            )
            swarm = ""
            if v.signed is not None and not drawn:  # one signed view per page keeps a report of many latents small
                swarm = beeswarm_svg(
                    [n for n, _ in v.top[:8]], v.signed[:, :8], None if v.colour is None else v.colour[:, :8], max_points=200
                )
                drawn = True
            out.append(
                f"<div class='stepview' data-step='{esc(v.alias)}'><b>{esc(v.alias)}</b> <span class='muted'>{esc(v.label)}; {esc(v.unit)}</span><div class='bars'>{bars}</div>{swarm}</div>"
            )
        out.append("</div>")
    else:
        out.append("<p class='muted'>no step attributed this latent to the inputs</p>")
    # does
    out.append("<h4>What it does to the output</h4>")
    out.append(
        "".join(_effect_html(e) for e in page.effects)
        or "<p class='muted'>no signed output effects stored (the run kept no codes and no step explains the outputs)</p>"
    )
    # when high
    out.append("<h4>When it is high</h4>")
    if page.values is not None:
        s = page.stats
        out.append(
            f"<p class='muted'>over {int(s['n'])} explained rows: mean {_f(s['mean'])}, SD {_f(s['sd'])}, min {_f(s['min'])}, median {_f(s['median'])}, max {_f(s['max'])}</p>"
        )
        out.append(histogram_svg(page.values, {"5 %": s["q05"], "median": s["median"], "95 %": s["q95"]}))
        if page.top_rows:
            out.append(
                "<div class='grid'>"
                + _rows_table(page, page.top_rows, "top-activating samples")
                + _rows_table(page, page.quantile_rows, "samples at the 5, 25, 50, 75 and 95 % quantiles")
                + "</div>"
            )
    else:
        out.append("<p class='muted'>no codes stored for this run (latent_codes.npz)</p>")
    # relations
    out.append("<h4>Relations</h4>")
    if page.correlated:
        out.append(
            "<table><tr><th class='l'>latent</th><th>Pearson</th><th>MI (nats)</th></tr>"
            + "".join(f"<tr><td class='l'>{esc(n)}</td><td>{c:.3f}</td><td>{m:.3f}</td></tr>" for n, c, m in page.correlated)
            + "</table>"
        )
    for alias, line in page.lines:
        out.append(f"<p><span class='muted'>{esc(alias)}</span> <code>{esc(line)}</code></p>")
    if page.pairs:
        out.append(
            "<table><tr><th class='l'>step</th><th class='l'>interacting pair</th><th>value</th></tr>"
            + "".join(
                f"<tr><td class='l'>{esc(a)}</td><td class='l'>{esc(x)} × {esc(y)}</td><td>{_f(v)}</td></tr>" for a, x, y, v in page.pairs
            )
            + "</table>"
        )
    if page.faithfulness:
        out.append(
            "<table><tr><th class='l'>faithfulness of</th><th>AUC</th><th>random</th><th class='l'>faithful</th></tr>"
            + "".join(
                f"<tr><td class='l'>{esc(s)} <span class='muted'>({esc(a)})</span></td><td>{_f(r.get('auc', float('nan')))}</td><td>{_f(r.get('random_auc', float('nan')))}</td><td class='l'>{esc(str(r.get('faithful')))}</td></tr>"
                for a, s, r in page.faithfulness
            )
            + "</table>"
        )
    out.append("</div>")
    return "".join(out)


def page_document(page: LatentPage) -> str:
    """The fragment with its stylesheet (for ``_repr_html_``: readable at the notebook's width)."""
    return f"<style>{PAGE_CSS}</style>{page_html(page)}"


def page_rich(page: LatentPage) -> Any:
    """The page for the terminal: consensus, effects, spread, top rows and relations as rich tables."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = [Text(f"latent {page.name}", style="bold underline")]
    for flag in page.flags:
        parts.append(Text(f"! {flag}", style="yellow"))
    if page.consensus:
        head = f"drives: {', '.join(page.core)}"
        if page.agreement is not None:
            head += f"  (agreement {page.agreement:.2f}"
            head += f", weighted tau {page.weighted_tau:.2f})" if page.weighted_tau is not None else ")"
        parts.append(Text(head, style="bold"))
        t = Table(box=None, padding=(0, 1, 0, 0), show_edge=False)
        t.add_column("input", overflow="fold", max_width=24)
        t.add_column("consensus", justify="right")
        for v in page.steps[:4]:
            t.add_column(escape(v.alias[:12]), justify="right", no_wrap=True)
        for f, score, _ in page.consensus[:8]:
            t.add_row(escape(f), f"{score:.2f}", *[f"{v.rank.get(f, float('nan')):.0f}" for v in page.steps[:4]])
        parts.append(t)
        if len(page.steps) > 4:
            parts.append(Text(f"… ranks of {len(page.steps) - 4} more explainers in report.html", style="dim"))
    else:
        parts.append(Text("drives: no step attributed this latent to the inputs", style="dim"))
    for eff in page.effects[:2]:
        up = ", ".join(f"{n} {_f(v)}" for n, v in eff["up"][:4]) or "none"
        line = Text("does: ", style="bold").append(f"[{eff['source']}] ")
        if eff["signed"]:
            down = ", ".join(f"{n} {_f(v)}" for n, v in eff["down"][:4]) or "none"
            line.append("+ ", style="red").append(up + "  ").append("- ", style="blue").append(down)
        else:
            line.append(up)
        parts.append(line)
    if page.values is not None:
        s = page.stats
        parts.append(
            Text("values: ", style="bold").append(
                f"mean {_f(s['mean'])} sd {_f(s['sd'])} min {_f(s['min'])} median {_f(s['median'])} max {_f(s['max'])} over {int(s['n'])} rows"
            )
        )
    if page.top_rows:
        top = Table(title="top-activating samples", title_justify="left", box=None, padding=(0, 1, 0, 0))
        top.add_column("sample", justify="right")
        top.add_column(escape(page.name), justify="right")
        for f in page.row_features[:4]:
            top.add_column(escape(f[:10]), justify="right", no_wrap=True)
        for r in page.top_rows:
            top.add_row(str(r["sample"]), _f(r["z"]), *[_f(v) for v in r["values"][:4]])
        parts.append(top)
    if page.correlated:
        parts.append(Text("correlated: ", style="bold").append(", ".join(f"{n} r={c:.2f} MI={m:.2f}" for n, c, m in page.correlated[:3])))
    for alias, line in page.lines[:6]:  # type: ignore[assignment]
        parts.append(Text(f"{alias}: ", style="dim").append(line))
    for alias, x, y, v in page.pairs[:3]:  # type: ignore[assignment]
        parts.append(Text(f"{alias}: interacting pair {x} x {y} ({_f(v)})", style="dim"))  # type: ignore[arg-type]
    for alias, source, r in page.faithfulness[:3]:
        parts.append(
            Text(
                f"{alias}: {source} faithful={r.get('faithful')} AUC {_f(r.get('auc', float('nan')))} vs random {_f(r.get('random_auc', float('nan')))}",
                style="dim",
            )
        )
    return Group(*parts)
