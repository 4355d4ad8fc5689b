"""``jacobian`` (saliency, input x gradient) and ``integrated_gradients`` for every target at once.

Both compute, for blocks of samples, the Jacobian of every target with
respect to the input in one ``torch.func`` transform (see
:mod:`aeinterp_gradients.autodiff`), then reduce element attributions to the
dataset's feature groups:

* ``jacobian`` / ``method: saliency``: group value ``sum_{e in g} |dz_t/dx_e|``,
  importance its mean over samples;
* ``jacobian`` / ``method: input_x_gradient``: group value
  ``sum_{e in g} x_e dz_t/dx_e``, importance the mean of its absolute value;
* ``integrated_gradients``: ``(x - b) * integral_0^1 dz_t/dx(b + a (x - b)) da``
  for all targets along one shared path (quadrature points are weighted copies
  of the batch), importance the mean absolute group attribution, with the
  completeness gap ``|sum_e IG_e - (z_t(x) - z_t(b))|`` per target. When the
  targets read a tabular input only through an affine first layer
  ``a = A x + b``, the gradients stop at ``a``, the steps are summed there and
  ``A`` is applied once per sample; when moreover the latent code is an
  affine map of one elementwise activation of ``a``, the summed Jacobian is
  that map's weight times the activation's summed slope, without autodiff
  (:mod:`aeinterp_gradients.factorised`; ``extras["path"]``,
  ``extras["path_reason"]`` and ``extras["mode"]`` say what ran and why).

Mean element maps (signed and absolute, ``(targets, elements)``) are kept in
``arrays``; per-sample group attributions are kept as ``local`` when they fit
in ``local_max_mb``; ``std`` is the spread of the per-sample values over
samples. Elements are summed into groups with one ``index_add`` (cost
``samples x targets x elements``) rather than
:func:`aeinterp.perturb.reduce_groups`, whose dense ``elements x groups``
product costs ``x groups`` more (1000x for 1000 single-column groups); the
tests check both give the same sums.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from aeinterp import Capabilities, Explainer, ExplainerParams, Explanation
from aeinterp.model import as_tensor, evaluate
from aeinterp.explainer import ALL_TARGETS
from aeinterp.targets import Target, target_names_for

from .autodiff import choose_mode, has_recurrent_layers, scripted_recurrent, target_function, weighted_jacobian
from .factorised import FirstLayer, first_layer_split, layer_target_function, summed_code_jacobian
from .paths import Baseline, Rule, baselines, quadrature

__all__ = ["Jacobian", "IntegratedGradients"]


class _GradientParams(ExplainerParams):
    split: Literal["explain", "fit"] = Field("explain", description="which split to explain: the held-out explain split or the fit split")
    max_samples: int | None = Field(None, ge=1, description="explain at most this many samples (random, seeded)")
    mode: Literal["auto", "rev", "fwd", "loop"] = Field(
        "auto", description="autodiff: rev (vmap, cost ~ targets), fwd (vmap, cost ~ input elements), loop (one backward per target, for RNNs); auto picks"
    )
    keep_local: bool = Field(True, description="keep per-sample group attributions (samples x targets x groups) when they fit in local_max_mb")
    local_max_mb: float = Field(64.0, gt=0, description="largest per-sample attribution array to keep, in MiB")
    memory_mb: float = Field(256.0, gt=0, description="bound on the Jacobian blocks computed at once, in MiB (smaller blocks are often faster on a CPU)")


class _Accumulator:
    """Running sums over sample blocks: group importance (mean, std), element maps, local."""

    def __init__(self, n: int, n_t: int, n_e: int, elem_group: torch.Tensor, n_g: int, keep_local: bool) -> None:
        self.n, self.n_g, self.elem_group = n, n_g, elem_group
        # one group per element, in order (tabular data): group sums are the values themselves
        self.identity = n_g == n_e and bool(torch.equal(elem_group, torch.arange(n_e)))
        self.seen = 0
        self.mean = torch.zeros((n_t, n_g), dtype=torch.float64)
        self.m2 = torch.zeros((n_t, n_g), dtype=torch.float64)  # sum of squared deviations (Chan et al.'s merge)
        self.elem = torch.zeros((n_t, n_e), dtype=torch.float64)
        self.elem_abs = torch.zeros((n_t, n_e), dtype=torch.float64)
        self.local = torch.empty((n, n_t, n_g), dtype=torch.float32) if keep_local else None

    def group_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum the last axis of ``values`` (..., elements) into groups (elements in no group are dropped)."""
        if self.identity:
            return values
        out = torch.zeros((*values.shape[:-1], self.n_g + 1), dtype=values.dtype)
        out.index_add_(values.dim() - 1, self.elem_group, values)
        return out[..., : self.n_g]

    def add(
        self, start: int, element_values: torch.Tensor, group_values: torch.Tensor, score: torch.Tensor, element_abs: torch.Tensor | None = None
    ) -> None:
        """``element_values`` (B, T, E) for the maps (``element_abs`` their absolute values if already computed),
        ``group_values`` (B, T, G) local, ``score`` (B, T, G) importance terms."""
        self.elem += element_values.sum(dim=0).double()
        self.elem_abs += (element_values.abs() if element_abs is None else element_abs).sum(dim=0).double()
        nb = score.shape[0]
        block_mean = score.mean(dim=0)
        block_m2 = (score - block_mean).pow(2).sum(dim=0).double()
        delta = block_mean.double() - self.mean
        total = self.seen + nb
        self.mean += delta * (nb / total)
        self.m2 += block_m2 + delta.pow(2) * (self.seen * nb / total)
        self.seen = total
        if self.local is not None:
            self.local[start : start + group_values.shape[0]] = group_values.float()

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        var = self.m2 / max(1, self.n - 1)
        return self.mean.numpy(), var.sqrt().numpy(), (self.elem / self.n).numpy(), (self.elem_abs / self.n).numpy()


def _element_groups(data, n_e: int) -> tuple[torch.Tensor, int]:  # noqa: ANN001
    """For each flattened element, the index of its group (``n_groups`` for none)."""
    groups = data.groups
    owner = torch.full((n_e,), len(groups), dtype=torch.long)
    for j, g in enumerate(groups):
        owner[torch.as_tensor(g.indices)] = j
    return owner, len(groups)


def _setup(explainer: Explainer, model, data, target: Target, rng: np.random.Generator, copies: int):  # noqa: ANN001, ANN202
    p = explainer.params
    x = explainer.take_rows(data, p.split, p.max_samples, rng)
    names = target_names_for(model, data, target)
    n, n_t = x.shape[0], len(names)
    n_e = int(np.prod(x.shape[1:]))
    recurrent = has_recurrent_layers(model)
    fused = recurrent and scripted_recurrent(model)  # TorchScript: the kernel cannot be written out
    mode = choose_mode(p.mode, n_e, n_t, recurrent)
    per_sample = 4.0 * 3 * copies * n_t * n_e  # the Jacobian block and autograd's copies of it
    rows = max(1, int(p.memory_mb * 2**20 // per_sample))
    chunk = None
    if rows == 1 and mode == "rev":  # even one sample is too big: vmap over the targets in chunks
        chunk = max(1, int(p.memory_mb * 2**20 // (4.0 * 3 * copies * n_e)))
    owner, n_g = _element_groups(data, n_e)
    keep_local = p.keep_local and n * n_t * n_g * 4 <= p.local_max_mb * 2**20
    acc = _Accumulator(n, n_t, n_e, owner, n_g, keep_local)
    info: dict[str, Any] = {"n_samples": n, "split": p.split, "mode": mode, "samples_per_block": rows, "recurrent_layers": recurrent,
                            "recurrent_unrolled": recurrent and not fused and mode == "fwd"}
    if p.mode == "auto" and recurrent:
        info["mode_reason"] = "recurrent layers: vmap has no batched RNN backward on CPU, one backward pass per target is faster" + (
            " (inside TorchScript)" if fused else "")
    if info["recurrent_unrolled"]:
        info["mode_reason"] = "forward mode: the recurrent layers run as written-out gates (aeinterp.recurrent), the fused kernel has no forward-mode derivative"
    if p.keep_local and not keep_local:
        info["local_skipped"] = f"per-sample attributions would take {n * n_t * n_g * 4 / 2**20:.0f} MiB > local_max_mb"
    return x, names, mode, rows, chunk, acc, info


def _jacobian_blocks(f, points, reference, weights, mode, chunk, info):  # noqa: ANN001, ANN202
    """:func:`weighted_jacobian`, falling back from forward to reverse mode where forward AD is missing."""
    if mode == "fwd":
        try:
            return weighted_jacobian(f, points, reference, weights, "fwd"), "fwd"
        except NotImplementedError as exc:  # e.g. nn.LSTM on CPU has no forward-mode derivative
            mode = "loop" if info.get("recurrent_layers") else "rev"
            info["mode"] = mode
            info["mode_fallback"] = f"forward mode unavailable ({str(exc).splitlines()[0][:160]}); used {mode} instead"
    if mode == "loop":
        return weighted_jacobian(f, points, reference, weights, "loop"), "loop"
    return weighted_jacobian(f, points, reference, weights, "rev", chunk_size=chunk), "rev"


def _factorised_plan(p, model, data, target: Target, n_t: int, n_e: int, info: dict[str, Any]):  # noqa: ANN001, ANN202
    """The affine first layer to factorise out (or None), its autodiff mode, rows and chunk; records the path in ``info``."""
    layer: FirstLayer | None = None
    if p.factorize == "off":
        reason = "factorize: off"
    else:
        layer, reason = first_layer_split(model, data, target)
        if layer is not None and layer.width > n_e and n_t > n_e:
            layer, reason = None, f"the first layer widens the input ({n_e} -> {layer.width}) and there are more targets than inputs: no saving"
    info["path"] = "generic" if layer is None else "first-layer factorised"
    info["path_reason"] = reason
    if layer is None:
        return None, None, None, None
    h = layer.width
    if layer.tail is not None and (target is not Target.LATENT or p.factorize == "first_layer"):
        layer = FirstLayer(layer.linear, layer.rest)
    mode = choose_mode(p.mode, h, n_t, info["recurrent_layers"])
    per_sample = 4.0 * (3 * p.steps * n_t * h + 2 * n_t * n_e)  # the Jacobian w.r.t. the layer's output over the steps, then x A
    if layer.tail is not None:
        mode = "none"
        info["path_reason"] += f"; the code is an affine map of an elementwise {type(layer.tail[0]).__name__}: its Jacobian is the weight times the activation's slope"
        per_sample = 4.0 * (2 * p.steps * h + 2 * n_t * h + 2 * n_t * n_e)  # slopes over the steps, weight x slope, then x A
    rows = max(1, int(p.memory_mb * 2**20 // per_sample))
    chunk = max(1, int(p.memory_mb * 2**20 // (4.0 * 3 * p.steps * h))) if rows == 1 and mode == "rev" else None
    info.update(mode=mode, samples_per_block=rows, first_layer=[int(layer.linear.in_features), h])
    return layer, mode, rows, chunk


def _result(acc: _Accumulator, data, names, target: Target, extras: dict[str, Any], arrays: dict[str, np.ndarray]) -> Explanation:  # noqa: ANN001
    mean, std, elem, elem_abs = acc.finish()
    return Explanation(
        importance=mean,
        std=std,
        local=None if acc.local is None else acc.local.numpy(),
        feature_names=data.group_names,
        target_names=names,
        target=target.value,
        arrays={**arrays, "attribution_mean": elem.astype(np.float32), "attribution_abs_mean": elem_abs.astype(np.float32)},
        extras=extras,
    )


class Jacobian(Explainer):
    """Per-sample Jacobians of every target: saliency (mean |dz/dx|) or input x gradient."""

    name = "jacobian"

    class Params(_GradientParams):
        method: Literal["saliency", "input_x_gradient"] = Field("saliency", description="saliency: mean |dz/dx| per group; input_x_gradient: mean |sum of x * dz/dx| per group")

    capabilities = Capabilities(targets=ALL_TARGETS | {"prediction"}, needs_gradients=True, deterministic=True, local=True)

    def explain(self, model, data, *, target, rng):  # noqa: ANN001 - signature fixed by Explainer
        p = self.params
        target = Target(target)
        x, names, mode, rows, chunk, acc, info = _setup(self, model, data, target, rng, copies=1)
        f = target_function(model, target, unroll=info["recurrent_unrolled"])
        xt = as_tensor(x, model)
        one = torch.ones(1)
        starts = range(0, x.shape[0], rows)
        for s in self.progress.track(starts, total=len(starts), description=f"jacobian ({target})"):
            xb = xt[s : s + rows]
            jac, mode = _jacobian_blocks(f, xb.unsqueeze(0), xb, one, mode, chunk, info)
            jac = jac.detach().reshape(xb.shape[0], len(names), -1).cpu()
            if p.method == "saliency":
                absj = jac.abs()
                local = acc.group_sum(absj)
                acc.add(s, jac, local, local, element_abs=absj)
            else:
                elem = jac * xb.reshape(xb.shape[0], 1, -1).cpu()
                local = acc.group_sum(elem)
                acc.add(s, elem, local, local.abs())
        unit = "mean |dz/dx| summed over the group" if p.method == "saliency" else "mean |sum of x * dz/dx| over the group"
        extras = {**info, "method": p.method, "unit": unit}
        result = _result(acc, data, names, target, extras, {})
        if p.method == "saliency":  # the element maps are the Jacobian itself
            arrays = dict(result.arrays)
            arrays["jacobian_mean"] = arrays.pop("attribution_mean")
            arrays["jacobian_abs_mean"] = arrays.pop("attribution_abs_mean")
            result = result.replace(arrays=arrays)
        return result


class IntegratedGradients(Explainer):
    """Integrated gradients of every target along one shared path, with the completeness gap per target."""

    name = "integrated_gradients"

    class Params(_GradientParams):
        steps: int = Field(32, ge=1, le=1024, description="quadrature points on the path from the baseline to the sample")
        rule: Rule = Field("gausslegendre", description="quadrature rule (Captum's names): gausslegendre or riemann_middle/left/right/trapezoid")
        baseline: Baseline = Field("zero", description="path start: zero, the fit split's mean, or random fit samples (averaged)")
        n_baselines: int = Field(1, ge=1, le=64, description="random fit samples averaged over when baseline is 'sample'")
        factorize: Literal["auto", "first_layer", "off"] = Field(
            "auto",
            description="auto: when the targets read a tabular input only through an affine first layer, stop the gradients there and apply its weight "
            "once per sample (and when the code is an affine map of one elementwise activation of it, use the activation's slope instead of autodiff); "
            "first_layer: only the former; off: always differentiate w.r.t. the input",
        )

    capabilities = Capabilities(targets=ALL_TARGETS | {"prediction"}, needs_gradients=True, deterministic=True, local=True)

    def explain(self, model, data, *, target, rng):  # noqa: ANN001 - signature fixed by Explainer
        p = self.params
        target = Target(target)
        alpha, weight = quadrature(p.rule, p.steps)
        x, names, mode, rows, chunk, acc, info = _setup(self, model, data, target, rng, copies=p.steps)
        base = baselines(p.baseline, data.x_fit, p.n_baselines, rng)
        f = target_function(model, target, unroll=info["recurrent_unrolled"])
        layer, *plan = _factorised_plan(p, model, data, target, len(names), int(np.prod(x.shape[1:])), info)
        if layer is not None:
            g = layer_target_function(model, layer, target)
            mode, rows, chunk = plan
            a_weight = layer.linear.weight.detach()  # (h, n)
        xt = as_tensor(x, model)
        base_t = as_tensor(base, model)
        a_t = torch.as_tensor(alpha, dtype=xt.dtype).view(-1, 1, *([1] * (xt.dim() - 1)))
        w_t = torch.as_tensor(weight, dtype=xt.dtype)
        fx = evaluate(lambda b: f(b, b), xt, model=model)
        n, n_t = xt.shape[0], len(names)
        sum_ig = torch.zeros((n, n_t), dtype=torch.float64)
        delta = torch.zeros((n, n_t), dtype=torch.float64)
        starts = range(0, n, rows)
        for s in self.progress.track(starts, total=len(starts), description=f"integrated_gradients ({target})"):
            xb = xt[s : s + rows]
            ig = torch.zeros((xb.shape[0], n_t, xb[0].numel()), dtype=torch.float32)
            for b in base_t:  # one pass per baseline (1 unless baseline is 'sample')
                diff = xb - b
                if layer is None:
                    points = b + a_t * diff.unsqueeze(0)  # (steps, B, *shape)
                    grad, mode = _jacobian_blocks(f, points, xb, w_t, mode, chunk, info)
                else:  # the layer is affine: its outputs along the path interpolate those at both ends
                    with torch.no_grad():
                        a_x, a_b = layer(xb), layer(b.unsqueeze(0))
                    a_path = a_b + a_t * (a_x - a_b).unsqueeze(0)
                    if layer.tail is not None:
                        with torch.no_grad():
                            grad = summed_code_jacobian(layer, a_path, w_t)
                    else:
                        grad, mode = _jacobian_blocks(g, a_path, xb, w_t, mode, chunk, info)
                    grad = grad.detach() @ a_weight  # (B, T, h) @ (h, n): sum_s w_s dT/dx(x_s)
                ig += grad.detach().reshape(xb.shape[0], n_t, -1).cpu() * diff.reshape(xb.shape[0], 1, -1).cpu()
                with torch.no_grad():
                    delta[s : s + xb.shape[0]] += (fx[s : s + xb.shape[0]] - f(b.expand_as(xb), xb).cpu()).double()
            ig /= base_t.shape[0]
            local = acc.group_sum(ig)
            acc.add(s, ig, local, local.abs())
            sum_ig[s : s + xb.shape[0]] = ig.sum(dim=2).double()
        delta /= base_t.shape[0]
        gap = (sum_ig - delta).abs().mean(dim=0).numpy()
        scale = delta.abs().mean(dim=0).numpy()
        relative = np.divide(gap, scale, out=np.full_like(gap, np.nan), where=scale > 0)
        extras = {
            **info,
            "unit": "mean |integrated gradients| summed over the group",
            "rule": p.rule,
            "steps": p.steps,
            "baseline": p.baseline,
            "n_baselines": int(base_t.shape[0]),
            "completeness_gap": {t: float(g) for t, g in zip(names, gap)},
            "max_relative_completeness_gap": float(np.nanmax(relative)) if np.isfinite(relative).any() else None,
        }
        arrays = {"completeness_gap": gap, "target_change": scale}
        return _result(acc, data, names, target, extras, arrays)

    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Any]:
        """Completeness gap per target next to the size of the target's change from the baseline."""
        gap, change = explanation.arrays.get("completeness_gap"), explanation.arrays.get("target_change")
        if gap is None or change is None or len(gap) > 60:
            return {}
        from matplotlib.figure import Figure

        fig = Figure(figsize=(max(4.0, 0.35 * len(gap) + 2), 3.2), layout="constrained")
        ax = fig.add_subplot()
        pos = np.arange(len(gap))
        ax.bar(pos - 0.2, change, width=0.4, color="#999999", label="mean |z(x) - z(baseline)|")
        ax.bar(pos + 0.2, gap, width=0.4, color="#cc5500", label="mean completeness gap")
        ax.set_xticks(pos, explanation.target_names, rotation=90, fontsize=8)
        ax.legend(fontsize=8)
        ax.set_title("integrated gradients: completeness per target", fontsize=9)
        return {"completeness": fig}
