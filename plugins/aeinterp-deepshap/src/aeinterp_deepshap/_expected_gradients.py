"""Expected gradients (shap's GradientExplainer method), for models DeepLIFT rules cannot cover.

``phi(x) = E[ grad f(b + t (x - b)) * (x - b) ]`` over background samples ``b``
and ``t ~ U(0, 1)``, estimated with ``samples`` draws per explained sample.
The draws reproduce shap's stream (``np.random.seed(seed_j)``, then
``choice(n_background)`` and ``uniform()`` per draw) with one seed per sample,
so the ``native`` and ``shap`` backends give the same numbers. Gradients of
all targets come from one backward pass over stacked copies of the points.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from aeinterp.progress import NullProgress, Progress

__all__ = ["draws", "expected_gradients"]


def draws(seed: int, samples: int, n_background: int) -> tuple[np.ndarray, np.ndarray]:
    """Background indices and interpolation factors of one sample, in shap's order."""
    rs = np.random.RandomState(seed)
    index = np.empty(samples, dtype=np.int64)
    alpha = np.empty(samples, dtype=np.float64)
    for s in range(samples):
        index[s] = rs.choice(n_background)
        alpha[s] = rs.uniform()
    return index, alpha


def expected_gradients(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    background: torch.Tensor,
    seeds: np.ndarray,
    *,
    samples: int = 200,
    batch_rows: int = 8192,
    progress: Progress | None = None,
) -> torch.Tensor:
    """``(N, K, D)`` expected-gradient attributions of every output of ``fn``; ``seeds[j]`` seeds sample ``j``."""
    progress = progress or NullProgress()
    n, shape = x.shape[0], tuple(x.shape[1:])
    with torch.no_grad():
        k = fn(x[:1]).reshape(1, -1).shape[1]
    d = int(np.prod(shape))
    chunk = max(1, batch_rows // max(1, k * samples))
    phi = torch.empty((n, k, d), dtype=x.dtype, device=x.device)
    starts = range(0, n, chunk)
    for start in progress.track(starts, total=len(starts), description="expected gradients"):
        ids = range(start, min(start + chunk, n))
        idx, alpha = zip(*(draws(int(seeds[j]), samples, background.shape[0]) for j in ids))
        idx_t = torch.as_tensor(np.concatenate(idx), device=x.device)
        t = torch.as_tensor(np.concatenate(alpha), dtype=x.dtype, device=x.device).reshape(-1, *([1] * len(shape)))
        xs = x[start : start + len(ids)].repeat_interleave(samples, dim=0)
        ref = background[idx_t]
        points = t * xs + (1 - t) * ref
        delta = (xs - ref).reshape(len(xs), d)
        grads = _all_gradients(fn, points, k)  # (k, P, D)
        phi[start : start + len(ids)] = (grads * delta.unsqueeze(0)).reshape(k, len(ids), samples, d).mean(2).transpose(0, 1)
    return phi


def _all_gradients(fn: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor, k: int) -> torch.Tensor:
    """Gradient of each of the ``k`` outputs at each point, from one backward pass over ``k`` stacked copies."""
    p = points.shape[0]
    with torch.enable_grad():
        stacked = points.detach().unsqueeze(0).expand(k, *points.shape).reshape(k * p, *points.shape[1:]).clone().requires_grad_(True)
        out = fn(stacked).reshape(k, p, k)
        selected = torch.diagonal(out, dim1=0, dim2=2)  # (p, k): copy j's output j
        (grad,) = torch.autograd.grad(selected.sum(), stacked)
    return grad.reshape(k, p, -1)
