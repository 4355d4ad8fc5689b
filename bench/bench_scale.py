"""Real-sized problems on one machine: time and peak RSS per explainer, each in its own process.

Scenarios (issue 14):

``ref5000``
    the reference architecture Linear(n, 0.75n)-ReLU-Linear(0.75n, 0.5n) at n = 5000
    (latent 2500), 950 samples; DeepSHAP's time is also printed against one full
    Jacobian on the same samples (the target: within 2x);
``gene``
    a gene autoencoder 20,000 -> 512 -> 64 (ReLU) on 10,000 samples held in a
    memory-mapped ``.npy``;
``anytime``
    10**6 x 200 synthetic data (memory-mapped), encoder 200 -> 64 -> 16: permutation
    and DeepSHAP with ``max_samples: auto`` against the same explainer on all samples:
    samples used, time ratio, and whether the top-5 ranking of every latent equals the
    full-data one and how many full-data values lie within the reported intervals;
``run``
    a 4-step run at n = 5000 through :class:`aeinterp.run.results.ResultsStore` (as the
    runner writes it) and ``load_results`` (as ``aeinterp report`` reads it): the
    share of the time spent outside the explainers, and the results.json size.

Every explainer runs in a fresh subprocess (``--one``) that prints its wall time and
its own peak RSS (``ru_maxrss``), so the figures do not include the other steps.
Where an explainer's cost (not its memory) needs fewer samples at this size, the
row's ``max_samples`` column says so; its memory does not depend on the sample count.

    python bench/bench_scale.py ref5000 gene anytime run     # all (long: run one at a time on a shared machine)
    python bench/bench_scale.py ref5000 --only deepshap,jacobian
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

HERE = Path(__file__).resolve().parent
LIMIT_MB = 4096

# explainer, params, note (max_samples is chosen for time, not memory)
REF5000 = [
    ("permutation", {"repeats": 1, "max_samples": 32}, "cost 5000 copies x samples"),
    ("zero_ablation", {"max_samples": 32}, "cost 5000 copies x samples"),
    ("mutual_information", {"max_samples": 200}, "12.5 M pairs, cost ~ N^1.5 per pair"),
    ("jacobian", {"max_samples": 8}, "47 GFLOP per sample"),
    ("integrated_gradients", {"max_samples": 8, "steps": 16}, "one summed Jacobian per sample"),
    ("deepshap", {"max_samples": 8, "n_background": 50}, "one multiplier map per sample"),
]
GENE = [
    ("permutation", {"repeats": 1, "max_samples": 1000}, "20,000 copies x samples"),
    ("zero_ablation", {"max_samples": 1000}, "20,000 copies x samples"),
    ("mutual_information", {"max_samples": 500}, "1.28 M pairs"),
    ("jacobian", {"max_samples": 500}, ""),
    ("integrated_gradients", {"max_samples": 500, "steps": 16}, ""),
    ("deepshap", {"max_samples": 500, "n_background": 50}, ""),
]


def _module(sizes: list[int]):  # noqa: ANN202
    import torch
    from torch import nn

    torch.manual_seed(0)
    enc, dec = [], []
    for a, b in zip(sizes[:-1], sizes[1:]):
        enc += [nn.Linear(a, b), nn.ReLU()]
    rev = sizes[::-1]
    for a, b in zip(rev[:-1], rev[1:]):
        dec += [nn.Linear(a, b), nn.ReLU()]
    module = nn.Module()
    module.encoder = nn.Sequential(*enc[:-1])
    module.decoder = nn.Sequential(*dec[:-1])
    return module.eval()


def _data_file(name: str, samples: int, n: int, work: Path) -> Path:
    """Correlated synthetic data (10 factors + noise) written once as ``.npy``, read memory-mapped."""
    path = work / f"{name}.npy"
    if not path.exists():
        rng = np.random.default_rng(0)
        load = rng.normal(size=(10, n)).astype(np.float32) / np.sqrt(10)
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(samples, n))
        for s in range(0, samples, 20_000):
            m = min(20_000, samples - s)
            out[s : s + m] = rng.normal(size=(m, 10)).astype(np.float32) @ load + 0.5 * rng.normal(size=(m, n)).astype(np.float32)
        out.flush()
        del out
    return path


def _setup(scenario: str, work: Path):  # noqa: ANN202
    from aeinterp import ArrayDataset, TorchAutoencoder
    from aeinterp.data import element_names, make_groups

    if scenario == "ref5000" or scenario == "run":
        n, samples, sizes = 5000, 950, [5000, 3750, 2500]
    elif scenario == "gene":
        n, samples, sizes = 20_000, 10_000, [20_000, 512, 64]
    else:
        n, samples, sizes = 200, 1_000_000, [200, 64, 16]
    x = np.load(_data_file(f"{scenario if scenario != 'run' else 'ref5000'}", samples, n, work), mmap_mode="r")
    names = element_names("tabular", (n,))
    idx = np.arange(samples)
    data = ArrayDataset(
        x=x,
        kind="tabular",
        feature_names=names,
        groups=make_groups("tabular", (n,), feature_names=names),
        fit_index=idx,
        explain_index=idx,
        name=scenario,
    )
    return TorchAutoencoder(_module(sizes), (n,)), data


def _registry():  # noqa: ANN202
    from aeinterp.plugins.manager import PluginHost

    return PluginHost().registry


def one(scenario: str, name: str, params: dict, work: Path) -> None:
    """Run one explainer (in this process) and print a JSON line with time and peak RSS."""
    from aeinterp import explain

    model, data = _setup(scenario, work)
    cls = _registry()[name].cls
    start = time.perf_counter()
    result = explain(cls, model, data, params=params)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    extra = {k: result.extras[k] for k in ("path", "mode", "method", "n_samples", "local", "local_note") if k in result.extras}
    if "anytime" in result.extras:
        extra["anytime"] = {k: result.extras["anytime"][k] for k in ("samples_used", "stopped")}
        np.save(work / f"anytime-{name}-auto.npy", np.stack([result.importance, result.arrays["importance_halfwidth"]]))
    elif scenario == "anytime":
        np.save(work / f"anytime-{name}-full.npy", result.importance)
    print(json.dumps({"name": name, "wall_s": wall, "peak_mb": peak, "extras": extra}))


def _child(scenario: str, name: str, params: dict, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--one", scenario, name, json.dumps(params), "--work", str(work)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"name": name, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]}
    return json.loads(lines[-1])


def _table(title: str, rows: list[tuple[str, dict, str, dict]]) -> None:
    print(f"\n{title}\n{'explainer':22} {'max_samples':>11} {'time s':>9} {'peak RSS MiB':>13}  {'<= 4 GB':7}  notes")
    for name, params, note, r in rows:
        if "error" in r:
            print(f"{name:22} {str(params.get('max_samples')):>11} {'FAILED':>9}  {r['error']}")
            continue
        ok = "yes" if r["peak_mb"] <= LIMIT_MB else "NO"
        facts = ", ".join(f"{k}={v}" for k, v in r["extras"].items() if k != "local_note")
        print(f"{name:22} {str(params.get('max_samples')):>11} {r['wall_s']:9.1f} {r['peak_mb']:13.0f}  {ok:7}  {note}; {facts}")


def scale(scenario: str, cases, work: Path, only: set[str] | None) -> None:  # noqa: ANN001
    rows = []
    for name, params, note in cases:
        if only and name not in only:
            continue
        rows.append((name, params, note, _child(scenario, name, params, work)))
        print(f"  done {name}: {rows[-1][3]}", flush=True)
    _table(f"scenario {scenario}", rows)
    times = {n: r.get("wall_s") for n, _, _, r in rows}
    if times.get("deepshap") and times.get("jacobian"):
        print(f"\ndeepshap / jacobian time on the same samples: {times['deepshap'] / times['jacobian']:.2f}x (target <= 2x)")


def anytime(work: Path, only: set[str] | None) -> None:
    from aeinterp.toolkit.streaming import same_ranking

    cases = [("permutation", {"repeats": 1}), ("deepshap", {"n_background": 20})]
    print("\nscenario anytime: 10**6 x 200 memory-mapped, encoder 200 -> 64 -> 16")
    for name, params in cases:
        if only and name not in only:
            continue
        auto = _child("anytime", name, {**params, "max_samples": "auto", "anytime_tolerance": 0.02, "first_round": 2000}, work)
        full = _child("anytime", name, params, work)
        if "error" in auto or "error" in full:
            print(f"  {name}: FAILED {auto.get('error') or full.get('error')}")
            continue
        imp, hw = np.load(work / f"anytime-{name}-auto.npy")
        ref = np.load(work / f"anytime-{name}-full.npy")
        same = np.array_equal(np.argsort(-imp, axis=1)[:, :5], np.argsort(-ref, axis=1)[:, :5])
        tied = same_ranking(imp, hw, ref, 5)  # swaps only between features whose values are within the intervals
        inside = float((np.abs(imp - ref) <= hw).mean())
        used = auto["extras"]["anytime"]["samples_used"]
        print(
            f"  {name:12} auto: {used} samples in {auto['wall_s']:.1f} s ({auto['peak_mb']:.0f} MiB); all 10**6: {full['wall_s']:.1f} s "
            f"({full['peak_mb']:.0f} MiB); time ratio {auto['wall_s'] / full['wall_s']:.3f}; top-5 of every latent equal: {same}, "
            f"equal up to ties within the intervals: {tied}; "
            f"full-data values within the 95 % intervals: {100 * inside:.1f} %"
        )


def run_share(work: Path) -> None:
    """A 4-step n = 5000 run through the results store: time outside the explainers."""
    from aeinterp import explain
    from aeinterp.run.results import ResultsStore, load_results

    model, data = _setup("run", work)
    reg = _registry()
    out = Path(tempfile.mkdtemp(prefix="bench-scale-run-", dir=work))
    steps = [
        ("jacobian", {"max_samples": 4}),
        ("integrated_gradients", {"max_samples": 4, "steps": 8}),
        ("deepshap", {"max_samples": 4, "n_background": 20}),
        ("zero_ablation", {"max_samples": 4}),
    ]
    start = time.perf_counter()
    store = ResultsStore(out, recipe={}, model={}, data=data.describe(), plugins=[])
    inside = 0.0
    for name, params in steps:
        t = time.perf_counter()
        result = explain(reg[name].cls, model, data, params=params)
        inside += time.perf_counter() - t
        store.add(name, result)
    store.finish("complete")
    total = time.perf_counter() - start
    t = time.perf_counter()
    back = load_results(out)
    top = {a: e.top_features(3) for a, e in back.explanations.items()}  # what a report reads first
    t_load = time.perf_counter() - t
    size = (out / "results.json").stat().st_size / 2**20
    files = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    print(
        f"\nscenario run: 4 steps at n = 5000, 4 samples each: {total:.1f} s in all, {inside:.1f} s in the explainers, "
        f"{100 * (total - inside) / total:.1f} % outside (target <= 20 %); results.json {size:.2f} MiB, all files {files:.0f} MiB; "
        f"load_results + top features {t_load:.2f} s ({len(top)} steps); peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", default=["ref5000", "gene", "anytime", "run"])
    parser.add_argument("--only", default="", help="comma-separated explainer names")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "aeinterp-bench-scale"), help="folder for the generated data")
    parser.add_argument("--one", nargs=3, metavar=("SCENARIO", "NAME", "PARAMS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.one:
        one(args.one[0], args.one[1], json.loads(args.one[2]), work)
        return
    only = set(filter(None, args.only.split(","))) or None
    import torch

    print(f"torch threads: {torch.get_num_threads()}; each explainer in its own process; peak RSS = that process's ru_maxrss")
    for sc in args.scenarios:
        if sc == "ref5000":
            scale("ref5000", REF5000, work, only)
        elif sc == "gene":
            scale("gene", GENE, work, only)
        elif sc == "anytime":
            anytime(work, only)
        elif sc == "run":
            run_share(work)
        else:
            parser.error(f"unknown scenario {sc!r}")


if __name__ == "__main__":
    main()
