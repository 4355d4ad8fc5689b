"""Activation atlas: a map of the latent space, each region shown by what its average code decodes to.

The codes of a split are projected to 2-D (PCA by default; UMAP with
``umap-learn``; t-SNE from scikit-learn), the projection is clipped to its
``clip_percentiles`` per axis and cut into ``grid x grid`` cells. Cells are
half-open, ``[e_i, e_{i+1})``, except the last one per axis, which also holds
its right edge, so every sample lands in exactly one cell. Each cell with at
least ``min_density`` samples gets its mean code decoded in one batch.

Importance (latents x feature groups) says which outputs change across the
atlas because of which latent: a count-weighted ridge regression of each
rendered cell's decoded output on its mean code, ``|coefficient_j,e| *
SD_cells(z_j) / scale_e`` (how much output element ``e`` moves, in data SDs,
when latent ``j`` moves by one across-cell SD with the other latents held),
averaged per feature group. With fewer than two rendered cells it is all 0.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from aeinterp import Capabilities, Explainer, ExplainerParams, Explanation
from aeinterp.errors import require
from aeinterp.targets import Target, target_names
from aeinterp.toolkit.perturb import subsample_indices

from ._atlas_figures import atlas_figure
from ._common import Geometry, decode, encode, fit_stats, group_mean, label_codes

__all__ = ["ActivationAtlas", "bin_plane", "project"]

Method = Literal["pca", "umap", "tsne", "auto"]


def project(codes: np.ndarray, method: Method, seed: int, *, n_neighbors: int = 15, perplexity: float = 30.0) -> tuple[np.ndarray, str]:
    """Project ``(N, K)`` codes to ``(N, 2)``; returns the points and the method used.

    ``auto`` is UMAP when ``umap-learn`` is importable, else PCA. One latent
    dimension gives the points ``(z, 0)``.
    """
    n, k = codes.shape
    if k == 1:
        return np.concatenate([codes, np.zeros_like(codes)], axis=1), "identity"
    if method == "auto":
        try:
            import umap  # noqa: F401
        except ImportError:
            method = "pca"
        else:
            method = "umap"
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(codes), "pca"
    if method == "tsne":
        from sklearn.manifold import TSNE

        perp = float(min(perplexity, max(1.0, (n - 1) / 3.0)))
        return TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(codes), "tsne"
    umap = require("umap", "umap", "the activation atlas with method=umap")
    reducer = umap.UMAP(n_components=2, n_neighbors=int(min(n_neighbors, n - 1)), random_state=seed, n_jobs=1)
    with warnings.catch_warnings():  # "n_jobs overridden by setting random_state": seeded runs are single-threaded by design
        warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
        return np.asarray(reducer.fit_transform(codes), dtype=np.float64), "umap"


def bin_plane(
    points: np.ndarray, grid: int, clip_percentiles: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Clip ``(N, 2)`` points per axis and assign each to one of ``grid x grid`` cells.

    Returns ``(clipped points, cell (row, col) per point (N, 2), x edges, y edges)``;
    ``row`` indexes the y axis and ``col`` the x axis. Cells are half-open
    ``[e_i, e_{i+1})`` except the last, which is closed, so every point is in
    exactly one cell.
    """
    low, high = np.percentile(points, clip_percentiles, axis=0)
    span = high - low
    pad = np.where(span > 1e-12, 0.0, 0.5)  # a flat axis gets a unit-wide extent
    low, high = low - pad, high + pad
    clipped = np.clip(points, low, high)
    edges = [np.linspace(low[a], high[a], grid + 1) for a in range(2)]
    cols = np.clip(np.searchsorted(edges[0], clipped[:, 0], side="right") - 1, 0, grid - 1)
    rows = np.clip(np.searchsorted(edges[1], clipped[:, 1], side="right") - 1, 0, grid - 1)
    return clipped, np.stack([rows, cols], axis=1), edges[0], edges[1]


def _across_cell_importance(codes: np.ndarray, outputs: np.ndarray, weights: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(K, D)``: |ridge coefficient| x across-cell SD of each latent / element scale."""
    k = codes.shape[1]
    if codes.shape[0] < 2:
        return np.zeros((k, outputs.shape[1]))
    w = weights / weights.sum()
    xc = codes - w @ codes
    yc = outputs - w @ outputs
    gram = (xc * w[:, None]).T @ xc
    ridge = 1e-6 * max(float(np.trace(gram)) / k, 1e-12)
    coef = np.linalg.solve(gram + ridge * np.eye(k), (xc * w[:, None]).T @ yc)  # (K, D)
    sd = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    return np.abs(coef) * sd[:, None] / scale[None, :]


class ActivationAtlas(Explainer):
    """Project the codes to 2-D, grid the plane, decode each dense cell's mean code."""

    name = "activation_atlas"

    class Params(ExplainerParams):
        method: Method = Field(
            "pca", description="2-D projection of the codes: pca, umap (needs umap-learn), tsne, or auto (umap if installed, else pca)"
        )
        grid: int | None = Field(
            None, ge=2, le=64, description="cells per side of the atlas grid; default about sqrt(samples / min_density), between 3 and 20"
        )
        min_density: int = Field(8, ge=1, description="a cell is rendered (its mean code decoded) when it holds at least this many samples")
        clip_percentiles: tuple[float, float] = Field(
            (1.0, 99.0), description="the projection is clipped to these percentiles per axis before gridding"
        )
        split: Literal["explain", "fit", "all"] = Field(
            "explain", description="samples to encode: the explain split, the fit split, or both"
        )
        max_samples: int | None = Field(5000, ge=2, description="encode at most this many samples (random, seeded)")
        standardize_codes: bool = Field(False, description="scale each latent to unit variance before projecting")
        n_neighbors: int = Field(15, ge=2, description="UMAP neighbourhood size")
        perplexity: float = Field(30.0, gt=0, description="t-SNE perplexity (capped at (n - 1) / 3)")
        batch_size: int = Field(1024, ge=1, description="rows per forward pass")

        @model_validator(mode="after")
        def _percentiles_ordered(self) -> ActivationAtlas.Params:
            lo, hi = self.clip_percentiles
            if not 0.0 <= lo < hi <= 100.0:
                raise ValueError(f"clip_percentiles must satisfy 0 <= low < high <= 100, got {self.clip_percentiles}")
            return self

    capabilities = Capabilities(targets=frozenset({"latent"}), deterministic=True, local=False)

    def explain(self, model: Any, data: Any, *, target: Target | str, rng: np.random.Generator) -> Explanation:
        p = self.params
        target = Target(target)
        geo = Geometry.of(data)
        stats = fit_stats(data)
        x, labels = self._samples(data)
        keep = subsample_indices(len(x), p.max_samples, rng)
        x = x[keep]
        codes = encode(model, x, p.batch_size)
        n, k = codes.shape
        z = codes
        if p.standardize_codes:
            sd = codes.std(axis=0)
            z = (codes - codes.mean(axis=0)) / np.where(sd > 1e-12, sd, 1.0)
        seed = int(rng.integers(0, 2**31 - 1))
        points, used = project(z, p.method, seed, n_neighbors=p.n_neighbors, perplexity=p.perplexity)
        grid = p.grid or int(np.clip(round(np.sqrt(n / p.min_density)), 3, 20))
        clipped, cell, edges_x, edges_y = bin_plane(points, grid, p.clip_percentiles)
        flat_cell = cell[:, 0] * grid + cell[:, 1]
        counts = np.bincount(flat_cell, minlength=grid**2)
        sums = np.zeros((grid**2, k))
        np.add.at(sums, flat_cell, codes)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_codes = sums / counts[:, None]  # NaN for empty cells
        rendered = counts >= p.min_density
        decoded = np.full((grid**2, geo.n_elements), np.nan)
        if rendered.any():
            decoded[rendered] = decode(model, mean_codes[rendered], p.batch_size)
        elem_imp = _across_cell_importance(mean_codes[rendered], decoded[rendered], counts[rendered].astype(np.float64), stats.scale)
        importance = group_mean(elem_imp, data.groups)

        codes_lab, label_names = label_codes(None if labels is None else labels[keep])
        arrays: dict[str, np.ndarray] = {
            "counts": counts.reshape(grid, grid),
            "rendered": rendered.reshape(grid, grid),
            "mean_codes": mean_codes.reshape(grid, grid, k),
            "decoded": decoded.reshape(grid, grid, *geo.sample_shape).astype(np.float32),
            "edges_x": edges_x,
            "edges_y": edges_y,
            "embedding": points,
            "embedding_clipped": clipped,
            "cell": cell,
            "sample_index": keep,
            "data_mean": stats.mean,
            "data_scale": stats.scale,
            "data_lo": stats.lo,
            "data_hi": stats.hi,
        }
        if codes_lab is not None:
            arrays["labels"] = codes_lab
            majority = np.full(grid**2, -1, dtype=np.int64)
            table = np.zeros((grid**2, len(label_names)), dtype=np.int64)
            np.add.at(table, (flat_cell, codes_lab), 1)
            majority[counts > 0] = table[counts > 0].argmax(axis=1)
            arrays["label_majority"] = majority.reshape(grid, grid)
        extras = {
            **geo.to_extras(),
            "projection": used,
            "split": p.split,
            "n_samples": int(n),
            "n_cells_rendered": int(rendered.sum()),
            "n_cells_occupied": int((counts > 0).sum()),
            "min_density": p.min_density,
            "grid": grid,
            "label_names": label_names,
            "cells": "counts[row, col]: row = y bin, col = x bin; cells are half-open [e_i, e_i+1), the last per axis closed; "
            "sample_index refers to the samples of the chosen split",
            "feature_axis": "output",
            "importance": "count-weighted ridge regression of each rendered cell's decoded output on its mean code: "
            "|coefficient| x across-cell SD of the latent / data scale, averaged per feature group",
        }
        return Explanation(
            importance=importance,
            feature_names=list(data.group_names),
            target_names=target_names(target, k, list(data.feature_names)),
            target=target.value,
            arrays=arrays,
            extras=extras,
        )

    def _samples(self, data: Any) -> tuple[np.ndarray, np.ndarray | None]:
        split = self.params.split
        if split == "explain":
            return np.asarray(data.x_explain), getattr(data, "y_explain", None)
        if split == "fit":
            return np.asarray(data.x_fit), getattr(data, "y_fit", None)
        fit_y, exp_y = getattr(data, "y_fit", None), getattr(data, "y_explain", None)
        labels = None if fit_y is None or exp_y is None else np.concatenate([np.asarray(fit_y), np.asarray(exp_y)])
        return np.concatenate([np.asarray(data.x_fit), np.asarray(data.x_explain)]), labels

    @classmethod
    def figures(cls, explanation: Explanation) -> dict[str, Any]:
        """The atlas: decoded tiles (images), bar glyphs (tabular) or line glyphs (sequences) on the grid,
        beside the projected samples coloured by label."""
        if "decoded" not in explanation.arrays:
            return {}
        return {"atlas": atlas_figure(explanation)}
