"""Single-cell data at real size (issue #25): sparse ``.h5ad`` read backed, explained a chunk of rows at a time.

Cases
-----
``drvi``
    DRVI issue #90's shape: 126,000 cells x 37,000 genes, ~5 % non-zero (233 M
    stored values, 2.8 GB as CSR; 18.6 GB dense in float32), a 37,000 -> 512 -> 128
    autoencoder (ReLU, untrained: timing and memory do not depend on the weights);
    DeepSHAP, integrated gradients and permutation for all 128 latents. Target: each
    within 4 GB peak RSS.
``scvi3383``
    scvi-tools issue #3383's shape: 55,000 cells x 10,000 genes, a 10,000 -> 128 -> 10
    autoencoder (scvi-tools' default widths). Target: within 2 GB.

The matrix is generated in blocks of rows and written straight into an ``.h5ad``
(AnnData's CSR layout, through h5py), so the generator never holds it either. Every
explainer then runs in a fresh subprocess (``--one``) on ``anndata.read_h5ad(path,
backed="r")`` passed to :func:`aeinterp.explain`, and prints its wall time and its own
peak RSS (``ru_maxrss``).

``--scale`` multiplies the number of **cells** (genes and the model stay full size, so
the memory per chunk is the real one); ``--cells`` sets how many cells each explainer
explains (``max_samples``; the background / baseline rows come from all cells). The
full-size time is extrapolated linearly in the explained cells and printed as such:
on a loaded 2-core machine the full pass takes hours, which is what ``max_samples:
auto`` (anytime, with intervals) is for.

    python bench/bench_singlecell.py drvi --scale 0.02 --cells 64
    python bench/bench_singlecell.py scvi3383 --scale 0.1 --cells 256
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = {
    "drvi": {"cells": 126_000, "genes": 37_000, "hidden": 512, "latent": 128, "density": 0.05, "budget_gb": 4.0},
    "scvi3383": {"cells": 55_000, "genes": 10_000, "hidden": 128, "latent": 10, "density": 0.05, "budget_gb": 2.0},
}
METHODS = {
    "deepshap": {"n_background": 50, "local": "none"},
    "integrated_gradients": {"local": "none", "steps": 16},
    "permutation": {"repeats": 1, "local": "none"},
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_h5ad(path: Path, n_cells: int, n_genes: int, density: float, seed: int = 0, block: int = 256) -> int:
    """A sparse counts matrix (log1p values) written to ``path`` in row blocks; returns the number of stored values."""
    import anndata
    import h5py
    import pandas as pd

    write_elem = (anndata.io if hasattr(anndata, "io") and hasattr(anndata.io, "write_elem") else anndata.experimental).write_elem
    rng = np.random.default_rng(seed)
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        g = f.create_group("X")
        g.attrs["encoding-type"], g.attrs["encoding-version"] = "csr_matrix", "0.1.0"
        g.attrs["shape"] = (n_cells, n_genes)
        data = g.create_dataset("data", shape=(0,), maxshape=(None,), dtype="f4", chunks=(2**18,))
        indices = g.create_dataset("indices", shape=(0,), maxshape=(None,), dtype="i4", chunks=(2**18,))
        nnz = 0
        for s in range(0, n_cells, block):
            m = min(block, n_cells - s)
            rows, cols = np.nonzero(rng.random((m, n_genes), dtype=np.float32) < density)
            vals = np.log1p(rng.poisson(2.0, size=len(cols)) + 1).astype(np.float32)
            counts = np.bincount(rows, minlength=m)
            indptr[s + 1 : s + m + 1] = nnz + np.cumsum(counts)
            data.resize((nnz + len(cols),))
            indices.resize((nnz + len(cols),))
            data[nnz:] = vals
            indices[nnz:] = cols.astype(np.int32)
            nnz += len(cols)
        g.create_dataset("indptr", data=indptr)
        write_elem(f, "obs", pd.DataFrame(index=[f"cell{i}" for i in range(n_cells)]))
        write_elem(f, "var", pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)]))
        for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            write_elem(f, key, {})
    return nnz


def one(args: argparse.Namespace) -> None:
    """One explainer in this (fresh) process: prints a JSON line with time and peak RSS."""
    os.environ["AEINTERP_BACKED_MB"] = "0"
    import anndata
    import torch
    from torch import nn

    import aeinterp

    case = CASES[args.case]
    torch.manual_seed(0)
    net = nn.Module()
    net.encoder = nn.Sequential(nn.Linear(case["genes"], case["hidden"]), nn.ReLU(), nn.Linear(case["hidden"], case["latent"]))
    net.decoder = nn.Sequential(nn.Linear(case["latent"], case["hidden"]), nn.ReLU(), nn.Linear(case["hidden"], case["genes"]))
    adata = anndata.read_h5ad(args.path, backed="r")
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    exp = aeinterp.explain(net, adata, args.one, progress=False, max_samples=args.cells, **METHODS[args.one])
    wall = time.perf_counter() - start
    print(
        json.dumps(
            {
                "method": args.one,
                "wall_s": wall,
                "peak_rss_mb": peak_rss_mb(),
                "rss_after_load_mb": rss_before,
                "importance": list(exp.importance.shape),
                "explained": args.cells,
                "storage": exp.extras["data"]["storage"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--scale", type=float, default=0.02, help="share of the cells generated (genes and model stay full size)")
    parser.add_argument("--cells", type=int, default=64, help="cells explained per explainer (max_samples)")
    parser.add_argument("--only", default=",".join(METHODS), help="comma-separated explainers")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--keep", help="folder to keep the generated .h5ad in (default: a temporary folder)")
    args = parser.parse_args()
    if args.one:
        one(args)
        return
    case = CASES[args.case]
    n_cells = max(args.cells + 1, int(round(case["cells"] * args.scale)))
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="aeinterp-sc-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{args.case}-{n_cells}.h5ad"
    t = time.perf_counter()
    nnz = write_h5ad(path, n_cells, case["genes"], case["density"])
    gen_s = time.perf_counter() - t
    full_dense_gb = case["cells"] * case["genes"] * 4 / 1e9
    print(
        f"case {args.case}: {n_cells:,} of {case['cells']:,} cells (scale {args.scale}) x {case['genes']:,} genes, {nnz:,} stored values, "
        f"file {path.stat().st_size / 2**20:.0f} MiB written in {gen_s:.0f} s"
    )
    print(
        f"dense float32: {n_cells * case['genes'] * 4 / 1e9:.2f} GB at this scale, {full_dense_gb:.1f} GB at full size; "
        f"model {case['genes']} -> {case['hidden']} -> {case['latent']}; budget {case['budget_gb']} GB peak RSS"
    )
    print(
        f"{'explainer':22s} {'cells':>6s} {'time s':>8s} {'s/cell':>8s} {'full size (extrap.)':>20s} {'peak RSS MiB':>13s}  within budget"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for method in args.only.split(","):
        cmd = [sys.executable, __file__, args.case, "--one", method, "--path", str(path), "--cells", str(args.cells)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((ln for ln in proc.stdout.splitlines()[::-1] if ln.startswith("{")), None)
        if proc.returncode != 0 or line is None:
            print(f"{method:22s} FAILED: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
            continue
        r = json.loads(line)
        per_cell = r["wall_s"] / args.cells
        full_h = per_cell * case["cells"] / 3600
        ok = r["peak_rss_mb"] * 2**20 <= case["budget_gb"] * 1e9
        print(
            f"{method:22s} {args.cells:6d} {r['wall_s']:8.1f} {per_cell:8.2f} {full_h:17.1f} h {r['peak_rss_mb']:13.0f}  {'yes' if ok else 'NO'}"
        )
    if not args.keep:
        path.unlink()


if __name__ == "__main__":
    main()
