"""Permutation and zero-ablation importance for every target at once.

Both perturb one feature group at a time across the whole batch, re-evaluate
the target and measure the change with :func:`aeinterp.targets.target_change`:
the root mean squared change of each latent / reconstructed element, or the
mean increase of the reconstruction error. Perturbed copies are evaluated in
memory-bounded blocks by :func:`aeinterp.perturb.perturbation_effects`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from aeinterp import Capabilities, Explainer, ExplainerParams, Explanation
from aeinterp.perturb import perturbation_effects
from aeinterp.explainer import ALL_TARGETS
from aeinterp.targets import Target, target_names_for


class _PerturbationParams(ExplainerParams):
    normalize: bool = Field(False, description="scale each target's importances to sum to 1 (negative values count as 0)")
    split: Literal["explain", "fit"] = Field("explain", description="which split to perturb: the held-out explain split or the fit split")
    max_samples: int | None = Field(None, ge=2, description="use at most this many samples of the split (random, seeded)")
    copies_per_batch: int | None = Field(None, ge=1, description="perturbed copies per forward pass; default: enough for ~512 rows")
    memory_mb: float = Field(256.0, gt=0, description="bound on the stacked perturbed inputs, in MiB")
    batch_size: int = Field(4096, ge=1, description="rows per forward pass")


def _samples(explainer: Explainer, data, params: _PerturbationParams, rng: np.random.Generator) -> np.ndarray:
    return explainer.take_rows(data, params.split, params.max_samples, rng)  # recorded: the npz says which rows


def _finish(effects: torch.Tensor, std: torch.Tensor | None, normalize: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``(groups, targets)`` effects -> ``(targets, groups)`` importance (and std), normalised if asked."""
    imp = effects.T.double().numpy()
    sd = None if std is None else std.T.double().numpy()
    if normalize:
        total = np.clip(imp, 0.0, None).sum(axis=1, keepdims=True)
        scale = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
        imp = np.clip(imp, 0.0, None) * scale
        sd = None if sd is None else sd * scale
    return imp, sd


def _unit(target: Target) -> str:
    return "mean increase of reconstruction error" if target.is_loss else "root mean squared change of the target"


class Permutation(Explainer):
    """Shuffle each feature group across samples; importance = how much each target moves."""

    name = "permutation"

    class Params(_PerturbationParams):
        repeats: int = Field(5, ge=1, description="independent shuffles per feature group; importance is their mean, std their spread")

    capabilities = Capabilities(targets=ALL_TARGETS | {"prediction"})

    def explain(self, model, data, *, target, rng):  # noqa: ANN001 - signature fixed by Explainer
        p = self.params
        target = Target(target)
        x = _samples(self, data, p, rng)
        n, groups = x.shape[0], data.groups
        n_groups = len(groups)
        perms = torch.as_tensor(np.stack([rng.permutation(n) for _ in range(p.repeats * n_groups)]))
        idx = [torch.as_tensor(g.indices) for g in groups]
        flat = torch.as_tensor(x.reshape(n, -1))

        def fill(block: torch.Tensor, ids) -> list[torch.Tensor]:  # noqa: ANN001
            changed = []
            for k, cid in enumerate(ids):
                cols = idx[cid % n_groups]
                block[k][:, cols] = flat[perms[cid][:, None], cols].to(block)  # gather only the group's columns
                changed.append(cols)
            return changed

        effects = perturbation_effects(
            model, target, x, p.repeats * n_groups, fill,
            copies=p.copies_per_batch, memory_mb=p.memory_mb, batch_size=p.batch_size,
            progress=self.progress, description=f"permutation ({target})",
        ).reshape(p.repeats, n_groups, -1)
        std = effects.std(dim=0, correction=1) if p.repeats > 1 else torch.zeros_like(effects[0])
        imp, sd = _finish(effects.mean(dim=0), std, p.normalize)
        return Explanation(
            importance=imp,
            std=sd,
            feature_names=data.group_names,
            target_names=target_names_for(model, data, target),
            target=target.value,
            extras={"unit": "share of the target's total" if p.normalize else _unit(target), "n_samples": n, "split": p.split, "repeats": p.repeats},
        )


class ZeroAblation(Explainer):
    """Replace each feature group by a baseline (zero, mean or median); importance = how much each target moves."""

    name = "zero_ablation"

    class Params(_PerturbationParams):
        baseline: Literal["zero", "mean", "median"] = Field("zero", description="value that replaces the feature: 0, or the fit split's mean or median")

    capabilities = Capabilities(targets=ALL_TARGETS | {"prediction"})

    def explain(self, model, data, *, target, rng):  # noqa: ANN001
        p = self.params
        target = Target(target)
        x = _samples(self, data, p, rng)
        n, groups = x.shape[0], data.groups
        fit = data.x_fit.reshape(len(data.x_fit), -1)
        base = {"zero": np.zeros(fit.shape[1], dtype=np.float32), "mean": fit.mean(axis=0), "median": np.median(fit, axis=0)}[p.baseline]
        base_t = torch.as_tensor(base)
        idx = [torch.as_tensor(g.indices) for g in groups]

        def fill(block: torch.Tensor, ids) -> list[torch.Tensor]:  # noqa: ANN001
            for k, cid in enumerate(ids):
                block[k][:, idx[cid]] = base_t[idx[cid]].to(block)
            return [idx[cid] for cid in ids]

        effects = perturbation_effects(
            model, target, x, len(groups), fill,
            copies=p.copies_per_batch, memory_mb=p.memory_mb, batch_size=p.batch_size,
            progress=self.progress, description=f"zero_ablation ({target})",
        )
        imp, _ = _finish(effects, None, p.normalize)
        return Explanation(
            importance=imp,
            feature_names=data.group_names,
            target_names=target_names_for(model, data, target),
            target=target.value,
            extras={"unit": "share of the target's total" if p.normalize else _unit(target), "n_samples": n, "split": p.split, "baseline": p.baseline},
        )
