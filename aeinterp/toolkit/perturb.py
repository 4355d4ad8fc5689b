"""Helpers every explainer may use: perturbed copies in bounded memory, group
reduction, background sampling.

They live in the core because third-party explainers need them too.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import numpy as np
import torch

from ..data import FeatureGroup, subsample_indices  # re-exported: it lived here first
from ..model import Model, as_tensor
from ..progress import NullProgress, Progress
from ..targets import Target, evaluate_target
from .first_layer import FirstLayer
from .kinks import KinkUpdate, kink_update_reason

__all__ = [
    "perturbation_effects",
    "perturbation_sums",
    "change_from_sums",
    "copies_per_batch",
    "reduce_groups",
    "sample_background",
    "subsample",
    "subsample_indices",
]

Fill = Callable[[torch.Tensor, Sequence[int]], "Sequence[torch.Tensor] | None"]


def copies_per_batch(n_samples: int, n_features: int, *, memory_mb: float = 256.0, min_rows: int = 512) -> int:
    """How many perturbed copies of an ``(n_samples, n_features)`` batch to stack per forward pass.

    Stack copies only until a forward pass has ``min_rows`` rows: on a CPU a
    loop of full-batch passes beats one huge pass once the batch is a few
    hundred rows (bench/bench_perturbation.py measures both). Never exceeds
    ``memory_mb`` for the stacked inputs.
    """
    per_copy = max(1, n_samples * n_features * 4)
    by_memory = max(1, int(memory_mb * 2**20 // per_copy))
    by_rows = max(1, math.ceil(min_rows / max(1, n_samples)))
    return min(by_memory, by_rows)


def perturbation_effects(
    model: Model,
    target: Target | str,
    x: np.ndarray | torch.Tensor,
    n_copies: int,
    fill: Fill,
    *,
    copies: int | None = None,
    memory_mb: float = 256.0,
    batch_size: int = 4096,
    progress: Progress | None = None,
    description: str = "perturbing",
    layer: FirstLayer | None = None,
    measure: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Evaluate ``target`` on ``n_copies`` perturbed copies of ``x``; return each copy's change.

    ``fill(block, ids)`` receives a ``(len(ids), N, D)`` tensor holding copies
    of the flattened ``x`` and perturbs copy ``k`` in place as copy ``ids[k]``.
    If it returns, for each copy, the column indices it changed, the block is
    reused and only those columns are restored afterwards (no full copy of
    ``x`` per perturbation); if it returns None, the block is rebuilt.
    The change of each target is measured by :func:`aeinterp.targets.target_change`
    against the unperturbed ``x``; the result is ``(n_copies, n_targets)``.
    ``measure(perturbed, original)`` replaces that measure: both are
    ``(N, n_targets)`` and it returns one tensor of a fixed shape per copy
    (e.g. the mean of the perturbed target, for partial dependence); the
    result is then ``(n_copies, *that shape)``.

    ``copies`` copies are stacked per forward pass (default:
    :func:`copies_per_batch`), so memory stays bounded by about ``memory_mb``
    for the inputs plus the model's activations for ``copies * N`` rows (in
    sub-batches of ``batch_size``).

    ``layer`` (an affine first layer ``a = A x + b`` of the encoder, from
    :func:`aeinterp.toolkit.first_layer.first_layer_split`) evaluates the copies from
    ``a``: when ``fill`` reports the changed columns ``C``, a copy's
    pre-activations are ``a(x) + (x'_C - x_C) A_C^T``, a rank-|C| update
    instead of the full first matmul (exact up to float rounding).
    """
    if measure is None:
        sums, count = perturbation_sums(
            model,
            target,
            x,
            n_copies,
            fill,
            copies=copies,
            memory_mb=memory_mb,
            batch_size=batch_size,
            progress=progress,
            description=description,
            layer=layer,
        )
        return change_from_sums(target, sums, count)
    out: torch.Tensor | None = None  # (n_copies, *measure's shape), allocated at the first block
    for ids, change, base in _perturbed_changes(
        model, target, x, n_copies, fill, copies, memory_mb, batch_size, progress, description, layer
    ):
        measured = torch.stack([measure(base + v, base) for v in change])
        if out is None:
            out = torch.empty((n_copies, *measured.shape[1:]), dtype=measured.dtype)
        out[ids] = measured
    assert out is not None  # n_copies >= 1
    return out


def change_from_sums(target: Target | str, sums: torch.Tensor, count: int) -> torch.Tensor:
    """:func:`aeinterp.targets.target_change` from :func:`perturbation_sums`' additive sums over ``count`` samples."""
    mean = sums / max(1, int(count))
    return mean if Target(target).is_loss else mean.clamp_min(0).sqrt()


def perturbation_sums(
    model: Model,
    target: Target | str,
    x: np.ndarray | torch.Tensor,
    n_copies: int,
    fill: Fill,
    *,
    copies: int | None = None,
    memory_mb: float = 256.0,
    batch_size: int = 4096,
    progress: Progress | None = None,
    description: str = "perturbing",
    layer: FirstLayer | None = None,
    squares: bool = False,
    column_sets: Sequence[int] | None = None,
    signed: torch.Tensor | None = None,
    signed_group: Sequence[int] | None = None,
) -> tuple[torch.Tensor, int]:
    """Like :func:`perturbation_effects`, but the additive sums over the samples of ``x`` and their count.

    Per copy and target the sum over samples of the squared change (vector
    targets) or of the change (the reconstruction error), as float64: sums of
    sample chunks add up to the sums of the whole batch, which is what a
    sample-chunked explainer needs. With ``squares`` the result also holds
    the sums of the squares of those per-sample terms, as a second slice
    ``(2, n_copies, n_targets)`` (for running variances).

    ``column_sets[i]`` labels the columns copy ``i`` perturbs: copies with one
    label change the same columns (by different values), as permutation's
    repeats of one feature group do. They are then evaluated one label after
    the other, and with ``layer`` on an encoder ``Linear -> ReLU/LeakyReLU ->
    Linear`` and the latent target, each label's Jacobian columns are computed
    once and its copies' code changes follow from them exactly
    (:class:`aeinterp.toolkit.kinks.KinkUpdate`), without the second matmul.

    ``signed`` (``(N, T, G)`` float64, zeros): each sample's signed change of
    every target is added in place under the group ``signed_group[copy]``
    (per-sample attributions for :mod:`aeinterp.toolkit.summaries`).
    """
    target = Target(target)
    out: torch.Tensor | None = None
    n = 0
    blocks = _perturbed_changes(model, target, x, n_copies, fill, copies, memory_mb, batch_size, progress, description, layer, column_sets)
    for ids, terms, base in blocks:
        n = terms.shape[1]
        if out is None:
            out = torch.zeros((2 if squares else 1, n_copies, base.shape[1]), dtype=torch.float64)
        if signed is not None and signed_group is not None:
            where = torch.as_tensor([signed_group[i] for i in ids], dtype=torch.long)
            signed.index_add_(2, where, terms.permute(1, 2, 0).double())
        if not target.is_loss:
            terms.square_()
        out[0, ids] = terms.sum(dim=1).double()  # float32 sums of one chunk's samples: as precise as the float32 terms
        if squares:
            out[1, ids] = terms.double().square_().sum(dim=1)
    assert out is not None  # n_copies >= 1
    return (out if squares else out[0]), n


def _perturbed_changes(
    model: Model,
    target: Target | str,
    x: np.ndarray | torch.Tensor,
    n_copies: int,
    fill: Fill,
    copies: int | None,
    memory_mb: float,
    batch_size: int,
    progress: Progress | None,
    description: str,
    layer: FirstLayer | None,
    column_sets: Sequence[int] | None = None,
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """For each block of copies: their ids, the target's change on the copies ``(copies, N, T)``, the target on ``x``."""
    progress = progress or NullProgress()
    target = Target(target)
    xt = as_tensor(x, model)
    n, shape = xt.shape[0], tuple(xt.shape[1:])
    flat = xt.reshape(n, -1)
    d = flat.shape[1]
    kinks: KinkUpdate | None = None
    with torch.no_grad():
        base = _eval_rows(model, target, xt, xt, batch_size)
        if layer is not None:
            from .first_layer import layer_target_function

            g = layer_target_function(model, layer, target)  # type: ignore[arg-type]
            weight_t = layer.linear.weight.detach().T  # (D, h)
            a0 = layer(flat.to(weight_t.dtype))
            if column_sets is not None and kink_update_reason(layer, target) is None:
                kinks = KinkUpdate(layer, a0)
        blocks = _blocks(
            n_copies,
            column_sets if kinks is not None else None,
            copies or copies_per_batch(n, d, memory_mb=memory_mb),
            n * d * flat.element_size(),
            memory_mb,
        )
        c = max(map(len, blocks))
        sharing = Counter(column_sets) if kinks is not None else None
        # only the reconstruction error compares with the unperturbed input
        ref = xt.unsqueeze(0).expand(c, *xt.shape).reshape(c * n, *shape) if target.is_loss else None
        buffer = flat.unsqueeze(0).repeat(c, 1, 1)
        jacobian: tuple[torch.Tensor, torch.Tensor] | None = None  # the last column set's Jacobian columns
        for ids in progress.track(blocks, total=len(blocks), description=description):
            block = buffer[: len(ids)]
            changed = fill(block, ids)
            rows = block.reshape(len(ids) * n, *shape)
            reference = rows if ref is None else ref[: len(ids) * n]
            if layer is None:
                change = _eval_rows(model, target, rows, reference, batch_size).reshape(len(ids), n, -1) - base
            elif changed is None:
                a = layer(block.reshape(len(ids) * n, d).to(weight_t.dtype))
                change = _eval_layer_rows(g, a, reference, batch_size).reshape(len(ids), n, -1) - base
            else:
                cols = [torch.as_tensor(col) for col in changed]
                deltas = [(block[k][:, col] - flat[:, col]).to(weight_t.dtype) for k, col in enumerate(cols)]
                shared = (
                    [] if kinks is None else _kink_copies(ids, cols, column_sets, sharing, n * base.shape[1] * a0.element_size(), memory_mb)  # type: ignore[arg-type]
                )  # type: ignore[arg-type]
                plain = [k for k in range(len(ids)) if k not in shared]
                by_kinks = None
                if shared:
                    if jacobian is None or not torch.equal(jacobian[0], cols[0]):  # a column set's copies can span blocks
                        jacobian = (cols[0], kinks.jacobian(cols[0]))  # type: ignore[union-attr]
                    by_kinks = kinks.change(cols[0], torch.stack([deltas[k] for k in shared]), jacobian[1]).float().cpu()  # type: ignore[union-attr]
                if not plain:
                    change = by_kinks  # type: ignore[assignment]  # every copy: no copy of the result
                else:  # a rank-|C| update of the first layer's pre-activations, then the rest of the model
                    change = base.new_empty((len(ids), n, base.shape[1]))
                    if by_kinks is not None:
                        change[shared] = by_kinks
                    a = a0.new_empty((len(plain), *a0.shape))
                    for j, k in enumerate(plain):
                        torch.addmm(a0, deltas[k], weight_t[cols[k]], out=a[j])
                    values = _eval_layer_rows(g, a.reshape(len(plain) * n, -1), reference[: len(plain) * n], batch_size)
                    change[plain] = values.reshape(len(plain), n, -1) - base
            yield ids, change, base
            if changed is None:
                block.copy_(flat.unsqueeze(0).expand_as(block))
            else:
                for k, col in enumerate(changed):
                    block[k][:, col] = flat[:, col]


def _kink_copies(
    ids: list[int], cols: list[torch.Tensor], column_sets: Sequence[int], sharing: Counter, jacobian_bytes: int, memory_mb: float
) -> list[int]:
    """Positions in the block of the copies whose code change :class:`KinkUpdate` gives: their column set is
    perturbed at least twice as often as it has columns (so its Jacobian columns pay), they share the block's
    first copy's columns (blocks hold one column set), and those Jacobian columns fit in ``memory_mb``."""
    if len(cols[0]) * jacobian_bytes > memory_mb * 2**20:
        return []
    return [k for k, cid in enumerate(ids) if sharing[column_sets[cid]] >= 2 * len(cols[k]) and torch.equal(cols[k], cols[0])]


def _blocks(n_copies: int, column_sets: Sequence[int] | None, copies: int, copy_bytes: int, memory_mb: float) -> list[list[int]]:
    """The copy ids evaluated together: ``copies`` at a time, or each column set's copies together (within ``memory_mb``)."""
    if column_sets is None:
        copies = max(1, min(copies, n_copies))
        return [list(range(s, min(s + copies, n_copies))) for s in range(0, n_copies, copies)]
    runs: dict[int, list[int]] = {}
    for cid in range(n_copies):
        runs.setdefault(column_sets[cid], []).append(cid)
    per_block = max(1, int(memory_mb * 2**20 // max(1, copy_bytes)))
    return [run[s : s + per_block] for run in runs.values() for s in range(0, len(run), per_block)]


def _eval_layer_rows(
    g: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], a: torch.Tensor, reference: torch.Tensor, batch_size: int
) -> torch.Tensor:
    return torch.cat([g(a[s : s + batch_size], reference[s : s + batch_size]).float().cpu() for s in range(0, a.shape[0], batch_size)])


def _eval_rows(model: Model, target: Target | str, rows: torch.Tensor, reference: torch.Tensor, batch_size: int) -> torch.Tensor:
    parts = [
        evaluate_target(model, target, rows[s : s + batch_size], reference[s : s + batch_size]).float().cpu()
        for s in range(0, rows.shape[0], batch_size)
    ]
    return torch.cat(parts)


def reduce_groups(local: np.ndarray | torch.Tensor, groups: Sequence[FeatureGroup], how: Literal["sum", "mean", "abs_sum"] = "sum"):
    """Reduce the last axis of per-element attributions to feature groups.

    ``local`` is ``(..., n_features)``; the result is ``(..., n_groups)``.
    Sums are the right reduction for additive attributions (SHAP, IG).
    """
    is_torch = isinstance(local, torch.Tensor)
    if (
        how in ("sum", "mean")
        and len(groups) == local.shape[-1]
        and all(g.indices.size == 1 and int(g.indices[0]) == j for j, g in enumerate(groups))
    ):
        return local  # every element is its own group, in order: nothing to reduce (and no copy)
    arr = local if is_torch else torch.as_tensor(np.asarray(local))
    if how == "abs_sum":
        arr = arr.abs()  # type: ignore[union-attr]
    d = arr.shape[-1]
    owner = torch.full((d,), len(groups), dtype=torch.long)  # elements in no group go to a dropped column
    disjoint = True
    for j, g in enumerate(groups):
        idx = torch.as_tensor(g.indices)
        disjoint &= bool((owner[idx] == len(groups)).all())
        owner[idx] = j
    if disjoint:  # O(B*T*D) scatter instead of a dense (D x G) product
        out = torch.zeros((*arr.shape[:-1], len(groups) + 1), dtype=arr.dtype, device=arr.device)  # type: ignore[arg-type]
        out.index_add_(-1, owner.to(arr.device), arr)  # type: ignore[arg-type]
        out = out[..., :-1]
        if how == "mean":
            out = out / torch.as_tensor([len(g.indices) for g in groups], dtype=arr.dtype, device=arr.device)  # type: ignore[arg-type]
    else:  # overlapping groups: each element counts in every group that holds it
        m = torch.zeros((d, len(groups)), dtype=arr.dtype, device=arr.device)  # type: ignore[arg-type]
        for j, g in enumerate(groups):
            m[torch.as_tensor(g.indices, device=arr.device), j] = 1.0 / len(g.indices) if how == "mean" else 1.0
        out = arr @ m  # type: ignore[assignment]
    return out if is_torch else out.numpy()


def subsample(x: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``n`` rows of ``x``, drawn without replacement (all of them if ``n`` is None)."""
    if n is None or n >= x.shape[0]:
        return x
    return x[subsample_indices(x.shape[0], n, rng)]


def sample_background(
    x: np.ndarray, n: int | None, rng: np.random.Generator, method: Literal["random", "kmeans", "all"] = "random"
) -> np.ndarray:
    """A background sample: ``n`` random rows, a k-means summary of ``n`` centres, or all rows."""
    if method == "all" or n is None or n >= x.shape[0]:
        return x
    if method == "random":
        return subsample(x, n, rng)
    if method == "kmeans":
        from sklearn.cluster import KMeans

        flat = x.reshape(x.shape[0], -1)
        seed = int(rng.integers(0, 2**31 - 1))
        centres = KMeans(n_clusters=n, n_init=3, random_state=seed).fit(flat).cluster_centers_
        return centres.reshape((n, *x.shape[1:])).astype(x.dtype)
    raise ValueError(f"unknown background method {method!r}; use random, kmeans or all")
