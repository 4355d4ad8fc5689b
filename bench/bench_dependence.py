"""Benchmark: the full mutual-information matrix vs a loop of scikit-learn's mutual_info_regression.

Reference scenario (DESIGN.md): a tabular autoencoder with n features, encoder
Linear(n, 0.75n) -> ReLU -> Linear(0.75n, 0.5n), 950 samples; MI of every
feature with every latent (n x n/2 pairs). The reference calls
``mutual_info_regression(X, z_j)`` once per latent; it is timed on the first
``--ref-latents`` latents and extrapolated to all of them (a full run takes
about 40 minutes for n = 1000), which the output says. Both use the same
samples, k and noise seed, so their values agree to rounding (max abs diff
printed). Peak memory is the growth of the process's peak RSS during our run
(numba's allocations are invisible to tracemalloc).

    python bench/bench_dependence.py            # n = 200 and n = 1000
    python bench/bench_dependence.py --quick    # a small sanity run
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _trail  # noqa: E402


def scenario(n: int, samples: int, seed: int = 0):  # noqa: ANN201
    """Correlated tabular data (20 factors + noise) and the reference autoencoder (random weights)."""
    from aeinterp import ArrayDataset, TorchAutoencoder
    from aeinterp.data import element_names, make_groups, split_indices

    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(samples, 20))
    x = (factors @ rng.normal(size=(20, n)) / np.sqrt(20) + 0.5 * rng.normal(size=(samples, n))).astype(np.float32)
    torch.manual_seed(seed)
    h, k = int(0.75 * n), int(0.5 * n)
    module = nn.Module()
    module.encoder = nn.Sequential(nn.Linear(n, h), nn.ReLU(), nn.Linear(h, k))
    module.decoder = nn.Sequential(nn.Linear(k, h), nn.ReLU(), nn.Linear(h, n))
    module.eval()
    names = element_names("tabular", (n,))
    fit, explain = split_indices(samples, seed=seed)
    data = ArrayDataset(
        x=x,
        kind="tabular",
        feature_names=names,
        groups=make_groups("tabular", (n,), feature_names=names),
        fit_index=fit,
        explain_index=explain,
        name=f"bench{n}",
    )
    return TorchAutoencoder(module, (n,)), data


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(n: int, samples: int, ref_latents: int, method: str) -> None:
    from aeinterp_dependence.explainers import MutualInformation
    from sklearn.feature_selection import mutual_info_regression

    from aeinterp import explain

    model, data = scenario(n, samples)
    params = {"split": "all", "method": method}
    if method == "hsic":  # room to keep every latent's 500 x 500 Gram matrix (about 1 MiB each)
        params["memory_mb"] = 1536
    before = peak_rss_mb()
    start = time.perf_counter()
    result = explain(MutualInformation, model, data, seed=0, params=params)
    ours = time.perf_counter() - start
    grew = peak_rss_mb() - before
    n_lat = result.importance.shape[0]
    print(f"\nn = {n} features x {n_lat} latents, {samples} samples, method {method}")
    how = f"backend {result.extras['backend']}" if method == "ksg" else f"{result.extras['n_samples']} samples, memory_mb 1536"
    print(f"  aeinterp mutual_information  {ours:9.2f} s   ({how}, peak RSS +{grew:.0f} MiB)")
    if method != "ksg":
        return
    with torch.no_grad():
        z = model.encode(torch.as_tensor(data.x)).double().numpy()
    x = data.x.astype(np.float64)
    m = min(ref_latents, n_lat)
    seed = result.extras["noise_seed"]
    start = time.perf_counter()
    ref = np.stack([mutual_info_regression(x, z[:, j], n_neighbors=3, random_state=seed) for j in range(m)])
    timed = time.perf_counter() - start
    full = timed * n_lat / m
    note = "" if m == n_lat else f"  (timed on {m} of {n_lat} latents: {timed:.1f} s, extrapolated x{n_lat / m:.1f})"
    print(f"  sklearn loop over latents    {full:9.2f} s{note}")
    print(f"  ratio                        {full / ours:9.1f} x")
    print(f"  max |ours - sklearn|         {np.abs(result.importance[:m] - ref).max():9.2e} nats (same samples, k, noise seed)")
    _trail.emit(
        f"mutual_information/n{n}/sklearn",
        full / ours,
        ours_s=ours,
        ref_s=full,
        reference=f"sklearn mutual_info_regression x {n_lat} latents (timed on {m})",
        rss_mb=grew,
        max_abs_diff=float(np.abs(result.importance[:m] - ref).max()),
        kernel_threads=_threads(),
    )


def _threads() -> int:
    try:
        import numba

        return int(numba.get_num_threads())
    except ImportError:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a fast sanity run (n = 40, 300 samples)")
    ap.add_argument("--n", type=int, nargs="*", default=[200, 1000], help="feature counts (default 200 1000)")
    ap.add_argument("--samples", type=int, default=950)
    ap.add_argument(
        "--ref-latents",
        type=int,
        nargs="*",
        default=None,
        help="latents the sklearn loop is timed on, one per n (default: 20 for n <= 200, else 4)",
    )
    ap.add_argument("--hsic", action="store_true", help="also time method: hsic (no reference)")
    ap.add_argument("--json", action="store_true", help="also print one BENCH_FIGURE json line per figure (bench/run_all.py)")
    args = ap.parse_args()
    _trail.enable(args.json)
    if args.quick:
        args.n, args.samples = [40], 300
    refs = args.ref_latents or [20 if n <= 200 else 4 for n in args.n]
    from aeinterp_dependence.ksg import has_numba

    if has_numba():  # compile (or load from the on-disk cache) before timing
        start = time.perf_counter()
        model, data = scenario(8, 50)
        from aeinterp_dependence.explainers import MutualInformation

        from aeinterp import explain

        explain(MutualInformation, model, data, params={"split": "all"})
        print(f"numba kernels ready in {time.perf_counter() - start:.1f} s (JIT compile on first use, cached on disk)")
    print(f"torch threads: {torch.get_num_threads()}, numba threads: {_threads()} (NUMBA_NUM_THREADS); timings depend on machine load")
    for n, ref in zip(args.n, refs):
        run(n, args.samples, ref, "ksg")
        if args.hsic:
            run(n, args.samples, 0, "hsic")


if __name__ == "__main__":
    main()
