"""The latent-size law: train the built-in autoencoder at several latent sizes, fit error = f(size).

A CLI-free entry to :func:`aeinterp_symbolic.law.latent_size_law` (the function is the API;
this script only calls it and prints the result with its timings).

    python bench/bench_symbolic_law.py --quick
    python bench/bench_symbolic_law.py --data breast_cancer --sizes 2 4 8 16 32 --epochs 150
"""

from __future__ import annotations

import argparse
import json
import time

from aeinterp_symbolic.law import latent_size_law

from aeinterp.io.datasets import load_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few epochs, sizes 1 2 4 8")
    ap.add_argument("--data", default="breast_cancer", help="a bundled dataset (breast_cancer, wine, digits, sines, synthetic_tabular)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--backend", default="pyoperon", choices=["pyoperon", "pysr"])
    ap.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.epochs = [1, 2, 4, 8], 30
    data = load_dataset(builtin=args.data)
    start = time.perf_counter()
    law = latent_size_law(
        data,
        sizes=args.sizes,
        train={"epochs": args.epochs, "lr": 3e-3},
        params={"backend": args.backend, "generations": 100, "population_size": 300, "time_budget": 10},
    )
    wall = time.perf_counter() - start
    print(f"{args.data}: {law.architecture} autoencoders at latent sizes {law.sizes} ({args.epochs} epochs each), {wall:.1f} s in all")
    print("\n".join(law.lines()))
    print(f"LaTeX: {law.latex}")
    if args.json:
        print(json.dumps(law.to_json(), indent=1))


if __name__ == "__main__":
    main()
