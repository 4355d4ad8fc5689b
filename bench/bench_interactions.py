"""Benchmark: Integrated Hessians of every latent at once vs a per-target Hessian loop.

Reference scenario (DESIGN.md): a tabular autoencoder with n features, encoder
Linear(n, 0.75n) -> act -> Linear(0.75n, 0.5n), so n/2 latents. The activation
is Tanh here (``--activation relu`` for the literal scenario): a ReLU network
has a zero Hessian almost everywhere, so its Integrated Hessians are main
effects only — correct, but a benchmark of nothing.

* ours: ``interactions`` (``method: integrated_hessians``). The reference
  encoder is Linear-act-Linear, so it takes the factorised path (the
  activation's slope and curvature integrated along the path, ``A`` applied
  once per sample, no autodiff through the network); also timed with
  ``factorize: off``: one ``vmap(jacfwd(jacrev(f)))`` transform per block of
  samples for all targets and all input directions;
* reference, in the style of ``path_explain``'s ``PathExplainerTorch.interactions``:
  one scalar output at a time; per output, the gradient with ``create_graph``
  and one more backward pass per input feature for the Hessian rows, on the
  same path points and weights (vectorised over samples and points, looped
  over targets and features).

The reference loop is timed on the first ``--ref-targets`` latents and
extrapolated linearly to all of them (the loop is per target; the output says
so). Max abs diff compares the signed mean matrices (over samples) of the
timed latents. Both are warmed up first (torch.func's first transform in a process
costs seconds of one-time set-up, not counted). Peak
memory is the growth of the process's peak RSS during our run.

    python bench/bench_interactions.py            # n = 200, all 100 latents
    python bench/bench_interactions.py --quick    # a small sanity run
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from aeinterp_interactions.explainer import Interactions
from aeinterp_interactions.hessians import log_weight_rule
from torch import nn

from aeinterp import run_explainer
from aeinterp.data import ArrayDataset, element_names, make_groups
from aeinterp.model import TorchAutoencoder


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ReferenceAE(nn.Module):
    def __init__(self, n: int, activation: str) -> None:
        super().__init__()
        h, k = int(0.75 * n), int(0.5 * n)
        act = nn.Tanh if activation == "tanh" else nn.ReLU
        self.encoder = nn.Sequential(nn.Linear(n, h), act(), nn.Linear(h, k))
        self.decoder = nn.Sequential(nn.Linear(k, h), act(), nn.Linear(h, n))


def scenario(n: int, samples: int, activation: str, seed: int = 0) -> tuple[TorchAutoencoder, ArrayDataset]:
    torch.manual_seed(seed)
    module = ReferenceAE(n, activation).eval()
    x = np.random.default_rng(seed).normal(size=(samples, n)).astype(np.float32)
    names = element_names("tabular", (n,))
    data = ArrayDataset(
        x=x,
        kind="tabular",
        feature_names=names,
        groups=make_groups("tabular", (n,), feature_names=names),
        fit_index=np.arange(samples),
        explain_index=np.arange(samples),
        name=f"reference-{n}",
    )
    return TorchAutoencoder(module, (n,)), data


def reference_loop(encoder: nn.Module, x: torch.Tensor, steps: int, targets: list[int]) -> torch.Tensor:
    """``(N, len(targets), E, E)`` Integrated Hessians, one target and one Hessian row at a time."""
    nodes, weights = log_weight_rule(steps)
    t = torch.as_tensor(nodes, dtype=x.dtype)
    w = torch.as_tensor(weights, dtype=x.dtype)
    n, e = x.shape
    d = x  # zero baseline
    points = (t.view(-1, 1, 1) * d.unsqueeze(0)).reshape(-1, e)
    out = torch.empty((n, len(targets), e, e))
    for q, k in enumerate(targets):  # path_explain: one scalar output per call
        p = points.clone().requires_grad_(True)
        y = encoder(p)[:, k].sum()
        (g,) = torch.autograd.grad(y, p, create_graph=True)  # (m*N, E)
        rows = []
        for i in range(e):  # one backward pass per input feature: row i of every point's Hessian
            (hi,) = torch.autograd.grad(g[:, i].sum(), p, retain_graph=True)
            rows.append(hi)
        hess = torch.stack(rows, dim=1).reshape(len(t), n, e, e)
        grad = g.detach().reshape(len(t), n, e)
        h_int = torch.einsum("k,kbij->bij", w * t, hess)
        g_int = torch.einsum("k,kbi->bi", w, grad)
        m = h_int * (d.unsqueeze(-1) * d.unsqueeze(-2))
        m += torch.diag_embed(g_int * d)
        out[:, q] = m.detach()
    return out


def run(n: int, samples: int, steps: int, ref_targets: int, activation: str, memory_mb: float, compare_generic: bool = True) -> None:
    model, data = scenario(n, samples, activation)
    k = model.latent_dim
    torch.set_num_threads(max(1, torch.get_num_threads()))
    x = torch.as_tensor(data.x_explain)
    # warm-up, untimed: torch.func's first transform in a process costs seconds of one-time set-up
    for factorize in ("auto", "off"):
        run_explainer(Interactions, model, data, params={"steps": 1, "max_samples": 1, "factorize": factorize})
    reference_loop(model.module.encoder, x[:1], 1, [0])
    before = peak_rss_mb()
    start = time.perf_counter()
    result = run_explainer(Interactions, model, data, params={"steps": steps, "max_samples": None, "memory_mb": memory_mb})
    ours = time.perf_counter() - start
    peak = peak_rss_mb() - before
    generic = None
    if compare_generic:
        start = time.perf_counter()
        run_explainer(
            Interactions,
            model,
            data,
            params={"steps": steps, "max_samples": None, "memory_mb": memory_mb, "factorize": "off", "keep_local": False},
        )
        generic = time.perf_counter() - start
    timed = list(range(min(ref_targets, k)))
    start = time.perf_counter()
    ref = reference_loop(model.module.encoder, x, steps, timed)
    ref_time = (time.perf_counter() - start) * k / len(timed)
    mean = ref.mean(dim=0).numpy()  # the signed mean matrix over samples, which ours keeps
    diff = float(np.abs(result.arrays["interaction_signed"][timed] - mean).max())
    scale = float(np.abs(mean).max())
    extrapolated = "" if len(timed) == k else f" (timed on {len(timed)} latents, x{k / len(timed):.0f})"
    print(f"n = {n}, {k} latents, {samples} samples, {steps} path points, {activation}")
    print(
        f"  ours (all latents, {result.extras['path']:>10})          {ours:8.2f} s   peak RSS +{peak:.0f} MiB   mode={result.extras['mode']}"
    )
    if generic is not None:
        print(f"  ours, factorize: off (torch.func)           {generic:8.2f} s   ({ref_time / generic:.1f}x vs the loop)")
    print(f"  per-target loop (path_explain style)   {ref_time:8.2f} s{extrapolated}")
    print(f"  speed-up                               {ref_time / ours:8.1f}x   max abs diff {diff:.2e} (largest entry {scale:.2e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 40, 8 samples")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--ref-targets", type=int, default=4)
    parser.add_argument("--activation", choices=["tanh", "relu"], default="tanh")
    parser.add_argument("--memory-mb", type=float, default=256.0)
    parser.add_argument("--no-generic", action="store_true", help="skip the factorize: off row")
    args = parser.parse_args()
    if args.quick:
        run(40, 8, args.steps, args.ref_targets, args.activation, args.memory_mb, not args.no_generic)
    else:
        run(200, args.samples, args.steps, args.ref_targets, args.activation, args.memory_mb, not args.no_generic)


if __name__ == "__main__":
    main()
