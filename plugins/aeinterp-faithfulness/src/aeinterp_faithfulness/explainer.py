"""``faithfulness``: are the earlier steps' rankings better than chance, and do they depend on the model?

For every explanation named in ``explanations`` (earlier steps, by alias) and
every target ``t``, the groups are ordered by that explanation's importance
for ``t``; then, on the explained samples,

* **deletion**: the top ``s`` groups are replaced (by the ``baseline`` or by a
  fixed permutation of the samples) and ``D(s) = change_t(top s removed) /
  change_t(all removed)`` is recorded — a faithful ranking reaches most of
  the change early;
* **insertion**: all but the top ``s`` are replaced and ``I(s) = 1 -
  change_t(all but top s removed) / change_t(all removed)`` — a faithful
  ranking recovers the target early.

``change_t`` is the root-mean-square change of target ``t`` over samples
(:func:`aeinterp.targets.target_change`); the curves are sampled at ``steps``
fractions of the groups and their areas (trapezoid over the fraction removed,
larger = better for both) are compared with those of ``random_orders``
random orders, run on the same copies. The score of an explanation for a
target is ``AUC = (AUC_deletion + AUC_insertion) / 2`` and its gain the AUC
minus the random orders' mean AUC; a gain of at most ``margin`` is flagged
"not faithful". Every copy of every explanation and random order goes
through one :func:`aeinterp.toolkit.perturb.perturbation_effects` call.

The **model-randomisation check** (Adebayo et al. 2018) reruns each
explanation's explainer, with its own params and seed, on a copy of the model
whose encoder layers are re-initialised from the top down (cascading), and
records the Spearman rank correlation of each target's importance with the
original; a ranking that barely changes is flagged as not depending on what
the model learned.

``importance`` is the ``targets x (explanations + 1)`` table of AUCs, the last
column the random-order reference.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from aeinterp import Capabilities, CapabilityError, Explainer, ExplainerParams, Explanation, StepRef
from aeinterp.explainer import ALL_TARGETS
from aeinterp.model import as_tensor, torch_modules
from aeinterp.targets import Target, target_names_for
from aeinterp.toolkit.perturb import perturbation_effects, subsample

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Faithfulness", "spearman_rows"]

RANDOM = "random order"


class Faithfulness(Explainer):
    """Deletion / insertion curves of earlier explanations against random order, and the model-randomisation check."""

    name = "faithfulness"

    class Params(ExplainerParams):
        explanations: list[StepRef] = Field(min_length=1, description="aliases of the earlier steps to assess")
        replace: Literal["baseline", "permutation"] = Field(
            "baseline", description="removed groups take the baseline value, or another sample's value (one fixed permutation)"
        )
        baseline: Literal["zero", "mean", "median"] = Field("mean", description="the baseline of `replace: baseline`, from the fit split")
        steps: int = Field(10, ge=2, le=200, description="points of each curve (fractions of the groups removed)")
        random_orders: int = Field(20, ge=2, le=1000, description="random orders giving the chance reference")
        margin: float = Field(0.05, ge=0, description="an AUC gain over random of at most this is flagged not faithful")
        max_samples: int | None = Field(256, ge=1, description="samples the curves are measured on (random, seeded)")
        randomization: bool = Field(True, description="run the cascading model-randomisation check")
        randomization_stages: int = Field(
            3, ge=1, le=16, description="at most this many cascading stages (the last randomises every encoder layer)"
        )
        insensitive_above: float = Field(
            0.5, ge=-1, le=1, description="a mean rank correlation above this after full randomisation is flagged"
        )
        memory_mb: float = Field(256.0, gt=0, description="bound on the perturbed copies evaluated at once, in MiB")

    capabilities = Capabilities(
        targets=ALL_TARGETS | {"prediction"}, deterministic=True, local=False, features="own"
    )  # columns: the explainers compared

    def explain(self, model, data, *, target, rng):  # noqa: ANN001 - signature fixed by Explainer
        p = self.params
        target = Target(target)
        names = target_names_for(model, data, target)
        sources = {alias: self._source(alias, data, target, len(names)) for alias in dict.fromkeys(p.explanations)}
        x = subsample(data.x_explain, p.max_samples, rng)
        n_g = len(data.groups)
        counts = np.unique(np.round(np.linspace(0, n_g, p.steps + 1)).astype(int))
        inner = counts[(counts > 0) & (counts < n_g)]  # the ends are known: D(0) = 0, D(G) = 1, I(0) = 0, I(G) = 1
        fractions = counts / n_g
        random_orders = np.stack([rng.permutation(n_g) for _ in range(p.random_orders)])
        orders = {alias: np.argsort(-e.importance, axis=1, kind="stable") for alias, e in sources.items()}

        # one list of copies: every (explanation, target) order and every random order, deletion and insertion
        cols = [np.asarray(g.indices, dtype=np.int64) for g in data.groups]
        removed: list[np.ndarray] = [np.arange(n_g)]  # copy 0: everything removed

        def add(order: np.ndarray) -> None:
            for s in inner:
                removed.append(order[:s])
                removed.append(order[s:])

        for alias in sources:
            for t in range(len(names)):
                add(orders[alias][t])
        for order in random_orders:
            add(order)
        change = self._changes(model, data, target, x, cols, removed, rng)  # (copies, T)
        full = change[0]
        ok = full > 1e-12 * max(1.0, float(np.abs(full).max()))
        per = 2 * len(inner)

        def curves(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """``block`` (per, T) -> deletion and insertion curves (T, len(counts))."""
            dele = np.divide(block[0::2].T, full[:, None], out=np.full((len(full), len(inner)), np.nan), where=ok[:, None])
            ins = 1 - np.divide(block[1::2].T, full[:, None], out=np.full((len(full), len(inner)), np.nan), where=ok[:, None])
            n_t = len(full)
            dele = np.concatenate([np.zeros((n_t, 1)), dele, np.ones((n_t, 1))], axis=1)
            ins = np.concatenate([np.zeros((n_t, 1)), ins, np.ones((n_t, 1))], axis=1)
            return dele, ins

        def auc(curve: np.ndarray) -> np.ndarray:
            return np.trapezoid(curve, fractions, axis=-1)

        arrays: dict[str, np.ndarray] = {"fractions": fractions.astype(np.float32)}
        offset = 1
        table: dict[str, dict[str, dict[str, Any]]] = {}
        aucs = np.zeros((len(names), len(sources) + 1))
        explained: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for alias in sources:
            dele = np.zeros((len(names), len(counts)))
            ins = np.zeros_like(dele)
            for t in range(len(names)):  # unpacking the copies computed above
                d_t, i_t = curves(change[offset : offset + per])
                dele[t], ins[t] = d_t[t], i_t[t]
                offset += per
            explained[alias] = (dele, ins)
        rand_del = np.zeros((p.random_orders, len(names), len(counts)))
        rand_ins = np.zeros_like(rand_del)
        for r in range(p.random_orders):
            rand_del[r], rand_ins[r] = curves(change[offset : offset + per])
            offset += per
        rand_auc = (auc(rand_del) + auc(rand_ins)) / 2  # (R, T)
        rand_mean, rand_std = rand_auc.mean(axis=0), rand_auc.std(axis=0)
        aucs[:, -1] = rand_mean
        arrays.update(deletion_random=rand_del.mean(axis=0).astype(np.float32), insertion_random=rand_ins.mean(axis=0).astype(np.float32))
        flagged: list[list[str]] = []
        for k, (alias, (dele, ins)) in enumerate(explained.items()):
            a_del, a_ins = auc(dele), auc(ins)
            score = (a_del + a_ins) / 2
            aucs[:, k] = score
            arrays[f"deletion_{alias}"] = dele.astype(np.float32)
            arrays[f"insertion_{alias}"] = ins.astype(np.float32)
            rows = {}
            for t, name in enumerate(names):
                gain = float(score[t] - rand_mean[t])
                faithful = bool(ok[t] and gain > p.margin)
                if ok[t] and not faithful:
                    flagged.append([alias, name])
                rows[name] = {
                    "deletion_auc": float(a_del[t]),
                    "insertion_auc": float(a_ins[t]),
                    "auc": float(score[t]),
                    "gain": gain,
                    "random_auc": float(rand_mean[t]),
                    "random_auc_std": float(rand_std[t]),
                    "beats_random_fraction": float((rand_auc[:, t] < score[t]).mean()),
                    "faithful": faithful if ok[t] else None,
                }
            table[alias] = rows
        extras: dict[str, Any] = {
            "table": table,
            "not_faithful": flagged,
            "replace": p.replace,
            "baseline": p.baseline if p.replace == "baseline" else None,
            "n_samples": int(x.shape[0]),
            "copies": len(removed),
            "random_orders": p.random_orders,
            "constant_targets": [names[t] for t in range(len(names)) if not ok[t]],
            "unit": "AUC of the deletion / insertion curve over the fraction of groups removed (0..1, larger = more faithful); last column: random order",
        }
        summary = []
        for alias in sources:
            bad = [name for a, name in flagged if a == alias]
            good = [name for name in names if table[alias][name]["faithful"]]
            line = f"{alias}: faithful for {', '.join(good) or 'no target'}"
            if bad:
                line += "; not faithful for " + ", ".join(
                    f"{n} (AUC {table[alias][n]['auc']:.2f} vs random {table[alias][n]['random_auc']:.2f})" for n in bad
                )
            summary.append(line)
        if p.randomization:
            rand_info = {alias: self._randomization(model, data, target, e) for alias, e in sources.items()}
            extras["randomization"] = rand_info
            for alias, info in rand_info.items():
                if "skipped" in info:
                    summary.append(f"{alias}: randomisation check skipped ({info['skipped']})")
                    continue
                rho = info["rank_correlation"][-1]
                verdict = (
                    "does not depend on the learned weights"
                    if rho is not None and rho > p.insensitive_above
                    else "changes with the weights"
                )
                summary.append(
                    f"{alias}: rank correlation after randomising all {info['layers'][-1]} encoder layers {rho:.2f} ({verdict})"
                    if rho is not None
                    else f"{alias}: rank correlation undefined (constant importance)"
                )
                info["insensitive"] = bool(rho is not None and rho > p.insensitive_above)
        extras["summary"] = summary
        return Explanation(
            importance=aucs,
            feature_names=[*sources, RANDOM],
            target_names=names,
            target=target.value,
            arrays=arrays,
            extras=extras,
            std=np.concatenate([np.zeros((len(names), len(sources))), rand_std[:, None]], axis=1),
        )

    # --- pieces -------------------------------------------------------------------------------
    def _source(self, alias: str, data, target: Target, n_targets: int) -> Explanation:  # noqa: ANN001
        e = self.result_of(alias)
        if e.target != target.value:
            raise CapabilityError(
                f"faithfulness of target {target.value!r} cannot assess step {alias!r}, which explains {e.target!r}; give this step `targets: [{e.target}]`",
                plugin=self.name,
            )
        if list(e.feature_names) != list(data.group_names) or e.importance.shape[0] != n_targets:
            raise CapabilityError(
                f"step {alias!r} does not rank this data's feature groups for every target (its columns are {e.feature_names[:5]}...); faithfulness needs a targets x groups importance",
                plugin=self.name,
            )
        return e

    def _changes(
        self, model, data, target: Target, x: np.ndarray, cols: list[np.ndarray], removed: list[np.ndarray], rng: np.random.Generator
    ) -> np.ndarray:  # noqa: ANN001
        p = self.params
        flat = as_tensor(x, model).reshape(x.shape[0], -1)
        if p.replace == "permutation":
            source = flat[torch.as_tensor(rng.permutation(x.shape[0]))]
        else:
            fit = np.asarray(data.x_fit).reshape(len(data.x_fit), -1)
            value = {"zero": np.zeros(fit.shape[1]), "mean": fit.mean(axis=0), "median": np.median(fit, axis=0)}[p.baseline]
            source = as_tensor(value, model).reshape(1, -1).expand_as(flat)
        columns = [
            torch.as_tensor(np.concatenate([cols[g] for g in groups]) if len(groups) else np.zeros(0, dtype=np.int64)) for groups in removed
        ]

        def fill(block: torch.Tensor, ids) -> list[torch.Tensor]:  # noqa: ANN001
            for k, i in enumerate(ids):
                c = columns[i]
                block[k][:, c] = source[:, c].to(block.dtype)
            return [columns[i] for i in ids]

        return (
            perturbation_effects(
                model, target, x, len(removed), fill, memory_mb=p.memory_mb, progress=self.progress, description="deletion / insertion"
            )
            .double()
            .numpy()
        )

    def _randomization(self, model, data, target: Target, source: Explanation) -> dict[str, Any]:  # noqa: ANN001
        from aeinterp import find_explainer, run_explainer

        entry = find_explainer(source.explainer) if source.explainer else None
        if entry is None:
            return {"skipped": f"explainer {source.explainer or '?'} is not installed here"}
        try:
            work = copy.deepcopy(model)
        except Exception as exc:  # TorchScript and some custom models cannot be copied
            return {"skipped": f"the model cannot be copied ({type(exc).__name__})"}
        layers = _encoder_layers(work)
        if not layers:
            return {"skipped": "no encoder layer with parameters was found"}
        n = len(layers)
        cuts = sorted(
            {max(1, round(n * (k + 1) / min(self.params.randomization_stages, n))) for k in range(min(self.params.randomization_stages, n))}
        )
        seed = 0 if source.seed is None else int(source.seed)
        done, corr, per_target = 0, [], []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            for cut in cuts:  # cascading: top layers first
                for layer in reversed(layers[n - cut : n - done]):
                    _reinitialise(layer)
                done = cut
                again = run_explainer(
                    entry.cls,
                    work,
                    data,
                    target=target,
                    seed=seed,
                    params=source.params,
                    distribution=entry.distribution,
                    version=entry.version,
                )
                rho = spearman_rows(source.importance, again.importance)
                per_target.append([None if np.isnan(r) else float(r) for r in rho])
                finite = rho[np.isfinite(rho)]
                corr.append(float(finite.mean()) if finite.size else None)
        return {
            "layers": [int(c) for c in cuts],
            "of_layers": n,
            "rank_correlation": corr,
            "rank_correlation_per_target": per_target,
            "explainer": entry.name,
            "method": "cascading re-initialisation of the encoder's layers from the top (Adebayo et al. 2018), Spearman per target",
        }

    # --- figures ----------------------------------------------------------------------------------
    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Figure]:
        if "fractions" not in explanation.arrays:
            return {}
        return {"curves": _curves_figure(explanation), "table": _table_figure(explanation)}


def _encoder_layers(model: Any) -> list[nn.Module]:
    """Leaf modules with parameters on the encoder side, in forward (registration) order."""
    encoder = getattr(model, "encoder_fn", None)
    roots: list[nn.Module]
    if isinstance(encoder, nn.Module):
        roots = [encoder]
    else:
        owner = getattr(encoder, "__self__", None)
        owner = getattr(owner, "vae", owner)
        body = getattr(owner, "encoder", None)
        heads = [getattr(owner, k) for k in ("to_code", "to_mu") if isinstance(getattr(owner, k, None), nn.Module)]
        roots = [body, *heads] if isinstance(body, nn.Module) else torch_modules(model)
    return [m for root in roots for m in root.modules() if any(True for _ in m.parameters(recurse=False))]


def _reinitialise(layer: nn.Module) -> None:
    if hasattr(layer, "reset_parameters"):
        layer.reset_parameters()
        return
    with torch.no_grad():
        for p in layer.parameters(recurse=False):
            p.normal_(0.0, float(p.std()) if p.numel() > 1 else 1.0)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each row of ``a`` with the same row of ``b`` (NaN for constant rows)."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra = ra - ra.mean(axis=1, keepdims=True)
    rb = rb - rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    return np.divide((ra * rb).sum(axis=1), den, out=np.full(a.shape[0], np.nan), where=den > 0)


def _curves_figure(e: Explanation, limit: int = 12) -> Figure:
    from matplotlib.figure import Figure

    fr = e.arrays["fractions"]
    aliases = [a for a in e.feature_names if a != RANDOM]
    shown = list(range(min(limit, len(e.target_names))))
    fig = Figure(figsize=(3.2 * len(shown), 5.4), constrained_layout=True)
    axes = fig.subplots(2, len(shown), squeeze=False)
    for col, t in enumerate(shown):
        for row, kind in enumerate(("deletion", "insertion")):
            ax = axes[row, col]
            for alias in aliases:
                ax.plot(fr, e.arrays[f"{kind}_{alias}"][t], marker=".", label=alias)
            ax.plot(fr, e.arrays[f"{kind}_random"][t], color="grey", linestyle="--", label=RANDOM)
            ax.set_title(f"{e.target_names[t]}: {kind}", fontsize=9)
            ax.set_xlabel("fraction of groups " + ("removed" if kind == "deletion" else "kept"), fontsize=8)
    axes[0, 0].legend(fontsize=7)
    return fig


def _table_figure(e: Explanation) -> Figure:
    from matplotlib.figure import Figure

    table = e.extras.get("table", {})
    aliases = [a for a in e.feature_names if a != RANDOM]
    gain = np.array([[table.get(a, {}).get(t, {}).get("gain", np.nan) or 0.0 for t in e.target_names] for a in aliases])
    fig = Figure(figsize=(max(4.0, 0.7 * len(e.target_names) + 2.5), max(2.2, 0.5 * len(aliases) + 1.5)), constrained_layout=True)
    ax = fig.subplots()
    lim = max(0.05, float(np.nanmax(np.abs(gain))) if gain.size else 0.05)
    im = ax.imshow(gain, cmap="RdYlGn", vmin=-lim, vmax=lim, aspect="auto")
    for i, a in enumerate(aliases):
        for j, t in enumerate(e.target_names):
            cell = table.get(a, {}).get(t, {})
            mark = "" if cell.get("faithful", True) in (True, None) else "\nnot faithful"
            ax.text(j, i, f"{cell.get('auc', float('nan')):.2f}{mark}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(e.target_names)), e.target_names)
    ax.set_yticks(range(len(aliases)), aliases)
    ax.set_title("faithfulness: AUC (colour: gain over random order)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig
