"""``latent_codes.npz``: what the latent pages need from the model, kept beside the results.

Written once after a run (the model is at hand then), read by ``aeinterp report OUT``, ``aeinterp show
OUT --latent z3`` and ``load_results(OUT)`` users, so every page is rebuilt from the results folder alone.

Members (all plain arrays, no pickle): ``codes`` (explained rows x latents, float32), ``latent_names``,
``sample_index`` (rows of the explain split), ``effects`` (latents x output groups, signed, see
:func:`aeinterp.toolkit.codes.output_effects`), ``effect_range`` (latents x 2: the low / high value),
``output_names``; where the data has them ``labels`` (explained rows' class codes) and ``label_names``,
``factors`` / ``factor_names``; for image and sequence data ``examples`` (the raw rows the pages show:
each latent's top and quantile samples) with ``example_index`` (their row in ``codes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CODES_FILE", "LatentCodes", "compute_codes", "save_codes", "load_codes", "example_rows", "MAX_CODE_VALUES", "MAX_EXAMPLE_MB"]

CODES_FILE = "latent_codes.npz"
MAX_CODE_VALUES = 20_000_000  # explained rows x latents kept (float32: 80 MB at most)
MAX_EXAMPLE_MB = 16.0
TOP_EXAMPLES = 5
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass
class LatentCodes:
    """The latent codes of the explained rows and what goes with them (see the module docstring)."""

    codes: np.ndarray
    latent_names: list[str]
    sample_index: np.ndarray
    effects: np.ndarray | None = None
    effect_range: np.ndarray | None = None
    output_names: list[str] = field(default_factory=list)
    labels: np.ndarray | None = None
    label_names: list[str] = field(default_factory=list)
    factors: np.ndarray | None = None
    factor_names: list[str] = field(default_factory=list)
    examples: np.ndarray | None = None
    example_index: np.ndarray | None = None

    def column(self, name: str) -> np.ndarray:
        return np.asarray(self.codes[:, self.latent_names.index(name)], dtype=np.float64)

    def known_factors(self) -> tuple[np.ndarray, list[str]] | None:
        """Factors for MIG / DCI / SAP: the ``factors`` columns, else the label as one factor."""
        if self.factors is not None and self.factors.size:
            return np.asarray(self.factors, dtype=np.float64), list(self.factor_names)
        if self.labels is not None and len(np.unique(self.labels)) > 1:
            return np.asarray(self.labels, dtype=np.float64)[:, None], ["label"]
        return None

    def example(self, row: int) -> np.ndarray | None:
        if self.examples is None or self.example_index is None:
            return None
        hit = np.flatnonzero(self.example_index == row)
        return None if hit.size == 0 else np.asarray(self.examples[hit[0]])


def example_rows(codes: np.ndarray) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Per latent: the rows of its ``TOP_EXAMPLES`` largest values, and the rows nearest its ``QUANTILES``."""
    top, quant = {}, {}
    for j in range(codes.shape[1]):
        z = codes[:, j]
        top[j] = [int(i) for i in np.argsort(-z, kind="stable")[:TOP_EXAMPLES]]
        qs = np.quantile(z, QUANTILES)
        quant[j] = [int(np.argmin(np.abs(z - q))) for q in qs]
    return top, quant


def compute_codes(model: Any, data: Any, names: list[str] | None = None) -> LatentCodes | None:
    """Encode the explained rows of ``data`` and decode two-point traversals (None when it does not fit or fails)."""
    from ..toolkit.codes import latent_codes, output_effects

    x = np.asarray(data.x_explain)
    k = int(model.latent_dim)
    if x.shape[0] * k > MAX_CODE_VALUES:
        return None
    codes = latent_codes(model, x)
    names = list(names) if names is not None and len(names) == codes.shape[1] else [f"z{i}" for i in range(codes.shape[1])]
    groups = [np.asarray(g.indices) for g in data.groups]
    effects = effect_range = None
    try:
        effects, effect_range = output_effects(model, codes, groups=groups)
    except Exception:  # an encoder-only model or a decoder that does not take codes: no "does" section from here
        effects = effect_range = None
    out = LatentCodes(
        codes=codes,
        latent_names=names,
        sample_index=np.asarray(data.explain_index, dtype=np.int64),
        effects=effects,
        effect_range=effect_range,
        output_names=[g.name for g in data.groups],
    )
    y = getattr(data, "y_explain", None)
    if y is not None:
        classes, inv = np.unique(np.asarray(y), return_inverse=True)
        out.labels, out.label_names = inv.astype(np.int64), [str(c) for c in classes]
    factors = getattr(data, "factors", None)
    if factors is not None:
        f = np.asarray(factors, dtype=np.float64)
        f = f[np.asarray(data.explain_index)] if len(f) == np.asarray(data.x).shape[0] else f
        if len(f) == len(codes):
            out.factors = f.reshape(len(f), -1)
            out.factor_names = list(getattr(data, "factor_names", None) or [f"factor{j}" for j in range(out.factors.shape[1])])
    if getattr(data, "kind", "tabular") != "tabular":
        top, quant = example_rows(codes)
        rows = sorted({r for d in (top, quant) for rs in d.values() for r in rs})
        if rows and x[rows].nbytes / 2**20 <= MAX_EXAMPLE_MB:
            out.examples, out.example_index = np.asarray(x[rows], dtype=np.float32), np.asarray(rows, dtype=np.int64)
    return out


def save_codes(out_dir: Path, codes: LatentCodes) -> Path:
    arrays: dict[str, Any] = {"codes": codes.codes, "latent_names": np.array(codes.latent_names), "sample_index": codes.sample_index}
    if codes.effects is not None and codes.effect_range is not None:
        arrays.update(effects=codes.effects, effect_range=codes.effect_range, output_names=np.array(codes.output_names))
    if codes.labels is not None:
        arrays.update(labels=codes.labels, label_names=np.array(codes.label_names))
    if codes.factors is not None:
        arrays.update(factors=codes.factors, factor_names=np.array(codes.factor_names))
    if codes.examples is not None and codes.example_index is not None:
        arrays.update(examples=codes.examples, example_index=codes.example_index)
    path = Path(out_dir) / CODES_FILE
    tmp = path.with_name(CODES_FILE + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def load_codes(out_dir: Path) -> LatentCodes | None:
    """The saved codes, or None when the run kept none (or the file cannot be read)."""
    path = Path(out_dir) / CODES_FILE
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            get = lambda k: z[k] if k in z.files else None  # noqa: E731
            names = lambda k: [str(n) for n in z[k]] if k in z.files else []  # noqa: E731
            return LatentCodes(
                codes=z["codes"],
                latent_names=names("latent_names"),
                sample_index=z["sample_index"],
                effects=get("effects"),
                effect_range=get("effect_range"),
                output_names=names("output_names"),
                labels=get("labels"),
                label_names=names("label_names"),
                factors=get("factors"),
                factor_names=names("factor_names"),
                examples=get("examples"),
                example_index=get("example_index"),
            )
    except (OSError, ValueError, KeyError):
        return None
