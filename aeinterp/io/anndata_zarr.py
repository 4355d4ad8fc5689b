"""AnnData's Zarr store (a ``*.zarr`` directory written by ``adata.write_zarr``) as a dataset.

The store is read exactly like an ``.h5ad`` file (:func:`aeinterp.io.anndata.read_store`,
the same code on a zarr group instead of an h5py file):

- ``layer``: ``X`` (default), ``raw`` (``adata.raw.X``, with ``raw.var_names``)
  or a layer's name; only that matrix is read, never the store's other layers.
- A sparse CSR matrix stays sparse and is densified one chunk of rows at a
  time (:class:`aeinterp.io.rows.LazyRows`). A store larger on disk than
  ``AEINTERP_BACKED_MB`` (default 1024 MiB), or any store with
  ``backed=True``, is read **backed**: AnnData's ``sparse_dataset`` on the
  zarr group keeps only ``indptr`` in memory and reads the ``indices`` /
  ``data`` slices of the rows each chunk asks for; a dense matrix is read
  by blocks of rows from its zarr array. A backed CSC matrix is refused
  (reading rows of it would read the whole matrix each time).
- ``obs`` columns are the labels / split columns, ``var_names`` the feature names.

A recipe run on a ``.zarr`` store writes ``results.h5ad`` (the store's
``obs`` and genes, no expression matrix, the explanations under the keys of
:mod:`aeinterp.io.anndata_out`) exactly as for an ``.h5ad`` input.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import DataError, require
from .anndata import backed_threshold_bytes, read_store

__all__ = ["read_zarr", "is_zarr_store", "open_zarr", "store_size"]

ZARR_MARKERS = (".zgroup", "zarr.json")  # zarr format 2 and 3 groups


def is_zarr_store(path: Path) -> bool:
    """A directory holding a zarr group (format 2 or 3)."""
    return path.is_dir() and any((path / m).is_file() for m in ZARR_MARKERS)


def store_size(path: Path) -> tuple[int, int]:
    """``(bytes on disk, latest modification in ns)`` of every file under ``path``."""
    size = mtime = 0
    for folder, _, files in os.walk(path):
        for name in files:
            st = os.stat(os.path.join(folder, name))
            size += st.st_size
            mtime = max(mtime, st.st_mtime_ns)
    return size, mtime


def open_zarr(path: Path) -> Any:
    """The root group of an AnnData zarr store, read-only; a clear error for anything else."""
    zarr = require("zarr", "anndata", "reading .zarr stores")
    if not path.exists():
        raise DataError(f"data store not found: {path}")
    if not path.is_dir():
        raise DataError(f"{path} is not a Zarr store: AnnData writes one as a directory (adata.write_zarr('{path.name}'))")
    if not is_zarr_store(path):
        raise DataError(f"{path} is not a Zarr store (no .zgroup or zarr.json in it); write one with adata.write_zarr('{path.name}')")
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr's own errors for damaged metadata
        raise DataError(f"cannot read {path}: not a Zarr group ({type(exc).__name__}: {exc})") from None
    kind = root.attrs.get("encoding-type")
    if kind != "anndata" or "obs" not in root or "var" not in root:
        found = ", ".join(sorted(root.keys())[:10]) or "nothing"
        raise DataError(
            f"{path} is a Zarr store but not an AnnData one (encoding-type {kind!r}; it holds {found}); "
            "write the AnnData with adata.write_zarr(...)"
        )
    return root


def read_zarr(path: Path, layer: str | None = None, *, backed: bool | str = "auto") -> Any:
    """A :class:`~aeinterp.io.table.RawTable` of an AnnData zarr store's chosen matrix (see the module docstring)."""
    require("anndata", "anndata", "reading .zarr stores")
    root = open_zarr(path)
    size, mtime = store_size(path)
    if backed == "auto":
        backed = size > backed_threshold_bytes()
    return read_store(
        root,
        path,
        layer,
        backed=bool(backed),
        source="zarr",
        fingerprint=f"{path.resolve()}:{size}:{mtime}",
        close=lambda: None,  # a zarr group holds no open file
        writer="write_zarr",
    )
