"""Summaries of per-sample attributions into one importance per (target, feature), streamed over sample chunks.

An explainer with per-sample attributions ``phi[i, t, g]`` (sample ``i``, target
``t``, feature group ``g``), the targets' values ``z[i, t]`` and the inputs' group
values ``x[i, g]`` (the mean of the group's elements) can summarise them in
several ways; all are computed from the same running sums (float64), added up
chunk by chunk (:class:`aeinterp.toolkit.chunks.Partial` ``sums``), so the result
does not depend on the chunking or the executor:

``mean_abs``
    ``mean_i |phi[i, t, g]|``: how large the attributions are, whatever their sign
    or their relation to the target's variation;
``variance_share``
    ``Cov_i(phi[:, t, g], z[:, t]) / Var_i(z[:, t])``: the share of the target's
    variance over the explained rows that feature ``g`` carries. For an additive
    method (``sum_g phi[i, t, g] = z[i, t] - baseline_t``: DeepSHAP, integrated
    gradients with completeness) the shares of a target sum to 1 exactly; for
    others ``1 - sum_g share`` is reported as the residual. A share can be
    negative (a feature whose attributions cancel the others'); rankings use the
    share itself, so such features rank last;
``direction``
    ``corr_i(phi[:, t, g], x[:, g])`` in ``[-1, 1]``: +1 when a higher input
    value gives a larger attribution (raises the target), -1 when it lowers it,
    0 when the attribution does not follow the input (or either is constant).
    Rankings by magnitude use ``|direction|``.

Per label group (when the dataset has labels) each summary is computed on the
group's rows alone (``importance_by_group``). Stability: rows are dealt into
:data:`FOLDS` folds by their position in the explained sample order (not by
chunk); the three ways of splitting the four folds into two halves each give a
ranking per half, and ``overlap`` is the mean share of the top ``k`` features the
two halves agree on (1: every half-sample finds the same top ``k``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ..explainer import ExplainerParams

__all__ = [
    "SUMMARIES",
    "Summary",
    "SummaryParams",
    "SummaryPlan",
    "summary_plan",
    "chunk_sums",
    "partition_sums",
    "summarise",
    "ranking_key",
    "topk_overlap",
    "row_total",
    "FOLDS",
]

SUMMARIES = ("variance_share", "mean_abs", "direction")
Summary = Literal["variance_share", "mean_abs", "direction"]
FOLDS = 4
_HALVES = (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2)))
_STATS = ("n", "z1", "z2", "p1", "p2", "pa", "pz", "px", "x1", "x2")
#: the sums each summary needs: folds and label groups keep only the chosen summary's (targets x features arrays cost memory)
NEEDS = {"mean_abs": ("n", "pa"), "variance_share": ("n", "z1", "z2", "p1", "pz"), "direction": ("n", "p1", "p2", "px", "x1", "x2")}
UNSTABLE = 0.5
#: the tile of a chunk (rows x targets) summed at once on a CPU: its float64 copy and products stay within this many
#: MiB each, so they stay in a core's L2 cache (2 MiB tiles: 8.8 ms per reference-scenario chunk of 95 x 100 x 200;
#: one 32 MiB block: 31 ms). On an accelerator, where each tile is a few kernel launches, tiles are DEVICE_BLOCK_MB.
BLOCK_MB = 2.0
DEVICE_BLOCK_MB = 64.0

DESCRIPTIONS = {
    "mean_abs": "mean |attribution| per sample, in the target's units",
    "variance_share": "share of the target's variance, Cov(attribution, target) / Var(target)",
    "direction": "direction: corr(attribution, input) over samples, signed",
}


class SummaryParams(ExplainerParams):
    """The summary params every explainer with per-sample attributions shares (mix into its ``Params``)."""

    summary: Literal["auto", "variance_share", "mean_abs", "direction"] = Field(
        "auto",
        description="how per-sample attributions become one importance per target and feature: variance_share (Cov(phi, z) / Var z), "
        "mean_abs (mean |phi|) or direction (corr(phi, x)); auto: variance_share for additive methods, mean_abs otherwise. All three are kept in arrays",
    )
    stability_k: int = Field(20, ge=1, description="top-k whose split-half overlap says how stable each target's ranking is")
    by_group: Literal["auto", "off"] = Field(
        "auto",
        description="auto: with dataset labels (at most 64 classes), also summarise each label group's rows alone (importance_by_group)",
    )


def ranking_key(summary: str, values: np.ndarray) -> np.ndarray:
    """What rankings sort by (largest first): the share or mean itself, ``|direction|``."""
    return np.abs(values) if summary == "direction" else values


def topk_overlap(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Per row (target), the share of the top ``k`` of ``a`` that is also in the top ``k`` of ``b`` (both ``(targets, features)``)."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    k = max(1, min(int(k), a.shape[1]))
    ta = np.argsort(-a, axis=1, kind="stable")[:, :k]
    tb = np.argsort(-b, axis=1, kind="stable")[:, :k]
    in_a = np.zeros(a.shape, dtype=bool)
    np.put_along_axis(in_a, ta, True, axis=1)
    return np.take_along_axis(in_a, tb, axis=1).sum(axis=1) / k


def chunk_sums(phi: Any, z: Any, x: Any, cells: np.ndarray, n_cells: int, stats: tuple[str, ...] = _STATS) -> dict[str, np.ndarray]:
    """The running sums ``stats`` of one chunk, per cell (fold or label): ``phi`` (B, T, G), ``z`` (B, T), ``x`` (B, G), ``cells`` (B,) in ``[0, n_cells)``."""
    return partition_sums(phi, z, x, {"": (cells, n_cells, stats)})


def partition_sums(phi: Any, z: Any, x: Any, partitions: dict[str, tuple[np.ndarray, int, tuple[str, ...]]]) -> dict[str, np.ndarray]:
    """Running sums of one chunk for several partitions of its rows at once: ``{prefix: (cells, n_cells, stats)}``
    gives ``{prefix + stat: (n_cells, ...)}``.

    Inputs may be numpy arrays or torch tensors (a chunk stays in torch: no host copy of ``phi``). Each product
    (``phi * z``, ...) is formed once, in float64, a tile of rows and targets at a time (:data:`BLOCK_MB`: the tile
    stays in cache), and summed per cell of every partition by one in-place matrix product with that partition's
    one-hot cell matrix: the memory is the sums plus one tile's products. The sums come back as float64 numpy arrays.
    """
    import torch

    def tensor(a: Any) -> Any:
        t = a.detach() if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
        return t.cpu() if t.device.type == "mps" else t  # MPS has no float64: its sums are made on the CPU

    phi = tensor(phi)
    b, t, g = phi.shape
    z, x = tensor(z).to(torch.float64).reshape(b, t), tensor(x).to(torch.float64).reshape(b, g)
    parts = {pre: (torch.as_tensor(np.asarray(c, dtype=np.int64)).to(phi.device), int(m), st) for pre, (c, m, st) in partitions.items()}
    out = {
        pre + k: torch.zeros((m, *_SHAPES[k](t, g)), dtype=torch.float64, device=phi.device)
        for pre, (_, m, st) in parts.items()
        for k in st
    }
    wanted = {k for _, _, st in parts.values() for k in st}
    # tiles of (rows, targets) whose float64 copy and products stay in a core's cache: all rows and a few targets,
    # or, where one target of every row is already too large (tens of thousands of genes), fewer rows
    budget = max(1, int((BLOCK_MB if phi.device.type == "cpu" else DEVICE_BLOCK_MB) * 2**20 // 8))
    cols = max(1, min(t, budget // max(1, b * g)))
    rows = max(1, b if cols > 1 else min(b, budget // max(1, g)))
    for s in range(0, b, rows):
        onehots = {pre: torch.nn.functional.one_hot(c[s : s + rows], m).to(torch.float64).T for pre, (c, m, _) in parts.items()}
        xb = x[s : s + rows]
        for k in _ROW_STATS:  # the sums that do not depend on the targets: once per block of rows
            if k in wanted:
                _add(out, parts, onehots, k, _term(k, None, None, xb))
        for c0 in range(0, t, cols):
            tile = slice(c0, c0 + cols)
            p, zb = phi[s : s + rows, tile].to(torch.float64), z[s : s + rows, tile]
            for k in _STATS:
                if k in wanted and k not in _ROW_STATS:
                    _add(out, parts, onehots, k, _term(k, p, zb, xb), tile)
    return {k: v.cpu().numpy() for k, v in out.items()}


def _add(out: dict[str, Any], parts: dict[str, Any], onehots: dict[str, Any], k: str, v: Any, tile: slice | None = None) -> None:
    """Add the per-row values ``v`` of sum ``k`` (of the targets in ``tile``) to every partition's cells that keep it."""
    for pre, (_, m, st) in parts.items():
        if k in st:  # in place: no (cells, targets x groups) temporary (10 label groups of a 37,000 x 128 model: 380 MB)
            acc = out[pre + k] if tile is None else out[pre + k][:, tile]
            acc.view(m, -1).addmm_(onehots[pre], v.reshape(len(v), -1))


def _term(k: str, p: Any, z: Any, x: Any) -> Any:
    """The per-row values whose sum is the running sum ``k``, for a block ``p`` (rows, T, G), ``z`` (rows, T), ``x`` (rows, G)
    (``p`` and ``z`` are not needed by :data:`_ROW_STATS`)."""
    import torch

    if k == "n":
        return torch.ones(len(x), dtype=torch.float64, device=x.device)
    return {
        "z1": lambda: z,
        "z2": lambda: z * z,
        "p1": lambda: p,
        "p2": lambda: p * p,
        "pa": lambda: p.abs(),
        "pz": lambda: p * z[:, :, None],
        "px": lambda: p * x[:, None, :],
        "x1": lambda: x,
        "x2": lambda: x * x,
    }[k]()


#: the sums over rows that do not depend on the targets
_ROW_STATS = ("n", "x1", "x2")

#: the shape of each running sum per cell, from (targets, groups)
_SHAPES = {
    "n": lambda t, g: (),
    "z1": lambda t, g: (t,),
    "z2": lambda t, g: (t,),
    "x1": lambda t, g: (g,),
    "x2": lambda t, g: (g,),
    **{k: (lambda t, g: (t, g)) for k in ("p1", "p2", "pa", "pz", "px")},
}


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    b = np.broadcast_to(b, np.broadcast_shapes(np.shape(a), np.shape(b)))
    return np.divide(a, b, out=np.zeros(np.broadcast_shapes(np.shape(a), np.shape(b))), where=b > 0)


def summarise(s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each summary whose sums ``s`` holds (``(..., T, G)``; all of them from all of :data:`_STATS`) and the
    variance-share residual (``(..., T)``), from the sums of one cell (or of several added up)."""
    n = np.maximum(np.asarray(s["n"], dtype=np.float64), 1.0)[..., None]
    nn = n[..., None]
    out: dict[str, np.ndarray] = {}
    if "pa" in s:
        out["mean_abs"] = s["pa"] / nn
    if all(k in s for k in NEEDS["variance_share"]):
        mz, mp = s["z1"] / n, s["p1"] / nn
        var_z = np.clip(s["z2"] / n - mz**2, 0.0, None)
        tiny_z = 1e-12 * np.maximum(
            s["z2"] / n, 1e-300
        )  # a variance within rounding of zero (a constant target) gives 0, not noise over noise
        out["variance_share"] = _ratio(s["pz"] / nn - mp * mz[..., None], np.where(var_z > tiny_z, var_z, 0.0)[..., None])
        out["residual"] = np.where(var_z > tiny_z, 1.0 - out["variance_share"].sum(axis=-1), 0.0)
    if all(k in s for k in NEEDS["direction"]):
        mp, mx = s["p1"] / nn, s["x1"] / n
        var_p = np.clip(s["p2"] / nn - mp**2, 0.0, None)
        var_x = np.clip(s["x2"] / n - mx**2, 0.0, None)
        scale = np.sqrt(var_p * var_x[..., None, :])
        tiny = 1e-12 * np.sqrt(np.maximum(s["p2"] / nn, 0.0) * np.maximum(s["x2"] / n, 0.0)[..., None, :])
        out["direction"] = np.clip(_ratio(s["px"] / nn - mp * mx[..., None, :], np.where(scale > tiny, scale, 0.0)), -1.0, 1.0)
    return out


def row_total(sums: dict[str, np.ndarray], stat: str) -> np.ndarray:
    """The sum of ``stat`` over every row of a chunk's (or a step's) summary sums, from whichever partition holds it
    (``sum_abs = row_total(sums, "pa")``: a caller that needs the same sum takes it here instead of a second pass)."""
    return sums[f"sum_all_{stat}"][0] if f"sum_all_{stat}" in sums else sums[f"sum_fold_{stat}"].sum(axis=0)


def _cell_total(sums: dict[str, np.ndarray], prefix: str, cells: tuple[int, ...] | None = None) -> dict[str, np.ndarray]:
    out = {}
    for k in _STATS:
        if f"{prefix}{k}" in sums:
            a = sums[f"{prefix}{k}"]
            out[k] = a.sum(axis=0) if cells is None else a[list(cells)].sum(axis=0)
    return out


@dataclass
class SummaryPlan:
    """What one step summarises (made in ``prepare``; small and picklable).

    ``labels``: the label code of every row of the explained split (or None);
    ``label_names``: their class names; ``additive``: whether the method's
    attributions add up to the target's change (sets the ``auto`` summary).
    """

    summary: str
    k: int
    additive: bool
    labels: np.ndarray | None = None
    label_names: list[str] = field(default_factory=list)
    why: str | None = None

    def sums(self, phi: Any, z: Any, x_groups: Any, positions: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The chunk's sums under ``sum_fold_*`` (and ``sum_label_*``): ``positions`` are the rows' places in the
        explained order (they set the folds), ``rows`` their indices into the split (they give the labels)."""
        need = NEEDS[self.summary]
        parts = {
            "sum_all_": (np.zeros(len(positions), dtype=np.int64), 1, tuple(k for k in _STATS if k not in need)),
            "sum_fold_": (np.asarray(positions) % FOLDS, FOLDS, need),
        }
        if self.labels is not None:
            parts["sum_label_"] = (self.labels[np.asarray(rows)], len(self.label_names), need)
        return partition_sums(phi, z, x_groups, parts)

    def finish(self, sums: dict[str, np.ndarray], target_names: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
        """``(importance, arrays, extras)`` from the combined sums."""
        every = summarise({**_cell_total(sums, "sum_all_"), **_cell_total(sums, "sum_fold_")})
        arrays = {f"importance_{name}": every[name] for name in SUMMARIES}
        extras: dict[str, Any] = {
            "importance_summary": self.summary,
            "importance_summary_reason": self.reason(),
            "unit": DESCRIPTIONS[self.summary],
        }
        if self.summary == "variance_share" or self.additive:
            arrays["variance_share_residual"] = every["residual"]
            extras["variance_share_residual_max"] = float(np.abs(every["residual"]).max(initial=0.0))
        halves = []
        for a, b in _HALVES:
            ra = ranking_key(self.summary, summarise(_cell_total(sums, "sum_fold_", a))[self.summary])
            rb = ranking_key(self.summary, summarise(_cell_total(sums, "sum_fold_", b))[self.summary])
            halves.append(topk_overlap(ra, rb, self.k))
        overlap = np.mean(halves, axis=0)
        k = max(1, min(self.k, every[self.summary].shape[-1]))
        arrays["stability_topk_overlap"] = overlap
        extras["stability"] = {
            "method": f"split-half top-k overlap: rows dealt into {FOLDS} folds by position, mean over the 3 ways to split them in halves",
            "topk": k,
            "overlap": [float(v) for v in overlap],
        }
        weak = [t for t, v in zip(target_names, overlap) if v < UNSTABLE]
        if weak:
            extras["stability"]["warning"] = (
                f"{len(weak)} of {len(target_names)} targets have top-{k} rankings that half the rows do not reproduce "
                f"(overlap < {UNSTABLE}): {', '.join(weak[:10])}{' ...' if len(weak) > 10 else ''}; explain more samples"
            )
        if self.labels is not None and "sum_label_n" in sums:
            by = summarise({k_: sums[f"sum_label_{k_}"] for k_ in NEEDS[self.summary]})
            arrays["importance_by_group"] = by[self.summary]
            extras["groups"] = list(self.label_names)
            extras["group_rows"] = [int(v) for v in sums["sum_label_n"]]
        return every[self.summary], arrays, extras

    def reason(self) -> str:
        if self.why:
            return self.why
        if self.summary == "variance_share":
            return (
                "the attributions add up to the target's change, so their covariances with the target split its variance exactly"
                if self.additive
                else "requested"
            )
        return (
            "requested"
            if self.additive or self.summary != "mean_abs"
            else "the attributions do not add up to the target, so variance shares would not decompose it"
        )


#: the largest per-label-group sums kept (groups x targets x features x the summary's sums, float64), in MiB
BY_GROUP_MAX_MB = 256.0


def summary_plan(
    params: Any, data: Any, split: str, *, additive: bool, n_targets: int = 1, choice: str | None = None, why: str | None = None
) -> SummaryPlan:
    """The :class:`SummaryPlan` for an explainer's params (a :class:`SummaryParams`), the data, the explained split
    and the number of targets (per-group sums beyond :data:`BY_GROUP_MAX_MB` are not kept). ``choice`` overrides
    ``params.summary`` (an explainer that resolves its own ``auto``), ``why`` the stated reason for it."""
    choice = choice or str(getattr(params, "summary", "auto"))
    if choice == "auto":
        choice = "variance_share" if additive else "mean_abs"
    labels, names = None, []
    if getattr(params, "by_group", "auto") == "auto" and getattr(data, "labels", None) is not None:
        codes, names = data.label_codes()
        mb = len(names) * n_targets * len(data.groups) * len(NEEDS[choice]) * 8 / 2**20
        if len(names) <= 64 and mb <= BY_GROUP_MAX_MB:
            index = data.explain_index if split == "explain" else data.fit_index
            labels = np.asarray(codes)[np.asarray(index)]
        else:
            names = []
    return SummaryPlan(
        summary=choice, k=int(getattr(params, "stability_k", 20)), additive=additive, labels=labels, label_names=names, why=why
    )
