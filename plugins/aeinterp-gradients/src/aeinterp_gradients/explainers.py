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

Both, for the latent target in ``loop`` and ``rev`` modes: when the code is
the output of one ``nn.Linear`` ``z = W u + c`` with fewer inputs ``h`` than
latents (e.g. ``to_code(h_n[-1])`` after an LSTM), the Jacobian is taken of
``u`` (``h`` backward passes or cotangents instead of one per latent) and
``W`` applied once per block, exact by linearity
(:mod:`aeinterp_gradients.code_head`; ``extras["code_head"] = [h, k]`` when
it ran, ``extras["code_head_reason"]`` why or why not; ``code_head: off``
turns it off). It composes with the first-layer factorisation.

Both stream over sample chunks (:class:`aeinterp.toolkit.chunks.ChunkedExplainer`,
``splits="samples"``): a chunk returns additive sums (of the importance terms
and their squares, of the element maps, of the completeness terms), so the
result is the same for any chunking and never holds samples x targets x
features unless ``local`` asks for it (:mod:`aeinterp.toolkit.streaming`: ``auto``
keeps it when it fits in ``local_max_mb``, ``full`` writes it to disk beyond
that, ``top_k:K`` keeps the K largest per sample and target). Mean element
maps (signed and absolute, ``(targets, elements)``) are kept in ``arrays``;
``std`` is the spread of the per-sample values over samples. Elements are summed into groups with one ``index_add`` (cost
``samples x targets x elements``) rather than
:func:`aeinterp.toolkit.perturb.reduce_groups`, whose dense ``elements x groups``
product costs ``x groups`` more (1000x for 1000 single-column groups); the
tests check both give the same sums.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from aeinterp import Capabilities, Explanation
from aeinterp.explainer import ALL_TARGETS
from aeinterp.model import as_tensor
from aeinterp.targets import Target, target_names_for
from aeinterp.toolkit.accumulate import sample_sum
from aeinterp.toolkit.chunks import ChunkedExplainer, Partial, chunk_size_for
from aeinterp.toolkit.recurrent import UnsupportedRecurrence
from aeinterp.toolkit.streaming import Z_95, LocalPlan, MaxSamples, StreamParams, local_plan, sample_index, top_k_rows
from aeinterp.toolkit.summaries import SummaryParams, SummaryPlan, row_total, summary_plan

from .autodiff import choose_mode, has_recurrent_layers, scripted_recurrent, target_function, weighted_jacobian
from .code_head import code_head_split, resolve_code_head
from .factorised import FirstLayer, code_jacobian, first_layer_split, jacobian_factorised, layer_target_function, summed_code_jacobian
from .paths import Baseline, Rule, baselines, quadrature, resolve_baseline
from .recurrent_vjp import RoutedRecurrent, batched_support

__all__ = ["Jacobian", "IntegratedGradients"]


class _GradientParams(StreamParams, SummaryParams):
    split: Literal["explain", "fit"] = Field("explain", description="which split to explain: the held-out explain split or the fit split")
    max_samples: MaxSamples = Field(
        None,
        description="explain at most this many samples (random, seeded); auto: rounds of samples until the importance is within tolerance",
    )
    mode: Literal["auto", "rev", "fwd", "loop", "batched"] = Field(
        "auto",
        description="autodiff: rev (vmap, cost ~ targets), fwd (vmap, cost ~ input elements), loop (one backward per target, for RNNs), "
        "batched (nn.LSTM/nn.GRU models: one hand-written backward carrying every target); auto picks",
    )
    code_head: Literal["auto", "off"] = Field(
        "auto",
        description="auto: when the latent code is the output of one nn.Linear with fewer inputs than latents, differentiate its inputs and apply its weight "
        "(fewer backward passes or cotangents in loop, batched and rev modes); off: differentiate the code itself",
    )
    keep_local: bool = Field(True, description="keep per-sample group attributions at all (false is local: none)")
    memory_mb: float = Field(
        32.0,
        gt=0,
        description="bound on the Jacobian blocks computed at once, in MiB; blocks that stay in cache are faster on a CPU (32 vs 256: 1.9-3.8x faster at 10**5 x 64 and n = 1000, equal at n = 5000)",
    )


class _Sums:
    """One chunk's additive sums: importance terms and their squares, element maps, per-sample rows.

    Sums are taken in torch in the values' dtype, in blocks (:mod:`aeinterp.toolkit.accumulate`;
    squares in float64), never on a float64 copy of a block; kept rows go straight into one
    array for the chunk (no list of blocks concatenated at the end).
    """

    def __init__(self, n_t: int, n_e: int, elem_group: torch.Tensor, n_g: int, plan: LocalPlan, n_rows: int = 0) -> None:
        self.n_g, self.elem_group, self.plan = n_g, elem_group, plan
        # one group per element, in order (tabular data): group sums are the values themselves
        self.identity = n_g == n_e and bool(torch.equal(elem_group, torch.arange(n_e)))
        self.count = 0
        self.score = np.zeros((n_t, n_g), dtype=np.float64)
        self.score_sq = np.zeros((n_t, n_g), dtype=np.float64)
        self.elem = np.zeros((n_t, n_e), dtype=np.float64)
        self.elem_abs = np.zeros((n_t, n_e), dtype=np.float64)
        self.local = np.empty((n_rows, n_t, n_g), dtype=np.float32) if plan.mode in ("memory", "disk") else None
        self.rows: dict[str, list[np.ndarray]] = {}
        self.extra: dict[str, np.ndarray] = {}
        self.summary: dict[str, np.ndarray] = {}
        self.sizes = torch.bincount(elem_group, minlength=n_g + 1)[:n_g].clamp(min=1).double()

    def group_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum the last axis of ``values`` (..., elements) into groups (elements in no group are dropped)."""
        if self.identity:
            return values
        out = torch.zeros((*values.shape[:-1], self.n_g + 1), dtype=values.dtype)
        out.index_add_(values.dim() - 1, self.elem_group, values)
        return out[..., : self.n_g]

    def add(
        self,
        element_values: torch.Tensor,
        group_values: torch.Tensor,
        summary: dict[str, np.ndarray],
        element_abs: torch.Tensor | None = None,
    ) -> None:
        """``element_values`` (B, T, E) for the maps (``element_abs`` their absolute values if already computed),
        ``group_values`` (B, T, G) local, ``summary`` the block's summary sums (:meth:`add_summary`): they hold the
        importance terms' sums, ``sum |local|`` and ``sum local**2`` (float64), so the block is not read again."""
        self.elem += sample_sum(element_values)
        first = row_total(summary, "pa")
        self.score += first
        self.score_sq += row_total(summary, "p2")
        if group_values is element_abs:  # saliency on single-element groups: local is |J| itself, the same sum
            self.elem_abs += first
        else:
            self.elem_abs += sample_sum(element_values.abs() if element_abs is None else element_abs)
        b = group_values.shape[0]
        if self.local is not None:
            self.local[self.count : self.count + b] = group_values.detach().cpu().numpy()
        elif self.plan.mode == "top_k":
            index, value = top_k_rows(group_values.float().numpy(), self.plan.k or 1)
            self.rows.setdefault("local_top_index", []).append(index)
            self.rows.setdefault("local_top_value", []).append(value)
        self.count += b

    def add_summary(
        self, plan: SummaryPlan, group_values: torch.Tensor, z: torch.Tensor, x: torch.Tensor, positions: np.ndarray, rows: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Add a block's summary sums (:mod:`aeinterp.toolkit.summaries`): ``z`` (B, T) the targets, ``x`` (B, ...) the
        inputs. Returns the block's sums."""
        x_groups = self.group_sum(x.reshape(x.shape[0], -1).double().cpu()) / self.sizes
        sums = plan.sums(group_values, z, x_groups, positions, rows)
        for k, v in sums.items():
            self.summary[k] = self.summary[k] + v if k in self.summary else v
        return sums

    def partial(self) -> Partial:
        sums = {"score": self.score, "score_sq": self.score_sq, "elem": self.elem, "elem_abs": self.elem_abs, **self.extra, **self.summary}
        rows = {k: np.concatenate(v) for k, v in self.rows.items()}
        if self.local is not None:
            rows["local"] = self.local[: self.count]
        return Partial(sums=sums, rows=rows, count=self.count)


def _element_groups(data, n_e: int) -> tuple[torch.Tensor, int]:  # noqa: ANN001
    """For each flattened element, the index of its group (``n_groups`` for none)."""
    groups = data.groups
    owner = torch.full((n_e,), len(groups), dtype=torch.long)
    for j, g in enumerate(groups):
        owner[torch.as_tensor(g.indices)] = j
    return owner, len(groups)


def _samples(data, split: str) -> np.ndarray:  # noqa: ANN001
    return data.x_explain if split == "explain" else data.x_fit


def _without_batched(info: dict[str, Any], why: object) -> str:
    """Record that the batched recurrent backward cannot run here (``why``) and that ``loop`` runs instead; returns ``"loop"``."""
    info["mode"] = "loop"
    info["mode_fallback"] = f"batched backward unavailable ({why}); used loop instead"
    return "loop"


def _setup(explainer: ChunkedExplainer, model, data, target: Target, rng: np.random.Generator, copies: int) -> dict[str, Any]:  # noqa: ANN001
    """The chunk-independent state: which samples, autodiff mode, block sizes, where local goes."""
    p = explainer.params
    source = _samples(data, p.split)
    index = sample_index(explainer, source.shape[0], p.max_samples, rng, p.split)
    names = target_names_for(model, data, target)
    n, n_t = len(index), len(names)
    n_e = int(np.prod(source.shape[1:]))
    recurrent = has_recurrent_layers(model)
    fused = recurrent and scripted_recurrent(model)  # TorchScript: the kernel cannot be written out
    batchable, batch_why = batched_support(model) if recurrent else (False, "no recurrent layers")
    mode = choose_mode(p.mode, n_e, n_t, recurrent, batchable)
    per_sample = 4.0 * 3 * copies * n_t * n_e  # the Jacobian block and autograd's copies of it
    rows = max(1, int(p.memory_mb * 2**20 // per_sample))
    chunk = None
    if rows == 1 and mode == "rev":  # even one sample is too big: vmap over the targets in chunks
        chunk = max(1, int(p.memory_mb * 2**20 // (4.0 * 3 * copies * n_e)))
    n_g = len(data.groups)
    plan = local_plan("none" if not p.keep_local else p.local, n, n_t, n_g, p.local_max_mb)
    info: dict[str, Any] = {
        "n_samples": n,
        "split": p.split,
        "mode": mode,
        "samples_per_block": rows,
        "recurrent_layers": recurrent,
        "recurrent_unrolled": recurrent and not fused and mode == "fwd",
        **plan.info(),
    }
    if p.mode == "auto" and recurrent and mode == "batched":
        info["mode_reason"] = batch_why + "; measured faster than one backward pass per target"
    elif p.mode == "auto" and recurrent:
        info["mode_reason"] = (
            "recurrent layers: vmap has no batched RNN backward on CPU, one backward pass per target is faster"
            + (" (inside TorchScript)" if fused else "")
            + f"; no batched backward: {batch_why}"
        )
    if mode == "batched" and not batchable:  # asked for explicitly
        mode = _without_batched(info, batch_why)
    if info["recurrent_unrolled"]:
        info["mode_reason"] = (
            "forward mode: the recurrent layers run as written-out gates (aeinterp.toolkit.recurrent), the fused kernel has no forward-mode derivative"
        )
    if p.keep_local and plan.mode == "none" and plan.note:
        info["local_skipped"] = plan.note
    return {"index": index, "names": names, "mode": mode, "rows": rows, "chunk": chunk, "plan": plan, "info": info, "n_e": n_e}


def _probe_mode(f, x: torch.Tensor, state: dict[str, Any], key: str = "mode") -> None:  # noqa: ANN001
    """Settle forward mode's (or the batched backward's) fallback once, on one sample, so every chunk runs the same mode."""
    if state[key] == "batched":  # what the recurrent calls look like shows only when they run: check them, no gradients
        try:
            with torch.no_grad(), RoutedRecurrent(check_only=True):
                f(x[:1], x[:1])
        except UnsupportedRecurrence as exc:
            state[key] = _without_batched(state["info"], exc)
        return
    if state[key] != "fwd":
        return
    _, mode = _jacobian_blocks(f, x[:1].unsqueeze(0), x[:1], torch.ones(1, dtype=x.dtype), state[key], None, state["info"])
    state[key] = mode


class _GradientExplainer(ChunkedExplainer):
    """Shared chunk plumbing of the gradient family."""

    capabilities = Capabilities(
        targets=ALL_TARGETS | {"prediction"}, needs_gradients=True, deterministic=True, local=True, splits="samples", chunk_invariant=True
    )

    def units(self, model, data, state, *, target):  # noqa: ANN001, ANN201
        n = len(state["index"])
        if self.params.chunk_size:
            return np.arange(n), self.params.chunk_size
        if state["plan"].mode in ("memory", "none"):
            return np.arange(n), n  # one chunk: the sums are as large as the result itself
        per = 4.0 * len(state["names"]) * len(data.groups)  # a sample's rows while they travel to the sink
        return np.arange(n), max(state["rows"], chunk_size_for(per, self.params.memory_mb, n))

    def spill(self, state: Any) -> frozenset[str]:
        return frozenset({"local"}) if state["plan"].mode == "disk" else frozenset()

    def _chunk(self, model, data, state, units) -> tuple[torch.Tensor, _Sums]:  # noqa: ANN001
        x = np.asarray(_samples(data, self.params.split)[state["index"][units]])
        owner, n_g = _element_groups(data, state["n_e"])
        return as_tensor(x, model), _Sums(len(state["names"]), state["n_e"], owner, n_g, state["plan"], len(units))

    def interval(self, model, data, state, total, *, target):  # noqa: ANN001, ANN201
        n = max(2, total.count)
        mean = total.sums["score"] / n
        var = np.clip((total.sums["score_sq"] - n * mean**2) / (n - 1), 0.0, None)
        return mean, Z_95 * np.sqrt(var / n)

    def _result(self, data, state, total: Partial, target: Target, extras: dict[str, Any], arrays: dict[str, np.ndarray]) -> Explanation:  # noqa: ANN001
        n = max(1, total.count)
        mean = total.sums["score"] / n
        var = np.clip((total.sums["score_sq"] - n * mean**2) / max(1, n - 1), 0.0, None)
        local = total.rows.get("local")
        arrays = {
            **arrays,
            "attribution_mean": (total.sums["elem"] / n).astype(np.float32),
            "attribution_abs_mean": (total.sums["elem_abs"] / n).astype(np.float32),
        }
        importance = mean
        if "summary" in state and "sum_fold_n" in total.sums:
            importance, summary_arrays, summary_extras = state["summary"].finish(total.sums, state["names"])
            arrays.update(summary_arrays)
            extras = {
                **extras,
                **summary_extras,
                "unit": summary_extras["unit"] if state["summary"].summary != "mean_abs" else extras.get("unit", summary_extras["unit"]),
            }
        if "local_top_index" in total.rows:
            arrays.update(local_top_index=total.rows["local_top_index"], local_top_value=total.rows["local_top_value"])
        if local is not None or "local_top_index" in total.rows:  # which rows of the split the per-sample arrays are
            arrays["sample_index"] = np.asarray(state["index"][: total.count], dtype=np.int64)
        return Explanation(
            importance=importance,
            std=np.sqrt(var)
            if importance is mean or state["summary"].summary == "mean_abs"
            else None,  # the spread of |local| over samples
            local=local,
            feature_names=data.group_names,
            target_names=state["names"],
            target=target.value,
            arrays=arrays,
            extras={**extras, "n_samples": int(total.count)},
        )


def _jacobian_blocks(f, points, reference, weights, mode, chunk, info):  # noqa: ANN001, ANN202
    """:func:`weighted_jacobian`, falling back from forward to reverse mode where forward AD is missing, and from
    ``batched`` to ``loop`` where a recurrent call cannot be routed (e.g. a packed sequence)."""
    if mode == "batched":
        try:
            return weighted_jacobian(f, points, reference, weights, "batched"), "batched"
        except UnsupportedRecurrence as exc:
            mode = _without_batched(info, exc)
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
            layer, reason = (
                None,
                f"the first layer widens the input ({n_e} -> {layer.width}) and there are more targets than inputs: no saving",
            )
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
        info["path_reason"] += (
            f"; the code is an affine map of an elementwise {type(layer.tail[0]).__name__}: its Jacobian is the weight times the activation's slope"
        )
        per_sample = 4.0 * (2 * p.steps * h + 2 * n_t * h + 2 * n_t * n_e)  # slopes over the steps, weight x slope, then x A
    rows = max(1, int(p.memory_mb * 2**20 // per_sample))
    chunk = max(1, int(p.memory_mb * 2**20 // (4.0 * 3 * p.steps * h))) if rows == 1 and mode == "rev" else None
    info.update(mode=mode, samples_per_block=rows, first_layer=[int(layer.linear.in_features), h])
    return layer, mode, rows, chunk


def _head_plan(p, model, target: Target, x0: torch.Tensor, state: dict[str, Any], copies: int, n_in: int | None = None) -> None:  # noqa: ANN001
    """Whether to differentiate the affine code head's input instead of the code (:mod:`aeinterp_gradients.code_head`).

    Sets ``state["head"]`` (where the head is, or None) and, when taken, the
    block sizes for ``head-width`` Jacobian rows; records ``code_head`` and
    ``code_head_reason`` in the info. ``n_in``: the elements the Jacobian is
    taken w.r.t. (the first layer's width on the factorised path; default the input's).
    """
    info, mode, n_t, n_e = state["info"], state["mode"], len(state["names"]), state["n_e"]
    state["head"] = None
    if p.code_head == "off":
        info["code_head_reason"] = "code_head: off"
        return
    if mode not in ("loop", "rev", "batched"):
        info["code_head_reason"] = (
            f"{mode} mode: its cost does not grow with the number of targets" if mode == "fwd" else "no autodiff on this path"
        )
        return
    where, reason = code_head_split(model, target, x0, n_t)
    info["code_head_reason"] = reason
    if where is None:
        return
    h = resolve_code_head(model, where).width
    n_in = n_e if n_in is None else n_in
    per_sample = 4.0 * (3 * copies * h * n_in + 2 * n_t * n_in + (2 * n_t * n_e if n_in != n_e else 0))  # head-input Jacobian, x W, (x A)
    rows = max(1, int(p.memory_mb * 2**20 // per_sample))
    state.update(
        head=where, rows=rows, chunk=max(1, int(p.memory_mb * 2**20 // (4.0 * 3 * copies * n_in))) if rows == 1 and mode == "rev" else None
    )
    info.update(code_head=[h, n_t], samples_per_block=rows)


class Jacobian(_GradientExplainer):
    """Per-sample Jacobians of every target: saliency (mean |dz/dx|) or input x gradient."""

    name = "jacobian"

    class Params(_GradientParams):
        method: Literal["saliency", "input_x_gradient"] = Field(
            "saliency", description="saliency: mean |dz/dx| per group; input_x_gradient: mean |sum of x * dz/dx| per group"
        )

    def prepare(self, model, data, *, target, rng):  # noqa: ANN001, ANN201
        state = _setup(self, model, data, target, rng, copies=1)
        state["summary"] = summary_plan(self.params, data, self.params.split, additive=False, n_targets=len(state["names"]))
        state["use_layer"] = jacobian_factorised(self.params, model, data, target, state)
        if state["use_layer"]:
            return state
        x0 = as_tensor(np.asarray(_samples(data, self.params.split)[state["index"][:1]]), model)
        _probe_mode(target_function(model, target, unroll=state["info"]["recurrent_unrolled"]), x0, state)
        _head_plan(self.params, model, target, x0, state, copies=1)
        return state

    def explain_chunk(self, model, data, state, units, *, target, rng):  # noqa: ANN001, ANN201
        p = self.params
        xt, acc = self._chunk(model, data, state, units)
        f = target_function(model, target, unroll=state["info"]["recurrent_unrolled"])
        head = resolve_code_head(model, state["head"]) if state.get("head") else None
        if head is not None:
            f = head.input_function(f)  # differentiate the head's h inputs, then apply its weight
        one, rows, n_t = torch.ones(1), state["rows"], len(state["names"])
        layer = first_layer_split(model, data, target)[0] if state.get("use_layer") else None
        starts = range(0, xt.shape[0], rows)
        for s in self.progress.track(starts, total=len(starts), description=f"jacobian ({target})"):
            xb = xt[s : s + rows]
            if layer is not None:  # W act'(A x + b) A: the code's Jacobian without autodiff
                with torch.no_grad():
                    jac = code_jacobian(layer, xb)
            else:
                jac, _ = _jacobian_blocks(f, xb.unsqueeze(0), xb, one, state["mode"], state["chunk"], {})
            if head is not None:
                jac = head.apply(jac.detach())
            jac = jac.detach().reshape(xb.shape[0], n_t, -1).cpu()
            if p.method == "saliency":
                absj = jac.abs()
                elem, local = jac, acc.group_sum(absj)
            else:
                elem = jac * xb.reshape(xb.shape[0], 1, -1).cpu()
                absj, local = None, acc.group_sum(elem)
            with torch.no_grad():
                fx = target_function(model, target)(xb, xb).reshape(xb.shape[0], -1).cpu().double()
            sums = acc.add_summary(state["summary"], local, fx, xb, units[s : s + rows], state["index"][units[s : s + rows]])
            acc.add(elem, local, sums, element_abs=absj)
        return acc.partial()

    def finish(self, model, data, state, total, *, target):  # noqa: ANN001, ANN201
        p = self.params
        unit = "mean |dz/dx| summed over the group" if p.method == "saliency" else "mean |sum of x * dz/dx| over the group"
        result = self._result(data, state, total, target, {**state["info"], "method": p.method, "unit": unit}, {})
        if p.method == "saliency":  # the element maps are the Jacobian itself
            arrays = dict(result.arrays)
            arrays["jacobian_mean"] = arrays.pop("attribution_mean")
            arrays["jacobian_abs_mean"] = arrays.pop("attribution_abs_mean")
            result = result.replace(arrays=arrays)
        return result


class IntegratedGradients(_GradientExplainer):
    """Integrated gradients of every target along one shared path, with the completeness gap per target."""

    name = "integrated_gradients"

    class Params(_GradientParams):
        steps: int = Field(32, ge=1, le=1024, description="quadrature points on the path from the baseline to the sample")
        rule: Rule = Field(
            "gausslegendre", description="quadrature rule (Captum's names): gausslegendre or riemann_middle/left/right/trapezoid"
        )
        baseline: Baseline = Field(
            "auto",
            description="path start: zero, the fit split's mean, or random fit samples (averaged, expected-gradients style); auto: zero for images, mean otherwise",
        )
        n_baselines: int = Field(1, ge=1, le=64, description="random fit samples averaged over when baseline is 'sample'")
        factorize: Literal["auto", "first_layer", "off"] = Field(
            "auto",
            description="auto: when the targets read a tabular input only through an affine first layer, stop the gradients there and apply its weight "
            "once per sample (and when the code is an affine map of one elementwise activation of it, use the activation's slope instead of autodiff); "
            "first_layer: only the former; off: always differentiate w.r.t. the input",
        )

    def prepare(self, model, data, *, target, rng):  # noqa: ANN001, ANN201
        p = self.params
        state = _setup(self, model, data, target, rng, copies=p.steps)
        state["baseline"], state["baseline_reason"] = resolve_baseline(p.baseline, data.kind)
        state["base"] = baselines(state["baseline"], data.x_fit, p.n_baselines, rng)
        state["summary"] = summary_plan(p, data, p.split, additive=True, n_targets=len(state["names"]))
        layer, *plan = _factorised_plan(p, model, data, target, len(state["names"]), state["n_e"], state["info"])
        state["use_layer"] = layer is not None
        x0 = as_tensor(np.asarray(_samples(data, p.split)[state["index"][:1]]), model)
        if layer is not None:
            state["mode"], state["rows"], state["chunk"] = plan
            _head_plan(p, model, target, x0, state, copies=p.steps, n_in=layer.width)
        else:
            _probe_mode(target_function(model, target, unroll=state["info"]["recurrent_unrolled"]), x0, state)
            _head_plan(p, model, target, x0, state, copies=p.steps)
        return state

    def explain_chunk(self, model, data, state, units, *, target, rng):  # noqa: ANN001, ANN201
        p = self.params
        alpha, weight = quadrature(p.rule, p.steps)
        xt, acc = self._chunk(model, data, state, units)
        f = target_function(model, target, unroll=state["info"]["recurrent_unrolled"])
        mode, rows, chunk = state["mode"], state["rows"], state["chunk"]
        layer = None
        if state["use_layer"]:
            layer = _factorised_plan(p, model, data, target, len(state["names"]), state["n_e"], dict(state["info"]))[0]
            g = layer_target_function(model, layer, target)
            a_weight = layer.linear.weight.detach()  # (h, n)
        head = resolve_code_head(model, state["head"]) if state.get("head") else None
        f_grad = f if head is None else head.input_function(f)  # the head's h inputs are differentiated, then its weight applied
        base_t = as_tensor(state["base"], model)
        a_t = torch.as_tensor(alpha, dtype=xt.dtype).view(-1, 1, *([1] * (xt.dim() - 1)))
        w_t = torch.as_tensor(weight, dtype=xt.dtype)
        n_t = len(state["names"])
        gap_sum = torch.zeros(n_t, dtype=torch.float64)
        scale_sum = torch.zeros(n_t, dtype=torch.float64)
        starts = range(0, xt.shape[0], rows)
        for s in self.progress.track(starts, total=len(starts), description=f"integrated_gradients ({target})"):
            xb = xt[s : s + rows]
            with torch.no_grad():
                fx = f(xb, xb).cpu().double()
            ig = torch.zeros((xb.shape[0], n_t, xb[0].numel()), dtype=torch.float32)
            delta = torch.zeros((xb.shape[0], n_t), dtype=torch.float64)
            for b in base_t:  # one pass per baseline (1 unless baseline is 'sample')
                diff = xb - b
                if layer is None:
                    points = b + a_t * diff.unsqueeze(0)  # (steps, B, *shape)
                    grad, mode = _jacobian_blocks(f_grad, points, xb, w_t, mode, chunk, {})
                    if head is not None:
                        grad = head.apply(grad.detach())
                else:  # the layer is affine: its outputs along the path interpolate those at both ends
                    with torch.no_grad():
                        a_x, a_b = layer(xb), layer(b.unsqueeze(0))
                    a_path = a_b + a_t * (a_x - a_b).unsqueeze(0)
                    if layer.tail is not None:
                        with torch.no_grad():
                            grad = summed_code_jacobian(layer, a_path, w_t)
                    else:
                        grad, mode = _jacobian_blocks(g if head is None else head.input_function(g), a_path, xb, w_t, mode, chunk, {})
                        if head is not None:
                            grad = head.apply(grad.detach())
                    grad = grad.detach() @ a_weight  # (B, T, h) @ (h, n): sum_s w_s dT/dx(x_s)
                ig += grad.detach().reshape(xb.shape[0], n_t, -1).cpu() * diff.reshape(xb.shape[0], 1, -1).cpu()
                with torch.no_grad():
                    delta += fx - f(b.expand_as(xb), xb).cpu().double()
            ig /= base_t.shape[0]
            delta /= base_t.shape[0]
            local = acc.group_sum(ig)
            sums = acc.add_summary(state["summary"], local, delta, xb, units[s : s + rows], state["index"][units[s : s + rows]])
            acc.add(ig, local, sums)
            gap_sum += (ig.sum(dim=2).double() - delta).abs().sum(dim=0)
            scale_sum += delta.abs().sum(dim=0)
        acc.extra = {"gap": gap_sum.numpy(), "scale": scale_sum.numpy()}
        return acc.partial()

    def finish(self, model, data, state, total, *, target):  # noqa: ANN001, ANN201
        p = self.params
        n = max(1, total.count)
        gap, scale = total.sums["gap"] / n, total.sums["scale"] / n
        relative = np.divide(gap, scale, out=np.full_like(gap, np.nan), where=scale > 0)
        names = state["names"]
        extras = {
            **state["info"],
            "unit": "mean |integrated gradients| summed over the group",
            "rule": p.rule,
            "steps": p.steps,
            "baseline": state["baseline"],
            "baseline_reason": state["baseline_reason"],
            "n_baselines": int(len(state["base"])),
            "completeness_gap": {t: float(g) for t, g in zip(names, gap)},
            "max_relative_completeness_gap": float(np.nanmax(relative)) if np.isfinite(relative).any() else None,
        }
        return self._result(data, state, total, target, extras, {"completeness_gap": gap, "target_change": scale})

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
