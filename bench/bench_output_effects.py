"""Benchmark of ``output_effects`` (signed output effects streamed over rows).

Reference scenario of DESIGN.md (tabular, n = 200 and 400 features, 0.5n latents, 950
samples). Ours streams ``rows x latents x {low, median, high}`` codes through
the decoder in chunks bounded by ``memory_mb`` and keeps only ``latents x
outputs`` sums. The reference is the loop a user would write: for each latent
and each of the three values, decode all rows with that latent replaced, keep
the three decodings and average. Both must agree (max abs difference printed);
the ratio is reference time / our time measured in the same run, and peak RSS
is the process maximum after each phase (it only grows).

With scvi-tools installed (``--scvi``), a LinearSCVI is trained for a few
epochs on scanpy's pbmc68k_reduced and the Spearman correlation of each
latent's ranking with ``get_loadings()`` is printed for the old
``latent_traversal`` importance (input spread), the new output-unit
importance, and the signed log-scale effect of ``output_effects``.

Run ``python bench/bench_output_effects.py`` (``--quick`` for a fast run).
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
from _scenario import scenario  # noqa: E402
from aeinterp_visualize._common import decode, encode
from aeinterp_visualize.output_effects import OutputEffects

from aeinterp import explain


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reference(model, codes: np.ndarray, values: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """Per latent, per value: decode every row with the latent replaced; mean of high minus low."""
    k = codes.shape[1]
    out = []
    for j in range(k):
        dec = []
        for s in (0, 2):
            z = codes.copy()
            z[:, j] = values[s, j]
            dec.append(decode(model, z, 2048))
        out.append((dec[1] - dec[0]).mean(axis=0))
    return np.stack(out)


def bench(n: int) -> None:
    model, data = scenario(n)
    x = np.asarray(data.x_explain)
    codes = encode(model, x, 2048)
    values = np.quantile(codes, [0.05, 0.5, 0.95], axis=0)
    base = _peak_mb()
    t = time.perf_counter()
    ours = explain(OutputEffects, model, data, params={"max_samples": None, "memory_mb": 64})
    t_ours = time.perf_counter() - t
    peak_ours = _peak_mb()
    t = time.perf_counter()
    ref = reference(model, codes, values)
    t_ref = time.perf_counter() - t
    diff = float(np.abs(ours.arrays["effect"] - ref).max())
    k = codes.shape[1]
    print(
        f"n={n:5d} latents={k} rows={len(x)}: output_effects {t_ours:.2f}s, per-latent loop {t_ref:.2f}s, "
        f"ratio {t_ref / t_ours:.2f}x; max|diff| {diff:.2e}; peak RSS {base:.0f} -> {peak_ours:.0f} MB (ours) -> {_peak_mb():.0f} MB (loop); "
        f"all-at-once array would be {len(x) * k * 3 * n * 8 / 2**20:.0f} MB"
    )


def bench_scvi(epochs: int) -> None:
    import anndata
    import scanpy as sc
    import scvi
    from aeinterp_visualize.traversal import LatentTraversal
    from scipy.stats import spearmanr
    from torch import nn

    from aeinterp import TorchAutoencoder
    from aeinterp.data import ArrayDataset, make_groups, split_indices

    class Adapter(nn.Module):
        def __init__(self, m: nn.Module) -> None:
            super().__init__()
            self.m = m

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return self.m.z_encoder(torch.log1p(x), torch.zeros(x.shape[0], 1))[0].loc

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            one = torch.zeros(z.shape[0], 1)
            return self.m.decoder(self.m.dispersion, z, one, one)[0]

    adata = sc.datasets.pbmc68k_reduced()
    counts = np.round(np.expm1(adata.raw.X.toarray() if hasattr(adata.raw.X, "toarray") else adata.raw.X)).astype(np.float32)
    ad = anndata.AnnData(counts)
    ad.var_names = list(adata.raw.var_names)
    torch.set_num_threads(1)
    scvi.settings.seed = 0
    scvi.model.LinearSCVI.setup_anndata(ad)
    lin = scvi.model.LinearSCVI(ad, n_latent=6)
    lin.train(max_epochs=epochs, batch_size=128, accelerator="cpu", enable_progress_bar=False)
    loadings = lin.get_loadings().to_numpy().T
    names = list(ad.var_names)
    fit, exp = split_indices(len(counts), seed=0)
    data = ArrayDataset(
        x=counts,
        kind="tabular",
        feature_names=names,
        groups=make_groups("tabular", (len(names),), feature_names=names),
        fit_index=fit,
        explain_index=exp,
    )
    model = TorchAutoencoder(Adapter(lin.module.eval()), (len(names),))
    old = explain(LatentTraversal, model, data, params={"normalize": "input_spread"})
    new = explain(LatentTraversal, model, data)
    eff = explain(OutputEffects, model, data, params={"scale": "log"})

    def rho(a: np.ndarray, b: np.ndarray) -> str:
        return " ".join(f"{spearmanr(a[j], b[j]).statistic:+.2f}" for j in range(len(a)))

    print(f"LinearSCVI ({epochs} epochs, pbmc68k_reduced, {len(names)} genes), Spearman per latent:")
    print(f"  latent_traversal importance, input_spread vs |loadings|: {rho(old.importance, np.abs(loadings))}")
    print(f"  latent_traversal signed effect (output units) vs loadings: {rho(new.arrays['effect'], loadings)}")
    print(f"  output_effects signed log effect vs loadings:            {rho(eff.arrays['effect'], loadings)}")
    print(f"  output_effects |log effect| vs |loadings|:               {rho(eff.importance, np.abs(loadings))}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scvi", action="store_true", help="also the LinearSCVI comparison (needs scvi-tools)")
    args = parser.parse_args()
    for n in (100,) if args.quick else (200, 400):
        bench(n)
    if args.scvi:
        bench_scvi(3 if args.quick else 20)


if __name__ == "__main__":
    main()
