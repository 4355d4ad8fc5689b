"""The latent codes of the explained rows and each latent's signed effect on the output.

What the latent pages need from the model, computed once after a run and kept beside the results
(``latent_codes.npz``) so the pages are rebuilt from the results folder alone:

* ``latent_codes``: the code of every explained row (``samples x latents``);
* ``output_effects``: for each latent ``j``, the mean change of the decoded output, per feature group, when
  ``z_j`` moves from its ``low`` to its ``high`` quantile over the explained rows while the other latents keep
  each row's own values (a two-point traversal averaged over up to ``max_rows`` rows; DRVI-style signed
  effects: ``+`` raises the output, ``-`` lowers it).

The model is left as found (:func:`aeinterp.model.frozen`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..model import as_tensor, evaluate, frozen

__all__ = ["latent_codes", "output_effects", "EFFECT_QUANTILES"]

EFFECT_QUANTILES = (0.1, 0.9)


def latent_codes(model: Any, x: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """``model.encode`` of every row of ``x``, as float32 ``(rows, latents)``."""
    with frozen(model):
        z = evaluate(model.encode, x, batch_size=batch_size, model=model)
    return z.numpy().astype(np.float32, copy=False)


def _group_means(out: np.ndarray, groups: list[np.ndarray] | None) -> np.ndarray:
    flat = out.reshape(out.shape[0], -1)
    if groups is None:
        return flat
    return np.stack([flat[:, g].mean(axis=1) for g in groups], axis=1)


def output_effects(
    model: Any,
    codes: np.ndarray,
    *,
    groups: list[np.ndarray] | None = None,
    quantiles: tuple[float, float] = EFFECT_QUANTILES,
    max_rows: int = 128,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Signed output effects ``(latents, outputs)`` and the ``(latents, 2)`` low/high values each latent moved between.

    ``groups``: element indices of each output group (the mean effect over its elements); ``None``: every element.
    """
    codes = np.asarray(codes, dtype=np.float64)
    n, k = codes.shape
    rows = codes if n <= max_rows else codes[np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))]
    lo_hi = np.quantile(codes, quantiles, axis=0).T  # (k, 2)
    effects = []
    with frozen(model), torch.no_grad():
        for j in range(k):
            pair = np.concatenate([rows, rows])
            pair[: len(rows), j] = lo_hi[j, 0]
            pair[len(rows) :, j] = lo_hi[j, 1]
            out = model.decode(as_tensor(pair.astype(np.float32), model)).detach().cpu().numpy().astype(np.float64)
            diff = out[len(rows) :] - out[: len(rows)]
            effects.append(_group_means(diff, groups).mean(axis=0))
    return np.asarray(effects, dtype=np.float32), lo_hi.astype(np.float32)
