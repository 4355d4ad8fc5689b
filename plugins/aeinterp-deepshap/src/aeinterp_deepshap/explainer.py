"""The ``deepshap`` explainer: DeepSHAP attributions for every target at once.

Result layout
-------------
``local``
    ``(samples, targets, groups)``: per-sample SHAP values summed over each
    feature group (for sequences a group is one feature over all steps).
``importance``
    ``(targets, groups)``: mean absolute ``local`` over the explained samples.
``arrays["phi"]``
    ``(samples, targets, *sample_shape)``: per-element SHAP values, kept when
    the groups are not the single elements.
``arrays["phi_steps"]``, ``arrays["importance_steps"]`` (sequence data)
    ``(samples, targets, steps)`` and ``(targets, steps)``: the same summed per time step.
``arrays["target_values"]``, ``arrays["expected_value"]``
    ``f(x)`` per sample and ``E[f(background)]``: ``phi`` sums to their difference.
``arrays["additivity_max_rel"]``, ``arrays["additivity_mean_rel"]``
    per target, ``|sum(phi) - (f(x) - E f)|`` over the target's mean ``|f(x) - E f|``.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from aeinterp import Capabilities, Explainer, ExplainerParams, Explanation
from aeinterp.errors import CapabilityError
from aeinterp.model import torch_modules
from aeinterp.perturb import reduce_groups, sample_background
from aeinterp.targets import Target, evaluate_target, target_names, target_names_for

METHOD_RESCALE = "deeplift_rescale"
METHOD_EG = "expected_gradients"
TORCHSCRIPT_REASON = (
    "the model is TorchScript: a scripted module runs its operations inside the TorchScript interpreter, hidden from "
    "the recorder, so no DeepLIFT rule can be applied; expected gradients ran instead (approximate, and about 100x "
    "slower on an MLP). For exact values load the same weights as a state dict with `factory:` naming your nn.Module class"
)


class DeepShap(Explainer):
    """DeepSHAP: DeepLIFT rescale multipliers averaged over a background sample, all targets in one pass."""

    name = "deepshap"

    class Params(ExplainerParams):
        backend: Literal["native", "shap"] = Field("native", description="native: vectorised rules for all targets at once; shap: shap.DeepExplainer / GradientExplainer as the reference")
        method: Literal["auto", "rescale", "expected_gradients"] = Field("auto", description="auto: DeepLIFT rescale rules where every operation has one, else expected gradients; or force either")
        background: Literal["random", "kmeans", "all"] = Field("random", description="background from the fit split: a random sample, a k-means summary, or all of it")
        n_background: int = Field(100, ge=1, description="background size (random rows or k-means centres)")
        max_samples: int | None = Field(None, ge=1, description="explain at most this many samples of the explain split (random, seeded)")
        dtype: Literal["model", "float32", "float64"] = Field("model", description="precision of the computation; a different one runs on a converted copy of the model")
        tolerance: float = Field(1e-3, gt=0, description="warn when the additivity error of a target, relative to its mean |f(x) - E f(background)|, exceeds this")
        eg_samples: int = Field(200, ge=1, description="expected gradients: draws (background sample, interpolation point) per explained sample")
        memory_mb: float = Field(1024.0, gt=0, description="approximate bound on the working memory of the native backend; samples and targets are chunked to fit")
        batch_rows: int = Field(8192, ge=1, description="expected gradients: rows per forward/backward pass")

    capabilities = Capabilities(
        targets=frozenset({"latent", "reconstruction", "reconstruction_error", "prediction"}),
        needs_gradients=True, deterministic=True, local=True,
    )

    def check(self, model: Any, data: Any, target: Target | str) -> None:
        super().check(model, data, target)
        p = self.params
        if (p.backend == "shap" or p.dtype != "model") and not torch_modules(model):
            raise CapabilityError(
                f"deepshap with backend={p.backend} and dtype={p.dtype} needs a torch module behind the model; "
                "use backend: native, dtype: model for other models", plugin=self.name,
            )

    def explain(self, model, data, *, target, rng):  # noqa: ANN001 - signature fixed by Explainer
        p = self.params
        target = Target(target)
        x_np = self.take_rows(data, "explain", p.max_samples, rng)
        bg_np = self.take_rows(data, "fit", p.n_background, rng) if p.background == "random" else sample_background(data.x_fit, p.n_background, rng, p.background)
        seeds = rng.integers(0, 2**31 - 1, size=len(x_np))
        work = _working_copy(model, p.dtype, force=p.backend == "shap")
        dtype, device = _dtype_device(work)
        x = torch.as_tensor(np.asarray(x_np), dtype=dtype, device=device)
        bg = torch.as_tensor(np.asarray(bg_np), dtype=dtype, device=device)

        def fn(t: torch.Tensor) -> torch.Tensor:
            return evaluate_target(work, target, t).reshape(t.shape[0], -1)

        phi, method, reason, info = self._attribute(work, fn, x, bg, seeds, target)
        with torch.no_grad():
            f_x = fn(x).double().cpu().numpy()
            f_bg = fn(bg).double().cpu().numpy()
        names = target_names_for(model, data, target)
        if len(names) != phi.shape[1]:
            names = target_names(target, phi.shape[1], data.feature_names)
        return _explanation(phi, f_x, f_bg, data, names, target, p, method, reason, info, len(bg_np))

    def _attribute(self, work: Any, fn, x: torch.Tensor, bg: torch.Tensor, seeds: np.ndarray, target: Target) -> tuple[np.ndarray, str, str, dict[str, Any]]:  # noqa: ANN001
        from ._engine import deeplift_shap
        from ._tape import Unsupported, check_tape, record

        p = self.params
        method, reason, info = METHOD_RESCALE, "every operation between input and target has a DeepLIFT rule", {}
        if p.method == "expected_gradients":
            method, reason = METHOD_EG, "requested with method: expected_gradients"
        elif _scripted(work):
            method, reason = METHOD_EG, TORCHSCRIPT_REASON
        elif p.backend == "shap":
            try:
                check_tape(record(fn, torch.cat([x[:1], bg])), record(fn, x[:1]))
            except Unsupported as exc:
                method, reason = METHOD_EG, str(exc)
            if method == METHOD_RESCALE and _recurrent(work):
                method, reason = METHOD_EG, "shap's DeepExplainer has no rule for nn.LSTM / GRU / RNN (the native backend writes them out exactly)"
        else:
            try:
                result = deeplift_shap(fn, x, bg, memory_mb=p.memory_mb, progress=self.progress)
                return result.phi.cpu().numpy(), method, reason, result.info
            except Unsupported as exc:
                method, reason = METHOD_EG, str(exc)
        if method == METHOD_EG and p.method == "rescale":
            raise CapabilityError(f"deepshap cannot use DeepLIFT rules here: {reason}", plugin=self.name)
        if p.backend == "shap":
            from ._shap_backend import TargetModule, shap_deep, shap_gradient

            module = TargetModule(torch_modules(work)[0], fn)
            if method == METHOD_RESCALE:
                return shap_deep(module, x, bg, progress=self.progress), method, reason, info
            if x.dtype != torch.float32:  # shap's GradientExplainer builds float32 inputs: a float32 copy, the working copy stays
                work32 = copy.deepcopy(work)
                for m in torch_modules(work32):
                    m.float()
                module = TargetModule(torch_modules(work32)[0], lambda t: evaluate_target(work32, target, t).reshape(t.shape[0], -1))
                x, bg = x.float(), bg.float()
            return shap_gradient(module, x, bg, seeds, samples=p.eg_samples, progress=self.progress), method, reason, info
        from ._expected_gradients import expected_gradients

        phi = expected_gradients(fn, x, bg, seeds, samples=p.eg_samples, batch_rows=p.batch_rows, progress=self.progress)
        return phi.cpu().numpy(), method, reason, {"eg_samples": p.eg_samples}

    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Any]:
        from ._figures import figures

        return figures(explanation)


def _scripted(model: Any) -> bool:
    """Whether any module behind ``model`` is TorchScript (its operations are invisible to the recorder)."""
    return any(isinstance(m, torch.jit.ScriptModule) for root in torch_modules(model) for m in root.modules())


def _recurrent(model: Any) -> bool:
    return any(isinstance(m, (torch.nn.RNNBase, torch.nn.RNNCellBase)) for root in torch_modules(model) for m in root.modules())


def _working_copy(model: Any, dtype: str, *, force: bool) -> Any:
    """The model itself, or a deep copy (converted to ``dtype``) when hooks or a new precision are needed."""
    if dtype == "model" and not force:
        return model
    work = copy.deepcopy(model)
    if dtype != "model":
        for module in torch_modules(work):
            module.to(getattr(torch, dtype))
    return work


def _dtype_device(model: Any) -> tuple[torch.dtype, torch.device]:
    for module in torch_modules(model):
        for param in module.parameters():
            if param.is_floating_point():
                return param.dtype, param.device
    return getattr(model, "dtype", torch.float32), getattr(model, "device", torch.device("cpu"))


def _additivity(phi: np.ndarray, f_x: np.ndarray, f_bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per target: max and mean of ``|sum phi - (f(x) - E f)|`` over the target's mean ``|f(x) - E f|``."""
    delta = f_x - f_bg.mean(axis=0)
    err = np.abs(phi.sum(axis=2, dtype=np.float64) - delta)
    scale = np.abs(delta).mean(axis=0)
    floor = max(1e-6 * float(scale.max(initial=0.0)), np.finfo(np.float64).tiny)
    rel = err / np.maximum(scale, floor)
    return rel.max(axis=0), rel.mean(axis=0)


def _mean_abs(local: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Mean of ``|local|`` over samples, without a full-size temporary."""
    total = np.zeros(local.shape[1:], dtype=np.float64)
    for start in range(0, local.shape[0], chunk):
        total += np.abs(local[start : start + chunk]).sum(axis=0, dtype=np.float64)
    return total / max(1, local.shape[0])


def _explanation(phi, f_x, f_bg, data, names, target, p, method, reason, info, n_bg) -> Explanation:  # noqa: ANN001
    n, k, d = phi.shape
    local = reduce_groups(phi, data.groups)  # returns phi itself when every element is its own group
    elements = local is phi
    max_rel, mean_rel = _additivity(phi, f_x, f_bg)
    worst = int(np.argmax(max_rel)) if k else 0
    additivity = {
        "max_rel": float(max_rel.max(initial=0.0)),
        "mean_rel": float(mean_rel.mean()) if k else 0.0,
        "worst_target": names[worst] if k else None,
        "tolerance": p.tolerance,
        "ok": bool(max_rel.max(initial=0.0) <= p.tolerance),
    }
    if not additivity["ok"]:
        bad = int((max_rel > p.tolerance).sum())
        cure = "load a state dict with `factory:` for exact values" if reason == TORCHSCRIPT_REASON else f"raise eg_samples (now {p.eg_samples})"
        hint = f"; expected gradients is approximate ({reason.split(';')[0]}): {cure}" if method == METHOD_EG else ""
        warnings.warn(
            f"deepshap: attributions of {bad} of {k} targets do not add up to f(x) - E[f(background)]: "
            f"max relative error {additivity['max_rel']:.2e} on {additivity['worst_target']} (tolerance {p.tolerance:g}){hint}",
            stacklevel=3,
        )
    arrays: dict[str, np.ndarray] = {
        "target_values": f_x,
        "expected_value": f_bg.mean(axis=0),
        "additivity_max_rel": max_rel,
        "additivity_mean_rel": mean_rel,
    }
    shape = tuple(data.x_explain.shape[1:])
    if not elements:
        arrays["phi"] = phi.reshape(n, k, *shape).astype(np.float32, copy=False)
    if data.kind == "sequence":
        steps = phi.reshape(n, k, *shape).sum(axis=3)
        arrays["phi_steps"] = steps
        arrays["importance_steps"] = _mean_abs(steps)
    extras = {
        "backend": p.backend,
        "method": method,
        "method_reason": reason,
        "n_samples": n,
        "n_background": n_bg,
        "background": p.background,
        "additivity": additivity,
        "additivity_max_rel": additivity["max_rel"],
        "additivity_mean_rel": additivity["mean_rel"],
        "local_shape": "samples x targets x groups",
        "phi_shape": "samples x targets x " + " x ".join(str(s) for s in shape),
        **info,
    }
    return Explanation(
        importance=_mean_abs(local),
        feature_names=data.group_names,
        target_names=names,
        target=target.value,
        local=local,
        arrays=arrays,
        extras=extras,
    )
