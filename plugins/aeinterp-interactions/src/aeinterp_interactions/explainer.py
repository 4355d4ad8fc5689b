"""``interactions``: which pairs of feature groups act together on every target.

Two methods, both for all targets at once:

* ``integrated_hessians`` (default; :mod:`aeinterp_interactions.hessians`):
  per-sample interaction matrices ``G_ij`` along the integrated-gradients
  path, batched with ``torch.func``; the diagonal holds main effects, rows sum
  to the IG attribution, the whole matrix to ``f(x) - f(baseline)``;
  ``local`` per-sample results;
* ``h_statistic`` (model-agnostic; :mod:`aeinterp_interactions.hstat`):
  Friedman's pairwise H from partial dependences on shared perturbed copies.

Results: ``arrays["interaction"]`` ``(targets, groups, groups)``, symmetric with
a zero diagonal (mean |G_ij| over samples, or H_jk in the target's units),
``arrays["main_effect"]`` ``(targets, groups)``, and ``importance`` = main
effect + summed interactions of each group (its total involvement).
``extras["top_pairs"]`` lists the strongest pairs per target and
``extras["summary"]`` one line per target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field

from aeinterp import Capabilities, Explainer, ExplainerParams, Explanation
from aeinterp.explainer import ALL_TARGETS
from aeinterp.model import as_tensor, evaluate
from aeinterp.targets import Target, evaluate_target, target_names_for
from aeinterp.toolkit.perturb import reduce_groups, subsample

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Interactions", "top_pairs"]

#: relative size below which an interaction counts as none (float32 round-off of exact zeros)
ZERO = 1e-6


class Interactions(Explainer):
    """Pairwise interactions per target: Integrated Hessians (torch.func, all targets at once) or Friedman's H-statistic."""

    name = "interactions"

    class Params(ExplainerParams):
        method: Literal["integrated_hessians", "h_statistic"] = Field(
            "integrated_hessians",
            description="integrated_hessians (gradients, per sample) or h_statistic (model-agnostic partial dependence)",
        )
        steps: int = Field(
            8, ge=1, le=64, description="integrated_hessians: points of the Gauss rule for the path integral (exact to degree 2*steps-1)"
        )
        baseline: Literal["zero", "mean"] = Field("zero", description="integrated_hessians: path start, zero or the fit split's mean")
        max_samples: int | None = Field(256, ge=1, description="integrated_hessians: explain at most this many samples (random, seeded)")
        grid_samples: int = Field(
            40, ge=2, le=2000, description="h_statistic: samples used as grid and background (copies = samples x (groups + pairs))"
        )
        pair_groups: int = Field(30, ge=2, description="h_statistic: pairs among at most this many groups with the largest main effects")
        top_pairs: int = Field(5, ge=1, description="strongest pairs listed per target")
        factorize: Literal["auto", "off"] = Field(
            "auto",
            description="integrated_hessians, auto: when the code is W act(A x + b) + c (a Linear-activation-Linear encoder on tabular data), "
            "integrate the activation's slope and curvature and apply A once per sample instead of differentiating the network; off: always torch.func Hessians",
        )
        keep_local: bool = Field(
            True, description="integrated_hessians: keep per-sample interaction sums (samples x targets x groups) as local"
        )
        local_max_mb: float = Field(
            64.0, gt=0, description="largest per-sample array kept (local; full per-sample matrices in arrays when they fit)"
        )
        memory_mb: float = Field(256.0, gt=0, description="bound on the Hessian blocks / perturbed copies computed at once, in MiB")

    capabilities = Capabilities(targets=ALL_TARGETS | {"prediction"}, needs_gradients=True, deterministic=True, local=True)

    def explain(self, model, data, *, target, rng):  # noqa: ANN001 - signature fixed by Explainer
        target = Target(target)
        names = target_names_for(model, data, target)
        if self.params.method == "h_statistic":
            result = self._h_statistic(model, data, target, rng)
        else:
            result = self._integrated_hessians(model, data, target, rng)
        inter, main = result["interaction"], result["main_effect"]
        importance = main + inter.sum(axis=2)
        groups = list(data.group_names)
        pairs = top_pairs(inter, groups, names, self.params.top_pairs)
        extras = {**result["extras"], "method": self.params.method, "top_pairs": pairs, "summary": summary_lines(pairs, names)}
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in result["arrays"].items()}
        arrays.update(interaction=inter.astype(np.float32), main_effect=main.astype(np.float32))
        return Explanation(
            importance=importance,
            feature_names=groups,
            target_names=names,
            target=target.value,
            local=result.get("local"),
            arrays=arrays,
            extras=extras,
        )

    # --- Integrated Hessians ---------------------------------------------------------------
    def _integrated_hessians(self, model, data, target: Target, rng: np.random.Generator) -> dict[str, Any]:  # noqa: ANN001
        from .hessians import factorised_integrated_hessians, integrated_hessians

        p = self.params
        x = subsample(data.x_explain, p.max_samples, rng)
        shape = tuple(x.shape[1:])
        n, e = x.shape[0], int(np.prod(shape))
        xt = as_tensor(x, model).reshape(n, e)
        base = torch.zeros(e, dtype=xt.dtype, device=xt.device)
        if p.baseline == "mean":
            base = as_tensor(np.asarray(data.x_fit).mean(axis=0), model).reshape(e)

        def f(flat: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
            return evaluate_target(model, target, flat.reshape(-1, *shape), ref.reshape(-1, *shape))

        fx = evaluate(lambda b: f(b, b), xt, model=model)
        with torch.no_grad():  # f at the baseline: once, or per sample for the error against each sample
            fb = (f(base.expand(n, e), xt) if target.is_loss else f(base[None], base[None]).expand(n, -1)).detach().cpu()
        n_t = fx.shape[1]
        groups = data.groups
        n_g = len(groups)
        plan, reason = _factorised_plan(model, data, target) if p.factorize == "auto" else (None, "factorize: off")
        if plan is None:
            per_sample = 4.0 * 4 * p.steps * n_t * e * e  # Hessians at the points, their weighted sums and autograd's copies
        else:
            h = plan[0].out_features
            per_sample = 4.0 * (2 * n_t * e * e + 2 * n_t * h * e + 4 * p.steps * h)  # result, scaled weights, slopes
        rows = max(1, int(p.memory_mb * 2**20 // per_sample))
        keep_local = p.keep_local and n * n_t * n_g * 4 <= p.local_max_mb * 2**20
        keep_full = p.keep_local and n * n_t * n_g * n_g * 4 <= p.local_max_mb * 2**20
        abs_sum = torch.zeros((n_t, n_g, n_g), dtype=torch.float64)
        signed_sum = torch.zeros((n_t, n_g, n_g), dtype=torch.float64)
        local = np.empty((n, n_t, n_g), dtype=np.float32) if keep_local else None
        full = np.empty((n, n_t, n_g, n_g), dtype=np.float32) if keep_full else None
        gap = torch.zeros(n_t, dtype=torch.float64)
        mode = "fwd"
        starts = range(0, n, rows)
        for s in self.progress.track(starts, total=len(starts), description=f"integrated hessians ({target})"):
            xb = xt[s : s + rows]
            if plan is not None:
                with torch.no_grad():
                    gamma = factorised_integrated_hessians(plan[0], plan[1], plan[2], xb, base, p.steps)
            else:
                with torch.enable_grad():
                    gamma, mode = integrated_hessians(f, xb, base, p.steps, mode=mode)  # (B, T, E, E)
            gamma = gamma.detach().cpu()
            gg = reduce_groups(reduce_groups(gamma, groups).transpose(-1, -2), groups).transpose(-1, -2)  # (B, T, G, G)
            row = gg.sum(dim=-1)  # (B, T, G): the IG attribution of each group (completeness)
            total = row.sum(dim=-1)  # f(x) - f(baseline), when the groups cover every element once
            if len(groups) != e or gg is not gamma:
                total = gamma.sum(dim=(-1, -2))
            gap = torch.maximum(gap, (total - (fx[s : s + rows] - fb[s : s + rows])).abs().max(dim=0).values.double())
            if local is not None:
                local[s : s + xb.shape[0]] = (row - torch.diagonal(gg, dim1=-2, dim2=-1)).numpy()  # off-diagonal row sums
            if full is not None:
                full[s : s + xb.shape[0]] = gg.numpy()
            signed_sum += gg.sum(dim=0).double()
            abs_sum += gg.abs_().sum(dim=0).double()  # in place: gg is not used after this
        mean_abs = (abs_sum / n).numpy()
        main = np.diagonal(mean_abs, axis1=1, axis2=2).copy()
        inter = mean_abs.copy()
        inter[:, np.arange(n_g), np.arange(n_g)] = 0.0
        scale = np.abs(fx.double().numpy() - fb.double().numpy()).max(axis=0)
        extras: dict[str, Any] = {
            "n_samples": n,
            "steps": p.steps,
            "baseline": p.baseline,
            "mode": "none" if plan is not None else mode,
            "path": "generic" if plan is None else "factorised",
            "path_reason": reason,
            "quadrature": f"{p.steps}-point Gauss rule for the weight -ln t (t = a*b), exact to degree {2 * p.steps - 1}",
            "unit": "mean |Integrated Hessian| over samples, in the target's units; diagonal = main effect",
            "completeness_gap": gap.tolist(),
            "completeness_gap_relative": [float(g / s_) if s_ > 0 else 0.0 for g, s_ in zip(gap.tolist(), scale, strict=True)],
        }
        if p.keep_local and not keep_full:
            extras["local_matrices_skipped"] = f"per-sample matrices would take {n * n_t * n_g * n_g * 4 / 2**20:.0f} MiB > local_max_mb"
        arrays = {"interaction_signed": (signed_sum / n).numpy()}
        if full is not None:
            arrays["local_interaction"] = full
        return {"interaction": inter, "main_effect": main, "arrays": arrays, "extras": extras, "local": local}

    # --- H-statistic -------------------------------------------------------------------------
    def _h_statistic(self, model, data, target: Target, rng: np.random.Generator) -> dict[str, Any]:  # noqa: ANN001
        from .hstat import h_statistics, partial_dependences

        p = self.params
        x = subsample(data.x_explain, p.grid_samples, rng)
        columns = [g.indices for g in data.groups]
        n_g = len(columns)
        main_pd, _, total = partial_dependences(model, target, x, columns, [], memory_mb=p.memory_mb, progress=self.progress)
        if n_g > p.pair_groups:  # pairs among the groups with the largest total effect (main + interactions) on any target
            score = (total / np.maximum(total.max(axis=0, keepdims=True), 1e-300)).max(axis=1)
            chosen = np.sort(np.argsort(-score, kind="stable")[: p.pair_groups])
        else:
            chosen = np.arange(n_g)
        pairs = [(int(a), int(b)) for i, a in enumerate(chosen) for b in chosen[i + 1 :]]
        _, pair_pd, _ = partial_dependences(model, target, x, columns, pairs, memory_mb=p.memory_mb, progress=self.progress, mains=False)
        stats = h_statistics(main_pd, pair_pd, pairs, n_g)
        extras = {
            "n_samples": int(x.shape[0]),
            "n_pairs": len(pairs),
            "paired_groups": [data.group_names[i] for i in chosen],
            "copies": int(x.shape[0] * (n_g + len(pairs))),
            "unit": "Friedman's unnormalised H: RMS over samples of PD_jk - PD_j - PD_k, in the target's units; main effect = RMS of PD_j",
        }
        return {
            "interaction": stats["interaction"],
            "main_effect": stats["main_effect"],
            "arrays": {"h_squared": stats["h_squared"]},
            "extras": extras,
        }

    # --- figures -------------------------------------------------------------------------------
    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Figure]:
        inter = explanation.arrays.get("interaction")
        if inter is None or inter.ndim != 3:
            return {}
        return {
            "heatmap": interaction_heatmaps(inter, explanation.feature_names, explanation.target_names),
            "top_pairs": top_pairs_figure(inter, explanation.feature_names, explanation.target_names),
        }


def _factorised_plan(model, data, target: Target) -> tuple[tuple[Any, Any, torch.Tensor] | None, str]:  # noqa: ANN001
    """``(first Linear, activation, code weight (T, h))`` when every target is ``W act(A x + b) + c``, and why (not)."""
    if target not in (Target.LATENT, Target.LATENT_PCA):
        return None, f"the {target} target is not an affine map of the code"
    try:
        from aeinterp_gradients.factorised import first_layer_split  # the same structural detection as integrated_gradients
    except ImportError:  # pragma: no cover - the gradients family ships in the same wheel
        return None, "aeinterp_gradients is not installed"
    base = getattr(model, "base", model)
    layer, reason = first_layer_split(base, data, Target.LATENT)
    if layer is None:
        return None, reason
    if layer.tail is None:
        return None, reason + ", but the code is not an affine map of one elementwise activation of it"
    act, out, _ = layer.tail
    weight = out.weight.detach()
    if target is Target.LATENT_PCA:  # pc = C (z - mean): another affine map of the same activation
        weight = torch.as_tensor(model.latent_pca.components, dtype=weight.dtype, device=weight.device) @ weight
    return (
        layer.linear,
        act,
        weight,
    ), reason + f"; the code is an affine map of an elementwise {type(act).__name__}: its Hessian is A^T diag(W act'') A"


def top_pairs(inter: np.ndarray, groups: list[str], targets: list[str], k: int) -> dict[str, list[dict[str, Any]]]:
    """The ``k`` strongest pairs of each target (pairs below ``ZERO`` x the largest interaction are none)."""
    n_t, n_g, _ = inter.shape
    iu, ju = np.triu_indices(n_g, k=1)
    values = inter[:, iu, ju]  # (T, P)
    k = min(k, values.shape[1])
    if k == 0:
        return {name: [] for name in targets}
    cand = np.argpartition(-values, k - 1, axis=1)[:, :k] if k < values.shape[1] else np.tile(np.arange(values.shape[1]), (n_t, 1))
    order = np.take_along_axis(cand, np.argsort(-np.take_along_axis(values, cand, axis=1), axis=1, kind="stable"), axis=1)
    floor = ZERO * max(float(np.abs(inter).max()), 1e-300)
    out: dict[str, list[dict[str, Any]]] = {}
    for t, name in enumerate(targets):  # formatting only: the numbers are computed above for all targets
        out[name] = [{"pair": [groups[iu[q]], groups[ju[q]]], "value": float(values[t, q])} for q in order[t] if values[t, q] > floor]
    return out


def summary_lines(pairs: dict[str, list[dict[str, Any]]], targets: list[str], shown: int = 3) -> list[str]:
    lines = []
    for name in targets:
        top = pairs.get(name, [])[:shown]
        text = ", ".join(f"{a} x {b} ({v['value']:.3g})" for v in top for a, b in [v["pair"]]) or "no interacting pair (additive)"
        lines.append(f"{name}: {text}")
    return lines


def interaction_heatmaps(inter: np.ndarray, groups: list[str], targets: list[str], limit: int = 16) -> Figure:
    """One heatmap per target (the ``limit`` targets with the strongest interactions)."""
    from matplotlib.figure import Figure

    strongest = np.argsort(-inter.reshape(inter.shape[0], -1).max(axis=1), kind="stable")[:limit]
    shown = np.sort(strongest)
    cols = min(4, len(shown))
    rows = int(np.ceil(len(shown) / cols))
    size = max(2.6, min(5.0, 0.25 * len(groups) + 1.5))
    fig = Figure(figsize=(size * cols, size * rows), constrained_layout=True)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel()[len(shown) :]:
        ax.set_axis_off()
    ticks = len(groups) <= 30
    for ax, t in zip(axes.ravel(), shown, strict=False):
        im = ax.imshow(inter[t], cmap="viridis", vmin=0.0, vmax=max(float(inter[t].max()), 1e-12))
        ax.set_title(targets[t], fontsize=9)
        if ticks:
            ax.set_xticks(range(len(groups)), groups, rotation=90, fontsize=6)
            ax.set_yticks(range(len(groups)), groups, fontsize=6)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.7)
    fig.suptitle("pairwise interactions per target")
    return fig


def top_pairs_figure(inter: np.ndarray, groups: list[str], targets: list[str], per_target: int = 3, limit: int = 25) -> Figure:
    """The union of every target's strongest pairs (rows) against all targets (columns)."""
    from matplotlib.figure import Figure

    n_t, n_g, _ = inter.shape
    iu, ju = np.triu_indices(n_g, k=1)
    values = inter[:, iu, ju]
    per_target = min(per_target, values.shape[1])
    best = (
        np.argpartition(-values, per_target - 1, axis=1)[:, :per_target]
        if 0 < per_target < values.shape[1]
        else np.tile(np.arange(values.shape[1]), (n_t, 1))
    )
    floor = ZERO * max(float(np.abs(inter).max()), 1e-300)
    keep = [q for q in dict.fromkeys(best.ravel().tolist()) if values[:, q].max() > floor][:limit]
    fig = Figure(figsize=(max(4.0, 0.5 * n_t + 2.5), max(2.5, 0.3 * len(keep) + 1.5)), constrained_layout=True)
    ax = fig.subplots()
    if not keep:
        ax.text(0.5, 0.5, "no interacting pairs", ha="center", va="center")
        ax.set_axis_off()
        return fig
    matrix = values[:, keep].T
    im = ax.imshow(matrix, aspect="auto", cmap="magma", vmin=0.0)
    ax.set_yticks(range(len(keep)), [f"{groups[iu[q]]} x {groups[ju[q]]}" for q in keep], fontsize=7)
    ax.set_xticks(range(n_t), targets, rotation=90 if n_t > 8 else 0, fontsize=7)
    ax.set_title("top interacting pairs across targets")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig
