"""GPU check: the quickstart and every explainer on the reference scenario, on the CPU and on a CUDA GPU.

Run on a machine with a CUDA GPU (after ``python3 .ci/dev.py setup``)::

    .venv/bin/python bench/gpu_check.py            # n = 1000 reference scenario
    .venv/bin/python bench/gpu_check.py --quick    # n = 200, fewer samples

It prints, for the quickstart recipe (training + every step) and for each
explainer on the reference scenario (encoder Linear(n, 0.75n)-ReLU-Linear(0.75n,
0.5n), 950 samples), the CPU time, the GPU time, the speed-up, and the largest
difference between the two results (they must agree to float32 rounding). It
also runs the CUDA tests of ``tests/test_device.py``. On a machine without a GPU
it says so and exits 1 without running anything.
"""

from __future__ import annotations

import argparse
import copy
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

EXPLAINERS = [
    ("permutation", {"repeats": 2}),
    ("zero_ablation", {"baseline": "mean"}),
    ("mutual_information", {"max_samples": 500}),
    ("jacobian", {}),
    ("integrated_gradients", {"steps": 32}),
    ("deepshap", {"n_background": 50}),
]


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn):  # noqa: ANN001, ANN202
    _sync()
    start = time.perf_counter()
    out = fn()
    _sync()
    return out, time.perf_counter() - start


def quickstart(device: str) -> float:
    from rich.console import Console

    from aeinterp.runner import Runner

    with tempfile.TemporaryDirectory() as out:
        runner = Runner(console=Console(file=io.StringIO()), quiet=True, device=device, cache=False)
        _, seconds = _timed(lambda: runner.run_file(ROOT / "configs" / "quickstart.yaml", out=out))
    return seconds


def explainers(n: int, samples: int, devices: tuple[str, str] = ("cpu", "cuda")) -> list[tuple[str, float, float, float]]:
    from _scenario import scenario

    from aeinterp import run_explainer
    from aeinterp.model import TorchAutoencoder
    from aeinterp.runner import Runner

    model, data = scenario(n, samples)
    registry = Runner().registry
    rows = []
    for name, params in EXPLAINERS:
        results, times = [], []
        cls = registry[name].cls
        for device in devices:
            adapted = TorchAutoencoder(copy.deepcopy(model.module), model.input_shape, device=device)
            # warm-up, not counted: numba compilation, CUDA kernel loading, cuBLAS handles
            run_explainer(cls, adapted, data, params=params, seed=0)
            result, seconds = _timed(lambda: run_explainer(cls, adapted, data, params=params, seed=0))  # noqa: B023
            results.append(result.importance)
            times.append(seconds)
        diff = float(np.max(np.abs(results[0] - results[1])) / max(1e-12, float(np.max(np.abs(results[0])))))
        rows.append((name, times[0], times[1], diff))
        print(
            f"{name:<22} {devices[0]} {times[0]:8.2f} s   {devices[1]} {times[1]:8.2f} s   speed-up {times[0] / times[1]:6.1f}x   max rel. diff {diff:.1e}",
            flush=True,
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 200 and 300 samples instead of n = 1000 and 950")
    parser.add_argument("--skip-tests", action="store_true", help="do not run the CUDA tests of tests/test_device.py")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU visible to torch: nothing to compare (run this on a GPU machine)")
        return 1
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, CPU threads {torch.get_num_threads()}")
    cpu, gpu = quickstart("cpu"), quickstart("cuda")
    print(f"{'quickstart (train+all)':<22} cpu {cpu:8.2f} s   cuda {gpu:8.2f} s   speed-up {cpu / gpu:6.1f}x", flush=True)
    n, samples = (200, 300) if args.quick else (1000, 950)
    print(f"reference scenario n = {n}, {samples} samples:")
    rows = explainers(n, samples)
    worst = max(r[3] for r in rows)
    status = 0 if worst < 1e-3 else 2
    print(f"largest relative difference CPU vs GPU: {worst:.1e} ({'ok' if status == 0 else 'TOO LARGE'})")
    if not args.skip_tests:
        status |= subprocess.call(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_device.py")], cwd=ROOT
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
