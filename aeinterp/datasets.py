"""Dataset loaders: CSV with a header, ``.npy`` / ``.npz``, and bundled sets.

Bundled sets need no network: scikit-learn's ``breast_cancer`` (30 tabular
features), ``wine`` (13), ``digits`` (8x8 images), and the synthetic sequence
set ``sines`` (and ``synthetic_tabular``, a tabular set with planted factors).
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import ArrayDataset, DataKind, element_names, make_groups, split_indices
from .errors import DataError

__all__ = ["load_dataset", "BUILTIN_DATASETS", "make_sines", "make_synthetic_tabular"]


def make_sines(n: int = 600, steps: int = 24, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Sequences ``(n, steps, 3)``: a sine with random amplitude and frequency, its
    phase-shifted cosine, and a random walk of small steps. Three generating factors."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, steps)
    amp = rng.uniform(0.5, 1.5, size=(n, 1))
    freq = rng.uniform(0.5, 2.0, size=(n, 1))
    phase = rng.uniform(0, np.pi, size=(n, 1))
    wave = amp * np.sin(freq * t + phase)
    shifted = amp * np.cos(freq * t + phase)
    walk = np.cumsum(rng.normal(0, 0.15, size=(n, steps)), axis=1)
    x = np.stack([wave, shifted, walk], axis=2).astype(np.float32)
    return x, ["sine", "cosine", "walk"]


def make_synthetic_tabular(n: int = 800, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Tabular data with three latent factors, each driving a known pair of the 8
    columns, plus two pure-noise columns."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, 3))
    noise = lambda: rng.normal(0, 0.1, size=n)  # noqa: E731
    cols = [f[:, 0] + noise(), 2 * f[:, 0] + noise(), f[:, 1] + noise(), -f[:, 1] + noise(), f[:, 2] + noise(), 0.5 * f[:, 2] + noise(), rng.normal(size=n), rng.normal(size=n)]
    names = ["a1", "a2", "b1", "b2", "c1", "c2", "noise1", "noise2"]
    return np.stack(cols, axis=1).astype(np.float32), names


def _sklearn(name: str) -> tuple[np.ndarray, list[str] | None, np.ndarray, DataKind]:
    from sklearn import datasets as skd

    loader = {"breast_cancer": skd.load_breast_cancer, "wine": skd.load_wine, "digits": skd.load_digits}[name]
    bunch = loader()
    if name == "digits":
        return (bunch.images[:, None, :, :] / 16.0).astype(np.float32), None, bunch.target, "image"
    labels = np.asarray(bunch.target_names)[bunch.target]  # class names, not codes
    return bunch.data.astype(np.float32), [str(n) for n in bunch.feature_names], labels, "tabular"


BUILTIN_DATASETS: dict[str, str] = {
    "breast_cancer": "569 x 30 tabular (scikit-learn), labels: malignant/benign",
    "wine": "178 x 13 tabular (scikit-learn), labels: 3 cultivars",
    "digits": "1797 x 1 x 8 x 8 images (scikit-learn), labels: 0-9",
    "sines": "600 x 24 steps x 3 features synthetic sequences (sine, cosine, random walk)",
    "synthetic_tabular": "800 x 8 tabular with three planted factors (a, b, c) and two noise columns",
}


def _builtin(name: str) -> tuple[np.ndarray, list[str] | None, np.ndarray | None, DataKind]:
    if name in ("breast_cancer", "wine", "digits"):
        return _sklearn(name)
    if name == "sines":
        x, names = make_sines()
        return x, names, None, "sequence"
    if name == "synthetic_tabular":
        x, names = make_synthetic_tabular()
        return x, names, None, "tabular"
    import difflib

    close = difflib.get_close_matches(name, list(BUILTIN_DATASETS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise DataError(f"unknown builtin dataset {name!r}{hint} (available: {', '.join(BUILTIN_DATASETS)})")


MISSING = ("", "NA", "nan", "NaN")  # CSV cells read as NaN


def _read_csv(path: Path, label: str | None) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise DataError(f"{path} is empty")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if not body:
        raise DataError(f"{path} has a header but no rows")
    if label is not None and label not in header:
        raise DataError(f"{path}: label column {label!r} not in the header ({', '.join(header)})")
    columns: dict[str, list[str]] = {h: [] for h in header}
    for lineno, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}:{lineno}: {len(row)} values, but the header has {len(header)} columns")
        for h, v in zip(header, row):
            columns[h].append(v)
    names = [h for h in header if h != label]
    data = np.empty((len(body), len(names)), dtype=np.float32)
    for j, h in enumerate(names):
        try:
            data[:, j] = [np.nan if v.strip() in MISSING else float(v) for v in columns[h]]
        except ValueError:
            bad = next(v for v in columns[h] if not _is_float(v))
            raise DataError(f"{path}: column {h!r} is not numeric (value {bad!r}); mark it with `label: {h}` or remove it") from None
    labels = np.asarray(columns[label]) if label is not None else None
    return data, names, labels


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return v.strip() in MISSING


def _read_array(path: Path, key: str | None, label: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False), None
    with np.load(path, allow_pickle=False) as npz:
        keys = list(npz.files)
        if key is None:
            key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise DataError(f"{path} holds arrays {keys}; say which one is the data with `key:`")
        if key not in keys:
            raise DataError(f"{path} has no array {key!r}; it has {keys}")
        labels = npz[label] if label is not None and label in keys else (npz["y"] if label is None and "y" in keys else None)
        return npz[key], labels


def _infer_kind(x: np.ndarray, kind: str | None, source: str) -> tuple[np.ndarray, DataKind]:
    if kind is None:
        if x.ndim == 2:
            return x, "tabular"
        if x.ndim == 4:
            return x, "image"
        raise DataError(f"{source} has shape {x.shape}; say whether it is `kind: sequence` (N, T, F) or `kind: image` (N, H, W)")
    if kind == "image" and x.ndim == 3:
        return x[:, None], "image"
    expected = {"tabular": 2, "sequence": 3, "image": 4}[kind]
    if x.ndim != expected:
        raise DataError(f"{source} has shape {x.shape}, which is not {kind} data ({expected} dimensions expected)")
    return x, kind  # type: ignore[return-value]


def load_dataset(
    *,
    path: str | Path | None = None,
    builtin: str | None = None,
    kind: str | None = None,
    feature_names: Sequence[str] | None = None,
    label: str | None = None,
    key: str | None = None,
    groups: str | Mapping[str, Sequence[str]] = "auto",
    explain_fraction: float = 0.25,
    explain_size: int | None = None,
    split_seed: int = 0,
    standardize: bool | None = None,
    nan: str = "error",
    max_samples: int | None = None,
) -> ArrayDataset:
    """Load a dataset from a file or a bundled set and cut it into fit / explain splits.

    ``standardize`` (default: on for bundled tabular sets, off otherwise) scales
    each element by the fit split's mean and standard deviation. ``nan`` is
    ``error`` (refuse data with NaN or infinite values) or ``drop`` (drop
    those rows with a warning).
    """
    if (path is None) == (builtin is None):
        raise DataError("give exactly one of `path` or `builtin` for the data")
    labels: np.ndarray | None = None
    base_names: list[str] | None = None
    if builtin is not None:
        x, base_names, labels, builtin_kind = _builtin(builtin)
        if kind is not None and kind != builtin_kind:
            raise DataError(f"builtin dataset {builtin!r} is {builtin_kind} data, not {kind}")
        kind = builtin_kind
        name = builtin
        if standardize is None:
            standardize = kind == "tabular"
    else:
        p = Path(path)  # type: ignore[arg-type]
        if not p.exists():
            raise DataError(f"data file not found: {p}")
        suffix = p.suffix.lower()
        if suffix == ".csv":
            x, base_names, labels = _read_csv(p, label)
        elif suffix in (".npy", ".npz"):
            try:
                x, labels = _read_array(p, key, label)
            except (OSError, ValueError) as exc:
                raise DataError(f"cannot read {p}: {exc}") from None
        else:
            raise DataError(f"unsupported data file {p.name}: use .csv, .npy or .npz")
        name = p.name
    if not np.issubdtype(np.asarray(x).dtype, np.number):
        raise DataError(f"data from {name} is not numeric (dtype {np.asarray(x).dtype})")
    x, kind = _infer_kind(np.asarray(x, dtype=np.float32), kind, name)
    if x.shape[0] == 0:
        raise DataError(f"{name} holds no samples")
    if feature_names is not None:
        if kind == "image":
            raise DataError("feature_names do not apply to image data (pixels are named by position)")
        base_names = [str(n) for n in feature_names]
    finite = np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        if nan != "drop":
            raise DataError(
                f"{name} has NaN or infinite values in {len(bad)} of {len(x)} samples (first: row {bad[0]}); "
                "clean the data, or set `nan: drop` in the data section to drop those samples"
            )
        warnings.warn(f"dropping {len(bad)} of {len(x)} samples of {name} with NaN or infinite values", stacklevel=2)
        x = x[finite]
        labels = labels[finite] if labels is not None else None
    if max_samples is not None and x.shape[0] > max_samples:
        keep = np.sort(np.random.default_rng(split_seed).choice(x.shape[0], size=max_samples, replace=False))
        x, labels = x[keep], (labels[keep] if labels is not None else None)
    fit_idx, explain_idx = split_indices(x.shape[0], explain_fraction=explain_fraction, explain_size=explain_size, seed=split_seed)
    info: dict[str, Any] = {}
    if standardize:
        mean = x[fit_idx].mean(axis=0)
        std = x[fit_idx].std(axis=0)
        std = np.where(std > 0, std, 1.0)
        x = ((x - mean) / std).astype(np.float32)
        info["standardized"] = True
    names = element_names(kind, x.shape[1:], base_names if kind != "image" else None)
    grp = make_groups(kind, x.shape[1:], groups, feature_names=names, x=x[fit_idx], base_names=base_names)
    return ArrayDataset(x=x, kind=kind, feature_names=names, groups=grp, fit_index=fit_idx, explain_index=explain_idx, name=name, labels=labels, info=info)
