"""``output_effects``: what each latent does to each output, with its sign, in the output's own units.

The definition follows DRVI's latent traversal (Moinfar & Theis, "Unsupervised
deep disentangled representation of single-cell omics", 2024; ``drvi.utils.tools.
traverse_latent`` / ``calculate_differential_vars``): move one latent with the
others held, decode, and read each output's change, keeping the latent's two
directions apart (DRVI writes them to ``adata.varm[..._traverse_effect_pos]``
and ``..._neg``). Here the latent moves between its ``q_low`` and ``q_high``
quantiles over the explained rows (5% and 95% by default), its midpoint is
its median, and the other latents stay at each row's own values
(``others: rows``, averaged over up to ``max_samples`` rows) or at the
median code (``others: median``, one reference). See :mod:`._effects` for the
exact formulas and ``docs/output-effects.md`` for the arrays.

``importance`` (latents x output groups) is ``|effect|`` averaged within each
feature group, in output units: larger = the latent moves those outputs more.
The signed values are ``arrays["effect"]`` (+ = the output rises when the
latent rises), ``effect_high`` / ``effect_low`` (the latent's + and -
directions from its median), and ``extras["top_up"]`` / ``extras["top_down"]``
list each latent's most raised and most lowered outputs by name.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from aeinterp import Capabilities, Explainer, ExplainerParams, Explanation
from aeinterp.errors import CapabilityError
from aeinterp.targets import Target, target_names
from aeinterp.toolkit.perturb import subsample_indices

from ._common import Geometry, columns_to_show, decode, encode, group_mean, rows_to_show, shown_of
from ._effects import signed_effects, top_lists
from ._plots import DIVERGING_CMAP, heatmap, image_grid, new_figure

__all__ = ["OutputEffects"]

MAX_ROWS = 16
MAX_COLUMNS = 40


class OutputEffects(Explainer):
    """Each latent moved from a low to a high quantile, others held: the signed change of every output."""

    name = "output_effects"

    class Params(ExplainerParams):
        quantiles: tuple[float, float] = Field(
            (0.05, 0.95), description="the latent moves from the first to the second quantile of its values over the explained rows"
        )
        others: Literal["rows", "median"] = Field(
            "rows", description="the other latents: each explained row's own values (effects averaged over rows), or the median code"
        )
        scale: Literal["output", "log"] = Field(
            "output",
            description="output: differences of the decoded values; log: differences of their natural log (log fold changes; outputs must be positive)",
        )
        max_samples: int | None = Field(
            2000, ge=1, description="explain-split rows encoded for the quantiles and used as references (random, seeded)"
        )
        top: int = Field(10, ge=1, le=200, description="outputs listed per latent in extras.top_up / top_down")
        batch_size: int = Field(2048, ge=1, description="codes per decoder forward pass")
        memory_mb: float = Field(256.0, gt=0, description="bound on the decoded values held at once (rows are streamed in chunks)")

        @model_validator(mode="after")
        def _quantiles_ordered(self) -> OutputEffects.Params:
            lo, hi = self.quantiles
            if not 0.0 <= lo < 0.5 < hi <= 1.0:
                raise ValueError(f"quantiles must satisfy 0 <= low < 0.5 < high <= 1, got {self.quantiles}")
            return self

    capabilities = Capabilities(targets=frozenset({"latent"}), deterministic=True, local=False)

    def explain(self, model: Any, data: Any, *, target: Target | str, rng: np.random.Generator) -> Explanation:
        p = self.params
        target = Target(target)
        geo = Geometry.of(data)
        x = data.x_explain  # a lazily read matrix (sparse / backed AnnData) stays lazy: only the picked rows are read
        pick = subsample_indices(len(x), p.max_samples, rng)
        codes = encode(model, np.asarray(x[pick]), p.batch_size)
        n, k = codes.shape
        levels = np.array([p.quantiles[0], 0.5, p.quantiles[1]])
        values = np.quantile(codes, levels, axis=0)  # (3, K): low, median, high
        rows = codes if p.others == "rows" else values[1][None]

        def positive(out: np.ndarray) -> None:
            if not (out > 0).all():
                raise CapabilityError(
                    f"output_effects with scale: log needs positive decoder outputs; the smallest is {float(out.min()):.3g} "
                    "(use scale: output, or decode to a positive quantity such as a mean)",
                    plugin=self.name,
                )

        def track(starts: Any, total: int) -> Any:
            return self.progress.track(starts, total=total, description="output effects")

        d = decode(model, codes[:1], 1).shape[1]
        if d != geo.n_elements:
            raise CapabilityError(
                f"output_effects needs a decoder whose output has the input's shape {geo.sample_shape} "
                f"({geo.n_elements} elements, named like the data); this decoder gives {d} values per code",
                plugin=self.name,
            )
        eff = signed_effects(
            model, rows, values, log=p.scale == "log", batch_size=p.batch_size, memory_mb=p.memory_mb, track=track, positive_check=positive
        )
        shape = geo.sample_shape
        latents = target_names(target, k, list(data.feature_names))
        signed_groups = group_mean(eff.effect, data.groups)
        importance = group_mean(np.abs(eff.effect), data.groups)
        up, down = top_lists(eff.effect, list(data.feature_names), latents, p.top)
        unit = "log fold change (natural log of the decoded value)" if p.scale == "log" else "output units (the decoder's own values)"
        span = f"q{100 * p.quantiles[0]:g}%->q{100 * p.quantiles[1]:g}%"
        arrays = {
            "effect": eff.effect.reshape(k, *shape),
            "effect_high": eff.effect_high.reshape(k, *shape),
            "effect_low": eff.effect_low.reshape(k, *shape),
            "effect_sd": eff.effect_sd.reshape(k, *shape),
            "effect_groups": signed_groups,
            "quantile_levels": levels,
            "quantile_values": values,
            "sample_index": pick,
        }
        extras = {
            **geo.to_extras(),
            "effect": f"signed output effect, {unit}, {span}: mean over references of decode(z with z_j at its {span.split('->')[1]}) "
            f"- decode(z with z_j at its {span.split('->')[0]}); + = the output rises when the latent rises",
            "effect_high": "the latent's + direction: decode(z_j at q_high) - decode(z_j at its median), mean over references",
            "effect_low": "the latent's - direction: decode(z_j at q_low) - decode(z_j at its median), mean over references",
            "effect_sd": "SD over references of the per-reference q_low -> q_high change (0 when the decoder is additive in z_j)",
            "others": "each explained row's own values" if p.others == "rows" else "the median code",
            "scale": p.scale,
            "quantiles": list(p.quantiles),
            "n_samples": int(n),
            "n_references": int(eff.n),
            "importance": f"|signed effect| ({span}) averaged per feature group, {unit}",
            "unit": unit,
            "unit_short": "log fold change" if p.scale == "log" else "output units",
            "span": span,
            "feature_axis": "output",
            "top_up": up,
            "top_down": down,
            "summary": [_summary_line(j, up, down) for j in latents],
            "reference": "DRVI (Moinfar & Theis 2024): traverse one latent with the others held, split + and - effects",
        }
        return Explanation(
            importance=importance,
            feature_names=list(data.group_names),
            target_names=latents,
            target=target.value,
            arrays=arrays,
            extras=extras,
        )

    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Any]:
        """Signed effects: latents x outputs heatmap (tabular, sequences) or one diverging map per latent (images)."""
        return effect_figures(explanation) if "effect" in explanation.arrays else {}


def _summary_line(latent: str, up: dict[str, list], down: dict[str, list], n: int = 3) -> str:
    plus = ", ".join(f"{name} {value:+.3g}" for name, value in up[latent][:n]) or "none"
    minus = ", ".join(f"{name} {value:+.3g}" for name, value in down[latent][:n]) or "none"
    return f"{latent}: + {plus}; - {minus}"


def effect_figures(explanation: Explanation) -> dict[str, Any]:
    """One ``effects`` figure of the signed effect (red: the output rises with the latent, blue: it falls)."""
    geo = Geometry.from_extras(explanation.extras)
    effect = np.asarray(explanation.arrays["effect"], dtype=np.float64)
    k = effect.shape[0]
    flat = effect.reshape(k, -1)
    shown = rows_to_show(explanation.importance, MAX_ROWS)
    names = [explanation.target_names[j] for j in shown]
    unit = str(explanation.extras.get("unit_short", "output units"))
    lim = float(np.abs(flat[shown]).max()) or 1.0
    if geo.kind == "image" and flat.shape[1] == geo.n_elements:
        fig = new_figure(1.0 * len(shown) + 1.8, 2.6)
        image_grid(
            fig, flat[shown][None], geo.sample_shape, row_labels=["effect"], col_labels=names, vmin=-lim, vmax=lim, cmap=DIVERGING_CMAP
        )
        fig.suptitle(f"Signed output effect per latent (red +, blue -; +-{lim:.2g} {unit}){shown_of(shown, k)}", fontsize=9)
        return {"effects": fig}
    cols = columns_to_show(np.abs(flat[shown]).max(axis=0), MAX_COLUMNS)
    labels = [str(geo.element_names[i]) if i < len(geo.element_names) else f"out{i}" for i in cols]
    if geo.kind == "sequence" and flat.shape[1] == geo.n_elements:
        n_feat = geo.sample_shape[1]
        feats = geo.sequence_features or [f"f{j}" for j in range(n_feat)]
        labels = [f"{feats[i % n_feat]}@t{i // n_feat}" for i in cols]
    fig = new_figure(0.22 * len(cols) + 3.0, 0.3 * len(shown) + 2.2)
    ax = fig.subplots()
    heatmap(fig, ax, flat[shown][:, cols], row_labels=names, col_labels=labels, colorbar_label=f"signed effect ({unit})", limit=lim)
    span = explanation.extras.get("span", "q_low->q_high")
    fig.suptitle(
        f"What each latent does to the outputs: latent moved {span}, others held (red: output rises, blue: falls){shown_of(shown, k)}",
        fontsize=9,
    )
    return {"effects": fig}
