"""AnnData in: ``.h5ad`` files and AnnData objects as datasets, sparse and out of core.

Which matrix (``layer``)
    ``None`` or ``"X"``: ``adata.X``; ``"raw"``: ``adata.raw.X`` with
    ``adata.raw.var_names`` as the feature names; any other name: the layer
    ``adata.layers[name]``. The dataset's description says which one was read
    (``info["matrix"]``), and how (``info["storage"]``).

Sparse and backed
    A sparse matrix is never made dense whole: it is wrapped in
    :class:`aeinterp.io.rows.LazyRows`, which densifies the rows an explainer
    asks for, one chunk at a time. A file larger than
    ``AEINTERP_BACKED_MB`` (default 1024 MiB), or any file with
    ``backed=True``, is read *backed*: the chosen matrix stays on disk and only
    the rows used are read (AnnData's ``sparse_dataset`` for CSR, h5py for a
    dense matrix). Only the chosen matrix is read, never the file's other layers.

Labels and split
    ``labels`` names an ``obs`` column (cell types, say); ``split`` names an
    ``obs`` column whose ``explain_values`` mark the rows to explain (the other
    rows, or those with ``fit_values``, are the fit / background rows).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data import ArrayDataset, element_names, make_groups
from ..errors import DataError, require
from .checks import check_unique_names
from .rows import LazyRows, is_sparse
from .table import RawTable

__all__ = [
    "is_anndata",
    "select_matrix",
    "read_h5ad",
    "read_store",
    "cells_dataset",
    "anndata_dataset",
    "matrix_rows",
    "backed_threshold_bytes",
]


def is_anndata(obj: Any) -> bool:
    """True for an ``anndata.AnnData`` (duck-typed: anndata is not imported)."""
    return all(hasattr(obj, a) for a in ("obs", "var", "obs_names", "var_names", "layers", "X"))


def backed_threshold_bytes() -> int:
    """``.h5ad`` files above this size are read backed (``AEINTERP_BACKED_MB``, default 1024)."""
    try:
        return int(float(os.environ.get("AEINTERP_BACKED_MB", "1024")) * 2**20)
    except ValueError:
        raise DataError("AEINTERP_BACKED_MB must be a number of MiB") from None


def _layer_help(layers: Sequence[str], has_raw: bool) -> str:
    options = ["X"] + (["raw"] if has_raw else []) + [str(k) for k in layers]
    return ", ".join(options)


def select_matrix(adata: Any, layer: str | None) -> tuple[Any, list[str], str]:
    """``(matrix, feature names, which)`` of an AnnData object for ``layer`` (see the module docstring)."""
    has_raw = getattr(adata, "raw", None) is not None
    if layer is not None and not isinstance(layer, str):
        raise DataError(f"layer must be a name (X, raw or a layer), not {type(layer).__name__}")
    if layer in (None, "X"):
        if adata.X is None:
            raise DataError(f"the AnnData has no X matrix; choose one with layer= ({_layer_help(list(adata.layers), has_raw)})")
        return adata.X, [str(v) for v in adata.var_names], "X"
    if layer == "raw":
        if not has_raw:
            raise DataError(f"the AnnData has no .raw; choose another matrix with layer= ({_layer_help(list(adata.layers), has_raw)})")
        return adata.raw.X, [str(v) for v in adata.raw.var_names], "raw.X"
    if layer not in adata.layers:
        raise DataError(f"the AnnData has no layer {layer!r}; it has: {_layer_help(list(adata.layers), has_raw)}")
    return adata.layers[layer], [str(v) for v in adata.var_names], f"layers[{layer!r}]"


def _storage(matrix: Any) -> str:
    if is_sparse(matrix):
        return f"sparse {getattr(matrix, 'format', 'csr').upper()} in memory, densified a chunk of rows at a time"
    if isinstance(matrix, np.ndarray):
        return "dense in memory"
    fmt = getattr(matrix, "format", None) or getattr(matrix, "format_str", None)
    if fmt:
        return f"sparse {str(fmt).upper()} on disk (backed), read a chunk of rows at a time"
    return "dense on disk (backed), read a chunk of rows at a time"


def matrix_rows(
    matrix: Any, description: str, fingerprint: str | None = None, extra: np.ndarray | None = None, writer: str = "write_h5ad"
) -> Any:
    """The samples of ``matrix``: a float32 ndarray when it is dense in memory, else a :class:`LazyRows`."""
    if isinstance(matrix, np.ndarray) and extra is None:
        if not np.issubdtype(matrix.dtype, np.number) and matrix.dtype != bool:
            raise DataError(f"{description} is not numeric (dtype {matrix.dtype})")
        return np.asarray(matrix, dtype=np.float32)
    if is_sparse(matrix):
        if getattr(matrix, "format", "csr") != "csr":
            matrix = matrix.tocsr()  # row access needs CSR; the sparse copy is the size of the stored values
        if not np.issubdtype(matrix.dtype, np.number) and matrix.dtype != bool:
            raise DataError(f"{description} is not numeric (dtype {matrix.dtype})")
    elif getattr(matrix, "format", None) == "csc":
        raise DataError(
            f"{description} is stored CSC on disk: reading rows would read the whole file each time; "
            f"rewrite it as CSR (adata.X = adata.X.tocsr(); adata.{writer}(...)) or read it into memory (backed=False, or AEINTERP_BACKED_MB above its size)"
        )
    elif isinstance(matrix, np.ndarray) or hasattr(matrix, "__array__"):
        matrix = matrix if hasattr(matrix, "shape") and len(matrix.shape) == 2 else np.asarray(matrix)
    return LazyRows(matrix, extra=extra, description=description, fingerprint=fingerprint)


# --- files -------------------------------------------------------------------------------
def _io(anndata: Any) -> tuple[Any, Any]:
    """``(read_elem, sparse_dataset)`` of the installed anndata (``anndata.io`` from 0.11, ``experimental`` before)."""
    mod = getattr(anndata, "io", None)
    if mod is None or not hasattr(mod, "sparse_dataset"):
        mod = anndata.experimental
    return mod.read_elem, mod.sparse_dataset


def read_h5ad(path: Path, layer: str | None = None, *, backed: bool | str = "auto") -> Any:
    """A :class:`~aeinterp.io.table.RawTable` of an ``.h5ad`` file's chosen matrix (sparse stays sparse;
    backed: the matrix stays on disk), its ``var_names`` and its ``obs`` columns."""

    require("anndata", "anndata", "reading .h5ad files")
    h5py = require("h5py", "anndata", "reading .h5ad files")
    if backed == "auto":
        backed = path.stat().st_size > backed_threshold_bytes()
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"cannot read {path}: not an HDF5 .h5ad file ({exc})") from None
    stat = path.stat()
    return read_store(
        f, path, layer, backed=bool(backed), source="h5ad", fingerprint=f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}", close=f.close
    )


def _is_sparse_elem(elem: Any) -> bool:
    """Whether a stored AnnData element (an h5py or zarr group / array) is a sparse matrix (AnnData's encoding)."""
    kind = elem.attrs.get("encoding-type", "")
    return str(kind) in ("csr_matrix", "csc_matrix") or (kind == "" and hasattr(elem, "keys") and "indptr" in elem)


def read_store(
    root: Any, path: Path, layer: str | None, *, backed: bool, source: str, fingerprint: str, close: Any, writer: str = "write_h5ad"
) -> Any:
    """A :class:`~aeinterp.io.table.RawTable` of an open AnnData store's chosen matrix: ``root`` is the
    ``.h5ad``'s h5py file or the ``.zarr``'s zarr group (both laid out the same by AnnData); ``close``
    closes it (called on failure, and after reading unless ``backed``); ``writer`` is the AnnData method
    that rewrites the store (named in the CSC message)."""
    anndata = require("anndata", "anndata", f"reading {path.suffix or 'AnnData'} stores")
    read_elem, sparse_dataset = _io(anndata)
    try:
        layers = list(root["layers"].keys()) if "layers" in root else []
        has_raw = "raw" in root and "X" in root["raw"]
        if layer in (None, "X"):
            if "X" not in root:
                raise DataError(f"{path} has no X matrix; choose one with `layer:` ({_layer_help(layers, has_raw)})")
            elem, which, var_group = root["X"], "X", root["var"]
        elif layer == "raw":
            if not has_raw:
                raise DataError(f"{path} has no raw matrix; choose one with `layer:` ({_layer_help(layers, has_raw)})")
            elem, which, var_group = root["raw"]["X"], "raw.X", root["raw"]["var"]
        elif layer in layers:
            elem, which, var_group = root["layers"][layer], f"layers[{layer!r}]", root["var"]
        else:
            raise DataError(f"{path} has no layer {layer!r}; it has: {_layer_help(layers, has_raw)}")
        var = read_elem(var_group)
        obs = read_elem(root["obs"])
        if backed:
            matrix = sparse_dataset(elem) if _is_sparse_elem(elem) else elem
        else:
            matrix = read_elem(elem)
        description = f"{path.name} {which}"
        rows = matrix_rows(matrix, description, fingerprint=f"{fingerprint}:{which}", writer=writer)
    except DataError:
        close()
        raise
    except Exception as exc:  # h5py / zarr / anndata errors for damaged files
        close()
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    if backed:
        rows.keepalive = root  # the file stays open while its rows are read
    else:
        close()
    columns = {str(c): obs[c].astype(str).to_numpy(dtype=str) for c in obs.columns}
    info = {
        "source": source,
        "path": str(path),
        "matrix": which,
        "storage": _storage(rows.source if isinstance(rows, LazyRows) else matrix),  # a CSC read into memory is CSR now
        "n_obs": int(rows.shape[0]),
        "n_vars": int(rows.shape[1]),
    }
    names = [str(v) for v in var.index]
    check_unique_names(names, f"the var_names of {path}")
    return RawTable(x=rows, feature_names=names, columns=columns, info=info, index=np.asarray([str(v) for v in obs.index]))


# --- objects -----------------------------------------------------------------------------
def _obs_column(adata: Any, name: str, role: str) -> np.ndarray:
    if not isinstance(name, str) or name not in adata.obs.columns:
        have = ", ".join(map(str, adata.obs.columns)) or "none"
        raise DataError(f"the AnnData's obs has no column {name!r} for the {role} (obs columns: {have})")
    return adata.obs[name].astype(str).to_numpy(dtype=str)


def anndata_dataset(
    adata: Any,
    *,
    layer: str | None = None,
    labels: str | None = None,
    split: str | None = None,
    explain_values: Sequence[Any] = ("test",),
    fit_values: Sequence[Any] | None = None,
    groups: str | Mapping[str, Sequence[str]] = "auto",
    extra: np.ndarray | None = None,
    extra_names: Sequence[str] = (),
    check_finite: bool = True,
) -> ArrayDataset:
    """A tabular dataset of an AnnData object (see the module docstring): every row explained and used as
    background unless ``split`` names an ``obs`` column; ``extra`` columns (per-cell covariates) are appended
    to every row but left out of the feature groups (they are held fixed, not attributed)."""
    matrix, names, which = select_matrix(adata, layer)
    check_unique_names(names, f"the AnnData's {which} var_names")
    description = f"AnnData {which}"
    x = matrix_rows(matrix, description, extra=extra)
    info = {"source": "AnnData", "matrix": which, "storage": _storage(x.source if isinstance(x, LazyRows) else matrix)}
    return cells_dataset(
        x,
        names,
        description=description,
        info=info,
        obs_column=lambda name, role: _obs_column(adata, name, role),
        obs_names=adata.obs_names,
        labels=labels,
        split=split,
        explain_values=explain_values,
        fit_values=fit_values,
        groups=groups,
        extra_names=extra_names,
        check_finite=check_finite,
    )


def cells_dataset(
    x: Any,
    names: list[str],
    *,
    description: str,
    info: dict[str, Any],
    obs_column: Any,
    obs_names: Sequence[Any],
    labels: str | None = None,
    split: str | None = None,
    explain_values: Sequence[Any] = ("test",),
    fit_values: Sequence[Any] | None = None,
    groups: str | Mapping[str, Sequence[str]] = "auto",
    extra_names: Sequence[str] = (),
    check_finite: bool = True,
) -> ArrayDataset:
    """The dataset of cells ``x`` (genes ``names``, then extra columns) with ``obs_column(name, role)`` the
    obs column reader: what :func:`anndata_dataset` builds for an object and :func:`aeinterp.io.inputs.lazy_dataset`
    for an ``.h5ad`` / ``.zarr`` path."""
    n = int(x.shape[0])
    if n == 0:
        raise DataError("the AnnData holds no cells (obs)")
    if x.shape[1] == 0:
        raise DataError("the AnnData holds no genes (var)")
    y = obs_column(labels, "labels") if labels is not None else None
    explain_index = fit_index = np.arange(n)
    split_info: dict[str, Any] = {"method": "all rows"}
    if split is not None:
        values = obs_column(split, "split")
        want = [str(v) for v in explain_values]
        explain_index = np.flatnonzero(np.isin(values, want))
        fit_index = np.flatnonzero(np.isin(values, [str(v) for v in fit_values]) if fit_values is not None else ~np.isin(values, want))
        found = ", ".join(sorted(set(values.tolist()))[:10])
        if explain_index.size == 0:
            raise DataError(f"no cell has obs[{split!r}] in {want} for the explain split (values found: {found})")
        if fit_index.size == 0:
            raise DataError(f"no cell of obs[{split!r}] is left for the fit split (values found: {found})")
        split_info = {
            "method": "column",
            "column": split,
            "explain": want,
            "fit": None if fit_values is None else [str(v) for v in fit_values],
        }
    if check_finite:
        finite = x.finite_rows() if isinstance(x, LazyRows) else np.isfinite(x).all(axis=1)
        if not finite.all():
            raise DataError(
                f"{description} has NaN or infinite values (first in cell {str(obs_names[int(np.flatnonzero(~finite)[0])])!r}); clean or drop those cells"
            )
    genes = element_names("tabular", (len(names),), names)
    all_names = genes + [str(e) for e in extra_names]
    if len(all_names) != x.shape[1]:
        raise DataError(f"{len(extra_names)} names for {x.shape[1] - len(names)} extra columns")
    if isinstance(groups, str) and groups.startswith("correlation"):
        raise DataError(
            "correlation groups are not computed on AnnData (they need a dense genes x genes correlation); give groups as a mapping"
        )
    grp = make_groups("tabular", (len(names),), groups, feature_names=genes)
    info = {**info, "n_obs": n, "n_vars": len(names), "row_names": "obs_names"}
    if extra_names:
        info["held_fixed"] = [str(e) for e in extra_names]
    return ArrayDataset(
        x=x,
        kind="tabular",
        feature_names=all_names,
        groups=grp,
        fit_index=fit_index,
        explain_index=explain_index,
        name=description,
        labels=y,
        info=info,
        split_info=split_info,
        check_finite=False,
        row_names=[str(v) for v in obs_names],  # the cells' names label every per-sample view
    )
