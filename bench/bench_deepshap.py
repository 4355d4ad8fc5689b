"""deepshap (native backend) against shap.DeepExplainer and Captum's DeepLiftShap, in the same run.

    python bench/bench_deepshap.py            # n = 200 and 1000, deep SiLU / Tanh encoders
    python bench/bench_deepshap.py --quick    # n = 200 only, small subsets of the references
    python bench/bench_deepshap.py --reference-only --sizes 200 1000 --shap-samples 10 --profile
                                              # the reference scenario only, with the share of time outside matmuls

Reference scenario (DESIGN.md): encoder Linear(n, 0.75n)-ReLU-Linear(0.75n, 0.5n),
950 samples, 100 background samples, all latent dims. shap.DeepExplainer is timed
on ``--shap-samples`` samples (default 50 at n = 200, 5 at n = 1000, 5 / - with
--quick) and extrapolated linearly to 950: it loops over samples x latents with
one backward pass each, so its time is linear in the number of samples; pass
``--shap-samples 950`` to time it on everything. The deep scenario (Linear(200,150)-act-Linear(150,150)-act-
Linear(150,100)) compares with Captum's DeepLiftShap called once per latent,
timed on ``--captum-latents`` latents and extrapolated to all 100. Captum has no
SiLU rule (it silently uses the gradient there), so values are compared on the
Tanh twin, and for SiLU only Captum's additivity error is shown.

The LSTM scenario is the sequence engineer's two-stack LSTM autoencoder
(shared/USERS.md; bench/_lstm.py: 6 features x 30 steps -> 4 latents, hidden
32, briefly trained): native exact DeepSHAP (the LSTM written out as gates)
against shap's GradientExplainer (expected gradients, 200 draws per sample,
shap's DeepExplainer has no LSTM rule) and Captum's DeepLiftShap looped over
the latents (no LSTM rule either: gradients through the fused kernel), time
and additivity side by side; the references are timed on ``--lstm-ref-samples``
samples and extrapolated.

Peak memory is the process's peak RSS (resource.getrusage) right after our
run, before the reference tools run; the result itself (950 x latents x n
float32) is part of it and printed separately.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _trail  # noqa: E402
from _scenario import scenario  # noqa: E402
from aeinterp_deepshap.explainer import DeepShap  # noqa: E402

from aeinterp import TorchAutoencoder, explain  # noqa: E402
from aeinterp.toolkit.perturb import sample_background  # noqa: E402

SEED = 0
N_BACKGROUND = 100


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_share(model, data, repeats: int = 3) -> tuple[float, float]:  # noqa: ANN001
    """``(CPU seconds, share of them outside matrix products)`` of the fastest of ``repeats`` native runs.

    CPU time, not wall time (on a loaded machine most of the wall time is
    other processes'); each torch matrix product (matmul, bmm, mm, addmm,
    linear, ``@``) is timed by a ``TorchFunctionMode`` around the call
    (a few dozen calls per run: no profiler overhead on the rest), the
    share outside is everything else: Python, numpy and other torch ops.
    """
    from torch.nn import functional as F
    from torch.overrides import TorchFunctionMode

    products = {
        torch.matmul,
        torch.bmm,
        torch.mm,
        torch.addmm,
        torch.baddbmm,
        F.linear,
        torch.Tensor.__matmul__,
        torch.Tensor.matmul,
        torch.Tensor.bmm,
        torch.Tensor.mm,
    }
    spent = [0.0]

    class Timed(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            if func not in products:
                return func(*args, **(kwargs or {}))
            start = time.process_time()
            try:
                return func(*args, **(kwargs or {}))
            finally:
                spent[0] += time.process_time() - start

    runs = []
    for _ in range(repeats):  # the fastest run: the least disturbed by other processes sharing the caches
        spent[0] = 0.0
        start = time.process_time()
        with Timed():
            ours(model, data)
        cpu = time.process_time() - start
        runs.append((cpu, max(0.0, 1.0 - spent[0] / cpu)))
    return min(runs)


def background(data) -> np.ndarray:  # noqa: ANN001
    """The background ``explain`` draws with this seed (no ``max_samples``: the first draw is the background)."""
    return sample_background(data.x_fit, N_BACKGROUND, np.random.default_rng(SEED))


def used_background(result, data) -> np.ndarray:  # noqa: ANN001
    """The background rows the run used (its ``fit_index``), so the references explain against the same background."""
    rows = result.arrays.get("fit_index")
    return background(data) if rows is None else np.asarray(data.x)[rows]


def ours(model, data, keep: bool = False):  # noqa: ANN001, ANN201
    """One timed run; ``keep``: every per-sample value kept in memory (``local_max_mb: 4096``), else the default
    ``local: auto`` (kept when it fits in 64 MiB; the reference scenario's 72 MiB / 1.8 GiB stream to summaries)."""
    params = {"n_background": N_BACKGROUND, **({"local_max_mb": 4096} if keep else {})}
    start, cpu = time.perf_counter(), time.process_time()
    result = explain(DeepShap, model, data, seed=SEED, params=params)
    CPU["ours"] = time.process_time() - cpu
    return time.perf_counter() - start, result


#: CPU seconds of the last timed run of each tool: on a loaded machine wall clocks mostly measure the wait for a core
CPU: dict[str, float] = {}


def per_element(result) -> np.ndarray:  # noqa: ANN001
    return result.arrays.get("phi", result.local)


def shap_deep(encoder: nn.Module, x: np.ndarray, bg: np.ndarray) -> tuple[float, np.ndarray]:
    import shap

    start, cpu = time.perf_counter(), time.process_time()
    explainer = shap.DeepExplainer(encoder, torch.as_tensor(bg))
    values = explainer.shap_values(torch.as_tensor(x), check_additivity=False)
    elapsed = time.perf_counter() - start
    CPU["shap"] = time.process_time() - cpu
    return elapsed, np.asarray(values).reshape(len(x), x.shape[1], -1).transpose(0, 2, 1)


def captum_looped(encoder: nn.Module, x: np.ndarray, bg: np.ndarray, latents: list[int]) -> tuple[float, np.ndarray]:
    from captum.attr import DeepLiftShap

    dl = DeepLiftShap(encoder)
    xt, bt = torch.as_tensor(x), torch.as_tensor(bg)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = [dl.attribute(xt, bt, target=k).detach().numpy() for k in latents]
    return time.perf_counter() - start, np.stack(out, axis=1)


def reference_scenario(n: int, shap_samples: int, profile: bool = False) -> None:
    model, data = scenario(n)
    encoder = model.module.encoder
    for p in encoder.parameters():
        p.requires_grad_(False)
    t_ours, result = ours(model, data)
    rss = peak_rss_mb()
    m = min(shap_samples, len(data.x_explain))
    bg = used_background(result, data)
    from aeinterp_deepshap._engine import deeplift_shap

    with torch.no_grad():  # the same engine on the first m samples: the values the timed run reduced
        phi = deeplift_shap(encoder, torch.as_tensor(data.x_explain[:m]), torch.as_tensor(bg)).phi.numpy()
    t_shap, ref = shap_deep(encoder, data.x_explain[:m], bg)
    t_shap_all = t_shap * len(data.x_explain) / m
    note = "measured" if m == len(data.x_explain) else f"extrapolated from {m} samples"
    k = result.importance.shape[0]
    print(
        f"\n== reference scenario n={n}: Linear({n},{int(0.75 * n)})-ReLU-Linear({int(0.75 * n)},{k}), {len(data.x_explain)} samples, {N_BACKGROUND} background, {k} latents"
    )
    print(
        f"  deepshap native        {t_ours:9.2f} s   ({result.extras['factorised_nonlinearities']} factorised nonlinearity, "
        f"{result.extras['samples_per_chunk']} samples per chunk)"
    )
    print(f"  shap.DeepExplainer     {t_shap_all:9.2f} s   ({note}: {t_shap:.2f} s for {m})")
    cpu_ratio = CPU["shap"] * len(data.x_explain) / m / CPU["ours"]
    print(
        f"  ratio shap / native    {t_shap_all / t_ours:9.1f} x   (CPU time: native {CPU['ours']:.2f} s, shap {CPU['shap'] * len(data.x_explain) / m:.1f} s, ratio {cpu_ratio:.1f} x)"
    )
    print(f"  max |diff| (first {m} samples, all latents): {np.abs(phi[:m] - ref).max():.2e}   (max |phi| {np.abs(ref).max():.2e})")
    print(f"  additivity max rel error (native): {result.extras['additivity']['max_rel']:.2e}")
    print(
        f"  peak RSS after native: {rss:.0f} MiB (local: {result.extras['local']}; all of phi would be {len(data.x_explain) * k * n * 4 / 2**20:.0f} MiB; "
        f"estimated working memory {result.extras['estimated_peak_mb']} MiB, bound memory_mb=1024)"
    )
    _trail.emit(
        f"deepshap/reference-n{n}",
        t_shap_all / t_ours,
        ours_s=t_ours,
        ref_s=t_shap_all,
        reference=f"shap.DeepExplainer ({note})",
        rss_mb=rss,
        cpu_ratio=round(cpu_ratio, 2),
        ours_cpu_s=round(CPU["ours"], 3),
    )
    if profile:
        cpu, outside = matmul_share(model, data)
        print(f"  profile (CPU time {cpu:.2f} s, matrix products timed): {outside:.0%} of the run outside matrix products")
        _trail.emit(
            f"deepshap/reference-n{n}/share-in-matmul",
            1.0 - outside,
            ours_s=cpu,
            reference="share of the run's CPU time in torch matrix products (1 - share outside)",
        )


class DeepAE(nn.Module):
    def __init__(self, act: type[nn.Module], n: int = 200) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n, 150), act(), nn.Linear(150, 150), act(), nn.Linear(150, 100))
        self.decoder = nn.Sequential(nn.Linear(100, 150), act(), nn.Linear(150, n))


def deep_scenario(act: type[nn.Module], captum_latents: int, samples: int) -> None:
    _, data = scenario(200, samples=samples)
    torch.manual_seed(SEED)
    module = DeepAE(act).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    model = TorchAutoencoder(module, (200,))
    t_ours, result = ours(model, data, keep=True)
    rss = peak_rss_mb()
    latents = list(range(captum_latents))
    t_cap, cap = captum_looped(module.encoder, data.x_explain, used_background(result, data), latents)
    k = result.importance.shape[0]
    t_cap_all = t_cap * k / len(latents)
    phi = per_element(result)
    print(
        f"\n== deep encoder Linear(200,150)-{act.__name__}-Linear(150,150)-{act.__name__}-Linear(150,100), {len(data.x_explain)} samples, {N_BACKGROUND} background"
    )
    print(f"  deepshap native                 {t_ours:9.2f} s   ({result.extras['samples_per_chunk']} samples per chunk)")
    print(f"  Captum DeepLiftShap x {k} latents {t_cap_all:9.2f} s   (extrapolated from {len(latents)} latents: {t_cap:.2f} s)")
    print(f"  ratio captum / native           {t_cap_all / t_ours:9.1f} x")
    delta = result.arrays["target_values"][:, latents] - result.arrays["expected_value"][latents]
    cap_err = np.abs(cap.sum(axis=2) - delta).max() / np.abs(delta).mean()
    print(f"  additivity max rel error: native {result.extras['additivity']['max_rel']:.2e}, captum {cap_err:.2e}")
    if act is nn.SiLU:
        print(f"  max |diff| vs captum: {np.abs(phi[:, latents] - cap).max():.2e} (captum has no SiLU rule: it uses the gradient there)")
    else:
        print(
            f"  max |diff| vs captum (first {len(latents)} latents): {np.abs(phi[:, latents] - cap).max():.2e}   (max |phi| {np.abs(cap).max():.2e})"
        )
    print(f"  peak RSS after native: {rss:.0f} MiB")
    _trail.emit(
        f"deepshap/deep-{act.__name__.lower()}-200",
        t_cap_all / t_ours,
        ours_s=t_ours,
        ref_s=t_cap_all,
        reference=f"Captum DeepLiftShap x {k} latents (extrapolated from {len(latents)})",
        rss_mb=rss,
    )


def lstm_scenario(samples: int, ref_samples: int, n_background: int) -> None:
    import shap
    from _lstm import trained
    from captum.attr import DeepLiftShap

    from aeinterp import ArrayDataset
    from aeinterp.data import element_names, make_groups

    module, x = trained(n=samples + n_background, epochs=10)
    for p in module.parameters():
        p.requires_grad_(False)
    names = element_names("sequence", x.shape[1:])
    fit, exp = np.arange(samples, samples + n_background), np.arange(samples)
    data = ArrayDataset(
        x=x,
        kind="sequence",
        feature_names=names,
        groups=make_groups("sequence", x.shape[1:], feature_names=names),
        fit_index=fit,
        explain_index=exp,
    )
    model = TorchAutoencoder(module, x.shape[1:])
    start = time.perf_counter()
    result = explain(DeepShap, model, data, seed=SEED, params={"n_background": n_background, "background": "all"})
    t_ours = time.perf_counter() - start
    rss = peak_rss_mb()
    xe, bg = torch.as_tensor(x[exp]), torch.as_tensor(x[fit])
    m = min(ref_samples, samples)
    with torch.no_grad():
        delta = (module.encode(xe[:m]) - module.encode(bg).mean(0)).numpy()

    def additivity(phi: np.ndarray) -> float:  # (m, k, ...) -> max relative error, as the explainer measures it
        err = np.abs(phi.reshape(m, phi.shape[1], -1).sum(2) - delta)
        return float((err / np.abs(delta).mean(0)).max())

    class Encode(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.inner.encode(t)

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ge = shap.GradientExplainer(Encode(), bg)
        sv = np.asarray(ge.shap_values(xe[:m], nsamples=200, rseed=SEED))  # (m, T, F, k)
    t_shap = (time.perf_counter() - start) * samples / m
    sv = np.moveaxis(sv, -1, 1)
    dl = DeepLiftShap(Encode())
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cap = np.stack([dl.attribute(xe[:m], bg, target=k).detach().numpy() for k in range(delta.shape[1])], axis=1)
    t_cap = (time.perf_counter() - start) * samples / m
    print(f"\n== two-stack LSTM autoencoder 6 x 30 -> 4 (hidden 32), {samples} samples, {n_background} background, all 4 latents")
    print(
        f"  deepshap native (exact)            {t_ours:9.2f} s   method {result.extras['method']}, additivity max rel {result.extras['additivity']['max_rel']:.2e} (float32)"
    )
    print(
        f"  shap GradientExplainer (200 draws) {t_shap:9.2f} s   additivity max rel {additivity(sv):.2e}   ratio {t_shap / t_ours:.1f} x   (timed on {m} samples)"
    )
    print(
        f"  Captum DeepLiftShap x 4 latents    {t_cap:9.2f} s   additivity max rel {additivity(cap):.2e}   ratio {t_cap / t_ours:.1f} x   (timed on {m} samples)"
    )
    print(f"  peak RSS after native: {rss:.0f} MiB; {result.extras['samples_per_chunk']} samples per chunk")
    _trail.emit(
        "deepshap/lstm-6x30-4",
        t_shap / t_ours,
        ours_s=t_ours,
        ref_s=t_shap,
        reference=f"shap GradientExplainer, 200 draws (timed on {m} samples)",
        rss_mb=rss,
    )
    _trail.emit(
        "deepshap/lstm-6x30-4/captum",
        t_cap / t_ours,
        ours_s=t_ours,
        ref_s=t_cap,
        reference=f"Captum DeepLiftShap x 4 latents (timed on {m} samples)",
        rss_mb=rss,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="n = 200 only, small reference subsets")
    parser.add_argument(
        "--shap-samples",
        type=int,
        default=None,
        help="samples shap.DeepExplainer is timed on (default: 50 at n=200, 5 at n=1000; 5 with --quick)",
    )
    parser.add_argument("--captum-latents", type=int, default=None, help="latents Captum is timed on (default 10; 2 with --quick)")
    parser.add_argument("--lstm-only", action="store_true", help="only the two-stack LSTM scenario")
    parser.add_argument("--lstm-ref-samples", type=int, default=8, help="samples the LSTM references are timed on")
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=None, help="n of the reference scenario (default 200 1000; 200 with --quick)"
    )
    parser.add_argument("--reference-only", action="store_true", help="only the reference scenario (no LSTM, no deep encoders)")
    parser.add_argument(
        "--profile", action="store_true", help="also profile one native run per size: the share of time outside matrix products"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, the reference scenario's; shap runs on the same)")
    parser.add_argument("--json", action="store_true", help="also print one BENCH_FIGURE json line per figure (bench/run_all.py)")
    args = parser.parse_args()
    _trail.enable(args.json)
    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; the machine may be shared, timings are wall clock")
    warm_model, warm_data = scenario(
        8, samples=40
    )  # one-off first-call costs (imports, plugin discovery, shap's setup) out of both timings
    ours(warm_model, warm_data)
    shap_deep(warm_model.module.encoder, warm_data.x_explain[:2], background(warm_data)[:10])
    if args.reference_only:
        for n in args.sizes or ([200] if args.quick else [200, 1000]):
            reference_scenario(n, args.shap_samples or (5 if args.quick else (50 if n == 200 else 5)), args.profile)
        return
    lstm_scenario(
        samples=16 if args.quick else 128,
        ref_samples=min(args.lstm_ref_samples, 4 if args.quick else 128),
        n_background=20 if args.quick else N_BACKGROUND,
    )
    if args.lstm_only:
        return
    sizes = args.sizes or ([200] if args.quick else [200, 1000])
    for n in sizes:
        default = 5 if args.quick else (50 if n == 200 else 5)
        reference_scenario(n, args.shap_samples or default, args.profile)
    latents = args.captum_latents or (2 if args.quick else 10)
    for act in (nn.SiLU, nn.Tanh):
        deep_scenario(act, latents, samples=200 if args.quick else 950)


if __name__ == "__main__":
    main()
