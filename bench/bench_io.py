"""Data loading: aeinterp's readers against the cell-by-cell CSV reader they replaced, in the same run.

    .venv/bin/python bench/bench_io.py          # ~34 MB CSV (17,000 x 110), Parquet, .npy, .h5ad
    .venv/bin/python bench/bench_io.py --quick  # ~4 MB

Each measurement runs in its own process so its peak RSS is its own. Printed:
seconds, ratio against the reference reader, peak RSS. The ``.npy`` rows show
memory mapping: loading a large file and taking the explain rows touches only
those rows (peak RSS well below the file size).
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MISSING = ("", "NA", "nan", "NaN")


def reference_read_csv(path: Path) -> np.ndarray:
    """The reader aeinterp had before (cell by cell in Python), kept here as the reference."""
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = [h.strip() for h in rows[0]], rows[1:]
    columns: dict[str, list[str]] = {h: [] for h in header}
    for row in body:
        for h, v in zip(header, row):
            columns[h].append(v)
    data = np.empty((len(body), len(header)), dtype=np.float32)
    for j, h in enumerate(header):
        data[:, j] = [np.nan if v.strip() in MISSING else float(v) for v in columns[h]]
    return data


def _anon_mb() -> float:
    """Anonymous (heap) memory now: a memory-mapped file's pages count in RSS but not here."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _peak_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it does not carry the parent's peak across fork/exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(kind: str, path: str) -> dict[str, float]:
    """Run one measurement in this process (called in a subprocess)."""
    import importlib

    from aeinterp.io.datasets import load_dataset

    for lib in {"csv": ["pandas"], "parquet": ["pandas", "pyarrow"], "h5ad": ["anndata"]}.get(kind, []):
        importlib.import_module(lib)  # import time is paid once per process, not per file: not counted
    base = _peak_mb()
    start = time.perf_counter()
    if kind == "reference_csv":
        x = reference_read_csv(Path(path))
        rows = x.shape[0]
    elif kind == "npy_explain_rows":
        data = load_dataset(path=path, explain_size=200)
        x = data.x_explain
        rows = x.shape[0]
    else:  # csv, parquet, h5ad, npy through aeinterp
        data = load_dataset(path=path)
        rows = data.x.shape[0]
        np.asarray(data.x).sum()  # touch every value, as training would
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": _peak_mb(), "base_mb": base, "rows": rows, "anon_mb": _anon_mb()}


def _measure(kind: str, path: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--one", kind, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return 0
    n, d = (2_000, 110) if args.quick else (17_000, 110)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d))
    names = [f"gene{i}" for i in range(d)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv_path = folder / "data.csv"
        with csv_path.open("w") as fh:
            fh.write(",".join(names) + "\n")
            for row in x:
                fh.write(",".join(repr(float(v)) for v in row) + "\n")
        files = {"csv": csv_path}
        import pandas as pd

        try:
            import pyarrow  # noqa: F401

            pd.DataFrame(x.astype(np.float32), columns=names).to_parquet(folder / "data.parquet")
            files["parquet"] = folder / "data.parquet"
        except ImportError:
            print("parquet: skipped (pip install 'aeinterp[parquet]')")
        try:
            import anndata

            anndata.AnnData(X=x.astype(np.float32), var=pd.DataFrame(index=names)).write_h5ad(folder / "data.h5ad")
            files["h5ad"] = folder / "data.h5ad"
        except ImportError:
            print("h5ad: skipped (pip install 'aeinterp[anndata]')")
        big = folder / "big.npy"
        big_rows = 50 * n
        out = np.lib.format.open_memmap(big, mode="w+", dtype=np.float32, shape=(big_rows, d))
        for s in range(0, big_rows, n):  # in blocks: this process stays small
            out[s : s + n] = rng.normal(size=(min(n, big_rows - s), d))
        out.flush()
        del out
        size_mb = csv_path.stat().st_size / 2**20
        print(f"{n} x {d} table: CSV {size_mb:.1f} MB; .npy for memory mapping {big.stat().st_size / 2**20:.0f} MB ({big_rows} rows)")
        ref = _measure("reference_csv", csv_path)
        print(f"{'reader':<34}{'seconds':>9}{'vs reference':>14}{'peak RSS MB':>13}")
        print(f"{'reference CSV (cell by cell)':<34}{ref['seconds']:9.2f}{1.0:13.2f}x{ref['peak_mb']:13.0f}")
        for kind, path in files.items():
            r = _measure(kind, path)
            print(f"{'aeinterp ' + kind:<34}{r['seconds']:9.2f}{ref['seconds'] / r['seconds']:13.2f}x{r['peak_mb']:13.0f}")
        r = _measure("npy_explain_rows", big)
        print(
            f"{'aeinterp .npy, 200 explain rows':<34}{r['seconds']:9.2f}{'':>14}{r['peak_mb']:13.0f}   (file {big.stat().st_size / 2**20:.0f} MB; "
            f"heap after loading {r['anon_mb']:.0f} MB: the peak counts the file's pages read once for the NaN check, which the kernel can drop)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
