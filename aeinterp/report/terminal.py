"""The rich terminal report, laid out for the console's width.

Numbers are never cut: a heatmap shows as many target columns as fit and says "… N more targets";
names wrap instead of ending in "…". A one-line-per-latent summary comes first, then the run's
verdicts (each with its basis), then one panel per step. ``±`` appears only where there is a spread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..explanation import Explanation
from ..run.results import RunResults
from ..text import safe_console
from .summary import Verdicts, agreeing, agreements, explained_rows, shown_note, top_columns, top_rows, unit_of, verdicts

__all__ = ["print_report", "fmt", "select_targets"]

MAX_ROWS = 16
MAX_SUMMARY_LINES = 40
PANEL_CHROME = 4  # panel borders and padding


def fmt(value: float) -> str:
    """A number in at most 7 characters, never cut: 0.123, 12.3, 1.2e+04, -0.0042."""
    if value is None or not np.isfinite(value):
        return "nan"
    a = abs(value)
    if a == 0:
        return "0"
    if 1e-3 <= a < 1e4:
        return f"{value:.3g}"
    return f"{value:.1e}"


def select_targets(e: Explanation, targets: str | Sequence[str] | int | None) -> list[int]:
    """Rows of ``e`` the user asked for: names (a list or "z0,z3"), a count of the most important, or all explained."""
    if targets is None or targets == "":
        return explained_rows(e)
    if isinstance(targets, int) or (isinstance(targets, str) and targets.strip().isdigit()):
        return top_rows(e, int(targets))
    names = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else [str(t) for t in targets]
    return [e.target_names.index(n) for n in names if n in e.target_names]


def _cell(value: float, peak: float, width: int) -> Text:
    level = 0.0 if peak <= 0 else max(0.0, min(1.0, value / peak))
    shade = int(40 + 180 * level)
    fg = "black" if level > 0.55 else "white"
    return Text(fmt(value).rjust(width), style=f"{fg} on rgb({shade},{int(shade * 0.55)},{int(60 * (1 - level))})", no_wrap=True)


def heatmap(e: Explanation, width: int, rows: Sequence[int], max_features: int = MAX_ROWS) -> Group:
    """Top features (rows) x as many of ``rows`` (targets, columns) as fit in ``width`` characters."""
    feats = top_columns(e, max_features, rows)
    name_w = min(24, max([len(e.feature_names[i]) for i in feats] + [7]))
    cells = [fmt(float(e.importance[r, i])) for r in rows for i in feats]
    col_w = max([len(c) for c in cells] + [len(e.target_names[r]) for r in rows] + [3])
    fit = max(1, (width - name_w - 1) // (col_w + 1))
    shown = list(rows)
    if len(shown) > fit:
        keep = set(top_rows(e.replace(extras={**e.extras, "explained_targets": list(rows)}), fit))
        shown = [r for r in rows if r in keep]
    peak = float(np.max(e.importance[np.ix_(shown, feats)])) if shown and feats else 0.0
    table = Table(show_edge=False, pad_edge=False, box=None, padding=(0, 1, 0, 0), collapse_padding=True)
    table.add_column("feature", style="bold", overflow="fold", max_width=name_w, min_width=min(name_w, 7))
    for r in shown:
        table.add_column(escape(e.target_names[r]), justify="right", no_wrap=True, min_width=col_w, max_width=col_w)
    for i in feats:
        table.add_row(escape(e.feature_names[i]), *[_cell(float(e.importance[r, i]), peak, col_w) for r in shown])
    if len(shown) < len(rows):
        table.caption = f"… {len(rows) - len(shown)} more targets (the {len(shown)} with the largest importance shown; all in report.html / results.json; --targets to choose)"
        table.caption_justify = "left"
    title = Text(
        f"importance: {shown_note(len(feats), len(e.feature_names), 'features')} x {len(shown)} of {len(e.target_names)} {e.target} targets",
        style="italic",
    )
    return Group(title, table)


def _has_spread(e: Explanation) -> bool:
    return e.std is not None and bool(np.any(e.std > 0))


def top_table(e: Explanation, k: int, rows: Sequence[int]) -> Group:
    spread = _has_spread(e)
    table = Table(show_edge=False, box=None, padding=(0, 1, 0, 0))
    table.add_column("target", style="bold", no_wrap=True)
    table.add_column("features", overflow="fold", ratio=1)
    order = np.argsort(-e.importance, axis=1, kind="stable")[:, :k]
    for r in list(rows)[:MAX_ROWS]:
        parts = []  # type: ignore[var-annotated]
        for i in order[r]:
            if e.importance[r, i] <= 0 and parts:
                break
            val = fmt(float(e.importance[r, i]))
            if spread and e.std is not None and e.std[r, i] > 0:
                val += f"±{fmt(float(e.std[r, i]))}"
            parts.append(f"{e.feature_names[i]} {val}")
        table.add_row(escape(e.target_names[r]), escape(", ".join(parts)))
    if len(rows) > MAX_ROWS:
        table.caption = f"… {len(rows) - MAX_ROWS} more targets (--targets to choose)"
        table.caption_justify = "left"
    return Group(
        Text(f"top features per target ({k} each" + (", importance ± std over repeats)" if spread else ")"), style="italic"), table
    )


def _headlines(e: Explanation, rows: Sequence[int]) -> Text:
    text = Text()
    lines = [str(x) for x in (e.extras.get("summary") or [])]
    names = {e.target_names[r] for r in rows}
    per_target = [ln for ln in lines if ln.split(" ", 1)[0].rstrip(":=") in set(e.target_names)]
    if per_target:  # one line per target: keep those of the shown targets
        lines = [ln for ln in lines if ln not in per_target or ln.split(" ", 1)[0].rstrip(":=") in names]
    for line in lines[:MAX_ROWS]:
        text.append(line + "\n")
    if len(lines) > MAX_ROWS:
        text.append(f"… {len(lines) - MAX_ROWS} more lines in report.html\n", style="dim")
    scalars = {
        k: v for k, v in e.extras.items() if isinstance(v, (int, float, str, bool)) and len(str(v)) < 80 and k not in ("summary", "unit")
    }
    if scalars:
        text.append("details: ", style="dim").append(
            ", ".join(f"{k}={fmt(v)}" if isinstance(v, float) else f"{k}={v}" for k, v in scalars.items()), style="dim"
        )
    return text


def _latent_lines(console: Console, results: RunResults, verdict: Verdicts, wanted: set[str] | None) -> None:
    names = [n for n in verdict.latents if wanted is None or n in wanted]
    if not names:
        return
    table = Table(
        title="latents: top 3 inputs by consensus rank over every explainer of the inputs; explainers whose own top input agrees (aeinterp show OUT --latent NAME: one latent's page)",
        title_justify="left",
        box=None,
        padding=(0, 1, 0, 0),
        show_header=False,
    )
    table.add_column("latent", style="bold", no_wrap=True)
    table.add_column("top inputs", overflow="fold", ratio=3)
    table.add_column("agree", overflow="fold", ratio=1, style="dim")
    for n in names[:MAX_SUMMARY_LINES]:
        if n in verdict.not_explained:
            table.add_row(escape(n), Text("not explained by any step", style="dim"), "")
            continue
        top, agree = agreeing(results.explanations, n)
        judges = [a for a, p in verdict.per_explainer.items() if n in p["explained"]]
        tops = Text(", ".join(top) or "-")
        if n in verdict.dead:
            tops.append("  dead", style="yellow")
        table.add_row(escape(n), tops, escape(f"{len(agree)}/{len(judges)}" + (f" {', '.join(agree)}" if agree else "") if judges else ""))
    if len(names) > MAX_SUMMARY_LINES:
        table.caption = f"… {len(names) - MAX_SUMMARY_LINES} more latents (--targets to choose)"
        table.caption_justify = "left"
    console.print(table)


def _list(items: Sequence[str], limit: int = 20) -> str:
    return ", ".join(items[:limit]) + (f" (… {len(items) - limit} more)" if len(items) > limit else "")


def _verdict_text(verdict: Verdicts, members: Mapping[str, Sequence[str]]) -> Text:
    text = Text()
    if verdict.dead:
        text.append("dead latents: ", style="yellow").append(_list(verdict.dead)).append(f"  — {verdict.basis['dead']}\n", style="dim")
    if verdict.not_explained:
        text.append("not explained: ", style="cyan").append(_list(verdict.not_explained)).append(
            f"  — {verdict.basis['not_explained']}\n", style="dim"
        )
    if verdict.redundant:
        text.append("redundant features: ", style="yellow").append(_list(verdict.redundant)).append(
            f"  — {verdict.basis['redundant']}\n", style="dim"
        )
    for name, ms in list(members.items())[:12]:
        text.append(f"group {name}: ", style="dim").append(_list(list(ms), 12) + "\n", style="dim")
    if len(members) > 12:
        text.append(f"… {len(members) - 12} more groups in results.json (data.group_members)\n", style="dim")
    return text


def print_report(
    console: Console,
    results: RunResults,
    *,
    top_k: int = 5,
    targets: str | Sequence[str] | int | None = None,
    verdict: Verdicts | None = None,
) -> None:
    console = safe_console(console)  # names come from the user's files: control characters are shown, not obeyed
    doc = results.doc
    data, model = doc.get("data", {}), doc.get("model", {})
    verdict = verdict or verdicts(results.explanations, model.get("latent_dim") if isinstance(model.get("latent_dim"), int) else None)
    width = console.width
    console.rule(f"aeinterp {doc.get('aeinterp_version', '')} report")
    e_ = lambda v: escape(str(v))  # noqa: E731 - names and paths come from the user's files
    console.print(
        f"data: [bold]{e_(data.get('name'))}[/bold] ({e_(data.get('kind'))}, {e_(data.get('n_explain'))} explained / {e_(data.get('n_fit'))} fit samples, "
        f"{e_(data.get('n_groups'))} feature groups)   model: [bold]{e_(model.get('description'))}[/bold] "
        f"latent_dim={e_(model.get('latent_dim'))} from {e_(model.get('source'))}",
        highlight=False,
    )
    wanted = None
    if targets is not None and not (isinstance(targets, str) and targets.strip().isdigit()) and not isinstance(targets, int):
        wanted = set(t.strip() for t in targets.split(",")) if isinstance(targets, str) else {str(t) for t in targets}
    _latent_lines(console, results, verdict, wanted)
    facts = _verdict_text(verdict, data.get("group_members") or {})
    if facts.plain:
        console.print(facts, overflow="fold")
    inner = width - PANEL_CHROME
    for alias, e in results.explanations.items():
        rows = select_targets(e, targets) or explained_rows(e)
        skipped = len(e.target_names) - len(explained_rows(e))
        head = Text(
            f"unit: {unit_of(e)}" + (f"; {skipped} of {len(e.target_names)} targets not explained by this step" if skipped else ""),
            style="dim",
        )
        body = Group(head, heatmap(e, inner, rows), top_table(e, top_k, rows), _headlines(e, rows))
        dash = "—" if (console.encoding or "").lower().startswith("utf") else "-"
        title = escape(f"{alias} {dash} {e.explainer} ({e.distribution} {e.version})".strip())
        console.print(Panel(body, title=title, title_align="left", width=width))
    pairs = agreements(results.explanations)
    if pairs:
        table = Table(title="agreement between explainers", title_justify="left")
        for col in ("a", "b", "target", "spearman", "same top feature"):
            table.add_column(col, overflow="fold")
        for p in pairs:
            table.add_row(escape(p.a), escape(p.b), escape(p.target), f"{p.spearman:.2f}", f"{p.top1:.0%}")
        console.print(table)
    timing = Table(title="steps", title_justify="left")
    for col in ("alias", "explainer", "target", "status", "time (s)"):
        timing.add_column(col, overflow="fold")
    for entry in results.entries:
        ok = entry.get("status") == "ok"
        timing.add_row(
            escape(str(entry["alias"])),
            escape(str(entry["name"])),
            escape(str(entry.get("target", ""))),
            "[green]ok[/green]" if ok else "[red]error[/red]",
            f"{entry.get('runtime_s') or 0:.2f}" if ok else "-",
        )
    console.print(timing)
    for entry in results.failures:
        console.print(
            f"[red]{e_(entry['alias'])} failed[/red] ({e_(entry['name'])} from {e_(entry.get('distribution') or '?')} {e_(entry.get('version') or '')}): {e_(entry.get('error'))}",
            highlight=False,
            soft_wrap=True,
        )
