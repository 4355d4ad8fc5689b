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

__all__ = ["BLOCK", "sample_sum", "moments", "magnitude_sums", "row_sums"]

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


def moments(values: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(values.sum(axis=0), (values**2).sum(axis=0))`` in float64, converted a few rows at a time
    (no float64 copy of the whole chunk).

    For variances (``sum x**2 - n mean**2``), which cancel: both sums must be
    float64 sums of the same values, or a zero spread turns into ``sqrt(eps)``
    times the mean.
    """
    t = _tensor(values)
    if t.dtype == torch.float64:
        return t.sum(0).cpu().numpy(), (t * t).sum(0).cpu().numpy()
    first = torch.zeros(t.shape[1:], dtype=torch.float64, device=t.device)
    second = torch.zeros(t.shape[1:], dtype=torch.float64, device=t.device)
    rows = max(1, _CAST_ELEMENTS // max(1, t[0].numel())) if t.shape[0] else 1
    for block in torch.split(t, rows):
        b = block.double()
        first += b.sum(0)
        second += b.mul_(b).sum(0)
    return first.cpu().numpy(), second.cpu().numpy()


#: elements converted to float64 at once by :func:`moments` (2 MiB: stays in cache)
_CAST_ELEMENTS = 2**18


def magnitude_sums(
    local: np.ndarray | torch.Tensor, *, squares: bool = False, magnitude: torch.Tensor | None = None
) -> dict[str, np.ndarray]:
    """``{"abs": sum |local|, "abs_sq": sum local**2}`` over the samples (axis 0), float64 numpy.

    ``abs_sq`` (the variance of an anytime interval; both sums then in
    float64: see :func:`moments`) only when ``squares``: it is a second pass over the chunk.
    ``magnitude``: ``|local|`` when the caller has it already (it also ranks the chunk's top-k rows).
    """
    mag = _tensor(local).abs() if magnitude is None else magnitude
    if not squares:
        return {"abs": sample_sum(mag)}
    first, second = moments(mag)
    return {"abs": first, "abs_sq": second}


def row_sums(values: np.ndarray | torch.Tensor, dims: int = 1) -> np.ndarray:
    """The sum over the last ``dims`` axes (e.g. attributions summed for additivity), float64 numpy.

    Summed in the values' dtype: float32 attributions carry that rounding anyway.
    """
    t = _tensor(values)
    return t.sum(tuple(range(t.ndim - dims, t.ndim))).double().cpu().numpy()
