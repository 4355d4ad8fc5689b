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

``--anytime`` runs each explainer as an anytime estimate with its 95 % intervals
(``anytime_tolerance: 0.05``, rounds of cap/4, cap/2, cap cells: the rounds stop early
once the intervals are tight, else at the cap, a sample budget that keeps the whole case
within ~25 minutes on 2 shared cores; ``ANYTIME_CAPS`` or ``--cells``), adds the signed
output effects (on ``max_samples`` reference cells; their interval is 1.96 SD / sqrt(n)
of the mean effect), and prints the cells used and the interval half-width relative to
each latent's largest importance (median and max over every latent's top 20 features).
``--keep DIR`` keeps the generated file (1.8 GB at full size) and reuses it next time;
``--delete`` removes it at the end:

    python bench/bench_singlecell.py drvi --scale 1 --anytime --keep /tmp/sc
    python bench/bench_singlecell.py scvi3383 --scale 1 --anytime --keep /tmp/sc --delete
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
    "output_effects": {},
}
#: --anytime: the most cells each explainer may use (a sample budget the anytime rounds stop at; a full pass takes days on 2 cores)
ANYTIME_CAPS = {"deepshap": 128, "integrated_gradients": 128, "permutation": 32, "output_effects": 2000}
STREAMED = ("deepshap", "integrated_gradients", "permutation")  # the explainers with anytime rounds and intervals
TOP = 20  # interval widths are summarised over each latent's top features


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


def interval_summary(exp: object, method: str) -> dict:
    """Cells used and the 95 % interval half-width relative to each latent's largest importance (median and max
    over every latent's top features): anytime's ``importance_halfwidth``; for output effects the standard error
    of the mean effect over its reference cells (1.96 SD / sqrt(n))."""
    if method == "output_effects":
        effect = np.asarray(exp.arrays["effect"], dtype=np.float64).reshape(exp.arrays["effect"].shape[0], -1)
        n = int(exp.extras["n_references"])
        half = 1.96 * np.asarray(exp.arrays["effect_sd"], dtype=np.float64).reshape(effect.shape) / np.sqrt(max(1, n))
        value, used, stopped = np.abs(effect), int(exp.extras["n_samples"]), "fixed sample"
    else:
        facts = exp.extras.get("anytime")
        if facts is None:
            return {"cells_used": None}
        value, half = np.asarray(exp.importance, dtype=np.float64), np.asarray(exp.arrays["importance_halfwidth"], dtype=np.float64)
        used, stopped = int(facts["samples_used"]), str(facts["stopped"])
    scale = np.abs(value).max(axis=1, keepdims=True)
    rel = np.divide(half, scale, out=np.zeros_like(half), where=scale > 0)
    top = np.argsort(-np.abs(value), axis=1)[:, :TOP]
    rel_top = np.take_along_axis(rel, top, axis=1)
    return {"cells_used": used, "rel_hw_median": float(np.median(rel_top)), "rel_hw_max": float(rel_top.max()), "stopped": stopped}


def method_params(method: str, cells: int, anytime: bool) -> dict:
    params = dict(METHODS[method])
    cap = ANYTIME_CAPS[method] if anytime and cells <= 0 else cells
    params["max_samples"] = cap
    if anytime and method in STREAMED:  # anytime rounds (cap/4, cap/2, cap) with their interval, stopping early if it is tight
        params.update(anytime_tolerance=0.05, first_round=max(2, cap // 4))
    return params


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
    exp = aeinterp.explain(net, adata, args.one, progress=False, **method_params(args.one, args.cells, args.anytime))
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
                **interval_summary(exp, args.one),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--scale", type=float, default=0.02, help="share of the cells generated (genes and model stay full size)")
    parser.add_argument(
        "--cells",
        type=int,
        default=None,
        help="cells explained per explainer (max_samples; default 64, with --anytime the caps in ANYTIME_CAPS)",
    )
    parser.add_argument(
        "--anytime", action="store_true", help="anytime estimates with 95 %% intervals (rounds up to the cap), output effects included"
    )
    parser.add_argument("--only", default=None, help="comma-separated explainers (default: all; output_effects only with --anytime)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--keep", help="folder to keep the generated .h5ad in and reuse on the next run (default: a temporary folder)")
    parser.add_argument("--delete", action="store_true", help="delete the kept .h5ad at the end")
    parser.add_argument("--caps", default="", help="--anytime caps per explainer, e.g. output_effects=256,permutation=16")
    args = parser.parse_args()
    if args.cells is None:
        args.cells = 0 if args.anytime else 64
    for item in filter(None, args.caps.split(",")):
        name, _, cap = item.partition("=")
        ANYTIME_CAPS[name.strip()] = int(cap)
    if args.one:
        one(args)
        return
    case = CASES[args.case]
    methods = (args.only or ",".join(m for m in METHODS if args.anytime or m != "output_effects")).split(",")
    n_cells = max(args.cells + 1, int(round(case["cells"] * args.scale)))
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="aeinterp-sc-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{args.case}-{n_cells}.h5ad"
    done = path.with_suffix(".nnz")  # written last: a kept file is complete
    t = time.perf_counter()
    if args.keep and done.exists() and path.exists():
        nnz, reused = int(done.read_text()), True
    else:
        nnz, reused = write_h5ad(path, n_cells, case["genes"], case["density"]), False
        done.write_text(str(nnz))
    gen_s = time.perf_counter() - t
    full_dense_gb = case["cells"] * case["genes"] * 4 / 1e9
    print(
        f"case {args.case}: {n_cells:,} of {case['cells']:,} cells (scale {args.scale}) x {case['genes']:,} genes, {nnz:,} stored values, "
        f"file {path.stat().st_size / 2**20:.0f} MiB " + ("reused" if reused else f"written in {gen_s:.0f} s")
    )
    print(
        f"dense float32: {n_cells * case['genes'] * 4 / 1e9:.2f} GB at this scale, {full_dense_gb:.1f} GB at full size; "
        f"model {case['genes']} -> {case['hidden']} -> {case['latent']}; budget {case['budget_gb']} GB peak RSS"
    )
    if args.anytime:
        print(
            f"{'explainer':22s} {'cells used':>10s} {'cap':>6s} {'95% half-width / max (top-20: median, max)':>44s} {'time s':>8s} {'peak RSS MiB':>13s}  within budget"
        )
    else:
        print(
            f"{'explainer':22s} {'cells':>6s} {'time s':>8s} {'s/cell':>8s} {'full size (extrap.)':>20s} {'peak RSS MiB':>13s}  within budget"
        )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for method in methods:
        cmd = [sys.executable, __file__, args.case, "--one", method, "--path", str(path), "--cells", str(args.cells)]
        cmd += ["--anytime"] if args.anytime else []
        cmd += ["--caps", args.caps] if args.caps else []
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((ln for ln in proc.stdout.splitlines()[::-1] if ln.startswith("{")), None)
        if proc.returncode != 0 or line is None:
            print(f"{method:22s} FAILED: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
            continue
        r = json.loads(line)
        ok = r["peak_rss_mb"] * 2**20 <= case["budget_gb"] * 1e9
        if args.anytime:
            cap = method_params(method, args.cells, True)["max_samples"]
            width = f"{r['rel_hw_median']:.3f}, {r['rel_hw_max']:.3f} ({r['stopped']})" if r.get("cells_used") is not None else "-"
            print(
                f"{method:22s} {r.get('cells_used') or 0:10d} {cap:6d} {width:>44s} {r['wall_s']:8.1f} {r['peak_rss_mb']:13.0f}  {'yes' if ok else 'NO'}",
                flush=True,
            )
            continue
        per_cell = r["wall_s"] / args.cells
        full_h = per_cell * case["cells"] / 3600
        print(
            f"{method:22s} {args.cells:6d} {r['wall_s']:8.1f} {per_cell:8.2f} {full_h:17.1f} h {r['peak_rss_mb']:13.0f}  {'yes' if ok else 'NO'}"
        )
    if not args.keep or args.delete:
        path.unlink()
        done.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
