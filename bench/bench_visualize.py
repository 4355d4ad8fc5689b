"""Benchmark of the visualization explainers on the reference scenario.

Tabular autoencoder with n = 200 and n = 1000 features, encoder
Linear(n, 0.75n)-ReLU-Linear(0.75n, 0.5n) (so 0.5n latents), 950 samples.

* feature_visualization: ours optimizes all ``latents x 2 signs x starts``
  inputs in one Adam loop; the reference is the naive loop a user would write,
  one optimisation per latent (our explainer run on a one-latent view of the
  model with the same seed, hence the same starts). Adam is elementwise and
  the rows do not interact, so both must give the same inputs: the max abs
  difference is printed.
* latent_traversal: ours decodes all ``latents x steps`` codes in one batch;
  the reference loops over latents, decoding one latent's sweep at a time.

Peak memory is the process's maximum resident set size (``ru_maxrss``),
which only grows: the number printed after each phase is the peak so far.
Run ``python bench/bench_visualize.py`` (``--quick`` for a fast sanity run).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scenario import scenario  # noqa: E402  (the reference scenario of DESIGN.md)
from aeinterp_visualize.feature_visualization import FeatureVisualization
from aeinterp_visualize.traversal import LatentTraversal

from aeinterp import TorchAutoencoder, explain
from aeinterp.data import ArrayDataset


class _OneLatent:
    """The model seen through latent ``j`` only (what a per-latent loop optimizes)."""

    def __init__(self, model: TorchAutoencoder, j: int) -> None:
        self.inner, self.j = model, j
        self.input_shape = model.input_shape
        self.latent_dim = 1
        self.dtype, self.device = model.dtype, model.device

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.encode(x)[:, self.j : self.j + 1]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_feature_visualization(model: TorchAutoencoder, data: ArrayDataset, steps: int, starts: int, loop_latents: int) -> None:
    params = {"steps": steps, "starts": starts}
    k = model.latent_dim
    t = time.perf_counter()
    ours = explain(FeatureVisualization, model, data, params=params, seed=0)
    t_ours = time.perf_counter() - t
    peak = _peak_mb()
    m = min(loop_latents, k)  # the loop is timed on m latents and scaled to all k
    t = time.perf_counter()
    ref = [explain(FeatureVisualization, _OneLatent(model, j), data, params=params, seed=0) for j in range(m)]
    t_loop = (time.perf_counter() - t) * k / m
    diff = max(float(np.abs(r.arrays["optimized"][0] - ours.arrays["optimized"][j]).max()) for j, r in enumerate(ref))
    t_bare = _bare_loop(model, data, steps, starts, m) * k / m
    extra = f" (loops extrapolated from {m} latents)" if m < k else ""
    print(
        f"  feature_visualization ({k} latents x 2 x {starts} starts, {steps} steps): ours {t_ours:.2f} s; "
        f"explainer run per latent {t_loop:.2f} s (ratio {t_loop / t_ours:.1f}x, max abs diff {diff:.2e}); "
        f"bare Adam loop per latent and sign {t_bare:.2f} s (ratio {t_bare / t_ours:.1f}x){extra}; "
        f"peak RSS {peak:.0f} MB; covariance {'full' if data.n_features <= 512 else 'lowrank'}"
    )


def _bare_loop(model: TorchAutoencoder, data: ArrayDataset, steps: int, starts: int, m: int) -> float:
    """The minimal per-latent loop: same box, objective and penalties, penalty objects built once, no scans."""
    from aeinterp_visualize._common import fit_stats
    from aeinterp_visualize._penalties import Mahalanobis

    stats = fit_stats(data)
    lo, width = torch.as_tensor(stats.lo), torch.as_tensor(stats.hi - stats.lo)
    mean, scale = torch.as_tensor(stats.mean), torch.as_tensor(stats.scale)
    maha = Mahalanobis(data.x_fit, "auto")
    x0 = torch.as_tensor(data.x_fit[:starts])
    u0 = torch.logit(((x0 - lo) / width).clamp(0.02, 0.98))
    t = time.perf_counter()
    for j in range(m):
        for sign in (1.0, -1.0):
            u = u0.clone().requires_grad_(True)
            opt = torch.optim.Adam([u], lr=0.1)
            for _ in range(steps):
                opt.zero_grad()
                x = lo + width * torch.sigmoid(u)
                loss = -sign * model.encode(x)[:, j] + 0.5 * ((x - mean) / scale).pow(2).mean(dim=1) + 0.5 * maha(x)
                loss.sum().backward()
                opt.step()
    return time.perf_counter() - t


def bench_traversal(model: TorchAutoencoder, data: ArrayDataset, steps: int) -> None:
    t = time.perf_counter()
    ours = explain(LatentTraversal, model, data, params={"steps": steps}, seed=0)
    t_ours = time.perf_counter() - t
    refs, values = ours.arrays["references"][0], ours.arrays["sweep_values"][0]
    k = model.latent_dim
    t = time.perf_counter()
    loop = []
    with torch.no_grad():
        for j in range(k):
            codes = np.repeat(refs[None], steps, axis=0)
            codes[:, j] = values[j]
            loop.append(model.decode(torch.as_tensor(codes, dtype=torch.float32)).numpy())
    t_loop = time.perf_counter() - t
    diff = float(np.abs(np.stack(loop) - ours.arrays["decoded"][0]).max())
    print(
        f"  latent_traversal ({k} latents x {steps} steps): ours {t_ours:.3f} s (incl. encoding the split), "
        f"loop over latents (decoding only) {t_loop:.3f} s, ratio {t_loop / t_ours:.1f}x, max abs diff {diff:.2e}, peak RSS {_peak_mb():.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="n = 200 only, few steps")
    parser.add_argument("--steps", type=int, default=50, help="Adam steps of the feature visualization")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [200] if args.quick else [200, 1000]
    steps = 10 if args.quick else args.steps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    warm_model, warm_data = scenario(8)  # imports (scikit-learn, torch.optim) out of the timings
    explain(FeatureVisualization, warm_model, warm_data, params={"steps": 2, "starts": 1})
    explain(LatentTraversal, warm_model, warm_data)
    for n in sizes:
        model, data = scenario(n)
        print(f"n = {n} features, {model.latent_dim} latents, 950 samples")
        bench_feature_visualization(model, data, steps, starts=4, loop_latents=model.latent_dim if n <= 200 else 50)
        bench_traversal(model, data, steps=7)


if __name__ == "__main__":
    main()
