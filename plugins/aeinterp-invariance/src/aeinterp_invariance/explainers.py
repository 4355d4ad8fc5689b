"""``invariance``: what a supervised VAE's decision ignores (Nguyen & Rodriguez Martinez, arXiv 2007.07591).

For each explained sample the task code is held at the sample's posterior
mean while the nuisance code is redrawn (from the prior, from the aggregate
posterior — other samples' posteriors, with their spread where the model
exposes it, see :mod:`.posterior` — or by traversing one nuisance dim at a
time); decoding gives *invariant samples*, inputs transformed in ways the
decision should not see. The explainer reports

* **label preservation**: the share of invariant samples that, re-encoded and
  classified (through the encoder again, not just the head), keep the
  original prediction;
* **diversity**: the mean absolute difference between invariant samples and
  the original, per feature group (``arrays['diversity']``) and overall;
* **leakage**: a logistic-regression probe of the label from the nuisance
  dims alone, against chance, flagged when high;
* **accuracy** of the head against a plain classifier of the same backbone;
* **importance** ``(classes, groups)``: integrated gradients of every class
  logit through encoder -> task dims -> head, kept where they stay stable
  across the invariant samples (:func:`aeinterp_invariance.attribution.stable_importance`);
* the **invariance map**: groups that nuisance sampling changes while they
  carry little attribution (:func:`aeinterp_invariance.maps.invariance_map`);
* the **collapse check** (:func:`aeinterp_invariance.posterior.collapse_check`):
  nuisance dims whose posterior is the prior or whose decoded variation is
  negligible are collapsed; when all are, preservation and the map say
  "not informative" (redrawing them changes nothing, so nothing is shown).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from aeinterp import Capabilities, Explainer, ExplainerParams, Explanation
from aeinterp.data import Dataset
from aeinterp.errors import CapabilityError
from aeinterp.model import Model, as_tensor, evaluate, is_supervised
from aeinterp.targets import Target, target_names_for
from aeinterp.toolkit.perturb import reduce_groups

from .attribution import class_integrated_gradients, stable_importance
from .diagnostics import dataset_labels, leakage_probe, plain_classifier_accuracy
from .maps import STATUS, invariance_map
from .posterior import collapse_check, encode_posterior
from .sampling import Sampling, invariant_codes, nuisance_draws

__all__ = ["Invariance"]

MAX_LISTED = 100  # name the groups of each status in extras up to this many groups


def _element_groups(data: Dataset, n_elements: int) -> np.ndarray:
    """For each flattened element, the index of its group (-1 for none)."""
    owner = np.full(n_elements, -1, dtype=np.int64)
    for j, g in enumerate(data.groups):
        owner[g.indices] = j
    return owner


def _status_lists(groups: list[str], status: np.ndarray) -> dict[str, Any]:
    """Counts of each status, and the group names of each when there are at most MAX_LISTED groups."""
    listed = {STATUS[c].replace(" ", "_"): [groups[i] for i in np.flatnonzero(status == c)] for c in range(len(STATUS))}
    out: dict[str, Any] = {"counts": {key: len(v) for key, v in listed.items()}}
    if len(groups) <= MAX_LISTED:
        out.update(listed)
    return out


class Invariance(Explainer):
    """Invariant samples of a supervised VAE: label preservation, diversity, leakage, stable attribution."""

    name = "invariance"

    class Params(ExplainerParams):
        max_samples: int = Field(16, ge=1, description="explain at most this many samples of the explain split (random, seeded)")
        sampling: Sampling = Field(
            "prior",
            description="how nuisance codes are drawn: prior (N(0, I)), posterior (other fit samples' codes) or traverse (one nuisance dim at a time)",
        )
        n_draws: int = Field(8, ge=1, description="invariant samples per explained sample (prior and posterior sampling)")
        traverse_steps: int = Field(5, ge=2, description="values per nuisance dim when sampling is traverse")
        traverse_range: float = Field(
            2.0, gt=0, description="traverse each nuisance dim over mean +- this many standard deviations of its fit-split codes"
        )
        ig_steps: int = Field(16, ge=1, description="Gauss-Legendre points of the integrated-gradients path integral")
        ig_baseline: Literal["zeros", "mean"] = Field(
            "zeros", description="integrated-gradients baseline: all zeros or the fit split's mean sample"
        )
        probe_samples: int = Field(
            1000, ge=10, description="fit-split samples for the leakage probe and for posterior / traverse statistics"
        )
        leakage_threshold: float = Field(
            0.5, ge=0, le=1, description="flag leakage when the probe's (accuracy - chance) / (1 - chance) exceeds this"
        )
        classifier_epochs: int = Field(20, ge=0, description="epochs to train the plain classifier compared with the head (0 skips it)")
        classifier_lr: float = Field(1e-3, gt=0, description="Adam learning rate of the plain classifier")
        diversity_threshold: float = Field(
            0.25, ge=0, le=1, description="invariance map: scaled change under nuisance sampling at or above which a group varies freely"
        )
        attribution_threshold: float = Field(
            0.25, ge=0, le=1, description="invariance map: scaled stable attribution at or above which a group drives the decision"
        )
        n_figures: int = Field(4, ge=0, description="image data: how many explained samples get a grid figure")
        memory_mb: float = Field(256.0, gt=0, description="bound on the gradient blocks computed at once, in MiB")
        kl_threshold: float = Field(
            0.01, ge=0, description="collapse check: a nuisance dim whose mean KL to the prior is below this (nats) is collapsed"
        )
        variation_threshold: float = Field(
            0.02,
            ge=0,
            description="collapse check: a nuisance dim whose move from -2 to +2 changes the decoded sample by less than this share of the data's mean absolute deviation is collapsed",
        )

    capabilities = Capabilities(
        targets=frozenset({"prediction"}), data_kinds=frozenset({"tabular", "image"}), needs_gradients=True, deterministic=True, local=True
    )

    def check(self, model: Model, data: Dataset, target: Target | str) -> None:
        """Besides the capabilities: the model needs task dims and at least one nuisance dim."""
        super().check(model, data, target)
        task = list(getattr(model, "task_dims", None) or [])
        if not is_supervised(model) or not task:
            raise CapabilityError("invariance needs a supervised model with declared task dims", plugin=self.name)
        if len(set(task)) >= model.latent_dim:
            raise CapabilityError(
                f"invariance needs nuisance dims: all {model.latent_dim} latent dims are task dims {sorted(set(task))}", plugin=self.name
            )

    def explain(self, model: Model, data: Dataset, *, target: Target | str, rng: np.random.Generator) -> Explanation:
        p = self.params
        target = Target(target)
        names = target_names_for(model, data, target)
        n_classes = len(names)
        task = sorted({int(j) for j in model.task_dims})  # type: ignore[attr-defined]
        nuisance = [j for j in range(model.latent_dim) if j not in task]

        def logits_of(t: torch.Tensor) -> torch.Tensor:
            return model.predict(model.encode(t))  # type: ignore[attr-defined]

        x_all, x_fit = data.x_explain, data.x_fit
        rows = np.sort(rng.choice(len(x_all), size=min(p.max_samples, len(x_all)), replace=False))
        pool_rows = np.sort(rng.choice(len(x_fit), size=min(p.probe_samples, len(x_fit)), replace=False))
        x, x_pool = x_all[rows], x_fit[pool_rows]
        s, shape, d = x.shape[0], tuple(x.shape[1:]), int(np.prod(x.shape[1:]))

        # invariant samples: each sample's own code (posterior mean) with the nuisance dims redrawn
        own_post, pool_post = encode_posterior(model, x), encode_posterior(model, x_pool)  # mean and spread, one encoder call
        codes, pool = own_post.mean, pool_post.mean
        pred = evaluate(logits_of, x, model=model).argmax(dim=1).numpy()
        pool_std = pool_post.std[:, nuisance] if pool_post.std is not None else None
        draws = nuisance_draws(
            p.sampling,
            codes[:, nuisance],
            pool[:, nuisance],
            rng,
            n_draws=p.n_draws,
            steps=p.traverse_steps,
            span=p.traverse_range,
            pool_std=pool_std,
        )
        collapse = collapse_check(
            model, pool_post, x_pool, nuisance, kl_threshold=p.kl_threshold, variation_threshold=p.variation_threshold
        )
        k = draws.shape[1]
        x_gen = evaluate(model.decode, invariant_codes(codes, nuisance, draws).reshape(s * k, -1), model=model)
        x_rec = evaluate(model.decode, codes, model=model)
        pred_gen = evaluate(logits_of, x_gen, model=model).argmax(dim=1).numpy().reshape(s, k)  # through the encoder again
        preserved = pred_gen == pred[:, None]
        gen = x_gen.reshape(s, k, d).double()
        diversity_elements = (gen - torch.as_tensor(x).reshape(s, 1, d).double()).abs().mean(dim=(0, 1)).numpy()
        change_elements = (gen - x_rec.reshape(s, 1, d).double()).abs().mean(dim=(0, 1)).numpy()
        change = reduce_groups(change_elements, data.groups, "mean")

        # integrated gradients of every class logit, for the originals and their invariant samples in one pass
        inputs = torch.cat([as_tensor(x, model), as_tensor(x_gen, model)])
        base = np.zeros((1, *shape), np.float32) if p.ig_baseline == "zeros" else x_fit.mean(axis=0, keepdims=True)
        info: dict[str, Any] = {"ig_baseline": p.ig_baseline}
        ig, _ = class_integrated_gradients(
            logits_of, inputs, as_tensor(base, model), n_classes, steps=p.ig_steps, memory_mb=p.memory_mb, progress=self.progress, info=info
        )
        grouped = reduce_groups(ig.double(), data.groups, "sum").numpy()  # (s + s*k, classes, groups)
        original, invariant = grouped[:s], grouped[s:].reshape(s, k, n_classes, -1)
        importance, magnitude, stability, spread = stable_importance(original, invariant)
        own = torch.as_tensor(pred)
        ig_pred = torch.cat([ig[torch.arange(s), own].unsqueeze(1), ig[s:].reshape(s, k, n_classes, d)[torch.arange(s), :, own]], dim=1)
        status, score, _, _ = invariance_map(
            change, importance, diversity_threshold=p.diversity_threshold, attribution_threshold=p.attribution_threshold
        )
        if collapse["all_collapsed"]:  # any "free" variation is decoder noise, not an invariance of the decision
            status[status == 1] = STATUS.index("not informative")

        seed = int(rng.integers(0, 2**31 - 1))
        labels = dataset_labels(data, n_classes)
        y_pool = labels[0][pool_rows] if labels is not None else evaluate(logits_of, x_pool, model=model).argmax(dim=1).numpy()
        leakage = leakage_probe(pool[:, nuisance], pool[:, task], y_pool, seed)
        leakage["labels"] = "dataset labels" if labels is not None else "model predictions (the data has no labels)"
        leakage["high"] = leakage["score"] is not None and leakage["score"] > p.leakage_threshold
        accuracy = self._accuracy(model, data, labels, logits_of, n_classes, seed)

        posterior_note = (
            f"aggregate posterior: a random fit sample's N(mu, std^2) on the nuisance dims, std from {pool_post.source}"
            if pool_post.std is not None
            else f"other fit samples' posterior means (no posterior spread: {pool_post.source})"
        )
        extras: dict[str, Any] = {
            "label_preservation": float(preserved.mean()),
            "label_preservation_informative": not collapse["all_collapsed"],
            "posterior": pool_post.source,
            "posterior_sampling": posterior_note if p.sampling == "posterior" else None,
            "collapse": collapse,
            "diversity": float(diversity_elements.mean()),
            "nuisance_change": float(change_elements.mean()),
            "leakage": leakage["score"],
            "leakage_probe_accuracy": leakage["probe_accuracy"],
            "leakage_chance": leakage["chance"],
            "leakage_high": bool(leakage["high"]),
            "head_accuracy": accuracy["head"],
            "plain_classifier_accuracy": accuracy["plain_classifier"],
            "sampling": p.sampling,
            "n_explained": s,
            "n_invariant_per_sample": int(k),
            "task_dims": task,
            "nuisance_dims": nuisance,
            "kind": data.kind,
            "sample_shape": list(shape),
            "n_figures": min(p.n_figures, s),
            "preservation_per_sample": preserved.mean(axis=1).round(4).tolist(),
            "leakage_probe": leakage,
            "accuracy": accuracy,
            "invariance_map": _status_lists(data.group_names, status),
            **info,
        }
        summary = [
            f"label preservation {preserved.mean():.3f} over {s} samples x {k} draws ({p.sampling} sampling"
            + (f"; {posterior_note}" if p.sampling == "posterior" else "")
            + ")"
        ]
        if collapse["all_collapsed"]:
            extras["label_preservation_verdict"] = "not informative: every nuisance dim is collapsed"
            extras["collapse_warning"] = (
                f"all nuisance dims {nuisance} are collapsed (posterior = prior or no decoded variation): redrawing them changes "
                "nothing, so label preservation and the invariance map are not informative"
            )
            summary.append("NOT INFORMATIVE: " + extras["collapse_warning"])
        elif collapse["collapsed"]:
            summary.append(f"collapsed nuisance dims {collapse['collapsed']} (nothing encoded); informative: {collapse['informative']}")
        extras["summary"] = summary
        if extras["leakage_high"]:
            extras["warning"] = (
                f"the nuisance dims predict the label well above chance ({leakage['probe_accuracy']:.2f} vs {leakage['chance']:.2f}): "
                "they are not free of class information, so redrawing them may change the class"
            )
        arrays = {
            "diversity": reduce_groups(diversity_elements, data.groups, "mean").astype(np.float32),
            "nuisance_change": change.astype(np.float32),
            "diversity_elements": diversity_elements.astype(np.float32),
            "attribution_magnitude": magnitude.astype(np.float32),
            "stability": stability.astype(np.float32),
            "invariance_score": score.astype(np.float32),
            "status": status,
            "x_explained": x.astype(np.float32),
            "x_invariant": x_gen.reshape(s, k, *shape).numpy().astype(np.float32),
            "attribution_predicted": ig_pred.numpy().astype(np.float32),
            "predictions": pred.astype(np.int64),
            "predictions_invariant": pred_gen.astype(np.int64),
            "explained_rows": rows.astype(np.int64),
            "nuisance_draws": draws,
            "element_group": _element_groups(data, d),
        }
        return Explanation(
            importance=importance,
            std=spread,
            local=original.astype(np.float32),
            feature_names=data.group_names,
            target_names=names,
            target=target.value,
            arrays=arrays,
            extras=extras,
        )

    def _accuracy(self, model: Model, data: Dataset, labels, logits_of, n_classes: int, seed: int) -> dict[str, Any]:  # noqa: ANN001
        """Head accuracy on the explain split, and a plain classifier of the same backbone trained on the fit split."""
        p = self.params
        accuracy: dict[str, Any] = {"split": "explain", "head": None, "plain_classifier": None}
        if labels is None:
            accuracy["skipped"] = "the data has no labels"
            return accuracy
        head_pred = evaluate(logits_of, data.x_explain, model=model).argmax(dim=1).numpy()
        accuracy["head"] = float((head_pred == labels[1]).mean())
        if p.classifier_epochs > 0:
            acc, reason = plain_classifier_accuracy(
                model,
                data.x_fit,
                labels[0],
                data.x_explain,
                labels[1],
                n_classes,
                epochs=p.classifier_epochs,
                lr=p.classifier_lr,
                seed=seed,
                progress=self.progress,
            )
            accuracy.update(plain_classifier=acc, plain_classifier_epochs=p.classifier_epochs, plain_classifier_lr=p.classifier_lr)
            if reason:
                accuracy["plain_classifier_skipped"] = reason
        return accuracy

    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Any]:
        """Image data: one grid per explained sample (original, invariant samples, attributions) and the invariance map; tabular: a table of free and fixed features."""
        from .figures import invariance_figures

        return invariance_figures(explanation)
