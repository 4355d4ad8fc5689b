"""The one-call Python API against the recipe path, on the reference scenario, in the same run.

    python bench/bench_api.py            # n = 200, deepshap and permutation
    python bench/bench_api.py --quick    # fewer repeats

``aeinterp.explain(module, X, method)`` builds the dataset, adapts and checks
the module and discovers the plugins on every call; the recipe path does that
once per run and then calls ``run_explainer`` per step. Prints the median time
of each over repeats and their ratio (the API's overhead), plus a whole
``Runner.run`` of the same step from a recipe (data file, state dict +
factory) for scale, and the peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scenario import scenario  # noqa: E402

import aeinterp  # noqa: E402
from aeinterp.plugins.manager import PluginHost  # noqa: E402


def median_time(fn, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    model, data = scenario(args.n)
    module, x = model.module, data.x_explain
    registry = PluginHost().registry
    print(
        f"n = {args.n} features, {model.latent_dim} latents, {len(x)} samples; torch threads {torch.get_num_threads()}; median of {repeats}"
    )
    for method, params in (("deepshap", {}), ("permutation", {"repeats": 1})):
        entry = registry[method]
        recipe_step = lambda: aeinterp.run_explainer(entry.cls, model, data, params=params)  # noqa: E731
        api_call = lambda: aeinterp.explain(module, x, method, progress=False, **params)  # noqa: E731
        np.testing.assert_allclose(recipe_step().importance, api_call().importance, rtol=1e-6)
        t_step, t_api = median_time(recipe_step, repeats), median_time(api_call, repeats)
        print(f"  {method:12} recipe step {t_step:7.3f} s   aeinterp.explain {t_api:7.3f} s   api / recipe {t_api / t_step:5.3f}x")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        np.save(folder / "x.npy", x)
        torch.save(module.state_dict(), folder / "sd.pt")
        (folder / "r.yaml").write_text(
            f"data: {{path: x.npy, split: {{explain_fraction: 0.5}}}}\nmodel: {{path: sd.pt, factory: '_scenario:ReferenceAE', kwargs: {{n: {args.n}}}}}\n"
            "explainers: [{name: permutation, params: {repeats: 1}}]\nreport: {terminal: false, plots: false, html: false}\noutput: out\n"
        )
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        start = time.perf_counter()
        outcome = aeinterp.Runner(quiet=True).run_file(folder / "r.yaml")
        total = time.perf_counter() - start
        step = outcome.explanations["permutation"].runtime_s
        print(f"  whole recipe run (load data + model, 1 permutation step on half the rows): {total:.3f} s, of which the step {step:.3f} s")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
