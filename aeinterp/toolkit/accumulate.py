"""Per-chunk sums of streamed attributions, computed in torch where the attributions are.

A streamed explainer (:mod:`aeinterp.toolkit.chunks`) reduces every chunk of
per-sample attributions to a few sums over its samples. Doing that in numpy
costs a host copy, an ``astype(float64)`` of the whole chunk and a fresh
allocation per temporary (each a page-faulting ``mmap`` beyond glibc's
threshold) — on the reference scenario it was 40 % of DeepSHAP's run. Here
the chunk stays a tensor in the attribution's dtype and only the reduced
(targets x groups) sums leave it, as float64 numpy arrays.

Float32 sums over samples are *compensated by blocks*: every block of
:data:`BLOCK` rows is summed in float32 (at most ``BLOCK`` roundings, a
relative error below ``BLOCK * 2**-24``, about ``2e-6``; in practice ``1e-7``)
and the block sums are added in float64, so the error does not grow with the
number of samples. Float64 attributions are summed in float64.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["BLOCK", "sample_sum", "magnitude_sums", "row_sums"]

#: rows summed in float32 before the running sum moves to float64
BLOCK = 64


def _tensor(values: np.ndarray | torch.Tensor) -> torch.Tensor:
    return values if isinstance(values, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(values))


def sample_sum(values: np.ndarray | torch.Tensor) -> np.ndarray:
    """``values.sum(axis=0)`` as float64 numpy, in blocks of :data:`BLOCK` rows summed in the values' dtype."""
    t = _tensor(values)
    if t.dtype == torch.float64 or t.shape[0] <= 1:
        return t.sum(0, dtype=torch.float64).cpu().numpy() if t.shape[0] else np.zeros(t.shape[1:])
    blocks = torch.stack([b.sum(0) for b in torch.split(t, BLOCK)]) if t.shape[0] > BLOCK else t.sum(0, keepdim=True)
    return blocks.double().sum(0).cpu().numpy()


def magnitude_sums(local: np.ndarray | torch.Tensor, *, squares: bool = False) -> dict[str, np.ndarray]:
    """``{"abs": sum |local|, "abs_sq": sum local**2}`` over the samples (axis 0), float64 numpy.

    ``abs_sq`` (the variance of an anytime interval) only when ``squares``: it
    is a second pass over the chunk.
    """
    t = _tensor(local)
    mag = t.abs()
    out = {"abs": sample_sum(mag)}
    if squares:
        out["abs_sq"] = sample_sum(mag.mul_(mag))
    return out


def row_sums(values: np.ndarray | torch.Tensor, dims: int = 1) -> np.ndarray:
    """The sum over the last ``dims`` axes (e.g. attributions summed for additivity), float64 numpy.

    Summed in the values' dtype: float32 attributions carry that rounding anyway.
    """
    t = _tensor(values)
    return t.sum(tuple(range(t.ndim - dims, t.ndim))).double().cpu().numpy()
