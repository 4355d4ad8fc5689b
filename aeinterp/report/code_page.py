"""The code page: how disentangled the code is as a whole (see :mod:`aeinterp.toolkit.disentanglement`)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AeinterpError
from ..toolkit.disentanglement import CodeSummary, code_summary
from .latent import LatentSource

__all__ = ["CodePage", "build_code_page", "code_html", "code_rich"]

esc = html.escape
_SCORES = (
    (
        "mig",
        "MIG",
        "mutual information gap: per factor, (best - second best latent's MI) / the factor's entropy; 1 = each factor in one latent",
    ),
    ("disentanglement", "DCI disentanglement", "each latent explains one factor (gradient-boosted importance, 1 - entropy)"),
    ("completeness", "DCI completeness", "each factor is explained by one latent"),
    ("informativeness", "DCI informativeness", "held-out accuracy of predicting the factors from the code"),
    ("sap", "SAP", "per factor, the gap between the two latents that predict it best (R² or one-latent classifier accuracy)"),
)


@dataclass
class CodePage:
    summary: CodeSummary
    factor_source: str

    def _repr_html_(self) -> str:
        from .latent_render import PAGE_CSS

        return f"<style>{PAGE_CSS}</style>{code_html(self)}"

    def __rich__(self) -> Any:
        return code_rich(self)


def build_code_page(src: LatentSource, *, factors: Any = None, factor_names: Any = None) -> CodePage:
    if src.codes is None:
        raise AeinterpError(
            "no latent codes were kept for this run (latent_codes.npz); rerun it with this aeinterp version, or call on explain_all's Explanations"
        )
    c = src.codes
    source = "none given"
    if factors is not None:
        f = np.asarray(factors, dtype=np.float64)
        f = f.reshape(len(f), -1)
        if len(f) != len(c.codes):
            raise AeinterpError(
                f"factors has {len(f)} rows but {len(c.codes)} explained rows were encoded: give the factors of the explained rows"
            )
        names = list(factor_names) if factor_names is not None else [f"factor{j}" for j in range(f.shape[1])]
        source = "given"
    else:
        known = c.known_factors()
        f, names = (known[0], known[1]) if known is not None else (None, None)  # type: ignore[assignment]
        source = ("the data's factors" if c.factors is not None else "the label column") if known is not None else source
    return CodePage(code_summary(np.asarray(c.codes, dtype=np.float64), list(c.latent_names), factors=f, factor_names=names), source)


def code_html(page: CodePage) -> str:
    from .latent_render import matrix_html

    s = page.summary
    out = ["<div class='lp code-page'><h3>The code as a whole</h3>"]
    out.append(
        f"<p>total correlation <b>{s.total_correlation:.3g}</b> nats <span class='muted'>(Gaussian estimate −½ log det corr(z) over the {len(s.names) - len(s.dead)} live latents and {s.n_samples} explained rows; 0 = uncorrelated latents)</span></p>"
    )
    out.append(
        f"<p>dead latents: <b>{esc(', '.join(s.dead) or 'none')}</b> <span class='muted'>(SD below 0.1 % of the largest latent's)</span></p>"
    )
    dup = ", ".join(f"{a} ~ {b} (r = {r:.3f})" for a, b, r in s.duplicates)
    out.append(f"<p>duplicate latents: <b>{esc(dup or 'none')}</b> <span class='muted'>(|Pearson| ≥ 0.99)</span></p>")
    if s.scores:
        out.append(f"<h4>Disentanglement against known factors ({esc(', '.join(s.factor_names))}; {esc(page.factor_source)})</h4><table>")
        for key, label, what in _SCORES:
            out.append(f"<tr><td class='l'>{esc(label)}</td><td><b>{s.scores[key]:.3f}</b></td><td class='l muted'>{esc(what)}</td></tr>")
        out.append("</table>")
    else:
        out.append(
            "<p class='muted'>MIG, DCI and SAP need known factors: a label column, the data's <code>factors</code>, or <code>code(factors=...)</code> in Python.</p>"
        )
    k = len(s.names)
    if k <= 64:
        out.append("<div class='grid'><div><div class='muted'>Pearson correlation between latents</div>")
        out.append(matrix_html(s.names, s.correlation, signed=True))
        out.append(
            "</div><div><div class='muted'>mutual information between latents (nats, equal-width bins, about 5 rows per cell; diagonal = entropy)</div>"
        )
        out.append(matrix_html(s.names, s.mutual_info, signed=False))
        out.append("</div></div>")
    out.append("</div>")
    return "".join(out)


def code_rich(page: CodePage) -> Any:
    from rich.console import Group
    from rich.text import Text

    s = page.summary
    parts = [
        Text("the code as a whole", style="bold underline"),
        Text(
            f"total correlation {s.total_correlation:.3g} nats (Gaussian, {s.n_samples} rows); dead: {', '.join(s.dead) or 'none'}; "
            f"duplicates: {', '.join(f'{a}~{b} r={r:.3f}' for a, b, r in s.duplicates) or 'none'}"
        ),
    ]
    if s.scores:
        parts.append(
            Text(" ".join(f"{label} {s.scores[key]:.3f}" for key, label, _ in _SCORES) + f"  (factors: {', '.join(s.factor_names)})")
        )
    return Group(*parts)
