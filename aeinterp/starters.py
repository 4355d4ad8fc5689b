"""The example recipes that ship inside the wheel, and ``aeinterp init``, which writes one into a folder.

The recipes are ``configs/*.yaml`` (shipped as the package data
``aeinterp/recipes``); ``genes`` also writes the small seeded CSV it reads,
in pandas' default layout (the cell ids as an unnamed first column).
"""

from __future__ import annotations

from pathlib import Path

from .errors import AeinterpError

__all__ = ["STARTERS", "init_recipe", "shipped_recipes"]


#: short names of the example recipes (`aeinterp init NAME`); every shipped recipe's own name works too
STARTERS = {"quickstart": "quickstart", "image": "image_perturbation", "sequence": "deepshap_sequence", "genes": None}

_GENES_RECIPE = """\
# aeinterp run genes.yaml
# A genes-style table: 300 cells x 40 genes in genes.csv, written by pandas'
# df.to_csv() (the cell ids are its first, unnamed column: `index: 0` reads
# them as row labels). Three gene programs drive the expression; the
# autoencoder's latents should each pick up the genes of one program.
seed: 0
data:
  path: genes.csv
  index: 0                      # the cell ids: per-sample results are named by them
  split: {explain_fraction: 0.25, seed: 0}
  standardize: true
model:
  builtin: mlp
  latent_dim: 3
  options: {hidden: [32]}
  train: {epochs: 60, lr: 0.003}
explainers:
  - name: deepshap
  - name: permutation
    params: {repeats: 3}
output: out/genes
"""


def _genes_csv(path: Path) -> None:
    """A seeded genes x cells table: three programs of eight genes each, sixteen noise genes, cell ids first."""
    import numpy as np

    rng = np.random.default_rng(0)
    cells, programs = 300, rng.standard_normal((300, 3))
    x = 0.3 * rng.standard_normal((cells, 40))
    for p in range(3):
        x[:, 8 * p : 8 * p + 8] += programs[:, p : p + 1] * rng.uniform(0.6, 1.4, 8)
    genes = [f"prog{g // 8}_gene{g % 8}" if g < 24 else f"noise_gene{g - 24}" for g in range(40)]
    lines = ["," + ",".join(genes)] + [f"cell_{i:03d}," + ",".join(f"{v:.4f}" for v in row) for i, row in enumerate(x)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def shipped_recipes() -> dict[str, str]:
    """Every recipe shipped in the package, by name (the file's stem)."""
    from importlib.resources import files

    folder = files("aeinterp") / "recipes"
    return {p.name[:-5]: p.read_text(encoding="utf-8") for p in folder.iterdir() if p.name.endswith(".yaml")} if folder.is_dir() else {}


def init_recipe(name: str, folder: Path, *, force: bool = False) -> tuple[Path, list[str]]:
    """Write the example recipe ``name`` (and, for ``genes``, the CSV it reads) into ``folder``; return the files written."""
    import re

    shipped = shipped_recipes()
    recipe = STARTERS.get(name, name)
    if recipe is None:  # the genes example: a recipe and the CSV it reads
        files: dict[str, str | None] = {"genes.yaml": _GENES_RECIPE, "genes.csv": None}
    elif recipe in shipped:
        text = shipped[recipe].replace(f"# aeinterp run configs/{recipe}.yaml", f"# aeinterp run {name}.yaml", 1)
        text = re.sub(r"(?m)^output: \.\./out/", "output: out/", text)  # results beside the recipe, not above it
        files = {f"{name}.yaml": text}
    else:
        raise AeinterpError(f"no example recipe {name!r}; choose one of {', '.join([*STARTERS, *sorted(shipped)])}")
    folder.mkdir(parents=True, exist_ok=True)
    there = [f for f in files if (folder / f).exists()]
    if there and not force:
        raise AeinterpError(f"{', '.join(there)} exists in {folder}; pass --force to overwrite")
    for fname, content in files.items():
        if content is None:
            _genes_csv(folder / fname)
        else:
            (folder / fname).write_text(content, encoding="utf-8")
    return folder, list(files)
