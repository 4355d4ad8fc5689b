"""Permutation and zero-ablation importance for every target at once, streamed over sample chunks.

Both perturb one feature group at a time across a chunk of samples,
re-evaluate the target and add up the change per copy and target
(:func:`aeinterp.toolkit.perturb.perturbation_sums`): the squared change of each
latent / reconstructed element, or the increase of the reconstruction error.
The sums of all chunks give the root mean squared change (the mean increase
for the error), whatever the chunking (:class:`aeinterp.toolkit.chunks.ChunkedExplainer`,
``splits="samples"``).

Permutation draws, for copy ``c`` and sample ``i``, the sample whose values
replace the group's: ``donor(c, i)``, uniform over the explained samples and
drawn with replacement from a counter-based hash of (seed, c, i)
(:func:`donors`), so any chunking, executor or anytime round draws the same
donors. In expectation this is a shuffle (a random permutation has one fixed
point on average, as has this draw).

For encoders whose first operation is an ``nn.Linear`` (after an optional
flatten; :func:`aeinterp.toolkit.first_layer.first_layer_split`), the perturbed copies
update the first layer's pre-activations by a rank-|group| term instead of
recomputing the first matmul (``first_layer: auto``). Where one ReLU-like
activation and an ``nn.Linear`` follow and the target is the latent code,
permutation's repeats of a feature group share that group's Jacobian columns
and each copy's code change follows from them and the units that cross the
activation's kink (:mod:`aeinterp.toolkit.kinks`): no second matmul per copy.
``extras["path"]`` says which path ran and why.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from aeinterp import Capabilities, Explanation
from aeinterp.explainer import ALL_TARGETS
from aeinterp.model import as_tensor
from aeinterp.resources import available_bytes, check_fits, human_bytes
from aeinterp.targets import Target, evaluate_target, target_names_for
from aeinterp.toolkit.chunks import ChunkedExplainer, Partial
from aeinterp.toolkit.first_layer import first_layer_split
from aeinterp.toolkit.kinks import kink_update_reason
from aeinterp.toolkit.perturb import change_from_sums, perturbation_sums, reduce_groups
from aeinterp.toolkit.streaming import Z_95, MaxSamples, StreamParams, sample_index
from aeinterp.toolkit.summaries import SummaryParams, summary_plan

__all__ = ["Permutation", "ZeroAblation", "donors"]

_M1, _M2, _M3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def donors(seed: int, copies: np.ndarray, positions: np.ndarray, n: int) -> np.ndarray:
    """``(len(copies), len(positions))`` donor positions in ``[0, n)``: splitmix64 of (seed, copy, position)."""
    with np.errstate(over="ignore"):
        z = (
            np.uint64(seed % 2**64)
            + np.asarray(copies, dtype=np.uint64)[:, None] * _M1
            + np.asarray(positions, dtype=np.uint64)[None, :] * _M3
        )
        z = (z ^ (z >> np.uint64(30))) * _M2
        z = (z ^ (z >> np.uint64(27))) * _M3
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(n)).astype(np.int64)


class _PerturbationParams(StreamParams, SummaryParams):
    summary: Literal["auto", "rms_change", "variance_share", "mean_abs", "direction"] = Field(  # type: ignore[assignment]
        "auto",
        description="rms_change: how much each target moves (the mean increase for the reconstruction error); variance_share, mean_abs, "
        "direction: summaries (aeinterp.toolkit.summaries) of the per-sample effects phi_g(x) = z(x) - mean over copies of z(x with g replaced), "
        "which need a samples x targets x features array per chunk; auto: for permutation on a code (latent, latent_pca) variance_share "
        "(it recovers known marker genes on real expression data better than rms_change: bench/bench_realdata.py), rms_change otherwise",
    )
    normalize: bool = Field(False, description="scale each target's importances to sum to 1 (negative values count as 0)")
    split: Literal["explain", "fit"] = Field("explain", description="which split to perturb: the held-out explain split or the fit split")
    max_samples: MaxSamples = Field(
        None,
        description="use at most this many samples of the split (random, seeded); auto: rounds of samples until the importance is within tolerance",
    )
    copies_per_batch: int | None = Field(None, ge=1, description="perturbed copies per forward pass; default: enough for ~512 rows")
    memory_mb: float = Field(256.0, gt=0, description="bound on the stacked perturbed inputs, in MiB")
    batch_size: int = Field(4096, ge=1, description="rows per forward pass")
    first_layer: Literal["auto", "rank_update", "off"] = Field(
        "auto",
        description="auto: for encoders starting with nn.Linear, update its pre-activations by a rank-|group| term per copy instead of recomputing it, "
        "and where one ReLU-like activation and an nn.Linear follow (latent target, groups perturbed at least twice per column), take the code's "
        "changes from shared Jacobian columns and kink crossings (aeinterp.toolkit.kinks); rank_update: the rank update only; off: always the full forward pass",
    )


def _source(data, split: str) -> np.ndarray:  # noqa: ANN001
    return data.x_explain if split == "explain" else data.x_fit


def _auto_summary(target: Target, for_codes: str) -> tuple[str, str]:
    """What ``summary: auto`` means for ``target``: ``for_codes`` (the explainer's choice) on a code, else the RMS change."""
    if target.is_loss:
        return "rms_change", "auto: the mean increase of the loss is what matters for reconstruction"
    if target not in (Target.LATENT, Target.LATENT_PCA):
        return "rms_change", "auto: the size of each output's change (variance shares were measured on codes only)"
    if for_codes == "rms_change":
        return "rms_change", "auto: the size of each code's change, the analytic ablation effect"
    return for_codes, (
        "auto: per-sample effects summarised by their covariance with the target rank the features the target varies with "
        "(measured on real expression data: bench/bench_realdata.py); the effects do not add up, so the residual is reported"
    )


def _unit(target: Target) -> str:
    return "mean increase of reconstruction error" if target.is_loss else "root mean squared change of the target"


class _Perturbation(ChunkedExplainer):
    """Shared chunk plumbing: sample selection, the first-layer path, sums -> importance."""

    capabilities = Capabilities(targets=ALL_TARGETS | {"prediction"}, splits="samples", chunk_invariant=True)
    #: what ``summary: auto`` gives for a target that is not a loss
    auto_summary = "rms_change"

    def _n_copies(self, n_groups: int) -> int:
        raise NotImplementedError

    def prepare(self, model, data, *, target, rng):  # noqa: ANN001, ANN201
        p = self.params
        x = _source(data, p.split)
        total = x.shape[0]
        index = sample_index(self, total, p.max_samples, rng, p.split)
        if len(index) < 2:
            from aeinterp.errors import DataError

            raise DataError(f"{self.name} needs at least 2 samples, the {p.split} split has {len(index)}")
        layer, reason = (None, "first_layer: off") if p.first_layer == "off" else first_layer_split(model, data, target)
        path = {"path": "generic" if layer is None else "first-layer rank update", "path_reason": reason}
        per_group = self._n_copies(1)  # copies that perturb each feature group (column_sets of perturbation_sums)
        kinks = layer is not None and p.first_layer == "auto" and per_group > 1 and kink_update_reason(layer, target) is None
        if kinks:
            path["path"] = "first-layer rank update, code changes from shared Jacobian columns and kink crossings"
            path["path_reason"] = (
                f"{reason}; then one ReLU-like activation and an nn.Linear give the code, and feature groups of up to "
                f"{per_group // 2} columns are perturbed at least twice per column ({per_group} repeats)"
            )
        n_groups, n_targets, squares = len(data.groups), len(target_names_for(model, data, target)), self.stopping(None) is not None
        n_copies = self._n_copies(n_groups)
        check_fits(  # the sums (float64, one per copy and target) and, on the kink path, one group id per copy: refused before allocating
            8.0 * n_copies * n_targets * (2 if squares else 1) + (40.0 * n_copies if kinks else 0.0),
            f"{self.name}'s sums over {n_copies:,} perturbed copies ({per_group:,} per feature group × {n_groups:,} groups) for {n_targets:,} targets",
            "lower repeats" if per_group > 1 else "use fewer feature groups or targets",
        )
        summary, choice, why = None, p.summary, None
        if choice == "auto":
            choice, why = _auto_summary(target, self.auto_summary)
        if choice != "rms_change":
            summary = summary_plan(p, data, p.split, additive=False, n_targets=n_targets, choice=choice, why=why)
        return {
            "index": index,
            "seed": int(rng.integers(2**62)),
            "path": path,
            "use_layer": layer is not None,
            "kinks": kinks,
            "squares": self.stopping(None) is not None,
            "summary": summary,
            "summary_why": why or "requested",
            **self._prepare_extra(model, data, rng),
        }

    def _prepare_extra(self, model, data, rng) -> dict[str, Any]:  # noqa: ANN001
        return {}

    def units(self, model, data, state, *, target):  # noqa: ANN001, ANN201
        n = len(state["index"])
        if self.params.chunk_size or state.get("summary") is None:
            return np.arange(n), self.params.chunk_size or n
        per = (
            8.0 * 8 * len(target_names_for(model, data, target)) * len(data.groups)
        )  # the per-sample effects and the summary's products, float64
        return np.arange(n), max(1, int(self.params.memory_mb * 2**20 // per))

    def _sums(self, model, data, state, units, target: Target, fill_for) -> Partial:  # noqa: ANN001
        p = self.params
        x = _source(data, p.split)
        flat_all = x.reshape(x.shape[0], -1)
        rows = np.asarray(flat_all[state["index"][units]])
        chunk = rows.reshape((len(units), *x.shape[1:]))
        layer = first_layer_split(model, data, target)[0] if state["use_layer"] else None
        n_groups = len(data.groups)
        n_copies = self._n_copies(n_groups)
        plan, signed, z = state.get("summary"), None, None
        if plan is not None:
            with torch.no_grad():
                z = evaluate_target(model, target, as_tensor(chunk, model)).reshape(len(units), -1).double().cpu()
            signed = torch.zeros((len(units), z.shape[1], n_groups), dtype=torch.float64)
        sums, count = perturbation_sums(
            model,
            target,
            chunk,
            n_copies,
            fill_for(flat_all, units),
            copies=p.copies_per_batch,
            memory_mb=p.memory_mb,
            batch_size=p.batch_size,
            progress=self.progress,
            description=f"{self.name} ({target})",
            layer=layer,
            squares=state["squares"],
            column_sets=[cid % n_groups for cid in range(n_copies)] if state["kinks"] else None,
            signed=signed,
            signed_group=[cid % n_groups for cid in range(n_copies)],
        )
        extra = {}
        if plan is not None and signed is not None and z is not None:  # phi_g(x) = z(x) - mean over g's copies of z(perturbed x)
            phi = -signed / (n_copies // n_groups)
            x_groups = reduce_groups(rows.astype(np.float64), data.groups, "mean")
            extra = plan.sums(phi, z, x_groups, units, state["index"][units])
        if state["squares"]:
            return Partial(sums={"change": sums[0].numpy(), "change_sq": sums[1].numpy(), **extra}, count=count)
        return Partial(sums={"change": sums.numpy(), **extra}, count=count)

    def _effects(self, target: Target, total: Partial) -> torch.Tensor:
        return change_from_sums(target, torch.as_tensor(total.sums["change"]), total.count)

    def _copy_halfwidth(self, target: Target, total: Partial) -> np.ndarray:
        """95 % half-width of each copy's effect (delta method through the square root for vector targets)."""
        n = max(2, total.count)
        s1, s2 = total.sums["change"], total.sums["change_sq"]
        mean = s1 / n
        var = np.clip((s2 - n * mean**2) / (n - 1), 0.0, None)
        se = np.sqrt(var / n)
        if not target.is_loss:
            root = np.sqrt(np.clip(mean, 0.0, None))
            se = np.divide(se, 2 * root, out=np.sqrt(se), where=root > 0)
        return Z_95 * se

    def _explanation(
        self, model, data, state, total: Partial, target: Target, imp: np.ndarray, sd: np.ndarray | None, extras: dict[str, Any]
    ) -> Explanation:  # noqa: ANN001
        p = self.params
        arrays: dict[str, np.ndarray] = {}
        names = target_names_for(model, data, target)
        plan = state.get("summary")
        summary_extras: dict[str, Any] = {
            "importance_summary": "rms_change",
            "importance_summary_reason": state.get("summary_why", "requested"),
        }
        if plan is not None:
            imp, arrays, summary_extras = plan.finish(total.sums, names)
            sd = None
            summary_extras["unit"] = (
                summary_extras["unit"] + " (per-sample effect: z(x) - mean over copies of z(x with the feature replaced))"
            )
        if p.normalize:
            summary_extras["unit"] = f"share of the target's total ({summary_extras['importance_summary']}, negative values as 0)"
            tot = np.clip(imp, 0.0, None).sum(axis=1, keepdims=True)
            scale = np.divide(1.0, tot, out=np.zeros_like(tot), where=tot > 0)
            imp = np.clip(imp, 0.0, None) * scale
            sd = None if sd is None else sd * scale
        return Explanation(
            importance=imp,
            std=sd,
            feature_names=data.group_names,
            target_names=names,
            target=target.value,
            arrays=arrays,
            extras={
                "unit": "share of the target's total" if p.normalize else _unit(target),
                "n_samples": int(total.count),
                "split": p.split,
                **state["path"],
                **extras,
                **summary_extras,
            },
        )


class Permutation(_Perturbation):
    """Replace each feature group by another sample's values. Importance: the share of each target's variance that
    the features' per-sample effects carry (``summary: variance_share``, the default for codes), or how much each
    target moves (``rms_change``, the default for outputs and the reconstruction error)."""

    name = "permutation"
    auto_summary = "variance_share"

    class Params(_PerturbationParams):
        repeats: int = Field(
            5, ge=1, description="independent draws of donor samples per feature group; importance is their mean, std their spread"
        )

        @field_validator("repeats")
        @classmethod
        def _repeats_fit(cls, value: int) -> int:  # each copy keeps at least one float64 sum: refuse at validate time what can never fit
            if 8.0 * value > 0.9 * available_bytes():
                raise ValueError(
                    f"repeats: {value:,} keeps at least {human_bytes(8.0 * value)} of sums (8 bytes per copy, feature group and target), "
                    f"more than the {human_bytes(available_bytes())} of memory available; lower repeats"
                )
            return value

    def _n_copies(self, n_groups: int) -> int:
        return self.params.repeats * n_groups

    def explain_chunk(self, model, data, state, units, *, target, rng):  # noqa: ANN001, ANN201
        groups = data.groups
        n_groups, n = len(groups), len(state["index"])
        idx = [torch.as_tensor(g.indices) for g in groups]
        cols_np = [np.asarray(g.indices) for g in groups]

        def fill_for(flat_all, units_):  # noqa: ANN001, ANN202
            def fill(block: torch.Tensor, ids) -> list[torch.Tensor]:  # noqa: ANN001
                rows = state["index"][donors(state["seed"], np.asarray(ids), units_, n)]  # (copies, chunk) source rows
                changed = []
                for k, cid in enumerate(ids):
                    g = cid % n_groups
                    values = np.asarray(flat_all[rows[k][:, None], cols_np[g][None, :]])  # only the group's columns
                    block[k][:, idx[g]] = torch.as_tensor(values).to(block.dtype)
                    changed.append(idx[g])
                return changed

            return fill

        return self._sums(model, data, state, units, target, fill_for)

    def interval(self, model, data, state, total, *, target):  # noqa: ANN001, ANN201
        r, g = self.params.repeats, len(data.groups)
        imp = self._effects(target, total).reshape(r, g, -1).mean(dim=0).T.double().numpy()
        hw = np.sqrt((self._copy_halfwidth(target, total).reshape(r, g, -1) ** 2).sum(axis=0)) / r
        return imp, hw.T

    def finish(self, model, data, state, total, *, target):  # noqa: ANN001, ANN201
        p = self.params
        effects = self._effects(target, total).reshape(p.repeats, len(data.groups), -1)
        std = effects.std(dim=0, correction=1) if p.repeats > 1 else torch.zeros_like(effects[0])
        imp, sd = effects.mean(dim=0).T.double().numpy(), std.T.double().numpy()
        return self._explanation(
            model,
            data,
            state,
            total,
            target,
            imp,
            sd,
            {"repeats": p.repeats, "donors": "uniform over the samples, with replacement, seeded per copy and sample"},
        )


class ZeroAblation(_Perturbation):
    """Replace each feature group by a baseline (zero, mean or median); importance = how much each target moves."""

    name = "zero_ablation"

    class Params(_PerturbationParams):
        baseline: Literal["zero", "mean", "median"] = Field(
            "zero", description="value that replaces the feature: 0, or the fit split's mean or median"
        )

    def _n_copies(self, n_groups: int) -> int:
        return n_groups

    def _prepare_extra(self, model, data, rng) -> dict[str, Any]:  # noqa: ANN001
        fit = data.x_fit.reshape(len(data.x_fit), -1)
        b = self.params.baseline
        base = np.zeros(fit.shape[1], dtype=np.float32) if b == "zero" else (fit.mean(axis=0) if b == "mean" else np.median(fit, axis=0))
        return {"baseline": np.asarray(base)}

    def explain_chunk(self, model, data, state, units, *, target, rng):  # noqa: ANN001, ANN201
        base_t = torch.as_tensor(state["baseline"])
        idx = [torch.as_tensor(g.indices) for g in data.groups]

        def fill_for(flat_all, units_):  # noqa: ANN001, ANN202
            def fill(block: torch.Tensor, ids) -> list[torch.Tensor]:  # noqa: ANN001
                for k, cid in enumerate(ids):
                    block[k][:, idx[cid]] = base_t[idx[cid]].to(block.dtype)
                return [idx[cid] for cid in ids]

            return fill

        return self._sums(model, data, state, units, target, fill_for)

    def interval(self, model, data, state, total, *, target):  # noqa: ANN001, ANN201
        return self._effects(target, total).T.double().numpy(), self._copy_halfwidth(target, total).T

    def finish(self, model, data, state, total, *, target):  # noqa: ANN001, ANN201
        imp = self._effects(target, total).T.double().numpy()
        return self._explanation(model, data, state, total, target, imp, None, {"baseline": self.params.baseline})
