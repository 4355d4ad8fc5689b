"""What shape an explanation's feature axis has, so figures can draw it on the data's own grid.

Images are drawn as ``H x W`` maps, sequences as ``time x feature`` maps, and
tabular data as ranked bars. The shape comes from the run's data description
(``results.json``'s ``data``) where the caller has it, else from the
explanation's own extras (``data_kind``, ``sample_shape``), else from the
feature names the core gives feature groups (``px[i,j]``, ``c0[i,j]``,
``patch[a:b,c:d]``, ``name@tT``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..explanation import Explanation

__all__ = ["Layout", "layout_of", "element_maps", "grid_values"]

_PIXEL = re.compile(r"^(?:px|c(\d+))\[(\d+),(\d+)\]$")
_PATCH = re.compile(r"^patch\[(\d+):(\d+),(\d+):(\d+)\]$")
_STEP = re.compile(r"^(.*)@t(\d+)$")


@dataclass(frozen=True)
class Layout:
    """``kind`` (tabular, image, sequence), the data's ``sample_shape`` when known, and for each
    feature group the grid cells it covers (``cells[g]``: flat indices into ``grid_shape``)."""

    kind: str
    sample_shape: tuple[int, ...] | None
    grid_shape: tuple[int, int] | None  # image: (H, W); sequence: (T, F)
    cells: tuple[np.ndarray, ...] | None  # per feature group, or None when the groups do not sit on the grid
    row_labels: tuple[str, ...] = ()  # sequence: time steps
    col_labels: tuple[str, ...] = ()  # sequence: feature names

    @property
    def on_grid(self) -> bool:
        return self.grid_shape is not None and self.cells is not None


def _from_names(names: Sequence[str]) -> Layout | None:
    pix = [_PIXEL.match(n) for n in names]
    if names and all(pix):
        h = max(int(m.group(2)) for m in pix if m) + 1
        w = max(int(m.group(3)) for m in pix if m) + 1
        cells = tuple(np.array([int(m.group(2)) * w + int(m.group(3))]) for m in pix if m)
        return Layout("image", None, (h, w), cells)
    patch = [_PATCH.match(n) for n in names]
    if names and all(patch):
        h = max(int(m.group(2)) for m in patch if m)
        w = max(int(m.group(4)) for m in patch if m)
        idx = np.arange(h * w).reshape(h, w)
        cells = tuple(idx[int(m.group(1)) : int(m.group(2)), int(m.group(3)) : int(m.group(4))].ravel() for m in patch if m)
        return Layout("image", None, (h, w), cells)
    steps = [_STEP.match(n) for n in names]
    if names and all(steps):
        feats = list(dict.fromkeys(m.group(1) for m in steps if m))
        t = max(int(m.group(2)) for m in steps if m) + 1
        cells = tuple(np.array([int(m.group(2)) * len(feats) + feats.index(m.group(1))]) for m in steps if m)
        return Layout("sequence", None, (t, len(feats)), cells, tuple(f"t{i}" for i in range(t)), tuple(feats))
    return None


def layout_of(e: Explanation, data_info: Mapping[str, Any] | None = None) -> Layout:
    """The layout of ``e``'s feature axis (see the module docstring for where it is read from)."""
    info = dict(data_info or {})
    kind = str(info.get("kind") or e.extras.get("data_kind") or "")
    shape = info.get("sample_shape") or e.extras.get("sample_shape")
    sample_shape = tuple(int(s) for s in shape) if shape else None
    named = _from_names(e.feature_names)
    if named is not None:
        if kind and named.kind != kind:
            return Layout(kind, sample_shape, None, None)
        return Layout(named.kind, sample_shape, named.grid_shape, named.cells, named.row_labels, named.col_labels)
    if not kind:
        kind = "tabular"
    if sample_shape is not None and kind == "image" and len(sample_shape) == 3:
        return Layout(kind, sample_shape, (sample_shape[1], sample_shape[2]), None)
    if sample_shape is not None and kind == "sequence" and len(sample_shape) == 2:
        feats = tuple(str(n) for n in e.extras.get("sequence_features") or ())
        if len(feats) != sample_shape[1]:
            feats = tuple(e.feature_names) if len(e.feature_names) == sample_shape[1] else tuple(f"f{j}" for j in range(sample_shape[1]))
        return Layout(kind, sample_shape, (sample_shape[0], sample_shape[1]), None, tuple(f"t{i}" for i in range(sample_shape[0])), feats)
    return Layout(kind, sample_shape, None, None)


def grid_values(layout: Layout, values: np.ndarray) -> np.ndarray:
    """``values`` ``(..., groups)`` spread on the grid: ``(..., A, B)``; cells no group covers are NaN,
    cells several groups cover (channels) get their mean."""
    assert layout.grid_shape is not None and layout.cells is not None
    a, b = layout.grid_shape
    values = np.asarray(values, dtype=np.float64)
    lead = values.shape[:-1]
    total = np.zeros((*lead, a * b))
    count = np.zeros(a * b)
    for g, cells in enumerate(layout.cells):
        total[..., cells] += values[..., g : g + 1]
        count[cells] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)
    return out.reshape(*lead, a, b)


_SIGNED_ELEMENT_ARRAYS = ("attribution_mean", "jacobian_mean", "mean_contribution")  # then any other "*_mean" of that size


def element_maps(e: Explanation, layout: Layout) -> tuple[np.ndarray, str] | None:
    """Per-target maps ``(targets, A, B)`` on the data's grid and what they show, or None.

    Signed where the explanation has signed values (its per-element mean
    attribution, or the mean of ``local``), else its importance.
    """
    if layout.grid_shape is None:
        return None
    k = len(e.target_names)
    a, b = layout.grid_shape
    shape = layout.sample_shape
    size = k * int(np.prod(shape)) if shape else -1
    guessed = [n for n, a in e.arrays.items() if n.endswith("_mean") and "abs" not in n and np.asarray(a).size == size]
    for key in list(_SIGNED_ELEMENT_ARRAYS) + sorted(set(guessed) - set(_SIGNED_ELEMENT_ARRAYS)):
        arr = e.arrays.get(key)
        if arr is not None and shape and arr.size == size:
            flat = np.asarray(arr, dtype=np.float64).reshape(k, *shape)
            return _fold(flat, layout), f"mean signed value per element ({key})"
    phi = e.arrays.get("phi")
    if phi is not None and shape is not None and phi.ndim >= 3 and phi.shape[1] == k and phi[0, 0].size == int(np.prod(shape)):
        flat = np.asarray(phi, dtype=np.float64).mean(axis=0).reshape(k, *shape)
        return _fold(flat, layout), "mean signed attribution per element"
    if layout.cells is None:
        return None
    if e.local is not None:
        return grid_values(layout, np.asarray(e.local, dtype=np.float64).mean(axis=0)), "mean signed attribution over samples"
    return grid_values(layout, e.importance), "importance"


def _fold(flat: np.ndarray, layout: Layout) -> np.ndarray:
    """``(k, *sample_shape)`` to ``(k, A, B)``: image channels averaged; sequences as (T, F)."""
    if layout.kind == "image" and flat.ndim == 4:
        return flat.mean(axis=1)
    return flat.reshape(flat.shape[0], *layout.grid_shape)  # type: ignore[misc]
