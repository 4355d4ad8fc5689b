"""The rich terminal report."""

from __future__ import annotations

import numpy as np
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..explanation import Explanation
from ..results import RunResults
from .summary import agreements, dead_targets, redundant_features, top_columns

__all__ = ["print_report"]

MAX_ROWS = 16
MAX_COLUMNS = 12


def _cell(value: float, peak: float) -> Text:
    level = 0.0 if peak <= 0 else max(0.0, min(1.0, value / peak))
    shade = int(40 + 180 * level)
    fg = "black" if level > 0.55 else "white"
    return Text(f"{value:.3g}", style=f"{fg} on rgb({shade},{int(shade * 0.55)},{int(60 * (1 - level))})", justify="right")


def heatmap(e: Explanation, max_rows: int = MAX_ROWS, max_columns: int = MAX_COLUMNS) -> Table:
    """The most important features (rows) x targets (columns), cells shaded by importance."""
    rows = top_columns(e, max_rows)
    targets = list(range(min(len(e.target_names), max_columns)))
    peak = float(np.max(e.importance[np.ix_(targets, rows)])) if rows and targets else 0.0
    table = Table(
        title=f"importance: top {len(rows)} of {len(e.feature_names)} features x {escape(e.target)}",
        title_justify="left", show_edge=False, pad_edge=False,
    )
    table.add_column("feature", style="bold", no_wrap=True, max_width=28)
    for r in targets:
        table.add_column(escape(e.target_names[r][:10]), justify="right", no_wrap=True)
    for i in rows:
        table.add_row(escape(e.feature_names[i]), *[_cell(float(e.importance[r, i]), peak) for r in targets])
    if len(e.target_names) > len(targets):
        table.caption = f"first {len(targets)} of {len(e.target_names)} targets; all in results.json"
    return table


def top_table(e: Explanation, k: int) -> Table:
    table = Table(title="top features per target", title_justify="left", show_edge=False)
    table.add_column("target", style="bold")
    table.add_column("features (importance" + (" ± std" if e.std is not None else "") + ")")
    order = np.argsort(-e.importance, axis=1, kind="stable")[:, :k]
    for r, name in enumerate(e.target_names[:MAX_ROWS]):
        parts = []
        for i in order[r]:
            val = f"{e.importance[r, i]:.3g}"
            if e.std is not None:
                val += f"±{e.std[r, i]:.2g}"
            parts.append(f"{e.feature_names[i]} ({val})")
        table.add_row(escape(name), escape(", ".join(parts)))
    return table


def _facts(e: Explanation) -> Text:
    text = Text()
    for line in (e.extras.get("summary") or [])[:MAX_ROWS]:  # an explainer's own headline lines
        text.append(str(line) + "\n")
    redundant = redundant_features(e)
    if redundant:
        shown = ", ".join(redundant[:12]) + (f" (+{len(redundant) - 12} more)" if len(redundant) > 12 else "")
        text.append("redundant features (no target depends on them): ", style="yellow").append(shown + "\n")
    dead = dead_targets(e) if e.target == "latent" else []
    if dead:
        text.append("dead latents (depend on no feature): ", style="yellow").append(", ".join(dead) + "\n")
    scalars = {k: v for k, v in e.extras.items() if isinstance(v, (int, float, str, bool)) and len(str(v)) < 80 and k != "summary"}
    if scalars:
        text.append("details: ", style="dim").append(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in scalars.items()), style="dim")
    return text


def print_report(console: Console, results: RunResults, *, top_k: int = 5) -> None:
    doc = results.doc
    data, model = doc.get("data", {}), doc.get("model", {})
    console.rule(f"aeinterp {doc.get('aeinterp_version', '')} report")
    e_ = lambda v: escape(str(v))  # noqa: E731 - names and paths come from the user's files
    console.print(
        f"data: [bold]{e_(data.get('name'))}[/bold] ({e_(data.get('kind'))}, {e_(data.get('n_explain'))} explained / {e_(data.get('n_fit'))} fit samples, "
        f"{e_(data.get('n_groups'))} feature groups)   model: [bold]{e_(model.get('description'))}[/bold] "
        f"latent_dim={e_(model.get('latent_dim'))} from {e_(model.get('source'))}",
        highlight=False,
    )
    for alias, e in results.explanations.items():
        body = Group(heatmap(e), top_table(e, top_k), _facts(e))
        dash = "—" if (console.encoding or "").lower().startswith("utf") else "-"
        title = escape(f"{alias} {dash} {e.explainer} ({e.distribution} {e.version})".strip())
        console.print(Panel(body, title=title, title_align="left"))
    pairs = agreements(results.explanations)
    if pairs:
        table = Table(title="agreement between explainers", title_justify="left")
        for col in ("a", "b", "target", "spearman", "same top feature"):
            table.add_column(col)
        for p in pairs:
            table.add_row(escape(p.a), escape(p.b), escape(p.target), f"{p.spearman:.2f}", f"{p.top1:.0%}")
        console.print(table)
    timing = Table(title="steps", title_justify="left")
    for col in ("alias", "explainer", "target", "status", "time (s)"):
        timing.add_column(col)
    for entry in results.entries:
        ok = entry.get("status") == "ok"
        timing.add_row(escape(str(entry["alias"])), escape(str(entry["name"])), escape(str(entry.get("target", ""))), "[green]ok[/green]" if ok else "[red]error[/red]", f"{entry.get('runtime_s') or 0:.2f}" if ok else "-")
    console.print(timing)
    for entry in results.failures:
        console.print(f"[red]{e_(entry['alias'])} failed[/red] ({e_(entry['name'])} from {e_(entry.get('distribution') or '?')} {e_(entry.get('version') or '')}): {e_(entry.get('error'))}", highlight=False)
