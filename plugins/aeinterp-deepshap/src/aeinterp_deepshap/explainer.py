"""The ``deepshap`` explainer: DeepSHAP attributions for every target at once.

Result layout
-------------
``local``
    ``(samples, targets, groups)``: per-sample SHAP values summed over each
    feature group (for sequences a group is one feature over all steps).
``importance``
    ``(targets, groups)``: the ``summary`` of ``local`` over the explained samples
    (default: each group's share of the target's variance; :mod:`aeinterp.toolkit.summaries`,
    which also fills ``importance_mean_abs`` / ``_variance_share`` / ``_direction``,
    ``importance_by_group`` and the ranking's ``stability``).

The explainer streams over sample chunks (:class:`aeinterp.toolkit.chunks.ChunkedExplainer`,
``splits="samples"``): each chunk returns sums of ``|local|`` (and their
squares, for ``max_samples: auto``), of the additivity errors and their
maxima; per-sample arrays (``local``, ``phi``, ``phi_steps``) follow the
shared ``local`` param (:mod:`aeinterp.toolkit.streaming`), ``target_values`` are
always kept. Chunks hold at most about ``memory_mb / 2`` of per-element
attributions, and aim at :data:`CACHE_MB` (at least :data:`CACHE_MIN_SAMPLES`
samples); each chunk's sums are taken in torch (:mod:`._accumulate`).
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

from aeinterp import Capabilities, Explanation
from aeinterp.errors import CapabilityError
from aeinterp.explainer import ALL_TARGETS
from aeinterp.model import torch_modules
from aeinterp.targets import Target, evaluate_target, target_names, target_names_for
from aeinterp.toolkit.chunks import ChunkedExplainer, Partial, chunk_size_for
from aeinterp.toolkit.perturb import sample_background, subsample_indices
from aeinterp.toolkit.streaming import Z_95, MaxSamples, StreamParams, local_plan, sample_index
from aeinterp.toolkit.summaries import SummaryParams, summary_plan

from ._accumulate import chunk_summaries

METHOD_RESCALE = "deeplift_rescale"
METHOD_EG = "expected_gradients"
#: per-chunk working set (MiB) the sample chunks aim for: blocks of this size stay in the allocator's heap (glibc
#: maps every buffer above 32 MiB afresh and faults it in) and near the cache; n = 200: 950 samples in one chunk ran
#: 0.52 s, in chunks of 64-128 0.30-0.33 s (CPU time, reference scenario)
CACHE_MB = 24.0
CACHE_MIN_SAMPLES = 8  # below this the per-chunk recording outweighs the cache
TORCHSCRIPT_REASON = (
    "the model is TorchScript: a scripted module runs its operations inside the TorchScript interpreter, hidden from "
    "the recorder, so no DeepLIFT rule can be applied; expected gradients ran instead (approximate, and about 100x "
    "slower on an MLP). For exact values load the same weights as a state dict with `factory:` naming your nn.Module class"
)


class DeepShap(ChunkedExplainer):
    """DeepSHAP: DeepLIFT rescale multipliers averaged over a background sample, all targets in one pass."""

    name = "deepshap"

    class Params(StreamParams, SummaryParams):
        backend: Literal["native", "shap"] = Field(
            "native",
            description="native: vectorised rules for all targets at once; shap: shap.DeepExplainer / GradientExplainer as the reference",
        )
        method: Literal["auto", "rescale", "expected_gradients"] = Field(
            "auto", description="auto: DeepLIFT rescale rules where every operation has one, else expected gradients; or force either"
        )
        background: Literal["random", "kmeans", "all"] = Field(
            "random", description="background from the fit split: a random sample, a k-means summary, or all of it"
        )
        n_background: int = Field(100, ge=1, description="background size (random rows or k-means centres)")
        max_samples: MaxSamples = Field(
            None,
            description="explain at most this many samples of the explain split (random, seeded); auto: rounds of samples until the importance is within tolerance",
        )
        dtype: Literal["model", "float32", "float64"] = Field(
            "model", description="precision of the computation; a different one runs on a converted copy of the model"
        )
        tolerance: float = Field(
            1e-3,
            gt=0,
            description="warn when the additivity error of a target, relative to its mean |f(x) - E f(background)|, exceeds this",
        )
        eg_samples: int = Field(
            200, ge=1, description="expected gradients: draws (background sample, interpolation point) per explained sample"
        )
        memory_mb: float = Field(
            1024.0,
            gt=0,
            description="approximate bound on the working memory of the native backend; samples and targets are chunked to fit",
        )
        batch_rows: int = Field(8192, ge=1, description="expected gradients: rows per forward/backward pass")

    capabilities = Capabilities(
        targets=ALL_TARGETS | {"prediction"},
        needs_gradients=True,
        deterministic=True,
        local=True,
        splits="samples",
        chunk_invariant=True,
    )

    def check(self, model: Any, data: Any, target: Target | str) -> None:
        super().check(model, data, target)
        p = self.params
        if (p.backend == "shap" or p.dtype != "model") and not torch_modules(model):
            raise CapabilityError(
                f"deepshap with backend={p.backend} and dtype={p.dtype} needs a torch module behind the model; "
                "use backend: native, dtype: model for other models",
                plugin=self.name,
            )

    # --- the chunk seam ----------------------------------------------------------------
    def _work(self, model: Any) -> Any:
        """The model or its converted copy, made once per explainer instance (and worker)."""
        cached = getattr(self, "_work_cache", None)
        if cached is None or cached[0] is not model:
            p = self.params
            cached = (model, _working_copy(model, p.dtype, force=p.backend == "shap"))
            self._work_cache = cached
        return cached[1]

    def _fn(self, model: Any, target: Target):  # noqa: ANN202
        work = self._work(model)

        def fn(t: torch.Tensor) -> torch.Tensor:
            return evaluate_target(work, target, t).reshape(t.shape[0], -1)

        return work, fn

    def prepare(self, model, data, *, target, rng):  # noqa: ANN001, ANN201
        from ._tape import Unsupported, check_tape, record

        p = self.params
        self._engine_setup: dict[
            str, Any
        ] = {}  # the engine's recordings and plan, shared by this step's chunks (one model, one background)
        total = data.x_explain.shape[0]
        index = sample_index(self, total, p.max_samples, rng, "explain")
        if p.background == "random":  # recorded: the step's npz says which fit rows formed the background
            self.rows_used["fit"] = subsample_indices(data.x_fit.shape[0], p.n_background, rng)
            bg_np = np.asarray(data.x_fit[self.rows_used["fit"]])
        else:
            bg_np = np.asarray(sample_background(data.x_fit, p.n_background, rng, p.background))
        seeds = rng.integers(0, 2**31 - 1, size=total)[index]  # by sample, not by position: the same for any max_samples
        work, fn = self._fn(model, target)
        dtype, device = _dtype_device(work)
        x0 = torch.as_tensor(np.asarray(data.x_explain[index[:1]]), dtype=dtype, device=device)
        bg = torch.as_tensor(bg_np, dtype=dtype, device=device)
        method, reason = METHOD_RESCALE, "every operation between input and target has a DeepLIFT rule"
        if p.method == "expected_gradients":
            method, reason = METHOD_EG, "requested with method: expected_gradients"
        elif _scripted(work):
            method, reason = METHOD_EG, TORCHSCRIPT_REASON
        elif p.backend == "shap":
            try:
                check_tape(record(fn, torch.cat([x0, bg])), record(fn, x0))
            except Unsupported as exc:
                method, reason = METHOD_EG, str(exc)
            if method == METHOD_RESCALE and _recurrent(work):
                method, reason = (
                    METHOD_EG,
                    "shap's DeepExplainer has no rule for nn.LSTM / GRU / RNN (the native backend writes them out exactly)",
                )
        else:
            from ._engine import deeplift_shap

            try:  # one sample through the engine: it says whether every operation has a rule (recurrent layers written out)
                deeplift_shap(fn, x0, bg, memory_mb=p.memory_mb / 2, setup=self._engine_setup)
            except Unsupported as exc:
                method, reason = METHOD_EG, str(exc)
        if method == METHOD_EG and p.method == "rescale":
            raise CapabilityError(f"deepshap cannot use DeepLIFT rules here: {reason}", plugin=self.name)
        with torch.no_grad():
            f_bg = fn(bg).double().cpu().numpy()
        names = target_names_for(model, data, target)
        if len(names) != f_bg.shape[1]:
            names = target_names(target, f_bg.shape[1], data.feature_names)
        n, k, d = len(index), f_bg.shape[1], int(np.prod(data.x_explain.shape[1:]))
        plan = local_plan(p.local, n, k, len(data.groups), p.local_max_mb)
        return {
            "index": index,
            "bg": bg_np,
            "seeds": seeds,
            "method": method,
            "reason": reason,
            "f_bg": f_bg,
            "names": names,
            "plan": plan,
            "k": k,
            "d": d,
            "grouped": not _identity_groups(data.groups, d),
            "summary": summary_plan(p, data, "explain", additive=True, n_targets=k),
        }

    def units(self, model, data, state, *, target):  # noqa: ANN001, ANN201
        n = len(state["index"])
        per = 4.0 * state["k"] * state["d"] * 3  # phi, |local| and the grouped copy of one sample
        if self.params.chunk_size:
            return np.arange(n), self.params.chunk_size
        memory = chunk_size_for(per, self.params.memory_mb / 2, n)
        cache = max(min(n, CACHE_MIN_SAMPLES), chunk_size_for(per, CACHE_MB, n))
        return np.arange(n), min(memory, cache)

    def spill(self, state: Any) -> frozenset[str]:
        if state["plan"].mode != "disk":
            return frozenset()
        return frozenset({"local", "phi", "phi_steps"})

    def explain_chunk(self, model, data, state, units, *, target, rng):  # noqa: ANN001, ANN201
        work, fn = self._fn(model, target)
        dtype, device = _dtype_device(work)
        x = torch.as_tensor(np.asarray(data.x_explain[state["index"][units]]), dtype=dtype, device=device)
        bg = torch.as_tensor(state["bg"], dtype=dtype, device=device)
        phi, info = self._attribute(work, fn, x, bg, state["seeds"][units], state["method"], target)
        with torch.no_grad():
            f_x = fn(x).double().cpu().numpy()
        sums, rows = chunk_summaries(phi, f_x, state, data, anytime=self.stopping(state) is not None, x=x, units=units)
        err = sums.pop("err_max")
        self._last_info = info  # engine facts (rules, chunk sizes): the same for every chunk
        return Partial(sums=sums, rows=rows, count=len(units), maxima={"err": err})

    def interval(self, model, data, state, total, *, target):  # noqa: ANN001, ANN201
        n = max(2, total.count)
        mean = total.sums["abs"] / n
        var = np.clip((total.sums["abs_sq"] - n * mean**2) / (n - 1), 0.0, None)
        return mean, Z_95 * np.sqrt(var / n)

    def finish(self, model, data, state, total, *, target):  # noqa: ANN001, ANN201
        return _explanation(self, data, state, total, target, getattr(self, "_last_info", {}))

    def _attribute(
        self, work: Any, fn, x: torch.Tensor, bg: torch.Tensor, seeds: np.ndarray, method: str, target: Target
    ) -> tuple[np.ndarray | torch.Tensor, dict[str, Any]]:  # noqa: ANN001
        from ._engine import deeplift_shap

        p = self.params
        if p.backend == "shap":
            from ._shap_backend import TargetModule, shap_deep, shap_gradient

            module = TargetModule(torch_modules(work)[0], fn)
            if method == METHOD_RESCALE:
                return shap_deep(module, x, bg, progress=self.progress), {}
            if x.dtype != torch.float32:  # shap's GradientExplainer builds float32 inputs: a float32 copy, the working copy stays
                work32 = copy.deepcopy(work)
                for m in torch_modules(work32):
                    m.float()
                module = TargetModule(torch_modules(work32)[0], lambda t: evaluate_target(work32, target, t).reshape(t.shape[0], -1))
                x, bg = x.float(), bg.float()
            return shap_gradient(module, x, bg, seeds, samples=p.eg_samples, progress=self.progress), {"eg_samples": p.eg_samples}
        if method == METHOD_RESCALE:
            setup = self.__dict__.setdefault("_engine_setup", {})
            result = deeplift_shap(fn, x, bg, memory_mb=p.memory_mb / 2, progress=self.progress, setup=setup)
            return result.phi, result.info
        from ._expected_gradients import expected_gradients

        phi = expected_gradients(fn, x, bg, seeds, samples=p.eg_samples, batch_rows=p.batch_rows, progress=self.progress)
        return phi, {"eg_samples": p.eg_samples}

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


def _identity_groups(groups, d: int) -> bool:  # noqa: ANN001
    return len(groups) == d and all(g.indices.size == 1 and int(g.indices[0]) == j for j, g in enumerate(groups))


def _explanation(explainer: DeepShap, data, state, total, target, info) -> Explanation:  # noqa: ANN001
    p = explainer.params
    n, k = max(1, total.count), state["k"]
    names, method, reason = state["names"], state["method"], state["reason"]
    finite = np.isfinite(total.sums["abs"]).all(axis=1)
    if not finite.all():  # NaN is no attribution: fail the step, never return it as a result
        from aeinterp.errors import ExplainerError

        bad_names = [names[i] for i in np.flatnonzero(~finite)]
        raise ExplainerError(
            f"deepshap ({method}) computed non-finite attributions (NaN or inf) for {len(bad_names)} of {k} targets "
            f"({', '.join(bad_names[:5])}{', ...' if len(bad_names) > 5 else ''}): a layer's rule or gradient is undefined at these "
            "inputs (e.g. nn.LPPool2d or a sqrt/pow at 0 after a ReLU, or a division by zero in the model); "
            "try method: expected_gradients, or a perturbation explainer (permutation) that needs no gradients",
            plugin="deepshap",
        )
    scale = total.sums["delta"] / n
    floor = max(1e-6 * float(scale.max(initial=0.0)), np.finfo(np.float64).tiny)
    max_rel = total.maxima["err"] / np.maximum(scale, floor)
    mean_rel = total.sums["err"] / n / np.maximum(scale, floor)
    worst = int(np.argmax(max_rel)) if k else 0
    additivity = {
        "max_rel": float(max_rel.max(initial=0.0)),
        "mean_rel": float(mean_rel.mean()) if k else 0.0,
        "worst_target": names[worst] if k else None,
        "tolerance": p.tolerance,
        "ok": bool(max_rel.max(initial=0.0) <= p.tolerance),
    }
    if not additivity["ok"]:
        bad = int((~(max_rel <= p.tolerance)).sum())  # a NaN error fails too (NaN compares false)
        cure = (
            "load a state dict with `factory:` for exact values"
            if reason == TORCHSCRIPT_REASON
            else (f"for exact values replace that operation; raising eg_samples (now {p.eg_samples}) only narrows the sampling error")
        )
        hint = f"; expected gradients is approximate and ran because {reason.split(';')[0]}: {cure}" if method == METHOD_EG else ""
        warnings.warn(
            f"deepshap: attributions of {bad} of {k} targets do not add up to f(x) - E[f(background)]: "
            f"max relative error {additivity['max_rel']:.2e} on {additivity['worst_target']} (tolerance {p.tolerance:g}){hint}",
            stacklevel=3,
        )
    arrays: dict[str, np.ndarray] = {
        "target_values": total.rows["target_values"],
        "expected_value": state["f_bg"].mean(axis=0),
        "additivity_max_rel": max_rel,
        "additivity_mean_rel": mean_rel,
    }
    for key in ("phi", "phi_steps", "local_top_index", "local_top_value"):
        if key in total.rows:
            arrays[key] = total.rows[key]
    arrays["sample_index"] = np.asarray(state["index"][: total.count], dtype=np.int64)  # rows of the explain split, in local's order
    if "abs_steps" in total.sums:
        arrays["importance_steps"] = total.sums["abs_steps"] / n
    shape = tuple(data.x_explain.shape[1:])
    importance, summary_arrays, summary_extras = state["summary"].finish(total.sums, names)
    arrays.update(summary_arrays)
    extras = {
        "backend": p.backend,
        "method": method,
        "method_reason": state["reason"],
        "n_samples": int(total.count),
        "n_background": int(len(state["bg"])),
        "background": p.background,
        "additivity": additivity,
        "additivity_max_rel": additivity["max_rel"],
        "additivity_mean_rel": additivity["mean_rel"],
        "local_shape": "samples x targets x groups",
        "phi_shape": "samples x targets x " + " x ".join(str(s) for s in shape),
        **state["plan"].info(),
        **info,
        **summary_extras,
    }
    return Explanation(
        importance=importance,
        feature_names=data.group_names,
        target_names=names,
        target=target.value,
        local=total.rows.get("local"),
        arrays=arrays,
        extras=extras,
    )
