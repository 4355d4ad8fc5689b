"""Saving, loading and selecting a large result, against plain numpy on the same array in the same run.

    python bench/bench_result_object.py            # local: 20000 samples x 16 targets x 100 features (128 MB)
    python bench/bench_result_object.py --quick    # 5000 samples

``exp.save(path)`` copies ``local`` into the npz (no pickle); reference:
``np.save`` of the same array. ``aeinterp.load(path)`` memory-maps it, so it
should cost a small fraction of ``np.load`` (which reads everything), and
``exp.sel(sample=label)`` on the loaded result reads one row. Prints times,
ratios and the peak RSS (which stays near one copy of ``local``).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

import aeinterp
from aeinterp.explanation import Explanation


def _time(fn, repeats: int = 3) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    n = 5000 if parser.parse_args().quick else 20000
    rng = np.random.default_rng(0)
    local = rng.standard_normal((n, 16, 100), dtype=np.float32)
    names = [f"cell_{i}" for i in range(n)]
    exp = Explanation(
        importance=np.abs(local).mean(axis=0),
        feature_names=[f"g{i}" for i in range(100)],
        target_names=[f"z{j}" for j in range(16)],
        local=local,
        sample_names=names,
        explainer="bench",
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "exp"
        t_save = _time(lambda: exp.save(folder))
        t_np_save = _time(lambda: np.save(Path(tmp) / "ref.npy", local))
        t_load = _time(lambda: aeinterp.load(folder))
        t_np_load = _time(lambda: np.load(Path(tmp) / "ref.npy"))
        loaded = aeinterp.load(folder)
        t_sel = _time(lambda: loaded.sel(sample=names[n // 2], target="z3"))
        assert np.array_equal(np.asarray(loaded.sel(sample=names[n // 2]).local[0]), local[n // 2])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"local {local.shape} float32 = {local.nbytes / 2**20:.0f} MiB")
    print(f"save  {t_save:.3f} s   np.save {t_np_save:.3f} s   ratio {t_save / t_np_save:.2f}")
    print(f"load  {t_load:.3f} s   np.load {t_np_load:.3f} s   ratio {t_load / t_np_load:.3f} (memory-mapped)")
    print(f"sel(sample=label, target) on the loaded result: {t_sel * 1000:.1f} ms")
    print(f"repr: {len(repr(loaded))} chars; peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
