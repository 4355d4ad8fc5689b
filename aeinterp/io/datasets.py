"""Dataset loaders: files (see :mod:`aeinterp.io.readers`), bundled sets, and the fit / explain split.

Bundled sets need no network: scikit-learn's ``breast_cancer`` (30 tabular
features), ``wine`` (13), ``digits`` (8x8 images), and the synthetic sequence
set ``sines`` (and ``synthetic_tabular``, a tabular set with planted factors).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data import ArrayDataset, DataKind, element_names, finite_rows, make_groups, split_indices
from ..errors import DataError
from .checks import check_float32_range, check_unique_names
from .readers import MISSING, RawTable, read_file
from .rows import LazyRows, column_stats

__all__ = ["load_dataset", "BUILTIN_DATASETS", "BUILTIN_KINDS", "make_sines", "make_synthetic_tabular", "MISSING", "read_rows"]


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
    cols = [
        f[:, 0] + noise(),
        2 * f[:, 0] + noise(),
        f[:, 1] + noise(),
        -f[:, 1] + noise(),
        f[:, 2] + noise(),
        0.5 * f[:, 2] + noise(),
        rng.normal(size=n),
        rng.normal(size=n),
    ]
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

#: The data kind of each bundled dataset, known before loading it (``aeinterp validate`` checks explainers against it).
BUILTIN_KINDS: dict[str, str] = {
    "breast_cancer": "tabular",
    "wine": "tabular",
    "digits": "image",
    "sines": "sequence",
    "synthetic_tabular": "tabular",
}


def _builtin(name: str) -> tuple[np.ndarray, list[str] | None, np.ndarray | None, DataKind]:
    if name in ("breast_cancer", "wine", "digits"):
        return _sklearn(name)
    if name == "sines":
        x, names = make_sines()
        return x, names, None, BUILTIN_KINDS[name]  # type: ignore[return-value]
    if name == "synthetic_tabular":
        x, names = make_synthetic_tabular()
        return x, names, None, BUILTIN_KINDS[name]  # type: ignore[return-value]
    import difflib

    close = difflib.get_close_matches(name, list(BUILTIN_DATASETS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise DataError(f"unknown builtin dataset {name!r}{hint} (available: {', '.join(BUILTIN_DATASETS)})")


def _infer_kind(x: np.ndarray, kind: str | None, source: str) -> tuple[np.ndarray, DataKind]:
    if x.ndim < 2:
        raise DataError(
            f"{source} has shape {x.shape}; data must be 2-D, samples x features (one feature: save x.reshape(-1, 1); one sample: x.reshape(1, -1))"
        )
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


def _take(x: Any, rows: np.ndarray) -> Any:
    """``x[rows]``; a lazy subset for a lazily read matrix (nothing is read)."""
    return x.rows_view(rows) if isinstance(x, LazyRows) else x[rows]


def read_rows(spec: str | Path | Sequence[int], n_rows: int, what: str, base_dir: Path | None = None) -> np.ndarray:
    """Row indices from a list or an index file (``.npy`` of integers, or ``.txt``/``.csv`` with one per line)."""
    if isinstance(spec, (str, Path)):
        p = Path(spec)
        p = p if p.is_absolute() or base_dir is None else base_dir / p
        if not p.is_file():
            raise DataError(f"{what}: index file not found: {p}")
        try:
            raw = np.load(p, allow_pickle=False) if p.suffix.lower() == ".npy" else np.loadtxt(p, dtype=np.float64, ndmin=1, delimiter=",")
        except (OSError, ValueError) as exc:
            raise DataError(f"{what}: cannot read row indices from {p}: {exc}") from None
        source = str(p)
    else:
        raw, source = np.asarray(list(spec)), what
    arr = np.asarray(raw).reshape(-1)
    if arr.size and not (np.issubdtype(arr.dtype, np.integer) or (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)))):
        raise DataError(f"{what}: {source} holds non-integer values; row indices are 0-based integers")
    rows = arr.astype(np.int64)
    if rows.size == 0:
        raise DataError(f"{what}: {source} holds no row indices")
    bad = rows[(rows < 0) | (rows >= n_rows)]
    if bad.size:
        raise DataError(f"{what}: row index {int(bad[0])} is outside the data's rows 0..{n_rows - 1}")
    values, counts = np.unique(rows, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{what}: row {int(values[counts > 1][0])} is listed more than once")
    return rows


def _read(path: str | Path, key: str | None, keep: Sequence[str], encoding: str, index: int | str | None = None) -> tuple[RawTable, str]:
    p = Path(path)
    return read_file(p, key=key, keep=keep, encoding=encoding, index=index), p.name


def _labels(table: RawTable, label: str | None, name: str, suffix: str) -> np.ndarray | None:
    if label is not None:
        return table.column(label, name, "label")
    return table.columns.get("y") if suffix == ".npz" else None  # an .npz's `y` is its labels unless told otherwise


def _factors(table: RawTable, factors: Sequence[str] | None, name: str) -> np.ndarray | None:
    """The ``factors`` columns as one (samples, factors) object array (coded by :func:`_factor_codes` once both files
    of a split are joined, so a category gets one code)."""
    if not factors:
        return None
    return np.stack([np.asarray(table.column(c, name, "factors"), dtype=object) for c in factors], axis=1)


def _factor_codes(values: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Numeric columns as float64, other columns as integer codes of their sorted values; a missing value is refused."""
    out = np.empty(values.shape, dtype=np.float64)
    for j, col in enumerate(values.T):
        text = np.char.lower(np.char.strip(col.astype(str)))
        try:
            out[:, j] = col.astype(np.float64)
        except (TypeError, ValueError):
            out[:, j] = np.unique(text, return_inverse=True)[1]
        if np.isin(text, ["", "nan", "na", "none", "null"]).any() or not np.isfinite(out[:, j]).all():
            raise DataError(f"factor column {names[j]!r} has missing or infinite values; factors must be known for every row")
    return out


def _user_split(
    n: int,
    table: RawTable,
    name: str,
    *,
    column: str | None,
    explain_values: Sequence[Any],
    fit_values: Sequence[Any] | None,
    explain_rows: str | Path | Sequence[int] | None,
    fit_rows: str | Path | Sequence[int] | None,
    base_dir: Path | None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
    """The user's (fit, explain) rows of the file, in the user's order, or None for a random split."""
    if column is not None:
        values = np.asarray(table.column(column, name, "split")).astype(str)
        want = [str(v) for v in explain_values]
        explain = np.flatnonzero(np.isin(values, want))
        fit = np.flatnonzero(np.isin(values, [str(v) for v in fit_values]) if fit_values is not None else ~np.isin(values, want))
        found = sorted(set(values.tolist()))
        if explain.size == 0:
            raise DataError(f"{name}: no row has {column} in {want} for the explain split (values found: {', '.join(found[:10])})")
        if fit.size == 0:
            raise DataError(f"{name}: no row of {column} is in the fit split (values found: {', '.join(found[:10])})")
        return (
            fit,
            explain,
            {"method": "column", "column": column, "explain": want, "fit": None if fit_values is None else [str(v) for v in fit_values]},
        )
    if explain_rows is None and fit_rows is None:
        return None
    if explain_rows is None:
        raise DataError("split.fit_rows needs split.explain_rows (which rows are explained)")
    explain = read_rows(explain_rows, n, "split.explain_rows", base_dir)
    if fit_rows is None:
        fit = np.setdiff1d(np.arange(n), explain)
        if fit.size == 0:
            raise DataError("split.explain_rows lists every row: no rows are left for the fit split")
    else:
        fit = read_rows(fit_rows, n, "split.fit_rows", base_dir)
    info: dict[str, Any] = {"method": "rows"}
    info.update({k: str(v) for k, v in (("explain_rows", explain_rows), ("fit_rows", fit_rows)) if isinstance(v, (str, Path))})
    return fit, explain, info


def load_dataset(
    *,
    path: str | Path | None = None,
    builtin: str | None = None,
    kind: str | None = None,
    feature_names: Sequence[str] | None = None,
    label: str | None = None,
    factors: Sequence[str] | None = None,
    key: str | None = None,
    groups: str | Mapping[str, Sequence[str]] = "auto",
    explain_fraction: float = 0.25,
    explain_size: int | None = None,
    split_seed: int = 0,
    standardize: bool | None = None,
    nan: str = "error",
    max_samples: int | None = None,
    encoding: str = "utf-8",
    index: int | str | None = None,
    fit_path: str | Path | None = None,
    explain_path: str | Path | None = None,
    split_column: str | None = None,
    explain_values: Sequence[Any] = ("test",),
    fit_values: Sequence[Any] | None = None,
    explain_rows: str | Path | Sequence[int] | None = None,
    fit_rows: str | Path | Sequence[int] | None = None,
    base_dir: Path | None = None,
) -> ArrayDataset:
    """Load a dataset from a file or a bundled set and cut it into fit / explain splits.

    The split is the user's when one is given, kept exactly (never
    re-shuffled): separate files (``fit_path`` or ``path`` for the fit rows,
    ``explain_path`` for the explained rows), a ``split_column`` whose values
    ``explain_values`` mark explained rows (``fit_values``, default every
    other row, mark fit rows), or row indices ``explain_rows`` / ``fit_rows``
    (lists or index files; fit defaults to the other rows). Otherwise a seeded
    random split (``explain_fraction`` / ``explain_size`` / ``split_seed``).

    ``standardize`` (default: on for bundled tabular sets, off otherwise) scales
    each element by the fit split's mean and standard deviation. ``nan`` is
    ``error`` (refuse data with NaN or infinite values) or ``drop`` (drop
    those rows with a warning). ``encoding`` is the text encoding of a CSV;
    ``index`` names the CSV column (or its position) holding row labels: the
    dataset's ``row_names``, which name the rows of per-sample results.
    ``factors`` names columns (or ``.npz`` arrays) of known generating factors,
    kept out of the features as the dataset's ``factors`` (categorical values
    become integer codes).
    """
    sources = sum(v is not None for v in (path, builtin, fit_path))
    if explain_path is None and fit_path is not None:
        raise DataError("`fit_path` needs `explain_path` (the file of the rows to explain)")
    if sources != 1:
        raise DataError("give exactly one of `path` or `builtin` for the data (or `fit_path` with `explain_path`)")
    labels: np.ndarray | None = None
    base_names: list[str] | None = None
    user: tuple[np.ndarray, np.ndarray, dict[str, Any]] | None = None
    keep = [c for c in dict.fromkeys((label, split_column, *(factors or ()))) if c is not None]
    factor_values: np.ndarray | None = None
    if builtin is not None:
        if explain_path is not None or split_column is not None:
            raise DataError(
                "a bundled dataset has no split column and no separate explain file; use `split.explain_rows` for your own split"
            )
        if factors:
            raise DataError("`factors` names columns of your own file; a bundled dataset has none (its label is used as a factor)")
        x, base_names, labels, builtin_kind = _builtin(builtin)
        if kind is not None and kind != builtin_kind:
            raise DataError(f"builtin dataset {builtin!r} is {builtin_kind} data, not {kind}")
        kind = builtin_kind
        name = builtin
        if standardize is None:
            standardize = kind == "tabular"
        table = RawTable(x=x)
    else:
        fit_source = fit_path if fit_path is not None else path
        table, name = _read(fit_source, key, keep, encoding, index)  # type: ignore[arg-type]
        labels = _labels(table, label, name, Path(fit_source).suffix)  # type: ignore[arg-type]
        factor_values = _factors(table, factors, name)
        if explain_path is not None:
            if split_column is not None or explain_rows is not None or fit_rows is not None:
                raise DataError("`explain_path` is the split already; drop `split.column` / `split.explain_rows`")
            other, other_name = _read(explain_path, key, keep, encoding, index)
            if other.feature_names is not None and table.feature_names is not None and other.feature_names != table.feature_names:
                diff = next((a, b) for a, b in zip(other.feature_names + [None], table.feature_names + [None]) if a != b)  # type: ignore[operator]
                raise DataError(f"{other_name} and {name} have different columns (first difference: {diff[0]!r} vs {diff[1]!r})")
            if other.x.shape[1:] != table.x.shape[1:]:
                raise DataError(f"{other_name} has samples of shape {other.x.shape[1:]}, but {name} has {table.x.shape[1:]}")
            other_labels = _labels(other, label, other_name, Path(explain_path).suffix)
            other_factors = _factors(other, factors, other_name)
            if factor_values is not None and other_factors is not None:
                factor_values = np.concatenate([factor_values, other_factors])
            n_fit = table.x.shape[0]
            if labels is not None and other_labels is not None:
                labels = np.concatenate([np.asarray(labels), np.asarray(other_labels)])
            elif (labels is None) != (other_labels is None):
                labels = None
            both = None if table.index is None or other.index is None else np.concatenate([table.index, other.index])
            table = RawTable(x=np.concatenate([np.asarray(table.x), np.asarray(other.x)]), feature_names=table.feature_names, index=both)
            user = (
                np.arange(n_fit),
                np.arange(n_fit, table.x.shape[0]),
                {"method": "files", "fit_path": str(fit_source), "explain_path": str(explain_path)},
            )
            name = f"{name}+{other_name}"
        base_names = table.feature_names
    x = table.x
    if not np.issubdtype(np.asarray(x[:0]).dtype, np.number):
        raise DataError(f"data from {name} is not numeric (dtype {x.dtype})")
    if x.dtype != np.float32:
        check_float32_range(x, str(name), table.feature_names)
        x = np.asarray(x, dtype=np.float32)
    x, kind = _infer_kind(x, kind, name)
    if x.shape[0] == 0:
        raise DataError(f"{name} holds no samples")
    if feature_names is not None:
        if kind == "image":
            raise DataError("feature_names do not apply to image data (pixels are named by position)")
        base_names = [str(n) for n in feature_names]
        check_unique_names(base_names, "data.feature_names")
    if user is None:
        user = _user_split(
            x.shape[0],
            table,
            name,
            column=split_column,
            explain_values=explain_values,
            fit_values=fit_values,
            explain_rows=explain_rows,
            fit_rows=fit_rows,
            base_dir=base_dir,
        )
    row_ids = np.arange(x.shape[0])
    finite = finite_rows(x)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        if nan != "drop":
            raise DataError(
                f"{name} has NaN or infinite values in {len(bad)} of {len(x)} samples (first: row {bad[0]}); "
                "clean the data, or set `nan: drop` in the data section to drop those samples"
            )
        warnings.warn(f"dropping {len(bad)} of {len(x)} samples of {name} with NaN or infinite values", stacklevel=2)
        row_ids = np.flatnonzero(finite)
        x = _take(x, finite)
        labels = labels[finite] if labels is not None else None
        factor_values = factor_values[finite] if factor_values is not None else None
    split_info: dict[str, Any]
    if user is not None:
        if max_samples is not None:
            raise DataError("`max_samples` would subsample your own split; drop it (explainers have their own `max_samples`)")
        position = np.full(len(finite), -1, dtype=np.int64)
        position[row_ids] = np.arange(len(row_ids))
        fit_idx, explain_idx = position[user[0]], position[user[1]]
        fit_idx, explain_idx = fit_idx[fit_idx >= 0], explain_idx[explain_idx >= 0]
        if explain_idx.size == 0:
            raise DataError(f"every row of the explain split of {name} has NaN or infinite values")
        split_info = user[2]
    else:
        if max_samples is not None and x.shape[0] > max_samples:
            keep_rows = np.sort(np.random.default_rng(split_seed).choice(x.shape[0], size=max_samples, replace=False))
            x, labels, row_ids = _take(x, keep_rows), (labels[keep_rows] if labels is not None else None), row_ids[keep_rows]
            factor_values = factor_values[keep_rows] if factor_values is not None else None
        fit_idx, explain_idx = split_indices(x.shape[0], explain_fraction=explain_fraction, explain_size=explain_size, seed=split_seed)
        split_info = {"method": "random", "seed": split_seed, "explain_fraction": explain_fraction, "explain_size": explain_size}
    info: dict[str, Any] = dict(table.info)
    if standardize and isinstance(x, LazyRows):  # one streaming pass; each chunk is scaled as it is read
        mean, std = column_stats(x, fit_idx)
        x = x._replace(center=mean, scale=np.where(std > 0, std, 1.0))
        info["standardized"] = True
    elif standardize:
        x_fit = x[fit_idx]
        mean = x_fit.mean(axis=0)
        std = x_fit.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        x = ((x - mean) / std).astype(np.float32)
        info["standardized"] = True
    names = element_names(kind, x.shape[1:], base_names if kind != "image" else None)
    needs_rows = isinstance(groups, str) and groups.startswith("correlation")
    grp = make_groups(kind, x.shape[1:], groups, feature_names=names, x=x[fit_idx] if needs_rows else None, base_names=base_names)
    return ArrayDataset(
        x=x,
        kind=kind,
        feature_names=names,
        groups=grp,
        fit_index=fit_idx,
        explain_index=explain_idx,
        name=name,
        labels=labels,
        info=info,
        row_ids=row_ids,
        split_info=split_info,
        check_finite=False,  # checked above (and standardizing keeps it finite)
        row_names=None if table.index is None else [str(table.index[r]) for r in row_ids],
        factors=None if factor_values is None else _factor_codes(factor_values, list(factors or ())),
        factor_names=list(factors) if factor_values is not None and factors else None,
    )
