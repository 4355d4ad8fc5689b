"""Benchmark the Ray executor: local vs Ray with 1 and 2 workers, same results.

Cases
    samples     a sample-heavy step: 10**5 samples of the reference scenario (DESIGN.md, N=64 inputs,
                encoder 64-48-32), occlusion importance (each input zeroed in turn, mean |dz|) as a
                ChunkedExplainer with splits="samples", chunks of 5000 rows (per-chunk cost and per-task
                overhead); and the built-in ``permutation`` (5 repeats) and ``integrated_gradients``
                (16 steps) at their default chunking (one chunk locally; on Ray, chunk_invariant
                explainers cut 4 chunks per worker);
    symbolic    symbolic_regression over 4 latents (splits="targets": one task per latent), fixed
                generations, no time budget (so both sides do the same work).

Reference (same run): the local executor in this process with one torch thread (one CPU, like one
Ray worker), timed on its second run (imports done). Ratios: overhead = Ray with 1 worker / local (target <= 1.2x), speed-up = local / Ray
with 2 workers (target >= 1.7x on the samples case). "cold" includes starting the workers
(imports of torch, sympy, pyoperon in fresh processes); "warm" is a second run on the same cluster.
Also printed: the per-chunk cost and per-task overhead behind the scaling in the README, and peak
RSS of the driver and of the workers.

    python bench/bench_ray.py            # 10**5 samples, 4 latents
    python bench/bench_ray.py --quick    # 2*10**4 samples, 2 latents, fewer generations
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scenario import scenario  # noqa: E402

from aeinterp import Capabilities, ExplainerParams, Explanation, explain  # noqa: E402
from aeinterp.model import as_tensor  # noqa: E402
from aeinterp.run.executors import make_executor  # noqa: E402
from aeinterp.toolkit.chunks import ChunkedExplainer, Partial  # noqa: E402


class Occlusion(ChunkedExplainer):
    """Mean |z(x) - z(x with input j set to 0)| per latent and input, over sample chunks."""

    name = "bench_occlusion"
    capabilities = Capabilities(splits="samples")

    class Params(ExplainerParams):
        chunk: int = 5000

    def prepare(self, model, data, *, target, rng):  # noqa: ANN001, ANN201
        return None

    def units(self, model, data, state, *, target):  # noqa: ANN001, ANN201
        return np.arange(len(data.x_explain)), self.params.chunk

    def explain_chunk(self, model, data, state, units, *, target, rng):  # noqa: ANN001, ANN201
        x = as_tensor(data.x_explain[units], model)
        with torch.no_grad():
            z = model.encode(x)
            out = np.zeros((z.shape[1], x.shape[1]))
            for j in range(x.shape[1]):
                xj = x.clone()
                xj[:, j] = 0
                out[:, j] = (model.encode(xj) - z).abs().sum(0).double().numpy()
        return Partial(sums={"d": out}, count=len(units))

    def finish(self, model, data, state, total, *, target):  # noqa: ANN001, ANN201
        k, n = total.sums["d"].shape
        return Explanation(
            importance=total.sums["d"] / total.count, feature_names=list(data.feature_names), target_names=[f"z{i}" for i in range(k)]
        )


def _timed(fn):  # noqa: ANN001, ANN202
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _worker_rss_mb(ray, workers: int) -> float:  # noqa: ANN001
    @ray.remote(num_cpus=1)
    def peak() -> tuple[int, float]:
        return os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    got = dict(ray.get([peak.remote() for _ in range(4 * workers)]))
    return max(got.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import ray
    from aeinterp_symbolic.explainer import SymbolicRegression

    n_samples = 2 * 10**4 if args.quick else 10**5
    model, data = scenario(64, samples=n_samples)
    sym_model, sym_data = scenario(16, samples=950)
    sym_params = {
        "dims": [0, 1] if args.quick else [0, 1, 2, 3],
        "generations": 10,
        "population_size": 200 if args.quick else 300,
        "time_budget": None,
        "threads": 1,
        "max_samples": 500,
        "operators": ["add", "sub", "mul", "tanh"],
    }
    from aeinterp_gradients.explainers import IntegratedGradients
    from aeinterp_perturbation.explainers import Permutation

    cases = {
        "samples": (Occlusion, model, data, {}),
        # built-ins at their default chunking: one chunk locally, 4 per worker on Ray (chunk_invariant)
        "samples/permutation": (Permutation, model, data, {"repeats": 5}),
        "samples/integrated_gr": (IntegratedGradients, model, data, {"steps": 16}),
        "symbolic": (SymbolicRegression, sym_model, sym_data, sym_params),
    }

    times: dict[tuple[str, str], float] = {}
    results: dict[tuple[str, str], Explanation] = {}
    chunks = {"samples": -(-n_samples // 5000), "symbolic": len(sym_params["dims"])}
    for case, (cls, m, d, params) in cases.items():
        explain(cls, m, d, seed=0, params=params)  # warm: imports and first-call costs, as "warm" on Ray
        times[case, "local"], results[case, "local"] = _timed(lambda: explain(cls, m, d, seed=0, params=params))
        print(f"{case}: local {times[case, 'local']:.2f} s", flush=True)
    rss = {"driver": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    for workers in (1, 2):
        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
        start_s = time.perf_counter() - t0
        executor = make_executor({"kind": "ray"})
        for case, (cls, m, d, params) in cases.items():
            times[case, f"ray{workers}-cold"], _ = _timed(lambda: explain(cls, m, d, seed=0, params=params, executor=executor))
            times[case, f"ray{workers}"], results[case, f"ray{workers}"] = _timed(
                lambda: explain(cls, m, d, seed=0, params=params, executor=executor)
            )
            executor.release()
            print(
                f"{case}: ray {workers} worker(s) {times[case, f'ray{workers}-cold']:.2f} s cold, {times[case, f'ray{workers}']:.2f} s warm",
                flush=True,
            )
        rss[f"worker (ray {workers})"] = _worker_rss_mb(ray, workers)
        print(f"ray.init with {workers} CPU(s): {start_s:.1f} s", flush=True)
        ray.shutdown()
    rss["driver"] = max(rss["driver"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    print(
        f"\n{'case':22s} {'local':>8s} {'ray1 cold':>10s} {'ray1':>8s} {'ray2 cold':>10s} {'ray2':>8s} {'overhead':>9s} {'speed-up':>9s}  same result"
    )
    for case in cases:
        t = {k: times[case, k] for k in ("local", "ray1-cold", "ray1", "ray2-cold", "ray2")}
        same = all(
            np.allclose(results[case, k].importance, results[case, "local"].importance, rtol=1e-9, atol=1e-12) for k in ("ray1", "ray2")
        )
        print(
            f"{case:22s} {t['local']:8.2f} {t['ray1-cold']:10.2f} {t['ray1']:8.2f} {t['ray2-cold']:10.2f} {t['ray2']:8.2f} "
            f"{t['ray1'] / t['local']:8.2f}x {t['local'] / t['ray2']:8.2f}x  {same}"
        )
        if chunks.get(case):
            c = chunks[case]
            print(
                f"{'':22s} per chunk (local): {t['local'] / c:.3f} s; per-task overhead on Ray: {(t['ray1'] - t['local']) / c:+.3f} s over {c} chunks"
            )
    print("\ntargets: overhead (ray1 / local) <= 1.2x; speed-up (local / ray2) >= 1.7x on the sample-heavy cases")
    print("peak RSS: " + ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items()))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (shared: timings are noisy, compare ratios)")


if __name__ == "__main__":
    main()
