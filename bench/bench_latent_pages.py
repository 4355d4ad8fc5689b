"""How long one latent's page takes to build and render, from a results folder, at two sizes.

    python bench/bench_latent_pages.py            # 8 inputs x 4 latents, and 1,000 inputs x 16 latents
    python bench/bench_latent_pages.py --quick    # fewer repeats

Runs ``explain_all`` (deepshap, integrated gradients) on a planted model, writes the results folder, then
times, per latent (median over repeats, after the first page of the folder has read the arrays):
building the page (``latent_page(results, name)``), its HTML (``_repr_html_``) and its terminal text
(rich, 80 columns). The reference, measured in the same run, is ``load_results`` of the folder (reading
every step's arrays): the ratio says what a page costs against opening the results. Also prints
``report.html``'s size per latent and the peak RSS.
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

import aeinterp
from aeinterp.run.results import load_results
from aeinterp.testing.planted import planted_autoencoder


def median_time(fn, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def case(n_features: int, n_latents: int, n_samples: int, repeats: int) -> None:
    per = max(1, n_features // (n_latents * 4))
    deps = [tuple(range(j * per, (j + 1) * per)) for j in range(n_latents)]
    p = planted_autoencoder(n_features=n_features, dependencies=deps, n_samples=n_samples, linear=True)
    exp = aeinterp.explain_all(p.model, p.data.x, ["deepshap", "integrated_gradients"], progress=False, raise_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        exp.report(tmp)
        report_s = time.perf_counter() - start
        size = (Path(tmp) / "report.html").stat().st_size
        load_s = median_time(lambda: load_results(tmp), repeats)
        results = load_results(tmp)
        aeinterp.latent_page(results, "z0")  # the first page reads the arrays and the codes file
        names = [f"z{j}" for j in range(n_latents)]
        build = [median_time(lambda n=n: aeinterp.latent_page(results, n), repeats) for n in names[:4]]
        page = aeinterp.latent_page(results, "z1")
        html_s = median_time(page._repr_html_, repeats)
        rich_s = median_time(lambda: Console(file=io.StringIO(), width=80).print(page), repeats)
        worst = max(build) + html_s
        print(
            f"{n_features} inputs x {n_latents} latents, {len(exp.data.explain_index)} explained rows, local: {exp['deepshap'].extras.get('local')}"
        )
        print(f"  load_results (reference) {load_s * 1e3:8.1f} ms")
        print(
            f"  page build (median of 4 latents) {statistics.median(build) * 1e3:8.1f} ms   ratio to load_results {statistics.median(build) / load_s:6.2f}"
        )
        print(f"  page HTML {html_s * 1e3:8.1f} ms ({len(page._repr_html_()) / 1024:.0f} KiB)   terminal {rich_s * 1e3:8.1f} ms")
        print(f"  one page, build + HTML, worst of 4: {worst * 1e3:.1f} ms ({'under' if worst < 1 else 'OVER'} 1 s)")
        print(
            f"  whole report (explain_all's report(), plots included) {report_s:6.2f} s, report.html {size / 2**20:.2f} MiB = {size / n_latents / 1024:.0f} KiB per latent"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    repeats = 3 if args.quick else 7
    case(8, 4, 400, repeats)
    case(1000, 16, 400, repeats)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
