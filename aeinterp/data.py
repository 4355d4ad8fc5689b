"""Datasets: samples, feature names, feature groups and the fit / explain split.

Samples are arrays shaped ``(N, features)`` for tabular data, ``(N, C, H, W)``
for images and ``(N, T, features)`` for sequences. Every element of a sample
has a name; explanations are computed over **feature groups**, sets of those
elements that are perturbed or summed together (a tabular column, a sequence
feature over its T steps, an image pixel, channel or patch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from .errors import DataError

__all__ = [
    "DataKind",
    "Dataset",
    "ArrayDataset",
    "FeatureGroup",
    "make_groups",
    "element_names",
    "split_indices",
    "subsample_indices",
    "finite_rows",
    "SPLIT_FILE",
]

SPLIT_FILE = "split.npz"  # where the runner writes the split's row indices, beside results.json
_CHUNK_BYTES = 16 * 2**20  # rows checked at a time, so a memory-mapped array is never copied whole


def finite_rows(x: np.ndarray) -> np.ndarray:
    """For each sample, whether all its values are finite (in chunks of rows, for memory-mapped data)."""
    if callable(getattr(x, "finite_rows", None)):  # a lazily read matrix checks its stored values
        return x.finite_rows()  # type: ignore[attr-defined]
    n = x.shape[0]
    row_bytes = max(1, int(np.prod(x.shape[1:])) * x.itemsize)
    step = max(1, _CHUNK_BYTES // row_bytes)
    out = np.empty(n, dtype=bool)
    for s in range(0, n, step):
        out[s : s + step] = np.isfinite(np.asarray(x[s : s + step]).reshape(min(step, n - s), -1)).all(axis=1)
    return out


DataKind = Literal["tabular", "image", "sequence"]
DATA_KINDS: tuple[str, ...] = ("tabular", "image", "sequence")


@dataclass(frozen=True)
class FeatureGroup:
    """A named set of sample elements, as indices into the flattened sample."""

    name: str
    indices: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "indices", np.asarray(self.indices, dtype=np.int64).reshape(-1))


@runtime_checkable
class Dataset(Protocol):
    """What explainers read from a dataset."""

    @property
    def kind(self) -> DataKind: ...

    @property
    def feature_names(self) -> list[str]: ...

    @property
    def groups(self) -> tuple[FeatureGroup, ...]: ...

    @property
    def x_fit(self) -> np.ndarray: ...

    @property
    def x_explain(self) -> np.ndarray: ...


def _rows(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``x[index]``; for a memory map and a contiguous ascending ``index``, a slice of the map (no copy: it stays lazy)."""
    index = np.asarray(index)
    if callable(getattr(x, "rows_view", None)):  # a lazily read matrix (aeinterp.io.rows.LazyRows): a lazy subset
        return x.rows_view(index)  # type: ignore[attr-defined]
    if (
        isinstance(x, np.memmap)
        and index.ndim == 1
        and len(index)
        and index[-1] - index[0] == len(index) - 1
        and (len(index) < 2 or bool((np.diff(index) == 1).all()))
    ):
        return x[int(index[0]) : int(index[-1]) + 1]
    return x[index]


@dataclass(frozen=True)
class ArrayDataset:
    """A dataset held in memory; the concrete :class:`Dataset` every loader returns."""

    x: np.ndarray
    kind: DataKind
    feature_names: list[str]
    groups: tuple[FeatureGroup, ...]
    fit_index: np.ndarray
    explain_index: np.ndarray
    name: str = "data"
    labels: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: the row of the source file each sample came from (``None``: row i is sample i)
    row_ids: np.ndarray | None = None
    #: how the split was made: ``{"method": "random" | "column" | "rows" | "files", ...}``
    split_info: dict[str, Any] = field(default_factory=dict)
    #: check every value is finite (a loader that checked already passes False: one pass over a large file)
    check_finite: bool = field(default=True, repr=False, compare=False)
    #: a label per sample (a CSV's ``index:`` column, a DataFrame's index, AnnData obs names), or None;
    #: explanations name their per-sample rows with it (``Explanation.sample_names``)
    row_names: list[str] | None = field(default=None, repr=False, compare=False)
    #: known generating factors per sample (samples x factors, a recipe's ``factors:`` columns), or None: the code
    #: page scores the latents against them (MIG, DCI, SAP)
    factors: np.ndarray | None = field(default=None, repr=False, compare=False)
    factor_names: list[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise DataError(f"data kind must be one of {', '.join(DATA_KINDS)}, got {self.kind!r}")
        expected_ndim = {"tabular": 2, "image": 4, "sequence": 3}[self.kind]
        if self.x.ndim != expected_ndim:
            raise DataError(f"{self.kind} data must have {expected_ndim} dimensions, got shape {self.x.shape}")
        if len(self.feature_names) != self.n_features:
            raise DataError(f"{len(self.feature_names)} feature names for {self.n_features} features")
        if self.check_finite and not finite_rows(self.x).all():
            raise DataError("the data contains NaN or infinite values")
        if self.factors is not None and len(self.factors) != self.x.shape[0]:
            raise DataError(f"{len(self.factors)} rows of factors for {self.x.shape[0]} samples")
        for g in self.groups:
            if g.indices.size == 0:
                raise DataError(f"feature group {g.name!r} is empty; give it at least one feature (or remove it)")
            if g.indices.min() < 0 or g.indices.max() >= self.n_features:
                raise DataError(f"feature group {g.name!r} has indices outside 0..{self.n_features - 1}")
        if len(self.explain_index) == 0:
            raise DataError("the explain split is empty")
        if self.row_names is not None:
            if len(self.row_names) != self.x.shape[0]:
                raise DataError(f"{len(self.row_names)} row names for {self.x.shape[0]} samples")
            object.__setattr__(self, "row_names", [str(n) for n in self.row_names])
        for what in ("fit_index", "explain_index"):
            idx = np.asarray(getattr(self, what), dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= self.x.shape[0]):
                raise DataError(f"{what} holds rows outside 0..{self.x.shape[0] - 1}")
            object.__setattr__(self, what, idx)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def n_features(self) -> int:
        return int(np.prod(self.sample_shape))

    @property
    def group_names(self) -> list[str]:
        return [g.name for g in self.groups]

    @property
    def x_fit(self) -> np.ndarray:
        return _rows(self.x, self.fit_index)

    @property
    def x_explain(self) -> np.ndarray:
        return _rows(self.x, self.explain_index)

    @property
    def y_fit(self) -> np.ndarray | None:
        return None if self.labels is None else self.labels[self.fit_index]

    @property
    def y_explain(self) -> np.ndarray | None:
        return None if self.labels is None else self.labels[self.explain_index]

    def label_codes(self) -> tuple[np.ndarray, list[str]]:
        """Labels as integer codes ``0..C-1`` for every sample, and the class names."""
        if self.labels is None:
            raise DataError(
                f"dataset {self.name!r} has no labels; give `label:` (a CSV column or an .npz array) or use a labelled builtin set"
            )
        classes, codes = np.unique(self.labels, return_inverse=True)
        return codes.astype(np.int64), [str(c) for c in classes]

    def split_arrays(self) -> dict[str, np.ndarray]:
        """The split as row indices: ``explain_index`` / ``fit_index`` into the samples,
        ``explain_rows`` / ``fit_rows`` into the source file (they differ when rows were dropped)."""
        rows = np.arange(self.x.shape[0]) if self.row_ids is None else np.asarray(self.row_ids)
        return {
            "explain_index": self.explain_index,
            "fit_index": self.fit_index,
            "explain_rows": rows[self.explain_index],
            "fit_rows": rows[self.fit_index],
        }

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "sample_shape": list(self.sample_shape),
            "n_samples": int(self.x.shape[0]),
            "n_fit": int(len(self.fit_index)),
            "n_explain": int(len(self.explain_index)),
            "n_features": self.n_features,
            "n_groups": len(self.groups),
            "split": {"method": "given", **self.split_info, "arrays": SPLIT_FILE, "arrays_keys": sorted(self.split_arrays())},
            **self.info,
        }


def element_names(kind: DataKind, sample_shape: Sequence[int], names: Sequence[str] | None = None) -> list[str]:
    """Names of every element of a flattened sample.

    Tabular: the column names (``x0``.. by default). Sequences: ``feature@tT``
    where ``names`` name the last axis. Images: ``px[h,w]`` for one channel,
    ``c{c}[h,w]`` for several.
    """
    if kind == "tabular":
        (d,) = sample_shape
        if names is None:
            return [f"x{i}" for i in range(d)]
        if len(names) != d:
            raise DataError(f"feature_names has {len(names)} names but the data has {d} columns")
        return [str(n) for n in names]
    if kind == "sequence":
        t, f = sample_shape
        if names is None:
            names = [f"f{i}" for i in range(f)]
        elif len(names) != f:
            raise DataError(f"feature_names has {len(names)} names but the sequences have {f} features (last axis)")
        return [f"{names[j]}@t{i}" for i in range(t) for j in range(f)]
    c, h, w = sample_shape
    if c == 1:
        return [f"px[{i},{j}]" for i in range(h) for j in range(w)]
    return [f"c{k}[{i},{j}]" for k in range(c) for i in range(h) for j in range(w)]


def make_groups(
    kind: DataKind,
    sample_shape: Sequence[int],
    spec: str | Mapping[str, Sequence[str]] = "auto",
    *,
    feature_names: Sequence[str],
    x: np.ndarray | None = None,
    base_names: Sequence[str] | None = None,
) -> tuple[FeatureGroup, ...]:
    """Build feature groups from a spec.

    ``auto``
        tabular: one group per column; sequence: one per feature over all
        steps; image: one per pixel position (all channels together).
    ``elements``
        every element alone.
    ``features`` / ``steps`` (sequence)
        per feature over time / per time step over features.
    ``pixels`` / ``channels`` / ``patches:K`` (image)
        per pixel position, per channel, per K x K patch.
    ``correlation:R`` (tabular)
        columns whose absolute correlation links them above R, by
        single-linkage clustering on the data.
    a mapping ``{group: [feature, ...]}``
        user groups; columns not mentioned stay alone.
    """
    shape = tuple(sample_shape)
    d = int(np.prod(shape))
    idx = np.arange(d).reshape(shape)
    if isinstance(spec, Mapping):
        return _user_groups(spec, feature_names)
    name, _, arg = str(spec).partition(":")
    if name == "auto":
        name = {"tabular": "elements", "sequence": "features", "image": "pixels"}[kind]
    if name == "elements":
        return tuple(FeatureGroup(n, np.array([i])) for i, n in enumerate(feature_names))
    if kind == "sequence" and name in ("features", "steps"):
        t, f = shape
        fnames = list(base_names) if base_names is not None else [f"f{j}" for j in range(f)]
        if name == "features":
            return tuple(FeatureGroup(fnames[j], idx[:, j]) for j in range(f))
        return tuple(FeatureGroup(f"t{i}", idx[i, :]) for i in range(t))
    if kind == "image" and name in ("pixels", "channels", "patches"):
        c, h, w = shape
        if name == "pixels":
            return tuple(FeatureGroup(f"px[{i},{j}]", idx[:, i, j]) for i in range(h) for j in range(w))
        if name == "channels":
            return tuple(FeatureGroup(f"c{k}", idx[k]) for k in range(c))
        k = _positive_int(arg, spec)
        return tuple(
            FeatureGroup(f"patch[{i}:{min(i + k, h)},{j}:{min(j + k, w)}]", idx[:, i : i + k, j : j + k])
            for i in range(0, h, k)
            for j in range(0, w, k)
        )
    if kind == "tabular" and name == "correlation":
        if x is None:
            raise DataError("correlation groups need the data")
        return _correlation_groups(x, feature_names, _threshold(arg, spec))
    raise DataError(f"feature groups {spec!r} do not apply to {kind} data; see `aeinterp schema` for the options")


def _positive_int(arg: str, spec: object) -> int:
    try:
        k = int(arg)
    except ValueError:
        k = 0
    if k < 1:
        raise DataError(f"feature groups {spec!r}: expected a positive patch size, as in 'patches:4'")
    return k


def _threshold(arg: str, spec: object) -> float:
    try:
        r = float(arg or 0.8)
    except ValueError:
        r = -1.0
    if not 0.0 < r <= 1.0:
        raise DataError(f"feature groups {spec!r}: expected a correlation threshold in (0, 1], as in 'correlation:0.8'")
    return r


def _user_groups(spec: Mapping[str, Sequence[str]], feature_names: Sequence[str]) -> tuple[FeatureGroup, ...]:
    position = {n: i for i, n in enumerate(feature_names)}
    used: set[int] = set()
    groups = []
    for gname, members in spec.items():
        missing = [m for m in members if m not in position]
        if missing:
            raise DataError(f"feature group {gname!r} names unknown features: {', '.join(map(str, missing))}")
        ids = [position[m] for m in members]
        twice = used.intersection(ids)
        if twice:
            raise DataError(f"feature group {gname!r} reuses features of another group: {[feature_names[i] for i in twice]}")
        used.update(ids)
        groups.append(FeatureGroup(str(gname), np.asarray(ids)))
    groups += [FeatureGroup(n, np.array([i])) for i, n in enumerate(feature_names) if i not in used]
    return tuple(groups)


def _correlation_groups(x: np.ndarray, names: Sequence[str], threshold: float) -> tuple[FeatureGroup, ...]:
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    flat = x.reshape(x.shape[0], -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.nan_to_num(np.corrcoef(flat, rowvar=False), nan=0.0)
    dist = np.clip(1.0 - np.abs(corr), 0.0, None)
    np.fill_diagonal(dist, 0.0)
    labels = fcluster(linkage(squareform(dist, checks=False), method="single"), t=1.0 - threshold, criterion="distance")
    groups = []
    for lab in dict.fromkeys(labels):  # keeps first-appearance order
        ids = np.flatnonzero(labels == lab)
        gname = names[ids[0]] if len(ids) == 1 else "+".join(names[i] for i in ids[:3]) + ("+..." if len(ids) > 3 else "")
        groups.append(FeatureGroup(gname, ids))
    return tuple(groups)


def split_indices(
    n: int, *, explain_fraction: float = 0.25, explain_size: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into (fit, explain) indices."""
    if n < 2:
        raise DataError(f"need at least 2 samples to split into fit and explain sets, got {n}")
    n_explain = explain_size if explain_size is not None else int(round(n * explain_fraction))
    n_explain = min(max(n_explain, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_explain:]), np.sort(order[:n_explain])


def subsample_indices(total: int, n: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``n`` of ``total`` rows, drawn without replacement
    (all of them, drawing nothing, if ``n`` is None or not smaller than ``total``)."""
    if n is None or n >= total:
        return np.arange(total)
    return np.sort(rng.choice(total, size=n, replace=False))
