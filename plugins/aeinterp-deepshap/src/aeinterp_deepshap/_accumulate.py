"""What one chunk of DeepSHAP attributions leaves behind: its sums over samples and the rows kept.

The chunk stays a torch tensor in the attribution's dtype
(:mod:`aeinterp.toolkit.accumulate`): no host copy, no ``astype`` of the whole
chunk; only the (targets x groups) sums become float64 numpy arrays, and
per-sample rows are converted only when the ``local`` plan keeps them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from aeinterp.toolkit.accumulate import magnitude_sums, row_sums, sample_sum
from aeinterp.toolkit.perturb import reduce_groups
from aeinterp.toolkit.streaming import top_k_rows

__all__ = ["chunk_summaries"]


def _numpy(t: np.ndarray | torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def chunk_summaries(
    phi: np.ndarray | torch.Tensor,
    f_x: np.ndarray,
    state: dict[str, Any],
    data: Any,
    *,
    anytime: bool,
    x: torch.Tensor | None = None,
    units: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(sums, rows)`` of one chunk of ``phi`` ``(samples, targets, elements)``.

    ``sums``: ``abs`` (and ``abs_sq`` when ``anytime``), ``err`` and ``delta``
    (additivity), ``abs_steps`` for sequences, ``err_max`` (popped by the
    caller into the partial's maxima), and the running sums of the importance
    summary (``state["summary"]``, :mod:`aeinterp.toolkit.summaries`; it needs
    the chunk's inputs ``x`` and its ``units``). ``rows``: ``target_values`` and
    what the ``local`` plan keeps.
    """
    phi = phi if isinstance(phi, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(phi))
    n, k = phi.shape[0], state["k"]
    local = reduce_groups(phi, data.groups)  # phi itself when every element is its own group
    delta = f_x - state["f_bg"].mean(axis=0)
    err = np.abs(row_sums(phi) - delta)
    magnitude = local.abs()  # summed here and ranked for the top-k rows: computed once
    sums = {
        **magnitude_sums(local, squares=anytime, magnitude=magnitude),
        "err": err.sum(axis=0),
        "delta": np.abs(delta).sum(axis=0),
        "err_max": err.max(axis=0) if n else np.zeros(k),
    }
    summary = state.get("summary")
    if summary is not None and x is not None and units is not None:
        x_groups = reduce_groups(x.reshape(n, -1).double(), data.groups, "mean")
        sums.update(summary.sums(local, delta, x_groups, units, state["index"][units]))
    rows: dict[str, np.ndarray] = {"target_values": f_x}
    plan, shape = state["plan"], tuple(data.x_explain.shape[1:])
    if data.kind == "sequence":
        steps = phi.reshape(n, k, *shape).sum(3)
        sums["abs_steps"] = sample_sum(steps.abs())
        if plan.mode in ("memory", "disk"):
            rows["phi_steps"] = _numpy(steps)
    if plan.mode in ("memory", "disk"):
        rows["local"] = _numpy(local)
        if state["grouped"]:
            rows["phi"] = _numpy(phi.reshape(n, k, *shape).to(torch.float32))
    elif plan.mode == "top_k":
        rows["local_top_index"], rows["local_top_value"] = top_k_rows(local, plan.k or 1, magnitude=magnitude)
    return sums, rows
