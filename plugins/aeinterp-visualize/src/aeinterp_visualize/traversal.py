"""What each latent does to the output: latent traversals and component contributions.

``latent_traversal``
    For each latent ``j`` and each reference code (the mean code, or a few
    real samples' codes), hold the other latents at the reference and sweep
    ``z_j`` over ``steps`` quantiles of the explained split's codes (``5%`` ..
    ``95%`` by default; ``sweep: centred`` shifts the sweep so its median sits on
    the reference's own value, as for a VAE posterior mean). All
    ``references x latents x steps`` codes are decoded in one batch.
    ``arrays["effect"]`` is the signed output effect in the decoder output's
    own units: decoded at the last step (``q_high``) minus decoded at the
    first (``q_low``), averaged over references (+ = the output rises when the
    latent rises). Importance (latents x output groups) = ``|effect|``
    averaged over references and within each feature group (``normalize:
    none``, the default), or, with ``normalize: input_spread``, the earlier
    definition: the output's range under the sweep divided by the data's
    kind-aware SD. ``std`` is the spread over references.

``component_contributions``
    The autoencoder analogue of a PCA component's contribution: per sample,
    ``decode(z) - decode(z with z_j set to its mean)``. Importance = mean over
    samples of its absolute value in output units (``normalize: input_spread``:
    divided by the data SD, as before), averaged per feature group; ``local``
    holds the signed per-sample values in the same unit. ``arrays["effect"]``
    is the signed effect of moving the latent from its ``q_low`` to its
    ``q_high`` quantile: the least-squares slope of each output's contribution
    on ``z_j - baseline_j`` times ``q_high - q_low`` (exactly
    ``W[:, j] (q_high - q_low)`` for a linear decoder), in output units. The decoder is not linear,
    so this quantity is non-linear and depends on the reference (the mean
    code): the contributions of all latents need not add up to
    ``decode(z) - decode(mean code)``; ``extras.nonadditivity`` says by how much.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from aeinterp import Capabilities, Explainer, ExplainerParams, Explanation
from aeinterp.targets import Target, target_names
from aeinterp.toolkit.perturb import subsample, subsample_indices

from ._common import Geometry, decode, encode, fit_stats, group_mean
from ._traversal_figures import contribution_figures, traversal_figures

__all__ = ["LatentTraversal", "ComponentContributions", "traversal_codes"]

MAX_LOCAL_VALUES = 20_000_000
MAX_EXAMPLES = 6  # samples kept decomposed in full (original, reconstruction, each contribution)
NORMALIZE_DOC = (
    "none: importance in the decoder output's own units (signed effect q_low -> q_high, its absolute value ranks); "
    "input_spread: divided by the fit split's kind-aware SD of the input (the definition before signed effects)"
)


def _span(quantiles: tuple[float, float]) -> str:
    return f"q{100 * quantiles[0]:g}%->q{100 * quantiles[1]:g}%"


def traversal_codes(references: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Codes ``(R, K, S, K)``: reference ``r`` with latent ``j`` replaced by ``values[r, j, s]``.

    ``references`` is ``(R, K)``; ``values`` is ``(R, K, S)``.
    """
    refs = torch.as_tensor(references, dtype=torch.float64)
    vals = torch.as_tensor(values, dtype=torch.float64)
    k = refs.shape[1]
    eye = torch.eye(k, dtype=torch.float64)[None, :, None, :]  # (1, K, 1, K): which latent is swept
    return (refs[:, None, None, :] * (1.0 - eye) + vals[..., None] * eye).numpy()


class LatentTraversal(Explainer):
    """Sweep each latent over its observed range around a reference code and decode."""

    name = "latent_traversal"

    class Params(ExplainerParams):
        steps: int = Field(7, ge=2, le=64, description="values of each latent in the sweep")
        quantiles: tuple[float, float] = Field(
            (0.05, 0.95), description="the sweep runs between these quantiles of the explained split's codes"
        )
        reference: Literal["mean", "samples"] = Field(
            "mean", description="hold the other latents at the mean code, or at the codes of a few random real samples"
        )
        n_references: int = Field(3, ge=1, le=16, description="real samples used as references when reference=samples")
        sweep: Literal["quantiles", "centred"] = Field(
            "quantiles",
            description="quantiles: sweep the quantile values themselves; centred: reference value + (quantile - median), e.g. for a VAE posterior",
        )
        max_samples: int | None = Field(5000, ge=2, description="explain-split samples encoded for the quantiles (random, seeded)")
        batch_size: int = Field(1024, ge=1, description="rows per forward pass")
        normalize: Literal["none", "input_spread"] = Field("none", description=NORMALIZE_DOC)

        @model_validator(mode="after")
        def _quantiles_ordered(self) -> LatentTraversal.Params:
            lo, hi = self.quantiles
            if not 0.0 <= lo < hi <= 1.0:
                raise ValueError(f"quantiles must satisfy 0 <= low < high <= 1, got {self.quantiles}")
            return self

    capabilities = Capabilities(targets=frozenset({"latent"}), deterministic=True, local=False)

    def explain(self, model: Any, data: Any, *, target: Target | str, rng: np.random.Generator) -> Explanation:
        p = self.params
        target = Target(target)
        geo = Geometry.of(data)
        stats = fit_stats(data)
        x = np.asarray(data.x_explain)
        codes = encode(model, subsample(x, p.max_samples, rng), p.batch_size)
        n, k = codes.shape
        levels = np.linspace(p.quantiles[0], p.quantiles[1], p.steps)
        q = np.quantile(codes, levels, axis=0).T  # (K, S)
        if p.reference == "mean":
            refs, ref_index = codes.mean(axis=0, keepdims=True), np.array([-1])
        else:
            ref_index = np.sort(rng.choice(len(x), size=min(p.n_references, len(x)), replace=False))
            refs = encode(model, x[ref_index], p.batch_size)
        r = refs.shape[0]
        if p.sweep == "centred":
            values = refs[:, :, None] + (q - np.median(codes, axis=0)[:, None])[None]
        else:
            values = np.broadcast_to(q, (r, k, p.steps)).copy()
        grid = traversal_codes(refs, values).reshape(-1, k)
        out = decode(model, np.concatenate([grid, refs]), p.batch_size)
        decoded, ref_decoded = out[: len(grid)].reshape(r, k, p.steps, -1), out[len(grid) :]
        ranges = (decoded.max(axis=2) - decoded.min(axis=2)) / stats.scale  # (R, K, D)
        effect = decoded[:, :, -1] - decoded[:, :, 0]  # (R, K, D) signed, output units: z_j at q_high minus at q_low
        span = _span(p.quantiles)
        if p.normalize == "input_spread":
            per_group = group_mean(ranges, data.groups)  # (R, K, G)
            what = "range of each decoded output element over the sweep / data scale, averaged over references and per feature group"
            unit = "data SDs: range of the decoded output over the sweep / the fit split's SD"
        else:
            per_group = group_mean(np.abs(effect), data.groups)
            what = f"|signed output effect| ({span}) per reference, averaged over references and per feature group"
            unit = "output units (the decoder's own values)"
        importance = per_group.mean(axis=0)
        std = per_group.std(axis=0, ddof=1) if r > 1 else None
        arrays = {
            "sweep_values": values,
            "quantile_levels": levels,
            "references": refs,
            "reference_index": ref_index,
            "decoded": decoded.reshape(r, k, p.steps, *geo.sample_shape).astype(np.float32),
            "reference_decoded": ref_decoded.reshape(r, *geo.sample_shape).astype(np.float32),
            "ranges": ranges.mean(axis=0),
            "effect": effect.mean(axis=0).reshape(k, *geo.sample_shape),
            "effect_groups": group_mean(effect.mean(axis=0), data.groups),
            "data_mean": stats.mean,
            "data_scale": stats.scale,
            "data_lo": stats.lo,
            "data_hi": stats.hi,
        }
        extras = {
            **geo.to_extras(),
            "reference": p.reference,
            "reference_index": "explain-split rows used as references (-1 = the mean code)",
            "sweep": p.sweep,
            "n_samples": int(n),
            "importance": what,
            "unit": unit,
            "normalize": p.normalize,
            "effect": f"signed output effect, output units, {span}: decode(z_j at q_high) - decode(z_j at q_low), "
            "mean over references; + = the output rises when the latent rises",
            "feature_axis": "output",
        }
        return Explanation(
            importance=importance,
            std=std,
            feature_names=list(data.group_names),
            target_names=target_names(target, k, list(data.feature_names)),
            target=target.value,
            arrays=arrays,
            extras=extras,
        )

    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Any]:
        """Traversal grids: image tiles (latents x steps), tabular small multiples, sequence lines per step."""
        return traversal_figures(explanation) if "decoded" in explanation.arrays else {}


class ComponentContributions(Explainer):
    """decode(z) minus decode(z with latent j at its mean), per sample, for every latent at once."""

    name = "component_contributions"

    class Params(ExplainerParams):
        max_samples: int | None = Field(256, ge=1, description="explain-split samples whose contributions are computed (random, seeded)")
        baseline: Literal["mean", "median"] = Field(
            "mean", description="the value latent j is set to: its mean or median over the explained samples"
        )
        keep_local: bool = Field(
            True, description="keep the per-sample contributions as Explanation.local (skipped when larger than 2e7 numbers)"
        )
        batch_size: int = Field(2048, ge=1, description="decoded rows per forward pass")
        normalize: Literal["none", "input_spread"] = Field("none", description=NORMALIZE_DOC)
        quantiles: tuple[float, float] = Field(
            (0.05, 0.95), description="arrays.effect: the signed effect of moving the latent between these quantiles of its values"
        )

        @model_validator(mode="after")
        def _quantiles_ordered(self) -> ComponentContributions.Params:
            lo, hi = self.quantiles
            if not 0.0 <= lo < hi <= 1.0:
                raise ValueError(f"quantiles must satisfy 0 <= low < high <= 1, got {self.quantiles}")
            return self

    capabilities = Capabilities(targets=frozenset({"latent"}), deterministic=True, local=True)

    def explain(self, model: Any, data: Any, *, target: Target | str, rng: np.random.Generator) -> Explanation:
        p = self.params
        target = Target(target)
        geo = Geometry.of(data)
        stats = fit_stats(data)
        all_codes = encode(model, np.asarray(data.x_explain), p.batch_size)
        n_all, k = all_codes.shape
        pick = subsample_indices(n_all, p.max_samples, rng)
        codes = all_codes[pick]
        base = all_codes.mean(axis=0) if p.baseline == "mean" else np.median(all_codes, axis=0)
        n, d, g = len(codes), geo.n_elements, len(data.groups)
        keep_local = p.keep_local and n * k * g <= MAX_LOCAL_VALUES
        scale = stats.scale if p.normalize == "input_spread" else np.ones_like(stats.scale)
        eye = np.eye(k)
        base_out = decode(model, base[None], p.batch_size)[0]
        sum_abs, sum_signed, sum_cz, sum_zz = np.zeros((k, d)), np.zeros((k, d)), np.zeros((k, d)), np.zeros(k)
        local = np.empty((n, k, g), dtype=np.float32) if keep_local else None
        gap_num = gap_den = 0.0
        chunk = max(1, p.batch_size // (k + 1))
        starts = range(0, n, chunk)
        for s in self.progress.track(starts, total=len(starts), description="component contributions"):
            z = codes[s : s + chunk]
            ablated = z[:, None, :] * (1.0 - eye) + base[None, None, :] * eye  # (c, K, K)
            out = decode(model, np.concatenate([z, ablated.reshape(-1, k)]), p.batch_size)
            full, abl = out[: len(z)], out[len(z) :].reshape(len(z), k, d)
            contrib = full[:, None, :] - abl  # (c, K, D)
            dz = z - base  # (c, K)
            sum_cz += np.einsum("ckd,ck->kd", contrib, dz)
            sum_zz += (dz**2).sum(axis=0)
            std_c = contrib / scale
            sum_abs += np.abs(std_c).sum(axis=0)
            sum_signed += std_c.sum(axis=0)
            if local is not None:
                local[s : s + len(z)] = group_mean(std_c, data.groups)
            total = full - base_out
            gap_num += float(np.linalg.norm(total - contrib.sum(axis=1), axis=1).sum())
            gap_den += float(np.linalg.norm(total, axis=1).sum())
        mean_abs, mean_signed = sum_abs / n, sum_signed / n
        q_lo, q_hi = np.quantile(all_codes, p.quantiles, axis=0)
        slope = sum_cz / np.where(sum_zz > 0, sum_zz, 1.0)[:, None]  # output change per unit of z_j, least squares through 0
        effect = slope * (q_hi - q_lo)[:, None]
        span = _span(p.quantiles)
        unit = "data SDs" if p.normalize == "input_spread" else "output units"
        m = min(MAX_EXAMPLES, n)  # a few samples decomposed in full, for the per-sample figure
        z = codes[:m]
        ex_out = decode(model, np.concatenate([z, (z[:, None, :] * (1.0 - eye) + base[None, None, :] * eye).reshape(-1, k)]), p.batch_size)
        ex_full, ex_abl = ex_out[:m], ex_out[m:].reshape(m, k, d)
        importance = group_mean(mean_abs, data.groups)
        arrays = {
            "mean_abs_contribution": mean_abs.reshape(k, *geo.sample_shape).astype(np.float32),
            "mean_contribution": mean_signed.reshape(k, *geo.sample_shape).astype(np.float32),
            "baseline_code": base,
            "baseline_decoded": base_out.reshape(geo.sample_shape).astype(np.float32),
            "sample_index": pick,
            "data_scale": stats.scale,
            "effect": effect.reshape(k, *geo.sample_shape),
            "effect_groups": group_mean(effect, data.groups),
            "example_original": np.asarray(data.x_explain)[pick[:m]].astype(np.float32),
            "example_reconstruction": ex_full.reshape(m, *geo.sample_shape).astype(np.float32),
            "example_contribution": (ex_full[:, None, :] - ex_abl).reshape(m, k, *geo.sample_shape).astype(np.float32),
        }
        extras = {
            **geo.to_extras(),
            "note": "non-linear and reference-dependent: the decoder is not linear, so each latent's contribution "
            "decode(z) - decode(z with z_j := baseline) depends on the other latents and on the baseline, and the "
            "contributions need not add up to decode(z) - decode(baseline code)",
            "nonadditivity": gap_num / gap_den if gap_den > 0 else 0.0,
            "baseline": p.baseline,
            "n_samples": int(n),
            "local": (f"signed contribution in {unit}, averaged per feature group" if keep_local else "not kept"),
            "importance": (
                f"mean over samples of |decode(z) - decode(z with z_j := baseline)| in {unit}"
                f"{' (/ data scale)' if p.normalize == 'input_spread' else ''}, averaged per feature group"
            ),
            "unit": (
                "data SDs: mean |decode(z) - decode(z with z_j at its baseline)| / the fit split's SD"
                if p.normalize == "input_spread"
                else "output units: mean |decode(z) - decode(z with z_j at its baseline)| in the decoder's own values"
            ),
            "unit_short": unit,
            "normalize": p.normalize,
            "effect": f"signed output effect, output units, {span}: least-squares slope of each output's contribution on "
            "z_j - baseline_j, times q_high - q_low; + = the output rises when the latent rises",
            "feature_axis": "output",
            "examples": "example_*: the first samples of sample_index decomposed in data units (original, reconstruction, contribution of each latent)",
        }
        return Explanation(
            importance=importance,
            feature_names=list(data.group_names),
            target_names=target_names(target, k, list(data.feature_names)),
            target=target.value,
            local=local,
            arrays=arrays,
            extras=extras,
        )

    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Any]:
        """Images: mean |contribution| and mean signed contribution maps per latent; sequences: per-step lines."""
        return contribution_figures(explanation) if "mean_abs_contribution" in explanation.arrays else {}
