"""Shared pieces of the visualization explainers: data geometry, per-element
statistics of the fit split, batched encode/decode, labels, group reduction.

Everything a figure needs later is written into ``Explanation.extras`` by
:meth:`Geometry.to_extras` and read back by :meth:`Geometry.from_extras`, so
figures can be redrawn from a finished run on disk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aeinterp.data import FeatureGroup
from aeinterp.model import evaluate
from aeinterp.toolkit.perturb import reduce_groups

__all__ = [
    "Geometry",
    "FitStats",
    "fit_stats",
    "encode",
    "decode",
    "group_mean",
    "label_codes",
    "torch_seed",
    "rows_to_show",
    "columns_to_show",
]

MAX_NAMED_ELEMENTS = 2000  # element names kept in extras for tabular data up to this width


@dataclass(frozen=True)
class Geometry:
    """How a flattened sample is laid out: kind, shape and the names figures print.

    ``element_names`` is kept for tabular data only; ``sequence_features`` names
    the last axis of sequences.
    """

    kind: str
    sample_shape: tuple[int, ...]
    element_names: list[str]
    sequence_features: list[str]

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.sample_shape))

    @classmethod
    def of(cls, data: Any) -> Geometry:
        shape = tuple(int(s) for s in data.x_explain.shape[1:])  # the shape only: a lazily read matrix is not read
        names = list(data.feature_names)
        elements = names if data.kind == "tabular" and len(names) <= MAX_NAMED_ELEMENTS else []
        features: list[str] = []
        if data.kind == "sequence":
            n_feat = shape[1]
            features = [n[: -len("@t0")] if n.endswith("@t0") else f"f{j}" for j, n in enumerate(names[:n_feat])]
        return cls(kind=data.kind, sample_shape=shape, element_names=elements, sequence_features=features)

    def to_extras(self) -> dict[str, Any]:
        return {
            "data_kind": self.kind,
            "sample_shape": list(self.sample_shape),
            "element_names": list(self.element_names),
            "sequence_features": list(self.sequence_features),
        }

    @classmethod
    def from_extras(cls, extras: Mapping[str, Any]) -> Geometry:
        shape = tuple(int(s) for s in extras.get("sample_shape", []))
        names = [str(n) for n in extras.get("element_names", [])]
        features = [str(n) for n in extras.get("sequence_features", [])]
        if not names and extras.get("data_kind") == "tabular":
            names = [f"x{i}" for i in range(int(np.prod(shape)))]
        return cls(kind=str(extras.get("data_kind", "tabular")), sample_shape=shape, element_names=names, sequence_features=features)


@dataclass(frozen=True)
class FitStats:
    """Per-element statistics of the fit split, all flat ``(D,)`` float32 arrays.

    ``scale`` is the spread shared by elements of one kind: per column
    (tabular), per feature over all steps (sequences), per channel over all
    pixels (images); 1 where the data is constant. ``lo`` / ``hi`` bound each
    element (the fit split's range, or inner quantiles of it).
    """

    mean: np.ndarray
    scale: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def _kind_scale(x: np.ndarray, kind: str) -> np.ndarray:
    """Standard deviation shared per column / sequence feature / image channel, broadcast to elements."""
    if kind == "sequence":
        sd = x.std(axis=(0, 1), keepdims=True)  # (1, 1, F)
    elif kind == "image":
        sd = x.std(axis=(0, 2, 3), keepdims=True)  # (1, C, 1, 1)
    else:
        sd = x.std(axis=0, keepdims=True)
    sd = np.broadcast_to(sd, (1, *x.shape[1:])).reshape(-1)
    return np.where(sd > 1e-12, sd, 1.0).astype(np.float32)


def fit_stats(data: Any, box_quantile: float = 0.0) -> FitStats:
    """Mean, kind-aware scale and the per-element box of the fit split."""
    x = np.asarray(data.x_fit, dtype=np.float64)
    flat = x.reshape(x.shape[0], -1)
    if box_quantile > 0:
        lo, hi = np.quantile(flat, [box_quantile, 1.0 - box_quantile], axis=0)
    else:
        lo, hi = flat.min(axis=0), flat.max(axis=0)
    return FitStats(
        mean=flat.mean(axis=0).astype(np.float32),
        scale=_kind_scale(x, data.kind),
        lo=lo.astype(np.float32),
        hi=hi.astype(np.float32),
    )


def encode(model: Any, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Codes ``(N, latent_dim)`` of ``x``, in batches, without autograd."""
    return evaluate(model.encode, x, batch_size=batch_size, model=model).double().numpy()


def decode(model: Any, z: np.ndarray | torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """Flattened decoder outputs ``(N, D)`` of codes ``z``, in batches, without autograd."""
    out = evaluate(model.decode, z, batch_size=batch_size, model=model)
    return out.reshape(out.shape[0], -1).double().numpy()


def group_mean(values: np.ndarray, groups: Sequence[FeatureGroup]) -> np.ndarray:
    """Mean of the last axis (elements) within each feature group."""
    return np.asarray(reduce_groups(np.asarray(values, dtype=np.float64), groups, "mean"))


def label_codes(labels: np.ndarray | None, max_classes: int = 20) -> tuple[np.ndarray | None, list[str]]:
    """Labels as integer codes plus class names, or ``(None, [])`` when they are unusable.

    More than ``max_classes`` distinct values are not a class label: they are
    dropped (the atlas then colours by density instead).
    """
    if labels is None:
        return None, []
    arr = np.asarray(labels).reshape(-1)
    names, codes = np.unique(arr, return_inverse=True)
    if len(names) > max_classes or len(names) < 2:
        return None, []
    return codes.astype(np.int64), [str(n) for n in names]


def torch_seed(rng: np.random.Generator) -> torch.Generator:
    """A torch generator seeded from the explainer's numpy ``rng``."""
    return torch.Generator().manual_seed(int(rng.integers(0, 2**31 - 1)))


def rows_to_show(importance: np.ndarray, limit: int) -> np.ndarray:
    """Indices of at most ``limit`` targets to draw: the most important ones, in their natural order."""
    n = importance.shape[0]
    if n <= limit:
        return np.arange(n)
    return np.sort(np.argsort(-np.abs(importance).sum(axis=1), kind="stable")[:limit])


def shown_of(shown: np.ndarray, total: int) -> str:
    """What a figure shows of ``total`` latents: "" for all, else " (top 16 of 32 latents by importance)"."""
    return "" if len(shown) >= total else f" (top {len(shown)} of {total} latents by importance; all in report.html)"


def columns_to_show(score: np.ndarray, limit: int) -> np.ndarray:
    """Indices of at most ``limit`` elements with the largest ``score``, in their natural order."""
    n = score.shape[0]
    if n <= limit:
        return np.arange(n)
    return np.sort(np.argsort(-score, kind="stable")[:limit])
