"""Reading data files into arrays: CSV, Parquet, AnnData ``.h5ad`` and ``.zarr``, ``.npy`` and ``.npz``.

Every reader returns a :class:`RawTable`: the samples ``x`` (rows first), the
feature names when the file has them, and the file's *other* columns by name
(a CSV's label or split column, an AnnData ``obs`` column, an ``.npz``
array), so the label and the split can be read from any of them.

- CSV through pandas' C parser when pandas is installed (``aeinterp[pandas]``;
  several times faster than a cell-by-cell reader, see ``bench/bench_io.py``),
  else through the csv module, with the same located errors for ragged rows,
  duplicate header names and non-UTF-8 bytes (``encoding:`` reads other encodings).
- Parquet through pandas with pyarrow (``aeinterp[parquet]``).
- ``.h5ad`` through anndata (``aeinterp[anndata]``, see :mod:`aeinterp.io.anndata`):
  ``X``, ``raw`` or a layer (``layer:`` / ``key:``), sparse kept sparse and
  large files read backed, ``var_names`` as feature names, ``obs`` columns as
  labels or split.
- ``.zarr``: AnnData's Zarr store (a directory, ``adata.write_zarr``), read like
  ``.h5ad`` (see :mod:`aeinterp.io.anndata_zarr`).
- ``.npy`` memory-mapped (``mmap_mode="r"``): rows are read when they are
  used, so explaining a few rows of a large file does not load all of it.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError, require
from .checks import open_npy
from .table import RawTable  # noqa: F401  (read_file's result; re-exported)

__all__ = ["RawTable", "read_file", "SUFFIXES", "MISSING"]

MISSING = ("", "NA", "nan", "NaN")  # CSV cells read as NaN
SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".h5ad", ".zarr", ".npy", ".npz")


def read_file(
    path: Path, *, key: str | None = None, keep: Sequence[str] = (), encoding: str = "utf-8", index: int | str | None = None
) -> RawTable:
    """Read ``path`` by its suffix. ``keep`` names columns that are not features
    (the label, the split column); ``key`` picks the ``.npz`` array or the ``.h5ad`` / ``.zarr`` layer;
    ``index`` names a CSV's row-label column (or gives its position: 0 is the first)."""
    if index is not None and path.suffix not in (".csv", ".tsv"):
        raise DataError(f"`index:` reads a CSV's row-label column; {path.name} is not a CSV")
    if path.suffix.lower() == ".zarr" or (path.is_dir() and _zarr_store(path)):
        if path.suffix != ".zarr" and path.suffix.lower() == ".zarr":
            raise DataError(f"data store {path.name}: write the suffix in lower case (.zarr), as aeinterp recognises formats by it")
        from .anndata_zarr import read_zarr  # AnnData's zarr store: read like .h5ad (aeinterp.io.anndata_zarr)

        return read_zarr(path, key)
    if path.is_dir():
        raise DataError(
            f"data path {path} is a folder, not a file or an AnnData .zarr store; name the file ({', '.join(s for s in SUFFIXES if s != '.zarr')})"
        )
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    suffix = path.suffix
    if suffix.lower() != suffix and suffix.lower() in SUFFIXES:
        raise DataError(f"data file {path.name}: write the suffix in lower case ({suffix.lower()}), as aeinterp recognises formats by it")
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, keep, encoding, sep="\t" if suffix == ".tsv" else ",", index=index)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path, keep)
    if suffix == ".h5ad":
        from .anndata import read_h5ad  # sparse stays sparse, large files stay on disk (aeinterp.io.anndata)

        return read_h5ad(path, key)
    if suffix in (".npy", ".npz"):
        try:
            return _read_array(path, key)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"cannot read {path}: {exc}") from None
    raise DataError(f"unsupported data file {path.name}: use {', '.join(SUFFIXES)}")


def _zarr_store(path: Path) -> bool:
    from .anndata_zarr import is_zarr_store

    return is_zarr_store(path)


# --- CSV ---------------------------------------------------------------------------------
INDEX = "\0index"  # the internal name of an unnamed index column


def _header(path: Path, encoding: str, sep: str, index: int | str | None = None) -> list[str]:
    try:
        with path.open(newline="", encoding=encoding) as fh:
            first = next(csv.reader(fh, delimiter=sep), None)
    except UnicodeDecodeError as exc:
        raise _decode_error(path, exc, encoding) from None
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r} for {path.name}; use e.g. utf-8, latin-1, cp1252") from None
    if first is None:
        raise DataError(f"{path} is empty")
    header = [h.strip() for h in first]
    twice = [h for h, c in Counter(header).items() if c > 1]
    if twice:
        raise DataError(f"{path}: the header names {', '.join(repr(h) for h in twice)} more than once; every column needs its own name")
    if header and header[0] == "" and index in (0, ""):
        header[0] = INDEX  # pandas' unnamed index, asked for with `index: 0`
    elif header and header[0] == "" and header.count("") == 1:
        raise DataError(
            f"{path}: the first column has no name: it looks like the row index pandas writes with df.to_csv(); "
            "add `index: 0` to the data section to read it as row labels (or write the file with df.to_csv(index=False))"
        )
    if any(h == "" for h in header):
        raise DataError(f"{path}: column {header.index('') + 1} of the header has no name")
    return header


def _index_name(path: Path, header: list[str], index: int | str | None) -> str | None:
    """The header name of the ``index:`` column."""
    if index is None:
        return None
    if isinstance(index, int) and not isinstance(index, bool):
        if not 0 <= index < len(header):
            raise DataError(f"{path}: `index: {index}` is outside the header's columns 0..{len(header) - 1}")
        return header[index]
    if index not in header:
        raise DataError(f"{path}: no column {index!r} for `index:` (the header: {', '.join(header[:12])})")
    return str(index)


def _not_numeric(path: Path, h: str, value: str, row: int, first: bool) -> DataError:
    hint = f"mark it with `label: {h}` or remove it"
    if first:  # pandas writes a named index first: row labels, not a class label
        hint = (
            f"if it names the rows (the index pandas writes first), add `index: {h}`; if it is a class label, `label: {h}`; else remove it"
        )
    return DataError(f"{path}: column {h!r} is not numeric (value {value!r}, data row {row}); {hint}")


def _decode_error(path: Path, exc: UnicodeDecodeError, encoding: str) -> DataError:
    return DataError(
        f"{path} is not {encoding} text (byte {exc.object[exc.start : exc.start + 1]!r} at offset {exc.start}); "
        "give its encoding in the data section, e.g. `encoding: latin-1`"
    )


def _ragged(path: Path, n_columns: int, encoding: str, sep: str) -> None:
    """Find the first row whose number of values differs from the header's (slow path)."""
    with path.open(newline="", encoding=encoding) as fh:
        for lineno, row in enumerate(csv.reader(fh, delimiter=sep), start=1):
            if lineno > 1 and row and len(row) != n_columns:
                raise DataError(f"{path}:{lineno}: {len(row)} values, but the header has {n_columns} columns")


def _read_csv(path: Path, keep: Sequence[str], encoding: str, sep: str, index: int | str | None = None) -> RawTable:
    header = _header(path, encoding, sep, index)
    index_name = _index_name(path, header, index)
    if index_name is not None:
        keep = [*keep, index_name] if index_name not in keep else list(keep)
    table = _read_csv_table(path, header, keep, encoding, sep)
    if index_name is not None:
        table.index = table.columns[index_name] if index_name in table.columns else None
        if index_name == INDEX or index_name not in keep[:-1]:
            table.columns.pop(index_name, None)
    return table


def _read_csv_table(path: Path, header: list[str], keep: Sequence[str], encoding: str, sep: str) -> RawTable:
    missing = [k for k in keep if k not in header]
    if missing:
        raise DataError(f"{path}: column {missing[0]!r} is not in the header ({', '.join(header)})")
    try:
        import pandas as pd
    except ImportError:  # the core does not need pandas: the same checks, parsed in Python (slower)
        return _read_csv_python(path, header, keep, encoding, sep)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # a long first row: pandas would drop values
            frame = pd.read_csv(
                path,
                sep=sep,
                header=0,
                names=header,
                index_col=False,
                encoding=encoding,
                skip_blank_lines=True,
                na_values=list(MISSING),
                keep_default_na=False,
                dtype={k: str for k in keep},
            )
    except pd.errors.ParserWarning:
        _ragged(path, len(header), encoding, sep)
        raise DataError(f"{path}: a row has more values than the header has columns") from None
    except UnicodeDecodeError as exc:
        raise _decode_error(path, exc, encoding) from None
    except pd.errors.ParserError as exc:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if found:
            raise DataError(f"{path}:{found.group(2)}: {found.group(3)} values, but the header has {found.group(1)} columns") from None
        raise DataError(f"cannot parse {path}: {exc}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    if len(frame) == 0:
        raise DataError(f"{path} has a header but no rows")
    names = [h for h in header if h not in keep]
    for h in names:
        col = frame[h]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            numeric = pd.to_numeric(col, errors="coerce")
            bad = col[numeric.isna() & col.notna()]
            row = int(bad.index[0]) if len(bad) else 0
            raise _not_numeric(path, h, str(bad.iloc[0]) if len(bad) else "?", row + 1, h == header[0])
    x = frame[names].to_numpy(dtype=np.float32)
    if np.isnan(x).any() or frame[list(keep)].isna().to_numpy().any():  # short rows read as missing values: check
        _ragged(path, len(header), encoding, sep)
    columns = {k: frame[k].fillna("").to_numpy(dtype=str) for k in keep}
    return RawTable(x=x, feature_names=names, columns=columns)


def _read_csv_python(path: Path, header: list[str], keep: Sequence[str], encoding: str, sep: str) -> RawTable:
    """The CSV reader without pandas (``pip install 'aeinterp[pandas]'`` parses ~5-10x faster)."""
    columns: dict[str, list[str]] = {h: [] for h in header}
    with path.open(newline="", encoding=encoding) as fh:
        rows = csv.reader(fh, delimiter=sep)
        next(rows, None)
        for lineno, row in enumerate(rows, start=2):
            if not row:
                continue  # blank lines
            if len(row) != len(header):
                raise DataError(f"{path}:{lineno}: {len(row)} values, but the header has {len(header)} columns")
            for h, v in zip(header, row):
                columns[h].append(v)
    n = len(columns[header[0]])
    if n == 0:
        raise DataError(f"{path} has a header but no rows")
    names = [h for h in header if h not in keep]
    x = np.empty((n, len(names)), dtype=np.float32)
    for j, h in enumerate(names):
        for i, v in enumerate(columns[h]):
            v = v.strip()
            try:
                x[i, j] = np.nan if v in MISSING else float(v)
            except ValueError:
                raise _not_numeric(path, h, v, i + 1, h == header[0]) from None
    return RawTable(x=x, feature_names=names, columns={k: np.asarray(columns[k], dtype=str) for k in keep})


# --- Parquet -----------------------------------------------------------------------------
def _read_parquet(path: Path, keep: Sequence[str]) -> RawTable:
    pd = require("pandas", "parquet", "reading Parquet files")
    require("pyarrow", "parquet", "reading Parquet files")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises its own error classes for damaged files
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    header = [str(c) for c in frame.columns]
    frame.columns = header
    missing = [k for k in keep if k not in header]
    if missing:
        raise DataError(f"{path}: column {missing[0]!r} is not one of its columns ({', '.join(header)})")
    names = [h for h in header if h not in keep]
    bad = [h for h in names if not pd.api.types.is_numeric_dtype(frame[h]) and not pd.api.types.is_bool_dtype(frame[h])]
    if bad:
        raise DataError(
            f"{path}: column {bad[0]!r} is not numeric (dtype {frame[bad[0]].dtype}); mark it with `label: {bad[0]}` or remove it"
        )
    x = frame[names].to_numpy(dtype=np.float32, na_value=np.nan)
    return RawTable(x=x, feature_names=names, columns={k: frame[k].astype(str).to_numpy(dtype=str) for k in keep})


# --- numpy -------------------------------------------------------------------------------
def _read_array(path: Path, key: str | None) -> RawTable:
    if path.suffix == ".npy":
        return RawTable(x=open_npy(path))  # a truncated file says so
    with np.load(path, allow_pickle=False) as npz:
        keys = list(npz.files)
        if key is None:
            key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise DataError(f"{path} holds arrays {keys}; say which one is the data with `key:`")
        if key not in keys:
            raise DataError(f"{path} has no array {key!r}; it has {keys}")
        x = npz[key]
        columns = {k: npz[k] for k in keys if k != key and npz[k].ndim == 1 and len(npz[k]) == len(x)}
        return RawTable(x=x, columns=columns)
