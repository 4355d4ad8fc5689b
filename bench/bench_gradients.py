"""Benchmark: gradients of every latent at once vs Captum looped over targets.

Reference scenario (DESIGN.md): a tabular autoencoder with n features, encoder
Linear(n, 0.75n) -> ReLU -> Linear(0.75n, 0.5n). Rows:

* ``jacobian`` (saliency, all n/2 latents in one torch.func transform per
  block) vs Captum's ``Saliency`` called once per latent (``abs=False``);
* ``integrated_gradients`` (all latents share one path) vs Captum's
  ``IntegratedGradients`` called once per latent, same steps, rule
  (Gauss-Legendre) and zero baseline. The reference encoder starts with an
  affine layer then one ReLU and an affine code, so ours takes the
  factorised path with the activation-slope Jacobian; it is also timed with
  ``factorize: first_layer`` (autodiff from the first layer's output) and,
  for n <= 200 or with ``--compare-generic``, ``factorize: off``.

Captum's loop is timed on the first ``--ref-targets`` latents and
extrapolated to all of them when it would take too long (the output says so).
Max abs diff compares per-sample attributions of the timed latents. Peak
memory is the growth of the process's peak RSS during our run. Rows are
skipped when captum is not installed.

The LSTM rows: integrated gradients (32 Gauss-Legendre steps, zero
baseline) on the sequence engineer's two-stack LSTM autoencoder
(bench/_lstm.py, 6 features x 30 steps -> 4 latents, and a 64-latent
variant), ours (mode batched: one forward pass with the LSTM written out,
then one hand-written backward pass carrying every latent's cotangent at
once; with 64 latents the code head Linear(32, 64) is split off, so 32
cotangents of its input and one product with its weight) against Captum
looped over latents (one forward and one backward pass per latent), timed in
the same run.

    python bench/bench_gradients.py            # n = 200 and n = 1000
    python bench/bench_gradients.py --quick    # a small sanity run
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _trail  # noqa: E402
from bench_dependence import scenario  # noqa: E402  (the same reference autoencoder)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _ours(cls, model, data, params):  # noqa: ANN001, ANN202
    from aeinterp import explain

    before = peak_rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    result = explain(cls, model, data, seed=0, params={"split": "explain", "local_max_mb": 4096, **params})
    CPU["ours"] = time.process_time() - cpu
    return result, time.perf_counter() - start, peak_rss_mb() - before


#: runs faster than this many seconds are timed twice (ours and vmap alike) and the faster counts: one-off costs of a
#: first call on a new model (allocator growth, library thread pools) are a large part of them
FAST = 1.0

#: CPU seconds of our last run (on a loaded machine wall clocks mostly measure the wait for a core)
CPU: dict[str, float] = {}


def _report(
    quiet: bool, name: str, ours: float, grew: float, ref: float | None, timed: float, m: int, n_t: int, diff: float | None, extra: str
) -> None:
    if quiet:
        return
    print(f"  {name:<22} ours {ours:8.2f} s (peak RSS +{grew:.0f} MiB){extra}")
    if ref is None:
        print("  captum not installed: reference row skipped")
        return
    note = "" if m == n_t else f"  (timed on {m} of {n_t} targets: {timed:.1f} s, extrapolated x{n_t / m:.1f})"
    print(f"  {'':<22} captum loop {ref:8.2f} s{note}")
    print(f"  {'':<22} ratio {ref / ours:6.1f} x   max |diff| {diff:.2e}")


def run(
    n: int, samples: int, steps: int, ref_targets: int, quiet: bool = False, compare_generic: bool = False, jacobian_only: bool = False
) -> None:
    from aeinterp_gradients.explainers import IntegratedGradients, Jacobian

    model, data = scenario(n, samples)
    data_n = len(data.explain_index)
    has_captum = importlib.util.find_spec("captum") is not None
    x = torch.as_tensor(data.x_explain)
    if not quiet:
        print(f"\nn = {n} features x {n // 2} latents, {data_n} explained samples")
    module = model.module
    for p in module.parameters():
        p.requires_grad_(False)

    sal, ours, grew = _ours(Jacobian, model, data, {})
    if ours < FAST:  # a fast run: its first call on a new model carries one-off costs; best of two (vmap's below too)
        cpu = CPU["ours"]
        _, again, _ = _ours(Jacobian, model, data, {})
        ours, CPU["ours"] = (again, CPU["ours"]) if again < ours else (ours, cpu)
    n_t = sal.importance.shape[0]
    m = min(ref_targets, n_t)
    ref = diff = None
    timed = 0.0
    if has_captum:
        from captum.attr import Saliency

        s = Saliency(model.encode)
        start = time.perf_counter()
        maps = [s.attribute(x, target=t, abs=False) for t in range(m)]
        timed = time.perf_counter() - start
        ref = timed * n_t / m
        jac = torch.stack(maps, dim=1).numpy()
        diff = float(np.abs(sal.arrays["jacobian_mean"][:m] - jac.mean(axis=0)).max())
    _report(quiet, "jacobian (saliency)", ours, grew, ref, timed, m, n_t, diff, f", mode {sal.extras['mode']}")
    if not quiet and ref is not None:
        _trail.emit(
            f"jacobian/n{n}/captum-saliency",
            ref / ours,
            ours_s=ours,
            ref_s=ref,
            reference=f"Captum Saliency x {n_t} latents (timed on {m})",
            rss_mb=grew,
        )
    if not quiet:  # plain torch.func: every sample's full Jacobian, nothing reduced (ours also reduces and keeps local)
        enc = model.encode
        jr = torch.func.vmap(torch.func.jacrev(lambda v: enc(v.unsqueeze(0))[0]))
        jr(x[:2])  # its first-call costs out of the timing
        ours_cpu = CPU["ours"]
        before = peak_rss_mb()
        start, cpu = time.perf_counter(), time.process_time()
        full = jr(x)
        t_vmap = time.perf_counter() - start
        vmap_cpu = time.process_time() - cpu
        if t_vmap < FAST:
            del full
            start, cpu = time.perf_counter(), time.process_time()
            full = jr(x)
            again, again_cpu = time.perf_counter() - start, time.process_time() - cpu
            t_vmap, vmap_cpu = (again, again_cpu) if again < t_vmap else (t_vmap, vmap_cpu)
        grew_vmap = peak_rss_mb() - before
        rel = float((torch.as_tensor(sal.arrays["jacobian_mean"]) - full.mean(0)).abs().max() / full.abs().max())
        print(
            f"  {'':<22} vmap(jacrev) {t_vmap:8.2f} s (peak RSS +{grew_vmap:.0f} MiB)   ratio {t_vmap / ours:6.2f} x   "
            f"(CPU time: ours {ours_cpu:.2f} s, vmap {vmap_cpu:.2f} s, ratio {vmap_cpu / ours_cpu:.2f} x)   max rel diff of the mean Jacobian {rel:.1e}"
        )
        _trail.emit(
            f"jacobian/n{n}/vmap-jacrev",
            t_vmap / ours,
            ours_s=ours,
            ref_s=t_vmap,
            reference="torch.func.vmap(jacrev) over the samples",
            rss_mb=grew,
            ref_rss_mb=round(grew_vmap, 1),
            cpu_ratio=round(vmap_cpu / ours_cpu, 3),
        )
        del full

    if jacobian_only:
        return
    ig, ours, grew = _ours(IntegratedGradients, model, data, {"steps": steps, "baseline": "zero", "rule": "gausslegendre"})
    ref = diff = None
    if has_captum:
        from captum.attr import IntegratedGradients as CaptumIG

        cig = CaptumIG(model.encode)
        start = time.perf_counter()
        maps = [cig.attribute(x, baselines=0.0, target=t, n_steps=steps, method="gausslegendre") for t in range(m)]
        timed = time.perf_counter() - start
        ref = timed * n_t / m
        diff = float(np.abs(ig.local[:, :m] - torch.stack(maps, dim=1).numpy()).max()) if ig.local is not None else float("nan")
    _report(
        quiet,
        f"integrated_gradients ({steps} steps)",
        ours,
        grew,
        ref,
        timed,
        m,
        n_t,
        diff,
        f", {ig.extras['path']} path, mode {ig.extras['mode']}, completeness gap <= {ig.extras['max_relative_completeness_gap']:.1e} relative",
    )
    if not quiet and ref is not None:
        _trail.emit(
            f"integrated_gradients/n{n}/captum",
            ref / ours,
            ours_s=ours,
            ref_s=ref,
            reference=f"Captum IntegratedGradients x {n_t} latents, {steps} steps (timed on {m})",
            rss_mb=grew,
        )
    if ig.extras["path"] != "generic" and not quiet:  # the same explainer with less factorisation
        for level in ["first_layer", "off"] if compare_generic else ["first_layer"]:
            other, t_other, grew_other = _ours(
                IntegratedGradients, model, data, {"steps": steps, "baseline": "zero", "rule": "gausslegendre", "factorize": level}
            )
            print(
                f"  {'':<22} factorize: {level:<11} {t_other:8.2f} s (peak RSS +{grew_other:.0f} MiB, {other.extras['path']}, mode {other.extras['mode']}):"
                f" auto is {t_other / ours:.1f} x faster, max |diff| {np.abs(ig.local - other.local).max():.2e}"
            )


def lstm_rows(samples: int, steps: int, latents: list[int], ref_targets: int) -> None:
    from _lstm import trained
    from aeinterp_gradients.explainers import IntegratedGradients

    from aeinterp import ArrayDataset, TorchAutoencoder
    from aeinterp.data import element_names, make_groups

    for k in latents:
        module, x = trained(latent=k, n=samples + 32, epochs=3)
        for p in module.parameters():
            p.requires_grad_(False)
        names = element_names("sequence", x.shape[1:])
        data = ArrayDataset(
            x=x,
            kind="sequence",
            feature_names=names,
            groups=make_groups("sequence", x.shape[1:], feature_names=names),
            fit_index=np.arange(samples, samples + 32),
            explain_index=np.arange(samples),
        )
        model = TorchAutoencoder(module, x.shape[1:])
        params = {"steps": steps, "baseline": "zero", "rule": "gausslegendre"}
        ig, t_ours, grew = _ours(IntegratedGradients, model, data, params)
        print(f"\ntwo-stack LSTM AE 6 x 30 -> {k}, {samples} samples, {steps} steps")
        print(
            f"  {'integrated_gradients':<22} ours {t_ours:8.2f} s (peak RSS +{grew:.0f} MiB), mode {ig.extras['mode']}, code head {ig.extras.get('code_head')}"
        )
        if importlib.util.find_spec("captum") is None:
            continue
        from captum.attr import IntegratedGradients as CaptumIG

        xt = torch.as_tensor(data.x_explain)
        cig = CaptumIG(model.encode)
        m = min(ref_targets, k)
        start = time.perf_counter()
        maps = [cig.attribute(xt, baselines=0.0, target=t, n_steps=steps, method="gausslegendre") for t in range(m)]
        timed = time.perf_counter() - start
        diff = float(np.abs(ig.local[:, :m] - torch.stack(maps, dim=1).sum(2).numpy()).max())
        _report(False, "", t_ours, grew, timed * k / m, timed, m, k, diff, "")
        _trail.emit(
            f"integrated_gradients/lstm-6x30-{k}/captum",
            timed * k / m / t_ours,
            ours_s=t_ours,
            ref_s=timed * k / m,
            reference=f"Captum IntegratedGradients x {k} latents (timed on {m})",
            rss_mb=grew,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a fast sanity run (n = 40, 200 samples, 8 steps)")
    ap.add_argument("--n", type=int, nargs="*", default=[200, 1000])
    ap.add_argument("--samples", type=int, default=950, help="samples in the data set; a quarter (the explain split) is explained")
    ap.add_argument("--steps", type=int, default=32, help="integration steps for both tools")
    ap.add_argument(
        "--ref-targets",
        type=int,
        nargs="*",
        default=None,
        help="latents Captum is timed on, one per n (default: all for n <= 200, else 25)",
    )
    ap.add_argument("--lstm-only", action="store_true", help="only the LSTM rows")
    ap.add_argument("--lstm-samples", type=int, default=64, help="explained sequences in the LSTM rows")
    ap.add_argument(
        "--compare-generic",
        action="store_true",
        help="also time integrated gradients with factorize: off for every n (default: n <= 200 only; slow)",
    )
    ap.add_argument(
        "--jacobian-only",
        action="store_true",
        help="only the jacobian rows of the reference scenario (no integrated gradients, no LSTM rows)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, the reference scenario's)")
    ap.add_argument("--json", action="store_true", help="also print one BENCH_FIGURE json line per figure (bench/run_all.py)")
    args = ap.parse_args()
    _trail.enable(args.json)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.n, args.samples, args.steps = [40], 200, 8
    refs = args.ref_targets or [n // 2 if n <= 200 else 25 for n in args.n]
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    start = time.perf_counter()
    run(8, 40, 4, 4, quiet=True)  # one-off first-call costs (torch.func, captum) out of the timings
    print(f"warm-up {time.perf_counter() - start:.1f} s; torch threads: {torch.get_num_threads()}; timings depend on machine load")
    if not args.jacobian_only:
        lstm_rows(16 if args.quick else args.lstm_samples, args.steps, [4] if args.quick else [4, 64], 4 if args.quick else 8)
    if args.lstm_only:
        return
    for n, ref in zip(args.n, refs):
        run(n, args.samples, args.steps, ref, compare_generic=args.compare_generic or n <= 200, jacobian_only=args.jacobian_only)


if __name__ == "__main__":
    main()
