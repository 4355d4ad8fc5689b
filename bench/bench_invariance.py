"""Label preservation of the built-in supervised VAE on the digits recipe, over seeds, with its spread.

Trains the model of configs/invariance_digits.yaml (the recipe's options and training) once
per seed, runs the `invariance` step with the recipe's params (prior sampling) on that seed,
and prints per seed: label preservation, head accuracy, leakage, the collapse check (KL per
nuisance dim, decoded variation, collapsed dims), and the mean +- std over the seeds against
the target 0.9. `--no-cycle` trains the same model without the cycle term, for comparison;
`--max-samples` explains more samples than the recipe's 16 for a tighter estimate per seed.

    python bench/bench_invariance.py              # 5 seeds, the recipe as it is
    python bench/bench_invariance.py --quick      # 2 seeds, fewer epochs
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import yaml
from aeinterp_invariance.explainers import Invariance

from aeinterp import explain
from aeinterp.io.datasets import load_dataset
from aeinterp.models.loading import adapt, build_builtin
from aeinterp.models.training import TrainConfig

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "invariance_digits.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-cycle", action="store_true", help="train without the cycle term (the model before issue 15)")
    ap.add_argument("--max-samples", type=int, default=None, help="explained samples per seed (default: the recipe's)")
    args = ap.parse_args()
    recipe = yaml.safe_load(RECIPE.read_text())
    m = recipe["model"]
    options = dict(m["options"])
    if args.no_cycle:
        options["cycle"] = 0.0
    train = dict(m["train"])
    params = dict(recipe["explainers"][0]["params"])
    params.update(classifier_epochs=0, n_figures=0)  # the plain-classifier comparison is not what is measured here
    if args.max_samples:
        params["max_samples"] = args.max_samples
    if args.quick:
        args.seeds, train["epochs"] = 2, 10
    data = load_dataset(builtin="digits")
    rows = []
    print(f"digits recipe: latent {m['latent_dim']}, options {options}, train {train}; invariance {params}")
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        module, _ = build_builtin(
            "supervised_vae", data, latent_dim=m["latent_dim"], options=options, train=TrainConfig(seed=seed, **train)
        )
        model = adapt(module, data)
        r = explain(Invariance, model, data, target="prediction", seed=seed, params=params)
        e, c = r.extras, r.extras["collapse"]
        rows.append((e["label_preservation"], e["head_accuracy"], e["leakage"]))
        kl = "n/a" if c["kl_per_dim"] is None else ", ".join(f"{v:.3f}" for v in c["kl_per_dim"])
        print(
            f"seed {seed}: preservation {e['label_preservation']:.3f}  head accuracy {e['head_accuracy']:.3f}  leakage {e['leakage']:.2f}  "
            f"({time.perf_counter() - t0:.0f} s)\n        KL per nuisance dim [{kl}]  decoded variation "
            f"[{', '.join(f'{v:.3f}' for v in c['decoded_variation'])}]  collapsed {c['collapsed']}  informative={e['label_preservation_informative']}",
            flush=True,
        )
    pres = np.array([r[0] for r in rows])
    print(
        f"\nlabel preservation over {len(pres)} seeds: mean {pres.mean():.3f} +- {pres.std():.3f} (min {pres.min():.3f}, max {pres.max():.3f}); "
        f"target >= 0.9: {'REACHED' if pres.mean() >= 0.9 else 'NOT reached'}"
    )
    print(
        f"head accuracy mean {np.mean([r[1] for r in rows]):.3f}; leakage mean {np.mean([r[2] for r in rows]):.2f}; "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
